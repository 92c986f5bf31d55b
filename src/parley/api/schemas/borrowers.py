"""Borrower and contact point shapes (camelCase on the wire, like seeds/001)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from parley.api.schemas.common import CamelModel, RequestModel

# RequestModel refuses NUL characters anywhere in a body (PostgreSQL text cannot store it).
TextRequest = RequestModel


ContactType = Literal["email", "phone"]
ContactLabel = Literal["mobile", "home", "work", "personal", "other"]
ContactSource = Literal["borrower_provided", "creditor_provided", "employer", "skip_trace", "other"]


class Address(TextRequest):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2, e.g. DK")


class AddressOut(CamelModel):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str


class ContactPointCreate(TextRequest):
    type: ContactType
    value: str = Field(
        min_length=1, max_length=320, description="Phone (normalized to E.164) or email address"
    )
    label: ContactLabel | None = None
    source: ContactSource = "borrower_provided"
    is_primary: bool = False


class ContactPointUpdate(TextRequest):
    """The value itself is not editable: a new number or address is a new contact point."""

    label: ContactLabel | None = None
    source: ContactSource | None = None
    is_primary: bool | None = None


class ContactPointOut(CamelModel):
    contact_point_id: uuid.UUID
    borrower_id: uuid.UUID
    type: str
    value: str
    label: str | None
    source: str
    is_primary: bool
    created_at: datetime


class ContactPointList(CamelModel):
    items: list[ContactPointOut]


class BorrowerCreate(TextRequest):
    external_ref: str | None = Field(default=None, max_length=100)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA time zone, e.g. Europe/Copenhagen"
    )
    preferred_language: str | None = Field(
        default=None, max_length=35, description="BCP 47 or POSIX locale, e.g. da-DK"
    )
    address: Address | None = None
    do_not_contact: bool = False
    contact_points: list[ContactPointCreate] = Field(default_factory=list, max_length=20)


class BorrowerUpdate(TextRequest):
    """Only the fields sent change; null clears an optional field."""

    external_ref: str | None = Field(default=None, max_length=100)
    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    last_name: str | None = Field(default=None, min_length=1, max_length=100)
    timezone: str | None = Field(default=None, max_length=64)
    preferred_language: str | None = Field(default=None, max_length=35)
    address: Address | None = None
    do_not_contact: bool | None = None


class BorrowerOut(CamelModel):
    borrower_id: uuid.UUID
    external_ref: str | None
    first_name: str
    last_name: str
    timezone: str | None
    preferred_language: str | None
    address: AddressOut | None
    do_not_contact: bool
    contact_points: list[ContactPointOut]
    created_at: datetime
    updated_at: datetime


class BorrowerPage(CamelModel):
    items: list[BorrowerOut]
    next_cursor: str | None = None

"""Case shapes. Money is a decimal string plus an ISO 4217 currency ("1234.50", "DKK")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from parley.api.schemas.borrowers import TextRequest
from parley.api.schemas.common import CamelModel

CaseStatus = Literal[
    "open",
    "payment_plan",
    "promise_to_pay",
    "disputed",
    "cease_communication",
    "attorney_represented",
    "bankruptcy",
    "deceased",
    "paid",
    "closed",
]
BorrowerRole = Literal["primary", "co_borrower", "guarantor"]
AMOUNT_HELP = 'Decimal string, at most 2 decimals, not negative, e.g. "1234.50"'
NUMBER_HELP = "1-64 characters, unique in the organization"
CREDITOR_HELP = "1-200 characters"
CURRENCY_HELP = "ISO 4217, e.g. DKK"


class CaseBorrowerIn(TextRequest):
    borrower_id: uuid.UUID
    role: BorrowerRole | None = Field(
        default=None, description="Default: primary for the first when none is, else co_borrower"
    )


# Values are checked by the service (services/cases.py), which reports every bad field in
# one 422; length limits here would answer first, with only their own fields.
class CaseCreate(TextRequest):
    case_number: str = Field(description=NUMBER_HELP)
    creditor: str = Field(description=CREDITOR_HELP)
    original_amount: str = Field(description=AMOUNT_HELP)
    outstanding_amount: str = Field(description=AMOUNT_HELP)
    currency: str = Field(description=CURRENCY_HELP)
    due_date: str | None = Field(default=None, description="YYYY-MM-DD")
    status: CaseStatus = "open"
    assigned_agent_id: uuid.UUID | None = None
    borrower_ids: list[uuid.UUID] | None = Field(default=None, max_length=50)
    borrowers: list[CaseBorrowerIn] | None = Field(default=None, max_length=50)


class CaseUpdate(TextRequest):
    """Only the fields sent change; null clears dueDate or assignedAgentId."""

    case_number: str | None = Field(default=None, description=NUMBER_HELP)
    creditor: str | None = Field(default=None, description=CREDITOR_HELP)
    original_amount: str | None = Field(default=None, description=AMOUNT_HELP)
    outstanding_amount: str | None = Field(default=None, description=AMOUNT_HELP)
    currency: str | None = Field(default=None, description=CURRENCY_HELP)
    due_date: str | None = Field(default=None, description="YYYY-MM-DD")
    status: CaseStatus | None = None
    assigned_agent_id: uuid.UUID | None = None


class CaseBorrowerLink(TextRequest):
    borrower_id: uuid.UUID
    role: BorrowerRole = "co_borrower"


class CaseBorrowerOut(CamelModel):
    borrower_id: uuid.UUID
    role: str
    first_name: str
    last_name: str


class CaseOut(CamelModel):
    case_id: uuid.UUID
    case_number: str
    creditor: str
    original_amount: str
    outstanding_amount: str
    currency: str
    due_date: str | None
    days_past_due: int = Field(description="Derived at read time from dueDate (UTC today)")
    status: str
    assigned_agent_id: uuid.UUID | None
    borrowers: list[CaseBorrowerOut]
    created_at: datetime
    updated_at: datetime


class CasePage(CamelModel):
    items: list[CaseOut]
    next_cursor: str | None = None

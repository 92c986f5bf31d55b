"""Request and response shapes of click-to-call, presence and call logs (camelCase)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from parley.api.schemas.common import CamelModel, RequestModel

Disposition = Literal[
    "no_answer",
    "left_message",
    "spoke_to_customer",
    "promise_to_pay",
    "refused_to_pay",
    "dispute",
    "callback_requested",
    "wrong_number",
]


class PresenceIn(RequestModel):
    status: Literal["available", "busy", "away", "offline"]
    # client:<identity> (Twilio Voice SDK), sip:<user>@<host>, or an E.164 number.
    endpoint: str | None = Field(default=None, max_length=200)


class PresenceOut(CamelModel):
    agent_id: uuid.UUID
    name: str
    status: str
    endpoint: str | None = None
    busy_call_id: uuid.UUID | None = None
    updated_at: datetime | None = None


class PresenceList(CamelModel):
    agents: list[PresenceOut]


class CallLogIn(RequestModel):
    disposition: Disposition
    notes: str | None = Field(default=None, max_length=5000)
    follow_up_date: date | None = None
    promise_amount: str | None = Field(default=None, max_length=20)
    promise_date: date | None = None
    correction: bool = False


class CallLogOut(CamelModel):
    log_id: int
    disposition: str
    result: str
    notes: str | None = None
    follow_up_date: date | None = None
    promise_amount: str | None = None
    promise_currency: str | None = None
    promise_date: date | None = None
    supersedes: int | None = None
    logged_by: str | None = None
    logged_at: datetime


class RecordingOut(CamelModel):
    recording_sid: str
    url: str | None = None
    duration_seconds: int | None = None


class MuteIn(RequestModel):
    muted: bool


class DigitsIn(RequestModel):
    digits: str = Field(max_length=32)


class TransferIn(RequestModel):
    to_agent_id: uuid.UUID
    mode: Literal["blind", "warm"] = "blind"


class CallEventOut(CamelModel):
    kind: str
    call_sid: str | None = None
    provider_status: str | None = None
    occurred_at: datetime
    applied: bool
    raw: dict[str, Any]


class CallEventList(CamelModel):
    events: list[CallEventOut]

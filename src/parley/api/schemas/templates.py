"""Message template shapes (seed: GET /api/message-templates)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from parley.api.schemas.common import CamelModel, RequestModel

TemplateType = Literal["email", "sms", "whatsapp", "voicemail"]


class TemplateCreate(RequestModel):
    """``voicemail`` templates are limited-content voicemails (Reg F 1006.2(j)): give
    ``voicemail`` (businessName, requestToReply, contactNames, callbackNumbers and
    optionally salutation, includeDateTime, suggestedReplyTimes, anyRepresentative) and
    no body; every other type takes a body."""

    template_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    type: TemplateType
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, min_length=1, max_length=100_000)
    html_body: str | None = Field(default=None, max_length=500_000)
    voicemail: dict[str, Any] | None = None


class TemplateUpdate(RequestModel):
    """Changing subject/body/htmlBody creates a new version; name changes in place."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, min_length=1, max_length=100_000)
    html_body: str | None = Field(default=None, max_length=500_000)
    voicemail: dict[str, Any] | None = None


class TemplateOut(CamelModel):
    template_id: str
    name: str
    type: str
    subject: str | None
    body: str
    html_body: str | None
    variables: list[str]
    voicemail: dict[str, Any] | None = None
    version: int
    updated_at: datetime


class TemplateList(CamelModel):
    templates: list[TemplateOut]


class PreviewRequest(RequestModel):
    case_id: uuid.UUID
    borrower_id: uuid.UUID | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(default=None, ge=1, le=2_147_483_647)


class PreviewOut(CamelModel):
    template_id: str
    version: int
    type: str
    locale: str
    subject: str | None
    text: str
    html: str | None
    encoding: str | None = None
    characters: int
    segments: int | None = None
    non_gsm_characters: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    # `text` is the message as it would be sent now; `templateText` the template alone,
    # and `contentRules` what the compliance content rules did (as stored with a message).
    template_text: str | None = None
    content_rules: dict[str, Any] | None = None

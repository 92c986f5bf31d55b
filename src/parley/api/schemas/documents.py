"""Case document shapes (seed: Document Management)."""

from __future__ import annotations

import uuid
from datetime import datetime

from parley.api.schemas.common import CamelModel


class DocumentOut(CamelModel):
    document_id: uuid.UUID
    case_id: uuid.UUID
    file_name: str
    document_type: str
    content_type: str
    size: int
    sha256: str
    description: str | None = None
    # The inbound email it came with (documents received as attachments).
    message_id: uuid.UUID | None = None
    uploaded_at: datetime
    uploaded_by: str | None = None


class DocumentList(CamelModel):
    documents: list[DocumentOut]

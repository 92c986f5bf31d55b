"""Opaque keyset cursors: base64 of the last row's (timestamp, id)."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

import orjson

from parley.services.errors import Invalid

MAX_LIMIT = 200


def encode(at: datetime, row_id: uuid.UUID | str) -> str:
    raw = orjson.dumps([at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, row_id = orjson.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise Invalid.field("cursor", "is not a cursor this API returned") from exc


def clamp_limit(limit: int) -> int:
    if limit < 1 or limit > MAX_LIMIT:
        raise Invalid.field("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit

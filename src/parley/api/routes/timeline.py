"""/api/borrowers/{borrowerId}/timeline: every message, event, call and consent change."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path

from parley.api import pagination
from parley.api.deps import ContainerDep, PrincipalDep
from parley.api.schemas.inbox import Timeline, TimelineItemOut
from parley.services import timeline as svc

router = APIRouter(tags=["inbox"])


@router.get("/api/borrowers/{borrowerId}/timeline", response_model=Timeline)
async def borrower_timeline(
    borrower_id: Annotated[uuid.UUID, Path(alias="borrowerId")],
    principal: PrincipalDep,
    container: ContainerDep,
    limit: int = 50,
    cursor: str | None = None,
) -> Timeline:
    """Newest first, across channels and cases, with cursor pagination."""
    limit = pagination.clamp_limit(limit)
    async with container.db.pool.connection() as conn:
        rows, next_cursor = await svc.page(
            conn, principal.organization_id, borrower_id, limit, cursor
        )
    items = []
    for r in rows:
        kind = r["kind"]
        items.append(
            TimelineItemOut(
                type=kind,
                at=r["at"],
                id=str(_item_id(r)),
                case_id=r["case_id"],
                channel=r["channel"],
                direction=r["direction"],
                status=r["status"],
                message_id=r["message_id"],
                call_id=r["call_id"],
                subject=r["subject"],
                body=r["body"],
                from_=r["from_address"],
                to=r["to_address"],
                event=r["action"] if kind == "message_event" else None,
                previous_status=r["status_before"],
                result=r["result"],
                action=r["action"] if kind == "consent" else None,
                reason=r["reason"],
                flags=r["flags"],
            )
        )
    return Timeline(borrower_id=borrower_id, items=items, next_cursor=next_cursor)


def _item_id(row: dict[str, Any]) -> object:
    """A message's or call's uuid; an event's or consent change's number."""
    if row["kind"] == "message":
        return row["message_id"]
    if row["kind"] == "call":
        return row["call_id"]
    return row["event_id"]

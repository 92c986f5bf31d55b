"""What an email gets at send time, after its claim: its attached documents' bytes and,
when the account enables tracking, a pixel and tracked links in its HTML.

Both are added to the in-memory row the provider renders from, never to the stored
message (which keeps what the agent wrote, invariant 6).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from parley.channels.base import Attachment
from parley.services import tracking

if TYPE_CHECKING:
    from parley.bootstrap import Container
    from parley.dispatch.providers import AccountRow


class EmailRow(Protocol):
    id: str
    channel: str
    html_body: str | None
    attachments: tuple[Attachment, ...]


async def prepare(
    container: Container,
    conn: psycopg.AsyncConnection[Any],
    rows: list[Any],
    account: AccountRow | None,
) -> None:
    emails: list[EmailRow] = [r for r in rows if r.channel == "email"]
    if not emails:
        return
    await _load_attachments(conn, emails)
    config = account.config if account is not None else {}
    opens, clicks = bool(config.get("track_opens")), bool(config.get("track_clicks"))
    if not (opens or clicks):
        return
    key = await tracking.secret(container, conn)
    for row in emails:
        if row.html_body:
            row.html_body = tracking.instrument(
                row.html_body,
                key=key,
                base_url=container.settings.base_url,
                message_id=uuid.UUID(row.id),
                opens=opens,
                clicks=clicks,
            )


async def _load_attachments(conn: psycopg.AsyncConnection[Any], rows: list[EmailRow]) -> None:
    cur = await conn.execute(
        "SELECT a.message_id::text, d.file_name, d.content_type, c.data "
        "FROM message_attachments a JOIN documents d ON d.id = a.document_id "
        "JOIN document_contents c ON c.document_id = d.id "
        "WHERE a.message_id = ANY(%s::uuid[]) ORDER BY a.message_id, a.position",
        ([r.id for r in rows],),
    )
    found: dict[str, list[Attachment]] = defaultdict(list)
    for message_id, file_name, content_type, data in await cur.fetchall():
        found[message_id].append(Attachment(file_name, content_type, bytes(data)))
    for row in rows:
        if row.id in found:
            row.attachments = tuple(found[row.id])

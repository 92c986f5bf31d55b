"""The IMAP listener's read position, kept in PostgreSQL (`imap_cursors`).

One row per account and folder: the folder's UIDVALIDITY and the last UID handed to
the sink. A different UIDVALIDITY means the server renumbered the folder, so the
position starts over at 0 (what was handled before is deduplicated downstream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parley.dispatch.providers import AccountRow
    from parley.storage.db import Database


class DatabaseCursor:
    def __init__(self, db: Database, account: AccountRow) -> None:
        self._db = db
        self._account_id = account.id
        self._organization_id = account.organization_id

    async def load(self, folder: str, uidvalidity: int) -> int:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT uidvalidity, last_uid FROM imap_cursors "
                "WHERE provider_account_id = %s AND folder = %s",
                (self._account_id, folder),
            )
            row = await cur.fetchone()
        if row is None or row[0] != uidvalidity:
            return 0
        return int(row[1])

    async def save(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        async with self._db.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO imap_cursors (provider_account_id, folder, organization_id, "
                "uidvalidity, last_uid, updated_at) VALUES (%s, %s, %s, %s, %s, now()) "
                "ON CONFLICT (provider_account_id, folder) DO UPDATE SET "
                "uidvalidity = EXCLUDED.uidvalidity, last_uid = EXCLUDED.last_uid, "
                "updated_at = now()",
                (self._account_id, folder, self._organization_id, uidvalidity, last_uid),
            )


def attach(db: Database, account: AccountRow, provider: object) -> None:
    """Give a listening provider with a UID cursor (smtp) its stored position; the
    listener supervisor calls this before `provider.run(sink)`."""
    if hasattr(provider, "cursor"):
        provider.cursor = DatabaseCursor(db, account)

"""ASGI middleware: request size limit and Idempotency-Key handling for POSTs.

Idempotency (DESIGN.md section 6): the first request with a key records it as
`running`; a repeat with the same body gets the stored response, a repeat with a
different body gets 422, and a repeat while the first is still running gets 409.
Responses of 5xx are not stored, so the client may retry with the same key.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.api.problems import PROBLEM
from parley.services.auth import hash_token

log = logging.getLogger(__name__)


async def _send_problem(
    send: Send, status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None
) -> None:
    problem: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        problem["errors"] = errors
    body = orjson.dumps(problem)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        larger: Sequence[tuple[re.Pattern[str], int]] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Paths allowed bigger bodies (document uploads, inbound emails): (pattern, limit).
        self.larger = tuple(larger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        max_bytes = next((n for p, n in self.larger if p.match(path)), self.max_bytes)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            await _send_problem(
                send,
                413,
                "Content too large",
                f"Request bodies are limited to {max_bytes} bytes",
            )
            return
        # Read the body here (it is bounded), so a chunked upload without Content-Length
        # that runs over the limit also gets a clear 413.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            received += len(body)
            if received > max_bytes:
                await _send_problem(
                    send,
                    413,
                    "Content too large",
                    f"Request bodies are limited to {max_bytes} bytes",
                )
                return
            chunks.append(body)
            if not message.get("more_body"):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


class NulGuard:
    """Refuse NUL in the path or query string: PostgreSQL text cannot store it.

    A query parameter with NUL answers 422 naming the parameter, like any other invalid
    query parameter.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if "\x00" in scope.get("path", ""):
                await _send_problem(send, 400, "Bad request", "NUL is not allowed in paths")
                return
            query = scope.get("query_string", b"")
            if b"%00" in query or b"\x00" in query:
                names = sorted(
                    {
                        k
                        for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                        if "\x00" in k or "\x00" in v
                    }
                )
                errors = [
                    {
                        "field": n.replace("\x00", ""),
                        "message": "must not contain NUL characters",
                        "code": "nul",
                    }
                    for n in names
                ]
                await _send_problem(
                    send,
                    422,
                    "Validation failed",
                    "query parameters must not contain NUL characters",
                    errors,
                )
                return
        await self.app(scope, receive, send)


class Idempotency:
    def __init__(self, app: ASGIApp, container: Any) -> None:
        self.app = app
        self.container = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        # latin-1, as Starlette does: header bytes are not necessarily UTF-8.
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []
        }
        key = headers.get("idempotency-key")
        auth = headers.get("authorization", "")
        if not key or not auth.lower().startswith("bearer "):
            await self.app(scope, receive, send)
            return
        if len(key) > 255:
            await _send_problem(send, 400, "Bad request", "Idempotency-Key is longer than 255")
            return
        # Read the whole body (BodyLimit sits outside and bounds it).
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        path = scope["path"]
        digest = hashlib.sha256(scope["method"].encode() + path.encode() + b"\0" + body).hexdigest()
        org = await self._organization(auth.split(" ", 1)[1].strip())
        if org is None:  # let the app answer 401
            await self.app(scope, _replay(body, receive), send)
            return
        ttl = timedelta(hours=self.container.settings.idempotency_ttl_hours)
        async with self.container.db.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO idempotency_keys (organization_id, key, method, path, request_hash, "
                "state, expires_at) VALUES (%s, %s, 'POST', %s, %s, 'running', %s) "
                "ON CONFLICT (organization_id, key) DO NOTHING RETURNING key",
                (org, key, path, digest, datetime.now(UTC) + ttl),
            )
            fresh = await cur.fetchone()
            if fresh is None:
                cur = await conn.execute(
                    "SELECT request_hash, state, response_status, response_body, "
                    "response_headers FROM idempotency_keys WHERE organization_id = %s "
                    "AND key = %s",
                    (org, key),
                )
                existing = await cur.fetchone()
        if fresh is None:
            if existing is None:  # expired and pruned between the two statements
                await _send_problem(send, 409, "Conflict", "Retry the request")
                return
            req_hash, state, status, stored_body, stored_headers = existing
            if req_hash != digest:
                await _send_problem(
                    send,
                    422,
                    "Idempotency key reused",
                    "This Idempotency-Key was used with a different request "
                    "body or path; use a new key for a new request",
                )
                return
            if state != "done":
                await _send_problem(
                    send,
                    409,
                    "Conflict",
                    "A request with this Idempotency-Key is still in progress",
                )
                return
            hdrs = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in (stored_headers or {}).items()
            ]
            hdrs.append((b"idempotent-replayed", b"true"))
            await send({"type": "http.response.start", "status": status, "headers": hdrs})
            await send({"type": "http.response.body", "body": bytes(stored_body or b"")})
            return
        captured: dict[str, Any] = {"status": 500, "headers": [], "body": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, _replay(body, receive), capture)
        finally:
            await self._finish(org, key, captured)

    async def _finish(self, org: str, key: str, captured: dict[str, Any]) -> None:
        async with self.container.db.pool.connection() as conn:
            if captured["status"] >= 500:
                await conn.execute(
                    "DELETE FROM idempotency_keys WHERE organization_id = %s AND key = %s",
                    (org, key),
                )
                return
            keep = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in captured["headers"]
                if k.decode("latin-1").lower() in ("content-type", "location")
            }
            await conn.execute(
                "UPDATE idempotency_keys SET state = 'done', response_status = %s, "
                "response_body = %s, response_headers = %s WHERE organization_id = %s AND key = %s",
                (
                    captured["status"],
                    b"".join(captured["body"]),
                    orjson.dumps(keep).decode(),
                    org,
                    key,
                ),
            )

    async def _organization(self, token: str) -> str | None:
        async with self.container.db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT organization_id::text FROM api_tokens WHERE token_hash = %s "
                "AND revoked_at IS NULL",
                (hash_token(token),),
            )
            row = await cur.fetchone()
        return row[0] if row else None


def _replay(body: bytes, original: Receive) -> Receive:
    """Hand the already-read body to the app once, then pass real disconnects through."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive

"""/api/events/stream: live updates as Server-Sent Events (see parley.inbox.live).

Each event is `event: <type>` with `data: {"type", "organizationId", "data"}`; comment
lines (`: keepalive`) every `HEARTBEAT_SECONDS` keep proxies from closing an idle
stream. The stream ends when the server shuts down or the client falls too far
behind; an EventSource then reconnects (`retry:` says after how long).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from parley.api.deps import ContainerDep, bearer_token
from parley.inbox import live
from parley.services.auth import Role, authenticate

router = APIRouter(tags=["inbox"])

HEARTBEAT_SECONDS = 15.0
RETRY_MS = 3000


# Left out of /openapi.json: OpenAPI 3.0 cannot describe a response that never ends, and
# schema-driven clients and fuzzers would wait on it forever (documented in docs/api.md).
@router.get("/api/events/stream", response_class=StreamingResponse, include_in_schema=False)
async def event_stream(request: Request, container: ContainerDep) -> StreamingResponse:
    """Server-Sent Events for the token's organization (agents: their conversations,
    the team queue, and status changes)."""
    # Authenticated here with a short-lived session: a request-scoped one would stay
    # checked out for as long as the stream is open.
    token = bearer_token(request)
    async with container.db.session() as session:
        principal = await authenticate(session, token)
    if principal is None:
        raise HTTPException(401, "Invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    agent = None
    if not principal.at_least(Role.SUPERVISOR):
        # An agent token without a user sees the team queue only.
        agent = str(principal.user_id) if principal.user_id else "-"
    hub = live.hub_for(request.app)
    try:
        sub = await hub.subscribe(str(principal.organization_id), agent)
    except RuntimeError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "3"}) from None

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
            while True:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if event is None:
                    return
                body = orjson.dumps(
                    {
                        "type": event.get("type"),
                        "organizationId": event.get("org"),
                        "data": event.get("data"),
                    }
                )
                yield b"event: " + str(event.get("type")).encode() + b"\ndata: " + body + b"\n\n"
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each event through at once
        },
    )

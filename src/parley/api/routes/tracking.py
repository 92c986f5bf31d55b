"""Open pixel and click redirect of tracked emails (see services/tracking.py).

``GET /t/o/{token}.gif`` answers a 1x1 transparent GIF and records an open;
``GET /t/c/{token}`` redirects (302) to the link's original URL and records a click.
A token that does not verify answers 404 and redirects nowhere (no open redirect).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from parley.api.deps import ContainerDep
from parley.api.problems import problem
from parley.services import tracking

router = APIRouter(tags=["tracking"], include_in_schema=False)

# The smallest transparent GIF (43 bytes).
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
_NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


@router.get("/t/o/{token}.gif")
async def open_pixel(token: str, request: Request, container: ContainerDep) -> Response:
    async with container.db.pool.connection() as conn, conn.transaction():
        tracked = tracking.read_token(await tracking.secret(container, conn), token, click=False)
        if tracked is None:
            return problem(404, "Not found", "unknown tracking link")
        await tracking.record(
            container,
            conn,
            tracked,
            click=False,
            now=container.clock(),
            user_agent=request.headers.get("user-agent"),
        )
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


@router.get("/t/c/{token}")
async def click_redirect(token: str, request: Request, container: ContainerDep) -> Response:
    async with container.db.pool.connection() as conn, conn.transaction():
        tracked = tracking.read_token(await tracking.secret(container, conn), token, click=True)
        if tracked is None or tracked.url is None:
            return problem(404, "Not found", "unknown tracking link")
        await tracking.record(
            container,
            conn,
            tracked,
            click=True,
            now=container.clock(),
            user_agent=request.headers.get("user-agent"),
        )
    # Even for a message that is gone, a signed link goes where we sent it.
    return RedirectResponse(tracked.url, status_code=302, headers=_NO_STORE)

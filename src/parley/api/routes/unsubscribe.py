"""Email unsubscribe: the link in each email's footer and RFC 8058 one-click POST.

``GET /unsubscribe/{token}`` shows a confirmation page with a button (a GET never
unsubscribes: mail scanners follow links); ``POST /unsubscribe/{token}`` unsubscribes —
the button, and mail clients' one-click (``List-Unsubscribe=One-Click`` body). Both
answer the same for an unknown token as far as content goes, with 404.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from parley.api.deps import ContainerDep
from parley.services import unsubscribe as svc

router = APIRouter(tags=["unsubscribe"], include_in_schema=True)

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 36rem; margin: 3rem auto">{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def confirm_page(token: str, container: ContainerDep) -> HTMLResponse:
    async with container.db.pool.connection() as conn:
        valid = svc.read_token(await svc.secret(container, conn), token) is not None
    if not valid:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    action = html.escape(f"/unsubscribe/{token}", quote=True)
    return _page(
        "Unsubscribe",
        "<h1>Stop emails about this account?</h1>"
        f'<form method="post" action="{action}"><button type="submit">Unsubscribe</button></form>',
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request, container: ContainerDep) -> HTMLResponse:
    # A mail client's one-click POST carries "List-Unsubscribe=One-Click" (RFC 8058); the
    # page's button does not: the ledger records which it was.
    body = (await request.body())[:200]
    source = "list_unsubscribe" if b"List-Unsubscribe=One-Click" in body else "unsubscribe_link"
    async with container.db.pool.connection() as conn, conn.transaction():
        done = await svc.unsubscribe(container, conn, token, source=source)
    if not done:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    return _page("Unsubscribed", "<p>You will not receive further emails at this address.</p>")

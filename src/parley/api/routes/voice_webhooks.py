"""Voice providers' callbacks: ``/webhooks/{provider}/{account}/voice/...`` (Twilio's, and
the sandbox's simulated network's). Verified with the account's provider before anything
is stored; the paths and what each does: ``services/voice_webhooks.py``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from parley.api.deps import ContainerDep
from parley.api.problems import problem
from parley.api.routes.webhooks import public_url
from parley.channels.base import WebhookRequest
from parley.services import voice_webhooks

router = APIRouter(tags=["webhooks"])

_TITLES = {403: "Forbidden", 404: "Not found"}


@router.post("/webhooks/{provider}/{account_id}/voice/{path:path}", include_in_schema=False)
async def voice_callback(
    provider: str, account_id: str, path: str, request: Request, container: ContainerDep
) -> Response:
    hook = WebhookRequest(
        method="POST",
        url=public_url(request, container.settings.base_url),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.body(),
        query=dict(request.query_params),
    )
    answer = await voice_webhooks.receive(container, provider, account_id, path, hook)
    if answer.detail is not None:
        return problem(answer.status, _TITLES.get(answer.status, "Bad request"), answer.detail)
    return Response(content=answer.body, media_type=answer.media_type)

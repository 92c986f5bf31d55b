"""Provider callbacks: /webhooks/{provider}/{account}. Verified before anything is stored."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Request, Response

from parley.api.deps import ContainerDep
from parley.api.problems import problem
from parley.bootstrap import Container
from parley.channels.base import WebhookRequest, WebhookVerificationError
from parley.inbox import handshake, receipts

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])


def public_url(request: Request, base_url: str) -> str:
    """The URL the provider called, as it signed it (the public base URL + path + query)."""
    query = request.url.query
    return base_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


@router.post("/webhooks/{provider}/{account_id}", include_in_schema=False)
async def provider_webhook(provider: str, account_id: str, request: Request) -> Response:
    # The container straight from the app rather than a dependency: this route takes
    # several callbacks per message sent, and resolving a dependency per request was
    # measurable on it.
    container: Container = request.app.state.container
    try:
        uuid.UUID(account_id)
    except ValueError:
        return problem(404, "Not found", "unknown webhook endpoint")
    body = await request.body()
    hook = WebhookRequest(
        method="POST",
        url=public_url(request, container.settings.base_url),
        headers=dict(request.headers.items()),  # ASGI header names are lower-case
        body=body,
        query=dict(request.query_params),
    )
    try:
        result = await receipts.ingest(container, provider, account_id, hook)
    except receipts.UnknownWebhookAccount:
        return problem(404, "Not found", "unknown webhook endpoint")
    except receipts.AccountChanged:
        # The account was being edited while we stored this: the provider retries.
        return problem(503, "Service unavailable", "provider account changed; retry")
    except WebhookVerificationError as exc:
        # Log who and why, never the payload (it can carry personal data or secrets).
        log.warning(
            "rejected %s webhook for account %s from %s: %s",
            provider,
            account_id,
            request.client.host if request.client else "?",
            exc,
        )
        return problem(403, "Forbidden", "webhook signature verification failed")
    except ValueError as exc:
        return problem(400, "Bad request", f"unparseable webhook payload: {exc}")
    return Response(
        content=b'{"ok":true,"duplicate":%s}' % (b"true" if result.duplicate else b"false"),
        media_type="application/json",
    )


@router.get("/webhooks/{provider}/{account_id}", include_in_schema=False)
async def provider_webhook_handshake(
    provider: str, account_id: str, request: Request, container: ContainerDep
) -> Response:
    """A provider's subscription check (Meta: hub.mode/hub.verify_token/hub.challenge)."""
    try:
        uuid.UUID(account_id)
        answer = await handshake.challenge(
            container, provider, account_id, dict(request.query_params)
        )
    except (ValueError, receipts.UnknownWebhookAccount):
        return problem(404, "Not found", "unknown webhook endpoint")
    except WebhookVerificationError as exc:
        log.warning("rejected %s webhook handshake for account %s: %s", provider, account_id, exc)
        return problem(403, "Forbidden", "webhook verification failed")
    return Response(content=answer, media_type="text/plain")

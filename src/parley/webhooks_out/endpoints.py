"""Managing an organization's webhook endpoints and reading their delivery log.

Endpoints are never deleted (their log stays readable): deleting one disables it with
reason ``deleted`` and hides it from the list. Disabling one (by hand, by deleting it,
or by its 410 answer) abandons its pending deliveries. The signing secret is returned
only by :func:`create` and :func:`rotate_secret` (routes decide what to show); it is
never logged. A rotation keeps the replaced secret signing too for a grace period
(Standard Webhooks' zero-downtime rotation); see ``signing.headers``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.errors import Conflict, Invalid, NotFound
from parley.storage.db import raw_connection
from parley.storage.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from parley.webhooks_out import delivery, payloads, queue, signing, targets

if TYPE_CHECKING:
    from parley.bootstrap import Container

STATUSES = ("pending", "succeeded", "failed", "abandoned")
# How long a rotated-out secret keeps signing by default, and at most (a week).
DEFAULT_GRACE_HOURS = 24
MAX_GRACE_HOURS = 168


def _event_types(values: Sequence[str]) -> list[str]:
    unknown = sorted(set(values) - set(payloads.SUBSCRIBABLE))
    if unknown:
        raise Invalid.field(
            "eventTypes",
            f"unknown event type(s) {', '.join(unknown)}; "
            f"subscribe to {', '.join(payloads.SUBSCRIBABLE)}",
        )
    if not values:
        raise Invalid.field("eventTypes", "subscribe to at least one event type")
    return [t for t in payloads.SUBSCRIBABLE if t in values]  # documented order, no dupes


async def _check_url(container: Container, url: str) -> None:
    try:
        await targets.check_url(
            url, allow_private=container.settings.webhooks_allow_private_targets
        )
    except targets.TargetRefused as exc:
        raise Invalid.field("url", str(exc), "target_refused") from None


async def create(
    container: Container,
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    url: str,
    description: str | None,
    event_types: Sequence[str],
) -> WebhookEndpoint:
    types = _event_types(event_types)
    await _check_url(container, url)
    endpoint = WebhookEndpoint(
        organization_id=org_id,
        url=url,
        description=description,
        event_types=types,
        secret=signing.new_secret(),
        enabled=True,
    )
    session.add(endpoint)
    await session.commit()
    return endpoint


async def get(
    session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID, *, lock: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.organization_id == org_id
    )
    endpoint = await session.scalar(query.with_for_update() if lock else query)
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


async def _live(
    session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    endpoint = await get(session, org_id, endpoint_id, lock=True)
    if endpoint.deleted_at is not None:
        raise Conflict("the webhook endpoint was deleted; create a new one")
    return endpoint


async def list_all(session: AsyncSession, org_id: uuid.UUID) -> list[WebhookEndpoint]:
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.organization_id == org_id, WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(rows)


async def update(
    container: Container,
    session: AsyncSession,
    org_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    changes: dict[str, Any],
) -> WebhookEndpoint:
    endpoint = await _live(session, org_id, endpoint_id)
    if changes.get("event_types") is not None:
        endpoint.event_types = _event_types(changes["event_types"])
    if changes.get("url") is not None and changes["url"] != endpoint.url:
        await _check_url(container, changes["url"])
        endpoint.url = changes["url"]
    if "description" in changes:
        endpoint.description = changes["description"]
    enabled = changes.get("enabled")
    now = container.clock()
    if enabled is True and not endpoint.enabled:
        endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = True, None, None
    endpoint.updated_at = now
    await session.flush()
    if enabled is False and endpoint.enabled:
        conn = await raw_connection(session)
        await delivery.disable_endpoint(conn, str(endpoint.id), "manual")
    await session.commit()
    await session.refresh(endpoint)
    return endpoint


async def delete(
    container: Container, session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID
) -> None:
    endpoint = await get(session, org_id, endpoint_id, lock=True)
    if endpoint.deleted_at is not None:
        return
    endpoint.deleted_at = container.clock()
    await session.flush()
    conn = await raw_connection(session)
    if endpoint.enabled:
        await delivery.disable_endpoint(conn, str(endpoint.id), "deleted")
    await session.commit()


async def rotate_secret(
    container: Container,
    session: AsyncSession,
    org_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    grace_hours: int = DEFAULT_GRACE_HOURS,
) -> WebhookEndpoint:
    """A new secret, signing from the next attempt on. The replaced one keeps signing
    alongside it for `grace_hours` (0: it stops at once); a secret replaced earlier and
    still in its grace period stops now (only one previous secret is kept)."""
    if not 0 <= grace_hours <= MAX_GRACE_HOURS:
        raise Invalid.field("graceHours", f"must be between 0 and {MAX_GRACE_HOURS}")
    endpoint = await _live(session, org_id, endpoint_id)
    now = container.clock()
    if grace_hours:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + timedelta(hours=grace_hours)
    else:
        endpoint.previous_secret, endpoint.previous_secret_expires_at = None, None
    endpoint.secret = signing.new_secret()
    endpoint.updated_at = now
    await session.commit()
    return endpoint


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[WebhookDelivery]
    next_cursor: tuple[datetime, uuid.UUID] | None


async def list_deliveries(
    session: AsyncSession,
    org_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> DeliveryPage:
    await get(session, org_id, endpoint_id)
    if status is not None and status not in STATUSES:
        raise Invalid.field("status", f"must be one of {', '.join(STATUSES)}")
    query = select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.organization_id == org_id
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if after is not None:
        query = query.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(*after))
    rows = list(
        await session.scalars(
            query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(
                limit + 1
            )
        )
    )
    cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        cursor = (rows[-1].created_at, rows[-1].id)
    return DeliveryPage(rows, cursor)


async def get_delivery(
    session: AsyncSession, org_id: uuid.UUID, delivery_id: uuid.UUID
) -> tuple[WebhookDelivery, list[WebhookDeliveryAttempt]]:
    found = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.organization_id == org_id
        )
    )
    if found is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    attempts = await session.scalars(
        select(WebhookDeliveryAttempt)
        .where(WebhookDeliveryAttempt.delivery_id == delivery_id)
        .order_by(WebhookDeliveryAttempt.attempt)
    )
    return found, list(attempts)


async def _queue_one(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    *,
    event_id: str,
    event_type: str,
    payload: dict[str, Any],
    redelivery_of: uuid.UUID | None = None,
) -> WebhookDelivery:
    row = WebhookDelivery(
        id=uuid.uuid4(),
        organization_id=endpoint.organization_id,
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        status="pending",
        attempts=0,
        next_attempt_at=func.now(),
        redelivery_of=redelivery_of,
    )
    session.add(row)
    await session.flush()
    await queue.defer(await raw_connection(session), [str(row.id)])
    await session.commit()
    await session.refresh(row)
    return row


async def redeliver(
    session: AsyncSession, org_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """A new attempt chain for the same event (same webhook-id, so receivers dedupe)."""
    original, _ = await get_delivery(session, org_id, delivery_id)
    if original.status == "pending":
        raise Conflict("the delivery is still being tried; redeliver it once it has ended")
    endpoint = await _live(session, org_id, original.endpoint_id)
    if not endpoint.enabled:
        raise Conflict(
            f"the webhook endpoint is disabled ({endpoint.disabled_reason}); enable it first"
        )
    return await _queue_one(
        session,
        endpoint,
        event_id=original.event_id,
        event_type=original.event_type,
        payload=original.payload,
        redelivery_of=original.id,
    )


async def send_test(
    container: Container, session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookDelivery:
    """Queue a `webhook.test` event to one endpoint (whatever it subscribes to)."""
    endpoint = await _live(session, org_id, endpoint_id)
    if not endpoint.enabled:
        raise Conflict(
            f"the webhook endpoint is disabled ({endpoint.disabled_reason}); enable it first"
        )
    body = payloads.build("webhook.test", {"endpointId": str(endpoint.id)}, container.clock())
    return await _queue_one(
        session, endpoint, event_id=queue.new_event_id(), event_type="webhook.test", payload=body
    )

"""/api/webhook-endpoints and /api/webhook-deliveries: the customer's outbound webhooks.

- ``POST /api/webhook-endpoints`` subscribes a URL to event types; the response carries
  the signing secret, shown this once (and again only by ``rotate-secret``).
- ``GET /api/webhook-endpoints``, ``GET|PATCH|DELETE /api/webhook-endpoints/{id}``
  (delete disables it and keeps its delivery log).
- ``POST /api/webhook-endpoints/{id}/rotate-secret`` (body ``{"graceHours": 0..168}``,
  optional, default 24: the replaced secret signs too until then),
  ``POST .../{id}/test``.
- ``GET /api/webhook-endpoints/{id}/deliveries?status=&limit=&cursor=`` — the log.
- ``GET /api/webhook-deliveries/{id}`` (with its attempts),
  ``POST /api/webhook-deliveries/{id}/redeliver``.

Reading is for supervisors and up; changes need the admin role.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response, status
from pydantic import Field

from parley.api import pagination
from parley.api.deps import AdminDep, ContainerDep, SessionDep, SupervisorDep
from parley.api.schemas.common import CamelModel, RequestModel
from parley.storage.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from parley.webhooks_out import endpoints as svc

router = APIRouter(tags=["webhooks (outbound)"])

EndpointId = Annotated[uuid.UUID, Path(alias="endpointId")]
DeliveryId = Annotated[uuid.UUID, Path(alias="deliveryId")]
EventType = Literal["message.received", "message.status_changed", "call.completed"]


class EndpointCreate(RequestModel):
    url: str = Field(min_length=8, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[EventType] = Field(min_length=1, max_length=10)


class EndpointUpdate(RequestModel):
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=10)
    enabled: bool | None = None


class SecretRotation(RequestModel):
    grace_hours: int = Field(
        default=svc.DEFAULT_GRACE_HOURS,
        ge=0,
        le=svc.MAX_GRACE_HOURS,
        strict=True,
        description="How long the replaced secret keeps signing too (0: it stops at once).",
    )


class EndpointOut(CamelModel):
    endpoint_id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries are signed with the replaced secret too."
    )
    deleted: bool
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="Shown only in this response: store it now.")


class EndpointList(CamelModel):
    endpoints: list[EndpointOut]


class AttemptOut(CamelModel):
    attempt: int
    requested_at: datetime
    response_status: int | None
    response_body: str | None
    duration_ms: int
    error: str | None


class DeliveryOut(CamelModel):
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    webhook_id: str = Field(description="The webhook-id header: the same for redeliveries.")
    event_type: str
    payload: dict[str, Any]
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_response_status: int | None
    last_response_body: str | None
    last_error: str | None
    redelivery_of: uuid.UUID | None
    created_at: datetime


class DeliveryDetail(DeliveryOut):
    attempts: list[AttemptOut]


class DeliveryList(CamelModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None = None


def _utc(at: datetime | None) -> datetime | None:
    return at.astimezone(UTC) if at else None


def _endpoint(e: WebhookEndpoint) -> dict[str, Any]:
    return {
        "endpoint_id": e.id,
        "url": e.url,
        "description": e.description,
        "event_types": list(e.event_types),
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "disabled_at": _utc(e.disabled_at),
        "previous_secret_expires_at": _utc(e.previous_secret_expires_at),
        "deleted": e.deleted_at is not None,
        "created_at": _utc(e.created_at),
        "updated_at": _utc(e.updated_at),
    }


def _delivery(d: WebhookDelivery) -> dict[str, Any]:
    # While an attempt is in flight next_attempt_at holds its lease, not a planned retry.
    return {
        "delivery_id": d.id,
        "endpoint_id": d.endpoint_id,
        "webhook_id": d.event_id,
        "event_type": d.event_type,
        "payload": d.payload,
        "status": d.status,
        "attempt_count": d.attempts,
        "next_attempt_at": _utc(d.next_attempt_at) if d.status == "pending" else None,
        "last_attempt_at": _utc(d.last_attempt_at),
        "last_response_status": d.last_response_status,
        "last_response_body": d.last_response_body,
        "last_error": d.last_error,
        "redelivery_of": d.redelivery_of,
        "created_at": _utc(d.created_at),
    }


def _attempt(a: WebhookDeliveryAttempt) -> AttemptOut:
    return AttemptOut(
        attempt=a.attempt,
        requested_at=a.requested_at.astimezone(UTC),
        response_status=a.response_status,
        response_body=a.response_body,
        duration_ms=a.duration_ms,
        error=a.error,
    )


@router.post(
    "/api/webhook-endpoints",
    response_model=EndpointWithSecret,
    status_code=status.HTTP_201_CREATED,
)
async def create_endpoint(
    body: EndpointCreate, session: SessionDep, principal: AdminDep, container: ContainerDep
) -> EndpointWithSecret:
    endpoint = await svc.create(
        container,
        session,
        principal.organization_id,
        url=body.url,
        description=body.description,
        event_types=body.event_types,
    )
    return EndpointWithSecret(**_endpoint(endpoint), secret=endpoint.secret)


@router.get("/api/webhook-endpoints", response_model=EndpointList)
async def list_endpoints(session: SessionDep, principal: SupervisorDep) -> EndpointList:
    rows = await svc.list_all(session, principal.organization_id)
    return EndpointList(endpoints=[EndpointOut(**_endpoint(e)) for e in rows])


@router.get("/api/webhook-endpoints/{endpointId}", response_model=EndpointOut)
async def get_endpoint(
    endpoint_id: EndpointId, session: SessionDep, principal: SupervisorDep
) -> EndpointOut:
    return EndpointOut(**_endpoint(await svc.get(session, principal.organization_id, endpoint_id)))


@router.patch("/api/webhook-endpoints/{endpointId}", response_model=EndpointOut)
async def update_endpoint(
    endpoint_id: EndpointId,
    body: EndpointUpdate,
    session: SessionDep,
    principal: AdminDep,
    container: ContainerDep,
) -> EndpointOut:
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    endpoint = await svc.update(container, session, principal.organization_id, endpoint_id, changes)
    return EndpointOut(**_endpoint(endpoint))


@router.delete("/api/webhook-endpoints/{endpointId}", status_code=204)
async def delete_endpoint(
    endpoint_id: EndpointId, session: SessionDep, principal: AdminDep, container: ContainerDep
) -> Response:
    await svc.delete(container, session, principal.organization_id, endpoint_id)
    return Response(status_code=204)


@router.post("/api/webhook-endpoints/{endpointId}/rotate-secret", response_model=EndpointWithSecret)
async def rotate_secret(
    endpoint_id: EndpointId,
    session: SessionDep,
    principal: AdminDep,
    container: ContainerDep,
    body: SecretRotation | None = None,
) -> EndpointWithSecret:
    grace = (body or SecretRotation()).grace_hours
    endpoint = await svc.rotate_secret(
        container, session, principal.organization_id, endpoint_id, grace_hours=grace
    )
    return EndpointWithSecret(**_endpoint(endpoint), secret=endpoint.secret)


@router.post(
    "/api/webhook-endpoints/{endpointId}/test", response_model=DeliveryOut, status_code=202
)
async def send_test(
    endpoint_id: EndpointId, session: SessionDep, principal: AdminDep, container: ContainerDep
) -> DeliveryOut:
    row = await svc.send_test(container, session, principal.organization_id, endpoint_id)
    return DeliveryOut(**_delivery(row))


@router.get("/api/webhook-endpoints/{endpointId}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    endpoint_id: EndpointId,
    session: SessionDep,
    principal: SupervisorDep,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> DeliveryList:
    page = await svc.list_deliveries(
        session,
        principal.organization_id,
        endpoint_id,
        status=status,
        limit=pagination.clamp_limit(limit),
        after=pagination.decode(cursor),
    )
    return DeliveryList(
        deliveries=[DeliveryOut(**_delivery(d)) for d in page.deliveries],
        next_cursor=pagination.encode(*page.next_cursor) if page.next_cursor else None,
    )


@router.get("/api/webhook-deliveries/{deliveryId}", response_model=DeliveryDetail)
async def get_delivery(
    delivery_id: DeliveryId, session: SessionDep, principal: SupervisorDep
) -> DeliveryDetail:
    row, attempts = await svc.get_delivery(session, principal.organization_id, delivery_id)
    return DeliveryDetail(**_delivery(row), attempts=[_attempt(a) for a in attempts])


@router.post(
    "/api/webhook-deliveries/{deliveryId}/redeliver", response_model=DeliveryOut, status_code=202
)
async def redeliver(
    delivery_id: DeliveryId, session: SessionDep, principal: AdminDep
) -> DeliveryOut:
    row = await svc.redeliver(session, principal.organization_id, delivery_id)
    return DeliveryOut(**_delivery(row))

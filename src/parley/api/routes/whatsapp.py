"""/api/provider-accounts/{id}/whatsapp-templates: a WhatsApp account's template library."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter

from parley.api.deps import AdminDep, ContainerDep, PrincipalDep, SessionDep
from parley.api.schemas.common import CamelModel
from parley.services import whatsapp_templates as svc
from parley.storage.models import WhatsAppTemplate

router = APIRouter(prefix="/api/provider-accounts", tags=["whatsapp"])

TemplateStatus = Literal["APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED"]


class WhatsAppTemplateOut(CamelModel):
    name: str
    language: str
    category: str | None
    status: str
    body_text: str | None
    body_parameter_count: int
    rejected_reason: str | None
    provider_template_id: str | None
    components: list[dict[str, Any]]
    synced_at: datetime
    status_updated_at: datetime


class WhatsAppTemplateList(CamelModel):
    provider_account_id: uuid.UUID
    templates: list[WhatsAppTemplateOut]


def _out(account_id: uuid.UUID, rows: list[WhatsAppTemplate]) -> WhatsAppTemplateList:
    return WhatsAppTemplateList(
        provider_account_id=account_id,
        templates=[
            WhatsAppTemplateOut(
                name=t.name,
                language=t.language,
                category=t.category,
                status=t.status,
                body_text=t.body_text,
                body_parameter_count=t.body_parameter_count,
                rejected_reason=t.rejected_reason,
                provider_template_id=t.provider_template_id,
                components=list(t.components or []),
                synced_at=t.synced_at,
                status_updated_at=t.status_updated_at,
            )
            for t in rows
        ],
    )


@router.post("/{account_id}/whatsapp-templates/sync", response_model=WhatsAppTemplateList)
async def sync_templates(
    account_id: uuid.UUID, session: SessionDep, principal: AdminDep, container: ContainerDep
) -> WhatsAppTemplateList:
    """Fetch the account's templates from its WhatsApp Business Account (all pages)."""
    rows = await svc.sync(container, session, principal.organization_id, account_id)
    return _out(account_id, rows)


@router.get("/{account_id}/whatsapp-templates", response_model=WhatsAppTemplateList)
async def list_templates(
    account_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    status: TemplateStatus | None = None,
) -> WhatsAppTemplateList:
    rows = await svc.list_for(session, principal.organization_id, account_id, status)
    return _out(account_id, rows)

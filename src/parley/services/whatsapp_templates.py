"""The WhatsApp template library of each provider account: synced from the WhatsApp
Business Account, kept current by Meta's template-status webhooks, consulted before a
template message is accepted (only APPROVED templates can be sent).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services import provider_accounts
from parley.services.errors import Invalid, ServiceError
from parley.storage.models import ProviderAccount, WhatsAppTemplate

if TYPE_CHECKING:
    from parley.bootstrap import Container
    from parley.dispatch.providers import AccountRow

PROVIDER = "whatsapp_cloud"
STATUSES = ("APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED")
# Positional body placeholders: {{1}}, {{2}}, ...
_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")


class UpstreamError(ServiceError):
    """Meta's API could not be reached or refused the request."""

    status = 502
    title = "Bad gateway"


def body_text(components: list[dict[str, Any]]) -> str | None:
    for component in components:
        if str(component.get("type", "")).upper() == "BODY" and isinstance(
            component.get("text"), str
        ):
            text: str = component["text"]
            return text
    return None


def parameter_count(text: str | None) -> int:
    return len(set(_PLACEHOLDER.findall(text or "")))


def render(text: str, parameters: list[str]) -> str:
    """The body the borrower reads: {{n}} replaced by the n-th parameter."""

    def value(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return parameters[index] if 0 <= index < len(parameters) else match.group(0)

    return _PLACEHOLDER.sub(value, text)


async def _whatsapp_account(
    session: AsyncSession, org_id: uuid.UUID, account_id: uuid.UUID, *, syncable: bool = False
) -> ProviderAccount:
    account = await provider_accounts.get(session, org_id, account_id)  # 404 across tenants
    if account.channel != "whatsapp":
        raise Invalid.field(
            "providerAccountId", f"is a {account.channel} account; templates are WhatsApp's"
        )
    if syncable and account.provider != PROVIDER:
        raise Invalid.field(
            "providerAccountId",
            f"is a {account.provider} account; only {PROVIDER} accounts sync templates "
            "from a WhatsApp Business Account",
        )
    return account


async def sync(
    container: Container, session: AsyncSession, org_id: uuid.UUID, account_id: uuid.UUID
) -> list[WhatsAppTemplate]:
    """Replace the account's library with what Meta lists now."""
    from parley.channels.whatsapp.provider import TemplateListError, WhatsAppCloudProvider

    account = await _whatsapp_account(session, org_id, account_id, syncable=True)
    row = await container.providers.account(str(account.id))
    if row is None:
        raise Invalid.field("providerAccountId", "unknown provider account")
    provider = await container.providers.get(row)
    assert isinstance(provider, WhatsAppCloudProvider)
    try:
        remote = await provider.list_templates()
    except TemplateListError as exc:
        raise UpstreamError(f"cannot list the account's WhatsApp templates: {exc}") from None
    now = container.clock()
    existing = {
        (t.name, t.language): t
        for t in await session.scalars(
            select(WhatsAppTemplate).where(WhatsAppTemplate.provider_account_id == account.id)
        )
    }
    seen = set()
    for item in remote:
        key = (item.name, item.language)
        seen.add(key)
        text = body_text(item.components)
        template = existing.get(key)
        if template is None:
            template = WhatsAppTemplate(
                organization_id=org_id,
                provider_account_id=account.id,
                name=item.name,
                language=item.language,
                status_updated_at=now,
            )
            session.add(template)
        elif template.status != item.status:
            template.status_updated_at = now
        template.status = item.status
        template.category = item.category
        template.provider_template_id = item.provider_template_id
        template.components = item.components
        template.body_text = text
        template.body_parameter_count = parameter_count(text)
        template.rejected_reason = item.rejected_reason
        template.synced_at = now
    gone = [t.id for key, t in existing.items() if key not in seen]
    if gone:  # deleted in WhatsApp Manager: no longer usable
        await session.execute(delete(WhatsAppTemplate).where(WhatsAppTemplate.id.in_(gone)))
    await session.commit()
    return await list_for(session, org_id, account_id)


async def record_local(
    session: AsyncSession,
    org_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    name: str,
    language: str,
    body: str,
    now: datetime,
    category: str = "UTILITY",
) -> WhatsAppTemplate:
    """Add an APPROVED template to an account that has no WhatsApp Business Account to
    sync from (a sandbox account, e.g. in the demo), so template sends can be tried."""
    template = WhatsAppTemplate(
        organization_id=org_id,
        provider_account_id=account_id,
        name=name,
        language=language,
        category=category,
        status="APPROVED",
        components=[{"type": "BODY", "text": body}],
        body_text=body,
        body_parameter_count=parameter_count(body),
        synced_at=now,
        status_updated_at=now,
    )
    session.add(template)
    await session.flush()
    return template


async def list_for(
    session: AsyncSession, org_id: uuid.UUID, account_id: uuid.UUID, status: str | None = None
) -> list[WhatsAppTemplate]:
    account = await _whatsapp_account(session, org_id, account_id)
    query = select(WhatsAppTemplate).where(
        WhatsAppTemplate.provider_account_id == account.id,
        WhatsAppTemplate.organization_id == org_id,
    )
    if status is not None:
        query = query.where(WhatsAppTemplate.status == status)
    rows = await session.scalars(query.order_by(WhatsAppTemplate.name, WhatsAppTemplate.language))
    return list(rows)


async def find(
    session: AsyncSession, account_id: uuid.UUID, name: str, language: str
) -> WhatsAppTemplate | None:
    template: WhatsAppTemplate | None = await session.scalar(
        select(WhatsAppTemplate).where(
            WhatsAppTemplate.provider_account_id == account_id,
            WhatsAppTemplate.name == name,
            WhatsAppTemplate.language == language,
        )
    )
    return template


async def approved(session: AsyncSession, account_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = await session.execute(
        select(WhatsAppTemplate.name, WhatsAppTemplate.language)
        .where(
            WhatsAppTemplate.provider_account_id == account_id,
            WhatsAppTemplate.status == "APPROVED",
        )
        .order_by(WhatsAppTemplate.name, WhatsAppTemplate.language)
    )
    return [(name, language) for name, language in rows.all()]


async def on_receipt(
    conn: psycopg.AsyncConnection[Any], account: AccountRow, body: bytes, now: datetime
) -> int:
    """Apply the template-status updates of a (new, verified) webhook receipt of a
    WhatsApp account; how many templates changed. Unknown templates wait for a sync."""
    if account.provider != PROVIDER:
        return 0
    from parley.channels.whatsapp.webhooks import template_updates

    changed = 0
    for update in template_updates(body):
        cur = await conn.execute(
            "UPDATE whatsapp_templates SET status = %s, rejected_reason = %s, "
            "status_updated_at = %s, provider_template_id = coalesce(provider_template_id, %s) "
            "WHERE provider_account_id = %s AND name = %s AND language = %s RETURNING 1",
            (
                update.status,
                update.reason,
                now,
                update.provider_template_id,
                account.id,
                update.name,
                update.language,
            ),
        )
        # Rows rather than rowcount: also right in pipeline mode (receipts' group commit).
        changed += len(await cur.fetchall())
    return changed

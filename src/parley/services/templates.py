"""Message templates: versioned (an edit appends a version), validated, rendered per case."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.domain.channels import Channel
from parley.services.errors import Conflict, FieldError, Invalid, NotFound
from parley.storage.models import MessageTemplate, MessageTemplateVersion

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TEMPLATE_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.WHATSAPP)


@dataclass
class TemplateParts:
    subject: str | None
    body: str
    html_body: str | None


@dataclass
class Rendered:
    subject: str | None
    body: str
    html: str | None


def validate_parts(channel: Channel, parts: TemplateParts) -> list[str]:
    """Check syntax of every part; return the variables used, sorted."""
    from parley.templates import InvalidTemplate, template_variables, validate

    errors: list[FieldError] = []
    if channel is Channel.EMAIL and not (parts.subject or "").strip():
        errors.append(FieldError("subject", "an email template needs a subject", "required"))
    if channel is not Channel.EMAIL and (parts.subject or parts.html_body):
        field = "subject" if parts.subject else "htmlBody"
        errors.append(FieldError(field, f"{channel.value} templates have only a body"))
    if not parts.body.strip():
        errors.append(FieldError("body", "must not be empty", "required"))
    names: set[str] = set()
    for field, source in (
        ("subject", parts.subject),
        ("body", parts.body),
        ("htmlBody", parts.html_body),
    ):
        if not source:
            continue
        try:
            validate(source)
            names.update(template_variables(source))
        except InvalidTemplate as exc:
            errors.append(FieldError(field, str(exc), "template_syntax"))
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    return sorted(names)


def check_variables(used: list[str] | None, supplied: Mapping[str, Any]) -> None:
    """Refuse caller-supplied variables the template version does not use: one 422 naming
    every unknown one (``variables.<name>``, ``unknown_variable``). Variables are given by
    their top-level name: "invoiceNumber", or "invoice" (an object) for a template using
    ``{{ invoice.number }}`` or ``{{ invoice["number"] }}``; a dotted key
    ("invoice.number") is refused, as it would be ignored. The case's own objects
    (borrower, case, agent, organization) cannot be supplied (``reserved_variable``).
    Every path rendering a template with caller variables (send, preview) calls this
    before rendering, so nothing is written."""
    from parley.templates import CONTEXT_OBJECTS

    top_level = {_top_level(n) for n in used or []}
    offered = sorted(top_level - set(CONTEXT_OBJECTS))
    uses = ", ".join(offered) if offered else "none you can give"
    errors = []
    for key in supplied:
        top = _top_level(key)
        if top in CONTEXT_OBJECTS:
            message, code = "is filled in by Parley from the case", "reserved_variable"
        elif key != top:
            message = f"give variables by their top-level name: {top!r}, an object"
            code = "unknown_variable"
        elif key not in top_level:
            message = f"is not used by the template (variables it uses: {uses})"
            code = "unknown_variable"
        else:
            continue
        errors.append(FieldError(f"variables.{key}", message, code))
    if errors:
        raise Invalid(
            "unknown template variables: "
            + ", ".join(e.field[len("variables.") :] for e in errors),
            errors,
        )


_PATH_STEP = re.compile(r"[.\[]")


def _top_level(name: str) -> str:
    """The context name a variable path starts with: "invoice" for "invoice.number",
    "inv" for "inv[0]"."""
    return _PATH_STEP.split(name, maxsplit=1)[0]


def render_parts(parts: TemplateParts, context: dict[str, Any], locale: str) -> Rendered:
    """Render every part; a missing variable anywhere is one error naming all of them."""
    from parley.templates import MissingVariables, render

    missing: list[str] = []
    out: dict[str, str | None] = {}
    for name, source, html in (
        ("subject", parts.subject, False),
        ("body", parts.body, False),
        ("html", parts.html_body, True),
    ):
        if source is None:
            out[name] = None
            continue
        try:
            out[name] = render(source, context, locale=locale, html=html)
        except MissingVariables as exc:
            missing.extend(n for n in exc.names if n not in missing)
    if missing:
        raise Invalid(
            "missing template variables: " + ", ".join(missing),
            [
                FieldError(
                    f"variables.{n}",
                    "is required by the template but was not given and is not known for this case",
                    "missing_variable",
                )
                for n in missing
            ],
        )
    return Rendered(subject=out["subject"], body=out["body"] or "", html=out["html"])


async def create(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    key: str,
    name: str,
    channel: Channel,
    parts: TemplateParts,
    elements: dict[str, Any] | None = None,
) -> tuple[MessageTemplate, MessageTemplateVersion]:
    """A new template. Voice templates are limited-content voicemails: ``elements`` (the
    allowed elements) is required and the script is composed from them (see voicemail())."""
    if not KEY_PATTERN.match(key):
        raise Invalid.field("templateId", "use letters, digits, '.', '_' or '-' (max 100)")
    if channel is Channel.VOICE:
        parts, elements = voicemail(elements)
        variables: list[str] = []
    elif channel not in TEMPLATE_CHANNELS:
        raise Invalid.field("type", "templates exist for email, sms, whatsapp and voicemail")
    else:
        variables = validate_parts(channel, parts)
    template = MessageTemplate(
        organization_id=org_id, key=key, name=name, channel=channel.value, current_version=1
    )
    session.add(template)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"a template with templateId {key!r} already exists") from None
    version = MessageTemplateVersion(
        organization_id=org_id,
        template_id=template.id,
        version=1,
        subject=parts.subject,
        body=parts.body,
        html_body=parts.html_body,
        variables=variables,
        elements=elements,
    )
    session.add(version)
    await session.commit()
    return template, version


async def update(
    session: AsyncSession,
    org_id: uuid.UUID,
    key: str,
    *,
    name: str | None,
    parts: TemplateParts | None,
    elements: dict[str, Any] | None = None,
) -> tuple[MessageTemplate, MessageTemplateVersion]:
    template, current = await get(session, org_id, key, lock=True)
    if name is not None:
        template.name = name
    version = current
    is_voicemail = template.channel == Channel.VOICE.value
    if is_voicemail and parts is not None:
        raise Invalid.field("body", "a voicemail template is made of its voicemail elements")
    if not is_voicemail and elements is not None:
        raise Invalid.field("voicemail", f"a {template.channel} template has no voicemail")
    if elements is not None:
        parts, elements = voicemail(elements)
    if parts is not None:
        variables = [] if is_voicemail else validate_parts(Channel(template.channel), parts)
        template.current_version += 1
        version = MessageTemplateVersion(
            organization_id=org_id,
            template_id=template.id,
            version=template.current_version,
            subject=parts.subject,
            body=parts.body,
            html_body=parts.html_body,
            variables=variables,
            elements=elements,
        )
        session.add(version)
    await session.commit()
    return template, version


def voicemail(elements: dict[str, Any] | None) -> tuple[TemplateParts, dict[str, Any]]:
    """Check a limited-content voicemail (Reg F 1006.2(j)): only the allowed elements,
    every problem reported; the script is composed from them and nothing else."""
    from parley.compliance import voicemail as vm_rules

    if not elements:
        raise Invalid.field("voicemail", "a voicemail template needs its elements", "required")
    try:
        vm = vm_rules.from_mapping(elements)
    except vm_rules.VoicemailContentError as exc:
        errors = [FieldError(f"voicemail.{f}", m) for f, m in exc.errors]
        raise Invalid("voicemail: " + "; ".join(e.message for e in errors), errors) from None
    # A script asking for the date and time gets it when the voicemail is left; the
    # template shows it for a sample moment.
    from datetime import UTC, datetime

    script = vm_rules.render_voicemail(vm, message_time=datetime(2026, 1, 5, 15, 0, tzinfo=UTC))
    return TemplateParts(None, script, None), dict(elements)


async def get(
    session: AsyncSession,
    org_id: uuid.UUID,
    key: str,
    *,
    lock: bool = False,
    version: int | None = None,
) -> tuple[MessageTemplate, MessageTemplateVersion]:
    query = select(MessageTemplate).where(
        MessageTemplate.organization_id == org_id, MessageTemplate.key == key
    )
    if lock:
        query = query.with_for_update()
    template = await session.scalar(query)
    if template is None:
        raise NotFound(f"message template {key!r} not found")
    wanted = version or template.current_version
    tv = await session.scalar(
        select(MessageTemplateVersion).where(
            MessageTemplateVersion.template_id == template.id,
            MessageTemplateVersion.version == wanted,
        )
    )
    if tv is None:
        raise NotFound(f"message template {key!r} has no version {wanted}")
    return template, tv


async def list_all(
    session: AsyncSession, org_id: uuid.UUID, channel: Channel | None = None
) -> list[tuple[MessageTemplate, MessageTemplateVersion]]:
    query = (
        select(MessageTemplate, MessageTemplateVersion)
        .join(
            MessageTemplateVersion,
            (MessageTemplateVersion.template_id == MessageTemplate.id)
            & (MessageTemplateVersion.version == MessageTemplate.current_version),
        )
        .where(MessageTemplate.organization_id == org_id, MessageTemplate.archived.is_(False))
        .order_by(MessageTemplate.key)
    )
    if channel is not None:
        query = query.where(MessageTemplate.channel == channel.value)
    return [(t, v) for t, v in (await session.execute(query)).all()]


def parts_of(version: MessageTemplateVersion) -> TemplateParts:
    return TemplateParts(subject=version.subject, body=version.body, html_body=version.html_body)

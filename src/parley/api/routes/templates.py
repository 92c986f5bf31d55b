"""/api/message-templates: list, create, read, update (new version), preview."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from parley.api.deps import ContainerDep, PrincipalDep, SessionDep, SupervisorDep
from parley.api.schemas.templates import (
    PreviewOut,
    PreviewRequest,
    TemplateCreate,
    TemplateList,
    TemplateOut,
    TemplateUpdate,
)
from parley.domain.channels import Channel
from parley.services import context as case_context
from parley.services import templates as svc
from parley.services.errors import Invalid
from parley.storage.models import MessageTemplate, MessageTemplateVersion

router = APIRouter(prefix="/api/message-templates", tags=["templates"])


def _out(t: MessageTemplate, v: MessageTemplateVersion) -> TemplateOut:
    return TemplateOut(
        template_id=t.key,
        name=t.name,
        type="voicemail" if t.channel == Channel.VOICE.value else t.channel,
        subject=v.subject,
        body=v.body,
        html_body=v.html_body,
        variables=list(v.variables or []),
        voicemail=v.elements,
        version=v.version,
        updated_at=v.created_at,
    )


@router.get("", response_model=TemplateList)
async def list_templates(
    session: SessionDep,
    principal: PrincipalDep,
    type: Literal["email", "sms", "whatsapp", "voicemail"] | None = None,
) -> TemplateList:
    channel = None if type is None else Channel.VOICE if type == "voicemail" else Channel(type)
    rows = await svc.list_all(session, principal.organization_id, channel)
    return TemplateList(templates=[_out(t, v) for t, v in rows])


@router.post("", response_model=TemplateOut, status_code=status.HTTP_201_CREATED)
async def create_template(
    body: TemplateCreate, session: SessionDep, principal: SupervisorDep
) -> TemplateOut:
    if body.type == "voicemail":
        if body.body is not None or body.subject is not None or body.html_body is not None:
            raise Invalid.field("body", "a voicemail template takes `voicemail` elements only")
    elif body.body is None:
        raise Invalid.field("body", "is required", "required")
    elif body.voicemail is not None:
        raise Invalid.field("voicemail", f"a {body.type} template has no voicemail")
    t, v = await svc.create(
        session,
        principal.organization_id,
        key=body.template_id,
        name=body.name,
        channel=Channel.VOICE if body.type == "voicemail" else Channel(body.type),
        parts=svc.TemplateParts(body.subject, body.body or "", body.html_body),
        elements=body.voicemail,
    )
    return _out(t, v)


@router.get("/{template_id}", response_model=TemplateOut)
async def get_template(
    template_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    version: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> TemplateOut:
    t, v = await svc.get(session, principal.organization_id, template_id, version=version)
    return _out(t, v)


@router.patch("/{template_id}", response_model=TemplateOut)
@router.put("/{template_id}", response_model=TemplateOut, include_in_schema=False)
async def update_template(
    template_id: str, body: TemplateUpdate, session: SessionDep, principal: SupervisorDep
) -> TemplateOut:
    parts = None
    fields = body.model_fields_set
    if fields & {"subject", "body", "html_body"}:
        _, current = await svc.get(session, principal.organization_id, template_id)
        parts = svc.TemplateParts(
            subject=body.subject if "subject" in fields else current.subject,
            body=body.body if body.body is not None else current.body,
            html_body=body.html_body if "html_body" in fields else current.html_body,
        )
        await session.rollback()
    t, v = await svc.update(
        session,
        principal.organization_id,
        template_id,
        name=body.name,
        parts=parts,
        elements=body.voicemail,
    )
    return _out(t, v)


@router.post("/{template_id}/preview", response_model=PreviewOut)
async def preview(
    template_id: str,
    body: PreviewRequest,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> PreviewOut:
    """The template rendered against a case, as it would be sent now: with the
    debt-collector disclosure and opt-out notice the compliance content rules add when
    the text lacks them (to the case's preferred contact point for the channel), so
    characters and segments are those of the message that goes out."""
    from parley.services import messages
    from parley.templates import analyze_sms

    t, v = await svc.get(session, principal.organization_id, template_id, version=body.version)
    svc.check_variables(v.variables, body.variables)
    ctx = await case_context.load(
        session,
        principal.organization_id,
        body.case_id,
        body.borrower_id,
        acting_user_id=principal.user_id,
    )
    rendered = svc.render_parts(svc.parts_of(v), ctx.template_context(body.variables), ctx.locale)
    text, html, rules, warnings = rendered.body, rendered.html, None, []
    channel = Channel(t.channel)
    if channel in (Channel.SMS, Channel.WHATSAPP, Channel.EMAIL):
        as_sent = await messages.preview_as_sent(
            container,
            session,
            principal.organization_id,
            ctx,
            channel,
            rendered.subject,
            rendered.body,
            rendered.html,
        )
        if as_sent is None:
            warnings.append(
                f"the case has no {channel.value} contact point: shown without the "
                "disclosure and opt-out notice a message gets when it is sent"
            )
        else:
            text, html, rules = as_sent.body, as_sent.html, as_sent.content_rules
    out = PreviewOut(
        template_id=t.key,
        version=v.version,
        type=t.channel,
        locale=ctx.locale,
        subject=rendered.subject,
        text=text,
        html=html,
        characters=len(text),
        template_text=rendered.body,
        content_rules=rules,
        warnings=warnings,
    )
    if t.channel in (Channel.SMS.value, Channel.WHATSAPP.value):
        sms = analyze_sms(text)
        out.encoding, out.segments = sms.encoding, sms.segments
        out.non_gsm_characters = list(sms.non_gsm_characters)
        if t.channel == Channel.SMS.value and sms.non_gsm_characters:
            chars = " ".join(sms.non_gsm_characters)
            out.warnings.append(
                f"{chars} not in the GSM-7 alphabet: the whole message is "
                f"sent as UCS-2 (70 characters per segment)"
            )
    return out

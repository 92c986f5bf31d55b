"""The demo portfolio: one organization with agents, sandbox providers, templates, a few
hundred borrowers with cases in different stages, and some message history.

History is produced by sending real messages through the normal pipeline (sandbox
providers), so it carries real events; calls are played on the sandbox's simulated
telephone network through the same voice services and callbacks as live calls. The seed
document's example case (550e8400-e29b-41d4-a716-446655440000, debtor@example.com) and
templates (payment-reminder-v1, first-notice) are included so its requests work verbatim.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from parley.domain.channels import Channel
from parley.services import messages as message_svc
from parley.services import provider_accounts, whatsapp_templates
from parley.services import templates as template_svc
from parley.services.auth import Principal, Role, issue_token
from parley.storage.models import (
    Borrower,
    Call,
    Case,
    CaseBorrower,
    ContactPoint,
    Organization,
    User,
)

if TYPE_CHECKING:
    from parley.bootstrap import Container

DEMO_ORG = "Northwind Recovery (demo)"
SEED_CASE_ID = uuid.UUID("550e8400-e29b-41d4-a716-446655440000")
BORROWERS = 300
# Featured cases for the README's compliance tour. With the seed case (Copenhagen) they
# span the day: at any moment at least one of the three borrowers is outside 08:00-21:00.
NEW_YORK_CASE_ID = uuid.UUID("550e8400-e29b-41d4-a716-446655440001")
GUAM_CASE_ID = uuid.UUID("550e8400-e29b-41d4-a716-446655440002")
FEATURED = [
    # case id, first, last, zone, region, phone, email, case number
    (
        NEW_YORK_CASE_ID,
        "Maria",
        "Lopez",
        "America/New_York",
        "NY",
        "+12125550147",
        "maria.lopez@example.com",
        "NW-2026-NY001",
    ),
    (
        GUAM_CASE_ID,
        "Joseph",
        "Cruz",
        "Pacific/Guam",
        "GU",
        "+16715550123",
        "joseph.cruz@example.com",
        "NW-2026-GU001",
    ),
]

FIRST = [
    "Maria",
    "James",
    "Sofia",
    "Liam",
    "Emma",
    "Noah",
    "Olivia",
    "Lucas",
    "Ava",
    "Mateo",
    "Freja",
    "William",
    "Ingrid",
    "Oscar",
    "Chloe",
    "Jonas",
    "Ida",
    "Elias",
    "Zoe",
    "Hugo",
]
LAST = [
    "Hansen",
    "Smith",
    "Garcia",
    "Jensen",
    "Brown",
    "Nielsen",
    "Miller",
    "Lopez",
    "Andersen",
    "Wilson",
    "Martinez",
    "Larsen",
    "Taylor",
    "Clark",
    "Pedersen",
    "Lewis",
]
CREDITORS = [
    "Harbor Bank",
    "Sunline Telecom",
    "Metro Utilities",
    "Crescent Auto Finance",
    "Bluebird Medical Group",
]
STAGES = [
    ("open", 0.55),
    ("payment_plan", 0.15),
    ("promise_to_pay", 0.1),
    ("disputed", 0.05),
    ("paid", 0.08),
    ("cease_communication", 0.03),
    ("bankruptcy", 0.02),
    ("attorney_represented", 0.02),
]
US_ZONES = [
    ("America/New_York", "NY", "+1212555"),
    ("America/Chicago", "IL", "+1312555"),
    ("America/Denver", "CO", "+1303555"),
    ("America/Los_Angeles", "CA", "+1415555"),
]

TEMPLATES = [
    (
        "payment-reminder-v1",
        "Standard Payment Reminder",
        Channel.EMAIL,
        "Payment Reminder - Invoice {{invoiceNumber}}",
        "Dear {{debtorName}},\n\nThis is a reminder that invoice {{invoiceNumber}} of {{amount}} "
        "is due on {{dueDate}}.\n\nIf you have already paid, please disregard this notice.\n\n"
        "#organization.name",
    ),
    (
        "first-notice",
        "First Collection Notice",
        Channel.EMAIL,
        "Collection Notice - {{caseNumber}}",
        "Case {{caseNumber}}: an amount of {{amount}} is outstanding. Please pay by "
        "{{deadline}} or contact us to discuss a plan.\n\n#organization.name",
    ),
    (
        "balance-reminder",
        "Balance reminder (case data)",
        Channel.EMAIL,
        "Your account #case.number",
        "Dear #borrower.first_name,\n\nYour balance with #case.creditor is "
        "#case.outstanding_amount, due #case.due_date.\n\nReply to this email or call us to "
        "arrange payment.\n\n#agent.name\n#organization.name",
        # No disclosure here: the gate adds the one that applies (the full one on a first
        # communication, the short one after), and a partial one would be said twice.
    ),
    (
        "sms-reminder",
        "SMS reminder",
        Channel.SMS,
        None,
        "Hi #borrower.first_name, your balance of #case.outstanding_amount with #case.creditor "
        "is due #case.due_date. Call #organization.phone. Reply STOP to opt out.",
    ),
    (
        "whatsapp-reminder",
        "WhatsApp reminder",
        Channel.WHATSAPP,
        None,
        "Hello #borrower.first_name, a friendly reminder: #case.outstanding_amount is due on "
        "#case.due_date. Reply here if you'd like to set up a payment plan.",
    ),
]


# Outside the 24-hour customer-service window WhatsApp takes approved templates only.
WHATSAPP_TEMPLATE = {
    "name": "balance_reminder",
    "language": "en_US",
    "body": "Hello, a reminder about account {{1}}: {{2}} is due. This is an attempt to "
    "collect a debt and any information obtained will be used for that purpose. This "
    "communication is from a debt collector. Reply STOP to opt out.",
}


# The demo's voice account: a called phone rings 2 s, a borrower talks for up to 45 s, a
# voicemail lasts 4 s (docs/providers.md, sandbox voice).
VOICE_CONFIG = {
    "from_number": "+18005550199",
    "ring_seconds": 2.0,
    "talk_seconds": 45.0,
    "voicemail_seconds": 4.0,
}


@dataclass
class DemoInfo:
    organization_id: uuid.UUID
    token: str
    created: bool
    case_id: uuid.UUID = SEED_CASE_ID

    def banner(self, base_url: str) -> str:
        return (
            f"\n  Demo organization: {DEMO_ORG}"
            f"\n  API token (admin): {self.token}"
            f"\n  Try:  curl -H 'Authorization: Bearer {self.token}' "
            f"{base_url}/api/cases/{self.case_id}/messages"
            f"\n  API docs: {base_url}/docs\n"
        )


def _token_file(container: Container) -> Path:
    return Path(container.settings.data_dir).expanduser() / "demo-token"


async def ensure_demo(container: Container, *, reset_token: bool = False) -> DemoInfo:
    async with container.db.session() as session:
        org = await session.scalar(select(Organization).where(Organization.name == DEMO_ORG))
        created = org is None
        if org is None:
            org = await _load(container, session)
        token_path = _token_file(container)
        token = token_path.read_text().strip() if token_path.exists() else ""
        if reset_token or not token or created:
            admin = await session.scalar(
                select(User).where(User.organization_id == org.id, User.role == "admin")
            )
            token = await issue_token(
                session,
                organization_id=org.id,
                role=Role.ADMIN,
                name="demo",
                user_id=admin.id if admin else None,
            )
            await session.commit()
            token_path.parent.mkdir(parents=True, exist_ok=True)
            token_path.write_text(token + "\n")
            os.chmod(token_path, 0o600)
        return DemoInfo(organization_id=org.id, token=token, created=created)


async def _load(container: Container, session) -> Organization:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    org = Organization(
        name=DEMO_ORG,
        default_locale="en_US",
        default_timezone="America/New_York",
        phone="+1 (800) 555-0199",
        email="help@northwind.example",
    )
    session.add(org)
    await session.flush()
    admin = User(
        organization_id=org.id, email="admin@northwind.example", name="Ada Admin", role="admin"
    )
    supervisor = User(
        organization_id=org.id,
        email="sam@northwind.example",
        name="Sam Supervisor",
        role="supervisor",
    )
    agents = [
        User(
            organization_id=org.id,
            email=f"agent{i}@northwind.example",
            name=f"{FIRST[i]} {LAST[i]} (agent)",
            role="agent",
        )
        for i in range(5)
    ]
    session.add_all([admin, supervisor, *agents])
    await session.flush()
    for channel in (Channel.EMAIL, Channel.SMS, Channel.WHATSAPP):
        account = await provider_accounts.create(
            session,
            org.id,
            name=f"sandbox-{channel.value}",
            provider="sandbox",
            channel=channel,
            config={
                "delivery_delay_seconds": 1.0,
                "read_delay_seconds": 3.0,
                **(
                    {"from_address": "collections@northwind.example"}
                    if channel is Channel.EMAIL
                    else {"from_number": "+18005550199"}
                ),
            },
            secrets={"signing_secret": secrets.token_urlsafe(24)},
            is_default=True,
            rate_per_second=None,
            burst=None,
        )
        if channel is Channel.WHATSAPP:  # what Meta would have approved for a real account
            await whatsapp_templates.record_local(
                session, org.id, account.id, now=datetime.now(UTC), **WHATSAPP_TEMPLATE
            )
    await provider_accounts.create(
        session,
        org.id,
        name="sandbox-voice",
        provider="sandbox",
        channel=Channel.VOICE,
        config=VOICE_CONFIG,
        secrets={"signing_secret": secrets.token_urlsafe(24)},
        is_default=True,
        rate_per_second=None,
        burst=None,
    )
    for key, name, channel, subject, body in TEMPLATES:
        await template_svc.create(
            session,
            org.id,
            key=key,
            name=name,
            channel=channel,
            parts=template_svc.TemplateParts(subject, body, None),
        )
    today = datetime.now(UTC).date()
    cases: list[Case] = []
    # The seed document's case, so its example requests work as written.
    seed_borrower = Borrower(
        organization_id=org.id,
        first_name="Example",
        last_name="Company",
        timezone="Europe/Copenhagen",
        preferred_language="da_DK",
        address={"city": "Copenhagen", "country": "DK"},
    )
    session.add(seed_borrower)
    await session.flush()
    session.add_all(
        [
            ContactPoint(
                organization_id=org.id,
                borrower_id=seed_borrower.id,
                kind="email",
                value="debtor@example.com",
                label="work",
                is_primary=True,
                source="borrower_provided",
            ),
            ContactPoint(
                organization_id=org.id,
                borrower_id=seed_borrower.id,
                kind="phone",
                value="+4512345678",
                label="mobile",
                is_primary=True,
            ),
        ]
    )
    seed_case = Case(
        id=SEED_CASE_ID,
        organization_id=org.id,
        case_number="DEB-2024-12345",
        creditor="Example Creditor A/S",
        original_amount=Decimal("15000.00"),
        outstanding_amount=Decimal("15000.00"),
        currency="DKK",
        due_date=date(2024, 1, 15),
        status="open",
        assigned_agent_id=agents[0].id,
    )
    session.add(seed_case)
    await session.flush()
    session.add(
        CaseBorrower(
            case_id=seed_case.id,
            borrower_id=seed_borrower.id,
            organization_id=org.id,
            role="primary",
        )
    )
    await _featured(session, org, agents[0])
    for i in range(BORROWERS):
        zone, region, prefix = rng.choice(US_ZONES)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        b = Borrower(
            organization_id=org.id,
            external_ref=f"CUST-{10000 + i}",
            first_name=first,
            last_name=last,
            timezone=zone,
            preferred_language="en_US",
            address={
                "line1": f"{rng.randint(10, 999)} Main St",
                "city": "Springfield",
                "region": region,
                "postalCode": f"{rng.randint(10000, 99999)}",
                "country": "US",
            },
        )
        session.add(b)
        await session.flush()
        session.add_all(
            [
                ContactPoint(
                    organization_id=org.id,
                    borrower_id=b.id,
                    kind="email",
                    value=f"{first}.{last}{i}@example.com".lower(),
                    label="personal",
                    is_primary=True,
                ),
                ContactPoint(
                    organization_id=org.id,
                    borrower_id=b.id,
                    kind="phone",
                    value=f"{prefix}{i % 10000:04d}",
                    label="mobile",
                    is_primary=True,
                ),
            ]
        )
        status = rng.choices([s for s, _ in STAGES], [w for _, w in STAGES])[0]
        original = Decimal(rng.randint(20000, 1500000)) / 100
        outstanding = (
            Decimal(0)
            if status == "paid"
            else (original * Decimal(rng.choice(["1", "0.8", "0.5", "0.35"]))).quantize(
                Decimal("0.01")
            )
        )
        case = Case(
            organization_id=org.id,
            case_number=f"NW-{2026}-{i + 1:05d}",
            creditor=rng.choice(CREDITORS),
            original_amount=original,
            outstanding_amount=outstanding,
            currency="USD",
            due_date=today - timedelta(days=rng.randint(-20, 240)),
            status=status,
            assigned_agent_id=rng.choice(agents).id if rng.random() < 0.85 else None,
        )
        session.add(case)
        await session.flush()
        session.add(
            CaseBorrower(case_id=case.id, borrower_id=b.id, organization_id=org.id, role="primary")
        )
        cases.append(case)
    await session.commit()
    await _history(container, session, org, supervisor, cases[:60])
    await _replies(container, org, cases[:60])
    await _calls(container, org, agents, cases[60:])
    return org


async def _featured(session, org: Organization, agent: User) -> None:  # type: ignore[no-untyped-def]
    """Two named borrowers; Maria's case has seven unanswered calls this week (imported
    history), so an eighth is refused by Reg F's 7-in-7 rule."""
    now = datetime.now(UTC)
    for case_id, first, last, zone, region, phone, email, number in FEATURED:
        b = Borrower(
            organization_id=org.id,
            first_name=first,
            last_name=last,
            timezone=zone,
            preferred_language="en_US",
            address={
                "line1": "1 Harbor Rd",
                "city": "Springfield",
                "region": region,
                "postalCode": "10001",
                "country": "US",
            },
        )
        session.add(b)
        await session.flush()
        phone_cp = ContactPoint(
            organization_id=org.id,
            borrower_id=b.id,
            kind="phone",
            value=phone,
            label="mobile",
            is_primary=True,
        )
        session.add_all(
            [
                phone_cp,
                ContactPoint(
                    organization_id=org.id,
                    borrower_id=b.id,
                    kind="email",
                    value=email,
                    label="personal",
                    is_primary=True,
                ),
            ]
        )
        session.add(
            Case(
                id=case_id,
                organization_id=org.id,
                case_number=number,
                creditor="Acme Bank",
                original_amount=Decimal("2400.00"),
                outstanding_amount=Decimal("1875.40"),
                currency="USD",
                due_date=now.date() - timedelta(days=45),
                status="open",
                assigned_agent_id=agent.id,
            )
        )
        await session.flush()
        session.add(
            CaseBorrower(case_id=case_id, borrower_id=b.id, organization_id=org.id, role="primary")
        )
        await session.flush()
        if case_id == NEW_YORK_CASE_ID:
            for k in range(7):
                at = now - timedelta(days=6, hours=-k * 20)
                session.add(
                    Call(
                        organization_id=org.id,
                        case_id=case_id,
                        borrower_id=b.id,
                        contact_point_id=phone_cp.id,
                        to_address=phone,
                        direction="outbound",
                        status="completed",
                        result="no_answer",
                        prior_consent=False,
                        purpose="collection",
                        placed_by_user_id=agent.id,
                        placed_by_name=agent.name,
                        placed_at=at,
                        ended_at=at + timedelta(seconds=40),
                        result_recorded_at=at + timedelta(minutes=1),
                        notes="imported from the previous dialer",
                        created_at=at,
                    )
                )
    await session.flush()


async def _history(
    container: Container,
    session,
    org: Organization,
    sender: User,  # type: ignore[no-untyped-def]
    cases: list[Case],
) -> None:
    """Send a first round of reminders through the sandbox so the demo has real history."""
    principal = Principal(
        organization_id=org.id,
        role=Role.SUPERVISOR,
        user_id=sender.id,
        name=sender.name,
        token_id=uuid.uuid4(),
    )
    for i, case in enumerate(cases):
        active = case.status in ("open", "payment_plan", "promise_to_pay")
        if not active or not case.assigned_agent_id:
            continue
        template = ["balance-reminder", "sms-reminder", "whatsapp-reminder"][i % 3]
        channel = {
            "balance-reminder": "email",
            "sms-reminder": "sms",
            "whatsapp-reminder": "whatsapp",
        }[template]
        request = message_svc.SendRequest(message_type=channel, template_id=template)
        if channel == "whatsapp":  # no borrower has written yet: the window is closed
            amount = f"{case.outstanding_amount} {case.currency}"
            request = message_svc.SendRequest(
                message_type=channel,
                whatsapp_template={
                    "name": WHATSAPP_TEMPLATE["name"],
                    "language": WHATSAPP_TEMPLATE["language"],
                    "parameters": [case.case_number, amount],
                },
            )
        await message_svc.send(container, session, principal, case.id, request)


DEMO_REPLIES = (
    "Hi, I can pay $100 on Friday. Is that OK?",
    "Can you send me the statement again please?",
    "I already paid this last week, please check.",
    "What is the total I owe now?",
    "I lost my job, can we set up a payment plan?",
    "Please call me after 5pm.",
)


async def _replies(container: Container, org: Organization, cases: list[Case]) -> None:
    """A few borrowers reply on the channel they were written to (unread in their agent's
    inbox), and an unknown number writes in (the team queue)."""
    from parley.channels.base import InboundMessage
    from parley.inbox import inbound
    from parley.storage.models import Message, ProviderAccount

    now = datetime.now(UTC)
    async with container.db.session() as session:
        accounts = {
            a.channel: str(a.id)
            for a in await session.scalars(
                select(ProviderAccount).where(ProviderAccount.organization_id == org.id)
            )
        }
        written = list(
            (
                await session.execute(
                    select(Message.channel, Message.to_address, Message.from_address)
                    .where(
                        Message.organization_id == org.id,
                        Message.case_id.in_([c.id for c in cases]),
                        Message.direction == "outbound",
                    )
                    .order_by(Message.created_at)
                    .limit(len(DEMO_REPLIES))
                )
            ).all()
        )
    rows = await container.providers.accounts(sorted(accounts.values()))
    # Each reply goes to the address it answers (our sender); the stranger texts our
    # SMS number.
    sms_number = next((ours for channel, _, ours in written if channel == "sms"), None)
    senders = [*written, ("sms", "+13125550142", sms_number)]
    texts = [*DEMO_REPLIES, "Who is this? I got a text from this number."]
    for i, ((channel, address, ours), text) in enumerate(zip(senders, texts, strict=False)):
        await inbound.handle(
            container,
            rows[accounts[channel]],
            InboundMessage(
                channel=Channel(channel),
                sender=address,
                recipient=ours or "",
                body=text,
                subject="Re: your account" if channel == "email" else None,
                provider_message_id=f"demo-reply-{i}",
                occurred_at=now,
            ),
        )


# How long the loader waits for one of its calls to get somewhere (a bound, not a pace).
CALL_WAIT_SECONDS = 60.0


async def _calls(
    container: Container, org: Organization, agents: list[User], cases: list[Case]
) -> None:
    """Calls, played on the sandbox voice account's simulated network exactly as live ones
    (the webhook path included, handed over in-process: no server listens yet). Two
    borrowers call while no agent is available and leave voicemails -- one their agent
    has logged (a callback requested), one still unread and awaiting its log -- and a
    third is answered by their agent and promises to pay. The agents end offline."""
    from parley.channels.sandbox.voice import SandboxVoiceProvider
    from parley.services import call_logs, presence, voice_calls, voice_events, voice_webhooks
    from parley.services import inbox as inbox_svc
    from parley.storage.models import ProviderAccount

    callers = await _callable(container, org, cases, 3)
    if len(callers) < 3:
        return
    async with container.db.session() as session:
        account_id = await session.scalar(
            select(ProviderAccount.id).where(
                ProviderAccount.organization_id == org.id,
                ProviderAccount.channel == Channel.VOICE.value,
            )
        )
    row = await container.providers.account(str(account_id))
    assert row is not None
    provider = await container.providers.get(row)
    assert isinstance(provider, SandboxVoiceProvider)
    names = {a.id: a.name for a in agents}

    def agent_of(case: Case) -> Principal:
        assert case.assigned_agent_id is not None
        return Principal(
            organization_id=org.id,
            role=Role.AGENT,
            user_id=case.assigned_agent_id,
            name=names[case.assigned_agent_id],
            token_id=uuid.uuid4(),
        )

    async def ring(phone: str) -> uuid.UUID:
        leg = await provider.simulate_inbound_call(caller=phone)
        return await voice_events.call_of_leg(container, row, leg.sid)

    async def log(case: Case, call_id: uuid.UUID, entry: call_logs.LogInput) -> None:
        async with container.db.session() as session:
            await call_logs.submit_log(container, session, agent_of(case), call_id, entry)
        # The agent has dealt with it: the conversation is read.
        async with container.db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM conversations WHERE organization_id = %s AND case_id = %s",
                (org.id, case.id),
            )
            for (conversation_id,) in await cur.fetchall():
                await inbox_svc.mark_read(conn, agent_of(case), conversation_id, container.clock())

    async def set_presence(principal: Principal, status: str, endpoint: str | None) -> None:
        assert principal.user_id is not None
        async with container.db.session() as session:
            await presence.set_status(
                session, org.id, principal.user_id, status, endpoint, container.clock()
            )
            await session.commit()

    today = container.clock().date()
    (_, phone_a), (logged, phone_b), (answered, phone_c) = callers
    with provider.delivered_by(voice_webhooks.local_delivery(container)):
        # Nobody is available: both callers leave a voicemail.
        voicemails = [await ring(phone_a), await ring(phone_b)]
        for call_id in voicemails:
            await _until(container, call_id, "awaiting_log", recorded=True)
        await log(
            logged,
            voicemails[1],
            call_logs.LogInput(
                disposition="callback_requested",
                notes="Voicemail: asks to be called back after work.",
                follow_up_date=today + timedelta(days=1),
                promise_amount=None,
                promise_date=None,
                correction=False,
            ),
        )
        # The third borrower's agent is at their desk (a softphone) and takes the call.
        agent = agent_of(answered)
        await set_presence(agent, "available", f"client:{agent.name.split()[0].lower()}")
        call_id = await ring(phone_c)
        await _until(container, call_id, "in_progress")
        async with container.db.session() as session:
            await voice_calls.hang_up(container, session, agent, call_id)
        await _until(container, call_id, "awaiting_log")
        await log(
            answered,
            call_id,
            call_logs.LogInput(
                disposition="promise_to_pay",
                notes="Called in about the balance; pays the first part next week.",
                follow_up_date=None,
                promise_amount=str((answered.outstanding_amount / 4).quantize(Decimal("0.01"))),
                promise_date=today + timedelta(days=7),
                correction=False,
            ),
        )
        await set_presence(agent, "offline", None)
        await provider.network.posted()


async def _callable(
    container: Container, org: Organization, cases: list[Case], count: int
) -> list[tuple[Case, str]]:
    """`count` open cases with an agent, each with its borrower's phone number."""
    wanted = [c for c in cases if c.status == "open" and c.assigned_agent_id][:count]
    async with container.db.session() as session:
        rows = await session.execute(
            select(CaseBorrower.case_id, ContactPoint.value)
            .join(ContactPoint, ContactPoint.borrower_id == CaseBorrower.borrower_id)
            .where(
                CaseBorrower.case_id.in_([c.id for c in wanted]),
                ContactPoint.kind == "phone",
                ContactPoint.organization_id == org.id,
            )
        )
        phones = dict(rows.all())
    return [(c, phones[c.id]) for c in wanted if c.id in phones]


async def _until(
    container: Container, call_id: uuid.UUID, status: str, *, recorded: bool = False
) -> None:
    """Wait until the call reached `status` (and has its recording, with `recorded`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CALL_WAIT_SECONDS
    while True:
        async with container.db.session() as session:
            call = await session.get(Call, call_id)
            assert call is not None
            if call.status == status and (call.recording_sid is not None or not recorded):
                return
        if loop.time() > deadline:
            raise RuntimeError(f"demo call {call_id} is {call.status}, not {status}")
        await asyncio.sleep(0.1)

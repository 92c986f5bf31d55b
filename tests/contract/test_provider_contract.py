"""The contract every registered provider honours, run over `registry.names()`.

Adding a provider = its folder (with a `kit` module), one registry line and fixtures in
`tests/fixtures/providers/<name>/`; these tests then cover it with no edits here.

(a) webhooks without a valid signature are rejected (all of them, for providers that
    receive no webhooks) -- each check has a positive control, so it can fail;
(b) every fixture verifies as captured and parses to the expected normalized events;
    malformed payloads parse to known types or nothing, never an exception;
(c) sends against the provider's protocol peer map injected errors to accepted,
    retryable, permanent or unknown outcome exactly as the kit declares, keeping the
    provider's error code.

The HTTP side of the same contract (the route's 401/403 without echo, deduplicated
receipts) is in `test_webhook_route_contract.py`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from parley.channels import registry
from parley.channels.base import (
    Capabilities,
    ChannelProvider,
    DeliveryEvent,
    InboundMessage,
    ProviderConfigError,
    ProviderContext,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.testing import (
    Outcome,
    WebhookFixture,
    kinds,
    load_fixtures,
    load_kit,
    outcome_of,
)
from parley.domain.channels import Channel
from parley.domain.status import EventType

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"
NAMES = registry.names()
KNOWN_KINDS = {e.value for e in EventType} | {"inbound"}


def _error_cases() -> list[Any]:
    return [
        pytest.param(name, mode, id=f"{name}-{mode}")
        for name in NAMES
        for mode in load_kit(name).ERROR_MODES
    ]


def _fixture_cases() -> list[Any]:
    return [
        pytest.param(name, path, id=f"{name}-{path.stem}")
        for name in NAMES
        for path in sorted((FIXTURES / name).glob("*.json"))
    ]


def _sample_request(name: str) -> tuple[WebhookRequest, dict[str, str]]:
    """A request the provider would accept if signed: its first fixture, or a generic one."""
    fixtures = load_fixtures(FIXTURES / name)
    if fixtures:
        return fixtures[0].request, dict(fixtures[0].secrets)
    kit = load_kit(name)
    request = WebhookRequest(
        method="POST",
        url=f"https://parley.example.com/webhooks/{name}/acct",
        headers={"content-type": "application/json"},
        body=b'{"message_id":"x1","status":"delivered"}',  # a '1' to tamper with
    )
    return request, dict(kit.SECRETS)


def _unsigned(request: WebhookRequest) -> WebhookRequest:
    keep = {"content-type", "user-agent"}
    return replace(request, headers={k: v for k, v in request.headers.items() if k in keep})


# -- shape --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_spec_matches_registry_and_kit(name: str) -> None:
    spec = registry.spec(name)
    kit = load_kit(name)
    assert spec.name == name == kit.NAME
    assert spec.channels, "a provider serves at least one channel"
    assert set(spec.config_fields).isdisjoint(spec.secret_fields)
    assert spec.required <= set(spec.config_fields) | set(spec.secret_fields)
    for description in (*spec.config_fields.values(), *spec.secret_fields.values()):
        assert isinstance(description, str) and description.strip()


def _context(name: str, channel: Channel | None = None, **changes: Any) -> ProviderContext:
    kit = load_kit(name)
    spec = registry.spec(name)
    return ProviderContext(
        account_id="acct",
        channel=channel or sorted(spec.channels)[0],
        config=changes.get("config", dict(kit.CONFIG)),
        secrets=changes.get("secrets", dict(kit.SECRETS)),
        public_base_url="https://parley.example.com",
    )


@pytest.mark.parametrize("name", NAMES)
async def test_factory_names_each_missing_required_field(name: str) -> None:
    spec = registry.spec(name)
    kit = load_kit(name)
    provider = spec.factory(_context(name))  # control: the complete config builds
    await provider.aclose()
    for field in spec.required:
        config = {k: v for k, v in kit.CONFIG.items() if k != field}
        secrets = {k: v for k, v in kit.SECRETS.items() if k != field}
        with pytest.raises(ProviderConfigError) as caught:
            spec.factory(_context(name, config=config, secrets=secrets))
        assert field in str(caught.value)


@pytest.mark.parametrize("name", NAMES)
async def test_factory_rejects_channels_outside_the_spec(name: str) -> None:
    spec = registry.spec(name)
    for channel in Channel:
        if channel in spec.channels:
            provider = spec.factory(_context(name, channel))
            assert provider.channel == channel
            await provider.aclose()
        else:
            with pytest.raises(ProviderConfigError, match="channel"):
                spec.factory(_context(name, channel))


@pytest.mark.parametrize("name", NAMES)
def test_provider_repr_does_not_show_secrets(name: str) -> None:
    kit = load_kit(name)
    provider = kit.provider()
    for secret in kit.SECRETS.values():
        assert secret not in repr(provider)
        assert secret not in repr(getattr(provider, "settings", None))


@pytest.mark.parametrize("name", NAMES)
async def test_provider_satisfies_the_protocol(name: str) -> None:
    provider = load_kit(name).provider()
    assert isinstance(provider, ChannelProvider)
    assert provider.name == name
    assert provider.channel in registry.spec(name).channels
    assert isinstance(provider.capabilities, Capabilities)
    await provider.aclose()
    await provider.aclose()  # closing twice is harmless


def test_registry_lookup_imports_no_network_library() -> None:
    """`registry.spec()` runs in every API process; the heavy parts load on first build."""
    code = (
        "import sys\n"
        "from parley.channels import registry\n"
        "for name in registry.names(): registry.spec(name)\n"
        "print(sorted(m for m in ('aiohttp', 'aiosmtplib', 'aiosmtpd', 'twilio', 'orjson')"
        " if m in sys.modules))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


# -- (a) signatures -----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_webhook_without_signature_is_rejected(name: str) -> None:
    kit = load_kit(name)
    request, secrets = _sample_request(name)
    provider = kit.provider(secrets)
    if kit.HAS_WEBHOOKS:
        provider.verify_webhook(kit.sign(request, secrets))  # control: signed passes
    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(_unsigned(request))


@pytest.mark.parametrize("name", NAMES)
def test_webhook_signed_with_another_secret_is_rejected(name: str) -> None:
    kit = load_kit(name)
    request, secrets = _sample_request(name)
    provider = kit.provider(secrets)
    wrong = {key: value + "-wrong" for key, value in secrets.items()}
    with pytest.raises(WebhookVerificationError) as caught:
        provider.verify_webhook(kit.sign(request, wrong))
    message = str(caught.value)
    for secret in (*secrets.values(), *wrong.values()):
        assert secret not in message, "a verification error must not leak secrets"
    assert len(message) < 120, "a verification error must not echo the payload"


@pytest.mark.parametrize("name", NAMES)
def test_webhook_tampered_after_signing_is_rejected(name: str) -> None:
    kit = load_kit(name)
    request, secrets = _sample_request(name)
    provider = kit.provider(secrets)
    signed = kit.sign(request, secrets)
    # Every scheme covers the body; whether it also covers the URL is provider-specific
    # (Twilio's does: tests/unit/channels/test_twilio_signature.py).
    for forged_body in (signed.body.replace(b"1", b"2", 1), signed.body + b"&x=1", b""):
        with pytest.raises(WebhookVerificationError):
            provider.verify_webhook(replace(signed, body=forged_body))


# -- (b) fixtures -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_fixture_presence_matches_webhook_support(name: str) -> None:
    # Every provider has its folder, even one without webhooks (a README saying why):
    # a provider added without one fails here instead of being silently not covered.
    assert (FIXTURES / name).is_dir(), f"add {FIXTURES / name}/ (fixtures, or a README)"
    kit = load_kit(name)
    fixtures = load_fixtures(FIXTURES / name)
    if kit.HAS_WEBHOOKS:
        assert fixtures, f"{name} receives webhooks: add fixtures in {FIXTURES / name}"
        covered = {kind for fixture in fixtures for kind in (e["type"] for e in fixture.expected)}
        assert EventType.UNKNOWN.value in covered, "add a fixture with an unknown status"
    else:
        assert not fixtures, f"{name} declares no webhooks but has fixtures"


@pytest.mark.parametrize(("name", "path"), _fixture_cases())
def test_fixture_verifies_and_parses(name: str, path: Path) -> None:
    fixture = WebhookFixture.load(path)
    provider = load_kit(name).provider(fixture.secrets)
    provider.verify_webhook(fixture.request)  # exactly as captured, with its signature
    items = provider.parse_webhook(fixture.request)
    assert kinds(items) == [e["type"] for e in fixture.expected], fixture.description
    for item, expected in zip(items, fixture.expected, strict=True):
        assert item.occurred_at.tzinfo is not None
        assert item.provider_message_id
        for key, value in expected.items():
            if key == "type":
                continue
            actual = getattr(item, key)
            if key == "occurred_at":
                actual = actual.isoformat()
            assert actual == value, f"{path.name}: {key}"
        if isinstance(item, DeliveryEvent):
            assert item.event_type in EventType
            assert item.provider_event_id
            assert item.raw, "the raw payload is kept with every event"
    again = provider.parse_webhook(fixture.request)
    assert [getattr(i, "provider_event_id", None) for i in again] == [
        getattr(i, "provider_event_id", None) for i in items
    ], "the dedupe key must be stable across re-parses"


MALFORMED_BODIES = [
    b"",
    b"not json, not a form \xff\xfe",
    b"[1, 2, 3]",
    b'{"status": "delivered"}',
    b"MessageStatus=delivered",
    b"MessageSid=SM1&MessageStatus=%F0%9F%92%A5",
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("body", MALFORMED_BODIES)
def test_malformed_payloads_never_raise(name: str, body: bytes) -> None:
    kit = load_kit(name)
    request, secrets = _sample_request(name)
    provider = kit.provider(secrets)
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        headers = {**request.headers, "content-type": content_type}
        items = provider.parse_webhook(replace(request, body=body, headers=headers))
        assert set(kinds(items)) <= KNOWN_KINDS
        assert all(isinstance(i, DeliveryEvent | InboundMessage) for i in items)


# -- (c) sends ----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_send_is_accepted_with_a_provider_id(name: str) -> None:
    async with load_kit(name).wired() as harness:
        results = await asyncio.gather(
            *(harness.provider.send(harness.message()) for _ in range(8))
        )
    assert [outcome_of(r) for r in results] == [Outcome.ACCEPTED] * 8, results
    ids = [r.provider_message_id for r in results]
    assert all(ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize(("name", "mode"), _error_cases())
async def test_send_error_maps_to_declared_outcome(name: str, mode: str) -> None:
    kit = load_kit(name)
    expected = kit.ERROR_MODES[mode]
    async with kit.wired(mode) as harness:
        result = await harness.provider.send(harness.message())
        assert outcome_of(result) is expected.expect, result
        if expected.error_code is not None:
            assert result.error_code == expected.error_code, result
        if expected.retry_after is not None:
            assert result.retry_after == pytest.approx(expected.retry_after)
        if not result.accepted:
            assert result.error_code, "every failure carries an error code"
        if expected.expect is Outcome.UNKNOWN:
            assert not result.retryable, "an unknown outcome must not be blindly retried"


@pytest.mark.parametrize("name", NAMES)
def test_kit_covers_a_permanent_failure(name: str) -> None:
    outcomes = {mode.expect for mode in load_kit(name).ERROR_MODES.values()}
    assert Outcome.PERMANENT in outcomes


@pytest.mark.parametrize("name", NAMES)
def test_kit_pins_the_error_code_of_every_definite_failure(name: str) -> None:
    """A retryable or permanent failure keeps the provider's code (the message's
    error_code, the delivery report): each declared case says which code it must be."""
    for mode, declared in load_kit(name).ERROR_MODES.items():
        if declared.expect in (Outcome.RETRYABLE, Outcome.PERMANENT):
            assert declared.error_code, f"{name} kit mode {mode!r} pins no error_code"


@pytest.mark.parametrize("name", NAMES)
async def test_peer_callbacks_verify_and_parse_back_to_the_sent_messages(name: str) -> None:
    kit = load_kit(name)
    async with kit.wired() as harness:
        if not kit.HAS_WEBHOOKS:
            assert harness.collect_callbacks is None
            return
        assert harness.collect_callbacks is not None
        results = [await harness.provider.send(harness.message()) for _ in range(3)]
        sent = {r.provider_message_id for r in results}
        requests = await harness.collect_callbacks()
        assert requests
        delivered: set[str] = set()
        for request in requests:
            harness.provider.verify_webhook(request)
            for item in harness.provider.parse_webhook(request):
                assert isinstance(item, DeliveryEvent)
                assert item.provider_message_id in sent
                if item.event_type is EventType.DELIVERED:
                    delivered.add(item.provider_message_id)
        assert delivered == sent

"""SMPP provider without a network: settings, stored-receipt parsing (fixtures encoded
by the independent `smpp34` codec), receipt dedupe keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.channels.base import (
    DeliveryEvent,
    ProviderConfigError,
    ProviderContext,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.smpp import SPEC, kit, pdu
from parley.channels.smpp.provider import (
    CONTENT_TYPE,
    RECEIVED_AT_HEADER,
    SmppProvider,
    TokenBucket,
    address_type,
)
from parley.channels.testing import kinds
from parley.domain.channels import Channel

RECEIVED = Path(__file__).resolve().parents[2] / "fixtures" / "providers" / "smpp" / "received"


def _provider(**config: Any) -> SmppProvider:
    provider = SPEC.factory(
        ProviderContext(
            account_id="acct",
            channel=Channel.SMS,
            config={**kit.CONFIG, **config},
            secrets=dict(kit.SECRETS),
            public_base_url="",
        )
    )
    assert isinstance(provider, SmppProvider)
    return provider


def _stored(raw: bytes, received_at: str = "2026-11-22T15:31:00+00:00") -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url="listener://smpp/acct",
        headers={"content-type": CONTENT_TYPE, RECEIVED_AT_HEADER: received_at},
        body=raw,
    )


@pytest.mark.parametrize("path", sorted(RECEIVED.glob("*.json")), ids=lambda p: p.stem)
def test_stored_receipt_fixture_parses(path: Path) -> None:
    fixture = json.loads(path.read_text(encoding="utf-8"))
    provider = _provider()
    request = _stored(bytes.fromhex(fixture["pdus_hex"]))
    items = provider.parse_webhook(request)
    expected = fixture["expected"]
    assert kinds(items) == [e["type"] for e in expected], fixture["description"]
    for item, wanted in zip(items, expected, strict=True):
        assert item.occurred_at.tzinfo is not None
        assert item.provider_message_id
        for key, value in wanted.items():
            if key == "type":
                continue
            actual = getattr(item, key)
            if key == "occurred_at":
                actual = actual.isoformat()
            assert actual == value, f"{path.name}: {key}"
        if isinstance(item, DeliveryEvent):
            assert item.raw and item.provider_event_id
    again = provider.parse_webhook(request)
    assert [(i.provider_message_id, getattr(i, "provider_event_id", None)) for i in again] == [
        (i.provider_message_id, getattr(i, "provider_event_id", None)) for i in items
    ], "ids must be stable across re-parses (replay)"


def test_mo_time_is_the_receipt_time_and_ids_ignore_sequence_numbers() -> None:
    fixture = json.loads((RECEIVED / "mo_gsm7.json").read_text())
    raw = bytes.fromhex(fixture["pdus_hex"])
    provider = _provider()
    [item] = provider.parse_webhook(_stored(raw))
    assert item.occurred_at.isoformat() == "2026-11-22T15:31:00+00:00"
    message = pdu.decode(raw)
    renumbered = pdu.Pdu(message.command_id, 0, message.sequence_number + 1000, message.body)
    [again] = provider.parse_webhook(_stored(renumbered.encode()))
    assert again.provider_message_id == item.provider_message_id
    assert provider.receipt_key(renumbered.encode()) == provider.receipt_key(raw)
    assert provider.receipt_key(b"junk") == b"junk"


def test_receipt_id_conversion_setting_applies() -> None:
    fixture = json.loads((RECEIVED / "receipt_expired.json").read_text())  # id:77
    provider = _provider(receipt_id_conversion="dec_to_hex")
    [event] = provider.parse_webhook(_stored(bytes.fromhex(fixture["pdus_hex"])))
    assert event.provider_message_id == "4d"


def test_no_webhooks_at_all() -> None:
    provider = _provider()
    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(_stored(b""))
    assert provider.parse_webhook(_stored(b"\x00\x00\x00\x10garbage")) == []


@pytest.mark.parametrize(
    ("config", "secrets", "problem"),
    [
        ({"window": 0}, None, "window"),
        ({"throughput": "fast"}, None, "throughput"),
        ({"system_id": "x" * 16}, None, "system_id"),
        ({"source_addr": "not a sender!"}, None, "source_addr"),
        ({"receipt_id_conversion": "rot13"}, None, "receipt_id_conversion"),
        ({"reconnect_min": 10, "reconnect_max": 1}, None, "reconnect_max"),
        ({}, {"password": "waytoolongpassword"}, "password"),
    ],
)
def test_settings_are_validated(config: dict[str, Any], secrets: Any, problem: str) -> None:
    with pytest.raises(ProviderConfigError, match=problem):
        SPEC.factory(
            ProviderContext(
                account_id="acct",
                channel=Channel.SMS,
                config={**kit.CONFIG, **config},
                secrets=secrets or dict(kit.SECRETS),
                public_base_url="",
            )
        )


def test_address_types() -> None:
    assert address_type("+15005550006") == (1, 1, "15005550006")
    assert address_type("72345") == (0, 1, "72345")
    assert address_type("Lender") == (5, 0, "Lender")


async def test_token_bucket_spaces_out_acquisitions() -> None:
    import asyncio

    bucket = TokenBucket(rate=50, capacity=1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(6):
        await bucket.acquire()
    # 1 saved token + 5 more at 50/s: at least 0.1 s (a lower bound, not a timing race)
    assert loop.time() - start >= 0.095


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_parse_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    provider = _provider()
    items = provider.parse_webhook(_stored(raw))
    assert isinstance(items, list)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=200))
def test_parse_never_raises_on_deliver_sm_with_arbitrary_body(body: bytes) -> None:
    provider = _provider()
    raw = pdu.Pdu(pdu.Command.DELIVER_SM, 0, 1, body).encode()
    assert isinstance(provider.parse_webhook(_stored(raw)), list)

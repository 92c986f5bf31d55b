"""Twilio webhook signatures, checked against the official `twilio` RequestValidator
(the test oracle; it is never used at run time)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from parley.channels.base import ChannelProvider, WebhookRequest, WebhookVerificationError
from parley.channels.twilio import signature
from parley.channels.twilio.kit import provider as kit_provider
from parley.peers.twilio_api import DEFAULT_AUTH_TOKEN, TwilioApiPeer
from parley.peers.webhook_receiver import WebhookReceiver

TOKEN = "12345abcdef-test-token"
URL = "https://parley.example.com/webhooks/twilio/acct-1"
PARAMS = {
    "MessageSid": "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0",
    "MessageStatus": "delivered",
    "To": "+15558675310",
    "From": "+15005550006",
    "Body": "Zoë paid 50 € + tip & thanks = 100%",
}
oracle = RequestValidator(TOKEN)


def request(
    url: str = URL, params: dict[str, str] = PARAMS, sig: str | None = None
) -> WebhookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if sig is not None:
        headers["x-twilio-signature"] = sig
    return WebhookRequest("POST", url, headers, urlencode(params).encode())


def provider() -> ChannelProvider:
    return kit_provider({"auth_token": TOKEN})


def test_our_signature_equals_the_official_one() -> None:
    assert signature.compute_signature(TOKEN, URL, PARAMS) == oracle.compute_signature(URL, PARAMS)


_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=100, deadline=None)
@given(params=st.dictionaries(st.text(min_size=1, max_size=12).filter(str.isprintable), _values))
def test_any_params_sign_like_the_oracle(params: dict[str, str]) -> None:
    assert signature.compute_signature(TOKEN, URL, params) == oracle.compute_signature(URL, params)


def test_provider_accepts_oracle_signed_requests() -> None:
    provider().verify_webhook(request(sig=oracle.compute_signature(URL, PARAMS)))


@pytest.mark.parametrize(
    ("received_url", "signed_url"),
    [
        ("https://parley.example.com:443/webhooks/twilio/acct-1", URL),
        (URL, "https://parley.example.com:443/webhooks/twilio/acct-1"),
        (
            "http://127.0.0.1:8000/webhooks/twilio/a?x=1",
            "http://127.0.0.1:8000/webhooks/twilio/a?x=1",
        ),
    ],
)
def test_port_variants_are_accepted_like_the_oracle(received_url: str, signed_url: str) -> None:
    sig = oracle.compute_signature(signed_url, PARAMS)
    assert oracle.validate(received_url, PARAMS, sig)
    provider().verify_webhook(request(received_url, sig=sig))


@pytest.mark.parametrize(
    "forge",
    [
        lambda r: replace(r, body=r.body.replace(b"delivered", b"failed")),
        lambda r: replace(r, body=r.body + b"&ErrorCode=30003"),
        lambda r: replace(r, body=r.body.replace(b"Body=", b"Bodx=")),
        lambda r: replace(r, url=r.url.replace("acct-1", "acct-2")),
        lambda r: replace(r, url=r.url.replace("https", "http")),
        lambda r: replace(r, url=r.url + "?injected=1"),
        lambda r: replace(r, headers={**r.headers, "x-twilio-signature": ""}),
        lambda r: replace(
            r, headers={k: v for k, v in r.headers.items() if k != "x-twilio-signature"}
        ),
        lambda r: replace(r, headers={**r.headers, "x-twilio-signature": "Zm9v"}),
        lambda r: replace(r, body=b"\xff\xfe"),
    ],
)
def test_tampered_requests_are_rejected(
    forge: Callable[[WebhookRequest], WebhookRequest],
) -> None:
    genuine = request(sig=oracle.compute_signature(URL, PARAMS))
    provider().verify_webhook(genuine)  # control
    forged = forge(genuine)
    with pytest.raises(WebhookVerificationError) as caught:
        provider().verify_webhook(forged)
    assert TOKEN not in str(caught.value) and "Zo" not in str(caught.value)


def test_wrong_token_is_rejected() -> None:
    sig = RequestValidator("another-token").compute_signature(URL, PARAMS)
    with pytest.raises(WebhookVerificationError):
        provider().verify_webhook(request(sig=sig))


def test_json_body_with_body_sha256() -> None:
    body = json.dumps({"MessageSid": "SM1", "MessageStatus": "sent"})
    url = URL + "?bodySHA256=" + signature.body_sha256(body.encode())
    sig = oracle.compute_signature(url, {})
    assert oracle.validate(url, body, sig)
    headers = {"content-type": "application/json", "x-twilio-signature": sig}
    provider().verify_webhook(WebhookRequest("POST", url, headers, body.encode()))
    tampered = WebhookRequest("POST", url, headers, body.replace("sent", "read").encode())
    assert not oracle.validate(url, tampered.body.decode(), sig)
    with pytest.raises(WebhookVerificationError):
        provider().verify_webhook(tampered)


def test_get_callbacks_are_signed_over_the_url() -> None:
    url = URL + "?MessageSid=SM1&MessageStatus=sent"
    sig = oracle.compute_signature(url, {})
    provider().verify_webhook(WebhookRequest("GET", url, {"x-twilio-signature": sig}, b""))
    with pytest.raises(WebhookVerificationError):
        provider().verify_webhook(
            WebhookRequest("GET", url.replace("sent", "read"), {"x-twilio-signature": sig}, b"")
        )


async def test_peer_callbacks_are_accepted_by_the_official_validator() -> None:
    """The peer's signer is ours; Twilio's own validator must agree with it."""
    from parley.channels.base import OutboundMessage
    from parley.channels.twilio.kit import build, template

    async with (
        TwilioApiPeer(failing_numbers={"+15550000003": "30003"}) as peer,
        WebhookReceiver() as receiver,
    ):
        provider = build(peer.base_url, receiver.base_url)
        for to in ("+15558675310", "+15550000003"):
            message: OutboundMessage = replace(template(), to=to)
            assert (await provider.send(message)).accepted
        count = await peer.deliver_callbacks(duplicate_rate=1.0)
        _sid, _ = await peer.send_inbound(
            receiver.base_url + "/webhooks/twilio/kit-twilio",
            from_="+15558675310",
            to="+15005550006",
            body="ok",
        )
        await provider.aclose()
    official = RequestValidator(DEFAULT_AUTH_TOKEN)
    assert count == 8 and len(receiver.requests) == 9
    for received in receiver.requests:
        params = dict(parse_qsl(received.body.decode()))
        assert official.validate(received.url, params, received.header("X-Twilio-Signature"))

"""The protocol peers themselves: they must behave like the real services, or provider
tests against them prove nothing."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp
import aiosmtplib
import pytest

from parley.peers.smtp_sink import (
    DROP_AFTER_DATA,
    PERMFAIL,
    TEMPFAIL,
    Implementation,
    SmtpSink,
    extract_message_id,
    read_recorded_ids,
)
from parley.peers.twilio_api import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    TwilioApiPeer,
    count_segments,
)
from parley.peers.webhook_receiver import WebhookReceiver

IMPLEMENTATIONS: list[Implementation] = ["aiosmtpd", "minimal"]


def raw(message_id: str, body: str = "hello") -> bytes:
    return (
        f"From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: {message_id}\r\n"
        f"Subject: t\r\n\r\n{body}\r\n"
    ).encode()


# -- SMTP sink ----------------------------------------------------------------------


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
async def test_sink_speaks_smtp_to_a_standard_client(implementation: Implementation) -> None:
    async with (
        SmtpSink(implementation=implementation) as sink,
        aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False) as client,
    ):
        await client.sendmail(
            "a@example.com", ["b@example.com", "c@example.com"], raw("<1@x>", ".\r\n..x")
        )
        await client.sendmail("a@example.com", ["b@example.com"], raw("<2@x>"))
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            sink.fail_next(PERMFAIL)
            await client.sendmail("a@example.com", ["b@example.com"], raw("<3@x>"))
        assert caught.value.code == 550
    assert [m.message_id for m in sink.messages] == ["<1@x>", "<2@x>"]
    assert sink.messages[0].rcpt_tos == ("b@example.com", "c@example.com")
    assert sink.messages[0].data is not None and b"\r\n.\r\n..x\r\n" in sink.messages[0].data
    assert sink.attempts == Counter({"<1@x>": 1, "<2@x>": 1, "<3@x>": 1})
    assert sink.connections == 1


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
async def test_sink_failure_rates_are_deterministic(implementation: Implementation) -> None:
    async def run(seed: int) -> tuple[list[str], list[str]]:
        async with SmtpSink(
            implementation=implementation, tempfail_rate=0.3, permfail_rate=0.1, seed=seed
        ) as sink:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False) as c:
                perm: list[str] = []
                for n in range(60):
                    mid = f"<{n}@x>"
                    for _attempt in range(30):  # retry temporary failures until accepted
                        try:
                            await c.sendmail("a@x.org", ["b@x.org"], raw(mid))
                            break
                        except aiosmtplib.SMTPDataError as exc:
                            if exc.code == 550:
                                perm.append(mid)
                                break
                            assert exc.code == 451
            tempfailed = sorted(m for m, n in sink.attempts.items() if n > 1)
            assert not sink.duplicates()
            assert len(sink.accepted) + len(perm) == 60
            return perm, tempfailed

    first, again, other = await run(1), await run(1), await run(2)
    assert first == again
    assert first != other
    assert first[0] and first[1], "some messages fail permanently, some temporarily"


async def test_sink_records_accepted_ids_to_a_file(tmp_path: Path) -> None:
    record = tmp_path / "received.txt"
    async with SmtpSink(record_path=record) as sink:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False) as c:
            await c.sendmail("a@x.org", ["b@x.org"], raw("<1@x>"))
            sink.fail_next(TEMPFAIL)
            with pytest.raises(aiosmtplib.SMTPDataError):
                await c.sendmail("a@x.org", ["b@x.org"], raw("<2@x>"))
            await c.sendmail("a@x.org", ["b@x.org"], raw("<2@x>"))
            await c.sendmail("a@x.org", ["b@x.org"], raw("<1@x>"))
        # Readable by another process while the sink still runs (flushed per line).
        assert read_recorded_ids(record) == Counter({"<1@x>": 2, "<2@x>": 1})
    assert sink.duplicates() == {"<1@x>": 2}


async def test_drop_after_data_accepts_but_never_answers() -> None:
    async with SmtpSink(implementation="minimal") as sink:
        sink.fail_next(DROP_AFTER_DATA)
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False) as c:
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                await c.sendmail("a@x.org", ["b@x.org"], raw("<1@x>"))
    assert sink.accepted_count("<1@x>") == 1


def test_sink_runs_in_a_background_thread() -> None:
    import smtplib

    with SmtpSink(implementation="minimal") as sink, smtplib.SMTP("127.0.0.1", sink.port) as client:
        client.sendmail("a@x.org", ["b@x.org"], raw("<t@x>"))
    assert sink.accepted_count("<t@x>") == 1


def test_extract_message_id() -> None:
    assert extract_message_id(raw("<a.b@c>")) == "<a.b@c>"
    assert (
        extract_message_id(b"Subject: x\r\nmessage-id:\r\n <folded@x>\r\n\r\nbody") == "<folded@x>"
    )
    assert extract_message_id(b"Subject: x\r\n\r\nMessage-ID: <in-body@x>\r\n") is None


# -- Twilio API peer ----------------------------------------------------------------


def auth(sid: str = DEFAULT_ACCOUNT_SID, token: str = DEFAULT_AUTH_TOKEN) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()}


async def test_twilio_peer_api_shape() -> None:
    async with TwilioApiPeer(opted_out=["+15550000001"]) as peer, aiohttp.ClientSession() as http:
        url = peer.messages_url()

        async def post(
            form: dict[str, str], headers: dict[str, str] | None = None
        ) -> tuple[int, dict]:
            async with http.post(url, data=form, headers=headers or auth()) as response:
                return response.status, await response.json()

        status, created = await post({"To": "+15558675310", "From": "+15005550006", "Body": "hi"})
        assert status == 201
        assert created["sid"].startswith("SM") and len(created["sid"]) == 34
        assert (created["status"], created["num_segments"], created["direction"]) == (
            "queued",
            "1",
            "outbound-api",
        )
        assert created["account_sid"] == DEFAULT_ACCOUNT_SID
        for form, code in [
            ({"From": "+15005550006", "Body": "x"}, 21604),
            ({"To": "555-0100", "From": "+15005550006", "Body": "x"}, 21211),
            ({"To": "+15558675310", "Body": "x"}, 21603),
            ({"To": "+15558675310", "From": "+15005550006"}, 21602),
            ({"To": "+15550000001", "From": "+15005550006", "Body": "x"}, 21610),
        ]:
            status, error = await post(form)
            assert (status, error["code"], error["status"]) == (400, code, 400)
        status, error = await post({"To": "+15558675310"}, auth(token="wrong"))
        assert (status, error["code"]) == (401, 20003)
        async with http.get(
            f"{peer.base_url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages/{created['sid']}.json",
            headers=auth(),
        ) as response:
            assert response.status == 200
            assert (await response.json())["sid"] == created["sid"]
    assert peer.stats.accepted == 1 and peer.stats.invalid == 5 and peer.stats.unauthorized == 1


async def test_twilio_peer_rate_limit_counts_its_429s() -> None:
    async with (
        TwilioApiPeer(rate_limit_per_second=2, rate_limit_burst=5) as peer,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for _ in range(8):
            form = {"To": "+15558675310", "From": "+15005550006", "Body": "x"}
            async with http.post(peer.messages_url(), data=form, headers=auth()) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
        await asyncio.sleep(0.6)  # one token refills (the 8 requests took well under 0.5 s)
        async with http.post(peer.messages_url(), data=form, headers=auth()) as response:
            statuses.append(response.status)
    assert statuses == [201] * 5 + [429] * 3 + [201]
    assert peer.stats.rate_limited == 3 and peer.stats.injected_429 == 0


async def test_twilio_peer_injected_errors_follow_the_seed() -> None:
    async def run(seed: int) -> list[int]:
        async with (
            TwilioApiPeer(rate_429=0.2, rate_5xx=0.1, seed=seed) as peer,
            aiohttp.ClientSession() as http,
        ):
            seen = []
            for _ in range(50):
                form = {"To": "+15558675310", "From": "+15005550006", "Body": "x"}
                async with http.post(peer.messages_url(), data=form, headers=auth()) as response:
                    seen.append(response.status)
            assert peer.stats.injected_429 == seen.count(429)
            assert peer.stats.injected_5xx == seen.count(503)
            return seen

    first = await run(5)
    assert first == await run(5)
    assert {201, 429, 503} == set(first)


async def test_twilio_peer_callbacks_order_shuffle_and_duplicates() -> None:
    async with (
        TwilioApiPeer(failing_numbers={"+15550000003": "30003"}) as peer,
        WebhookReceiver() as receiver,
    ):
        async with aiohttp.ClientSession() as http:
            for to in ("+15558675310", "+15550000003", "+15550000004"):
                form = {
                    "To": to,
                    "From": "+15005550006",
                    "Body": "x",
                    "StatusCallback": receiver.base_url + "/cb",
                }
                async with http.post(peer.messages_url(), data=form, headers=auth()) as response:
                    assert response.status == 201
        in_order = await peer.deliver_callbacks()
        ordered = [dict(parse_qsl(r.body.decode())) for r in receiver.requests]
        per_sid: dict[str, list[str]] = {}
        for params in ordered:
            per_sid.setdefault(params["MessageSid"], []).append(params["MessageStatus"])
        assert in_order == 6
        assert sorted(per_sid.values()) == [
            ["sent", "delivered"],
            ["sent", "delivered"],
            ["sent", "undelivered"],
        ]
        receiver.requests.clear()
        posted = await peer.deliver_callbacks(shuffle=True, duplicate_rate=0.5, seed=3)
        assert posted == len(receiver.requests) > 6
        tokens = Counter(r.header("I-Twilio-Idempotency-Token") for r in receiver.requests)
        assert len(tokens) == 6, "a duplicate carries the same idempotency token"


def test_segment_counting() -> None:
    assert count_segments("a" * 160) == 1
    assert count_segments("a" * 161) == 2
    assert count_segments("a" * 306) == 2
    assert count_segments("{" * 80) == 1
    assert count_segments("{" * 81) == 2
    assert count_segments("é" * 160) == 1  # é is in GSM-7
    assert count_segments("ç" * 70) == 1  # ç is not (Ç is): UCS-2
    assert count_segments("ç" * 71) == 2
    assert count_segments("🙂" * 35) == 1
    assert count_segments("🙂" * 36) == 2

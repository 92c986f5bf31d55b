"""The SMPP provider against a real SMSC: the `smpp34` library's server (an independent
SMPP 3.4 implementation) behind `SmppServerPeer`. Limits are checked by counting at the
peer (PDUs outstanding, PDUs seen), not by timing sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from parley.channels.base import DeliveryEvent, InboundMessage
from parley.channels.smpp import kit, pdu
from parley.channels.smpp.provider import SmppProvider
from parley.channels.testing import Outcome, outcome_of
from parley.domain.status import EventType
from parley.peers.smpp_server import SmppServerPeer
from tests.support.live import wait_for

Received = list[tuple[Sequence[DeliveryEvent | InboundMessage], bytes]]


@pytest.fixture
async def peer() -> AsyncIterator[SmppServerPeer]:
    async with SmppServerPeer() as server:
        yield server


class Listening:
    """A provider with `run(sink)` going, collecting what the sink got."""

    def __init__(self, provider: SmppProvider, fail: bool = False) -> None:
        self.provider = provider
        self.received: Received = []
        self.fail = fail
        self.task: asyncio.Task[None] | None = None

    async def sink(self, items: Sequence[DeliveryEvent | InboundMessage], raw: bytes) -> None:
        if self.fail:
            raise RuntimeError("database down")
        self.received.append((items, raw))

    async def __aenter__(self) -> Listening:
        self.task = asyncio.create_task(self.provider.run(self.sink))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.provider.aclose()


def _provider(peer: SmppServerPeer, **overrides: Any) -> SmppProvider:
    provider = kit.build(peer.port, **overrides)
    assert isinstance(provider, SmppProvider)
    return provider


async def test_bind_and_send_short_and_long_gsm7_and_ucs2(peer: SmppServerPeer) -> None:
    provider = _provider(peer)
    harness_message = kit.template()
    try:
        short = await provider.send(harness_message)
        long_gsm = await provider.send(
            harness_message.__class__(**{**_fields(harness_message), "body": "Pay €5 " * 30})
        )
        short_ucs2 = await provider.send(
            harness_message.__class__(**{**_fields(harness_message), "body": "Оплатите 🙏"})
        )
        long_ucs2 = await provider.send(
            harness_message.__class__(**{**_fields(harness_message), "body": "Привет! " * 20})
        )
    finally:
        await provider.aclose()
    assert peer.binds == ["parley"]
    assert [r.segments for r in (short, long_gsm, short_ucs2, long_ucs2)] == [1, 2, 1, 3]
    assert all(outcome_of(r) is Outcome.ACCEPTED for r in (short, long_gsm, short_ucs2, long_ucs2))
    subs = peer.submissions
    assert len(subs) == 7
    first = subs[0]
    assert (first.source_addr, first.source_addr_ton) == ("15005550006", 1)
    assert (first.destination_addr, first.dest_addr_ton) == ("15558675310", 1)
    assert first.registered_delivery == 1 and first.esm_class == 0 and first.data_coding == 0
    # GSM-7 unpacked: one septet per octet; '$' is 0x02 in GSM 03.38, letters as in ASCII.
    assert first.payload == harness_message.body.replace("$", "\x02").encode("ascii")
    # The long GSM-7 message: two parts with one reference; '€' is ESC + 0x65 in each.
    parts = subs[1:3]
    assert [p.esm_class for p in parts] == [0x40, 0x40]
    reference = parts[0].udh[3]
    assert [p.udh for p in parts] == [bytes([5, 0, 3, reference, 2, n]) for n in (1, 2)]
    assert len(parts[0].payload) == 153
    assert bytes([0x1B, 0x65]) in parts[0].payload
    assert long_gsm.provider_message_id == parts[0].message_id  # the first part's id
    assert long_gsm.part_ids == (parts[0].message_id, parts[1].message_id)  # every part's
    assert short.part_ids == () and short_ucs2.part_ids == ()  # one part: tracked as one
    assert subs[3].data_coding == 8 and subs[3].text == "Оплатите 🙏"
    ucs = subs[4:7]
    assert long_ucs2.part_ids == tuple(p.message_id for p in ucs)
    assert [p.data_coding for p in ucs] == [8, 8, 8]
    assert "".join(p.text for p in ucs) == "Привет! " * 20
    assert [len(p.payload) // 2 for p in ucs] == [67, 67, 26]


def _fields(message: Any) -> dict[str, Any]:
    return {name: getattr(message, name) for name in message.__dataclass_fields__}


async def test_window_bounds_outstanding_submits_at_the_peer(peer: SmppServerPeer) -> None:
    provider = _provider(peer, window=3, throughput=1000)
    peer.hold()
    sends = [asyncio.create_task(provider.send(kit.template())) for _ in range(10)]
    try:
        answered = 0
        while answered < 10:
            remaining = 10 - answered
            await wait_for(lambda r=remaining: _true(peer.outstanding >= min(3, r)))
            await asyncio.sleep(0.05)  # room for a fourth to arrive, if the window let it
            assert peer.outstanding <= 3
            answered += peer.answer_held()
        results = await asyncio.gather(*sends)
    finally:
        await provider.aclose()
    assert peer.max_outstanding == 3
    assert all(outcome_of(r) is Outcome.ACCEPTED for r in results)


async def _true(value: bool) -> bool:
    return value


async def test_throughput_limit_per_bind(peer: SmppServerPeer) -> None:
    rate = 8.0
    provider = _provider(peer, throughput=rate, window=50)
    loop = asyncio.get_running_loop()
    start = loop.time()
    sends = asyncio.gather(*(provider.send(kit.template()) for _ in range(10)))
    try:
        # At every look, the peer has seen no more than the bucket allows since `start`
        # (1 saved token + rate per second): an upper bound that a slow machine only
        # makes easier to meet.
        while not sends.done():
            allowed = 1 + rate * (loop.time() - start)
            assert len(peer.submissions) <= allowed
            await asyncio.sleep(0.02)
        results = await sends
    finally:
        await provider.aclose()
    assert len(peer.submissions) == 10
    assert loop.time() - start >= (10 - 1) / rate * 0.95
    assert all(r.accepted for r in results)


async def test_enquire_link_keeps_an_idle_bind_alive(peer: SmppServerPeer) -> None:
    provider = _provider(peer, enquire_link_interval=0.1)
    async with Listening(provider):
        await peer.wait_bound()
        await wait_for(lambda: _true(peer.seen["enquire_link"] >= 3))
        assert provider.binds == 1  # answered each time: the same bind throughout


async def test_link_drop_reconnects_and_sending_continues(peer: SmppServerPeer) -> None:
    provider = _provider(peer, reconnect_min=0.05, reconnect_max=0.2)
    async with Listening(provider):
        await peer.wait_bound()
        assert (await provider.send(kit.template())).accepted
        peer.drop_links()
        await wait_for(lambda: _true(len(peer.binds) == 2))
        result = await provider.send(kit.template())
        assert result.accepted, result
        assert provider.binds == 2
        # Receipts keep flowing on the new bind.
        assert await peer.deliver_receipt(result.provider_message_id or "") == 0


async def test_send_without_listener_rebinds_on_demand(peer: SmppServerPeer) -> None:
    provider = _provider(peer)
    try:
        assert (await provider.send(kit.template())).accepted
        peer.drop_links()
        await wait_for(lambda: _true(provider._session is None or not provider._session.alive))
        result = await provider.send(kit.template())
        assert result.accepted and provider.binds == 2
    finally:
        await provider.aclose()


async def test_connect_failures_back_off(peer: SmppServerPeer) -> None:
    from parley.channels.testing import free_port

    provider = kit.build(free_port(), reconnect_min=5, reconnect_max=10)
    try:
        first = await provider.send(kit.template())
        second = await provider.send(kit.template())
    finally:
        await provider.aclose()
    assert outcome_of(first) is Outcome.RETRYABLE and first.error_code == "connect_failed"
    assert second.error_code == "connect_failed" and "reconnecting" in (second.error_detail or "")
    assert second.retry_after is not None and 0 < second.retry_after <= 5


async def test_throttled_first_part_is_retryable_with_retry_after(peer: SmppServerPeer) -> None:
    provider = _provider(peer)
    peer.script(pdu.Status.ESME_RTHROTTLED)
    try:
        throttled = await provider.send(kit.template())
        again = await provider.send(kit.template())
    finally:
        await provider.aclose()
    assert outcome_of(throttled) is Outcome.RETRYABLE
    assert throttled.error_code == "ESME_RTHROTTLED" and throttled.retry_after == 1.0
    assert again.accepted


async def test_a_later_part_throttled_is_retried_in_place(peer: SmppServerPeer) -> None:
    provider = _provider(peer)
    peer.script("accept", pdu.Status.ESME_RTHROTTLED)
    message = kit.template()
    try:
        result = await provider.send(message.__class__(**{**_fields(message), "body": "x" * 200}))
    finally:
        await provider.aclose()
    assert result.accepted and result.segments == 2
    assert [s.status for s in peer.submissions] == [0, pdu.Status.ESME_RTHROTTLED, 0]
    assert [s.udh[5] for s in peer.submissions] == [1, 2, 2]
    # The part that went through on the retry is the one whose id counts.
    first, _, second = peer.submissions
    assert result.part_ids == (first.message_id, second.message_id)


async def test_a_later_part_refused_leaves_the_outcome_unknown(peer: SmppServerPeer) -> None:
    provider = _provider(peer)
    peer.script("accept", pdu.Status.ESME_RINVDSTADR)
    message = kit.template()
    try:
        result = await provider.send(message.__class__(**{**_fields(message), "body": "x" * 200}))
    finally:
        await provider.aclose()
    assert outcome_of(result) is Outcome.UNKNOWN  # the handset may hold part 1
    assert result.error_code == "ESME_RINVDSTADR"
    # Part 1's id comes back all the same: its receipts must find the message.
    first, _ = peer.submissions
    assert result.provider_message_id == first.message_id
    assert result.part_ids == (first.message_id,)


async def test_the_parts_accepted_before_one_was_refused_are_returned(
    peer: SmppServerPeer,
) -> None:
    provider = _provider(peer)
    peer.script("accept", "accept", pdu.Status.ESME_RINVDSTADR)
    message = kit.template()
    try:
        result = await provider.send(message.__class__(**{**_fields(message), "body": "x" * 400}))
    finally:
        await provider.aclose()
    assert outcome_of(result) is Outcome.UNKNOWN
    first, second, _ = peer.submissions
    assert result.provider_message_id == first.message_id
    assert result.part_ids == (first.message_id, second.message_id)


async def test_receipts_and_replies_reach_the_sink(peer: SmppServerPeer) -> None:
    provider = _provider(peer)
    async with Listening(provider) as listening:
        sent = await provider.send(kit.template())
        message_id = sent.provider_message_id or ""
        assert await peer.deliver_receipt(message_id, "DELIVRD") == 0
        assert await peer.deliver_receipt(message_id, "UNDELIV", err="034", with_tlvs=True) == 0
        assert await peer.send_mo("STOP", source_addr="12025550123") == [0]
        assert await peer.send_mo("Спасибо, оплачу завтра", ucs2=True) == [0]
    items = [item for batch, _ in listening.received for item in batch]
    events = [i for i in items if isinstance(i, DeliveryEvent)]
    assert [(e.provider_message_id, e.event_type) for e in events] == [
        (message_id, EventType.DELIVERED),
        (message_id, EventType.FAILED),
    ]
    assert events[1].error_code == "034"
    inbound = [i for i in items if isinstance(i, InboundMessage)]
    assert [(i.sender, i.body) for i in inbound] == [
        ("+12025550123", "STOP"),
        ("+15558675310", "Спасибо, оплачу завтра"),
    ]
    # What the sink got as raw bytes re-parses to the same items (replay).
    for batch, raw in listening.received:
        reparsed = provider.parse_webhook(_stored(raw))
        assert [i.provider_message_id for i in reparsed] == [i.provider_message_id for i in batch]


def _stored(raw: bytes) -> Any:
    from parley.channels.base import WebhookRequest

    return WebhookRequest(method="POST", url="listener://smpp/x", headers={}, body=raw)


async def test_long_reply_is_reassembled_before_it_is_acknowledged(peer: SmppServerPeer) -> None:
    provider = _provider(peer)
    async with Listening(provider) as listening:
        await peer.wait_bound()
        text = "I lost my job last month, can we agree on a smaller monthly payment? "
        statuses = await peer.send_mo(text * 3, parts=3, order=[3, 1, 2])
    assert statuses == [0, 0, 0]
    assert len(listening.received) == 1  # one message, stored once with all its parts
    [(items, raw)] = listening.received
    assert [i.body for i in items if isinstance(i, InboundMessage)] == [text * 3]
    assert len(pdu.split_stream(raw)) == 3


async def test_missing_parts_are_stored_after_the_reassembly_timeout(
    peer: SmppServerPeer,
) -> None:
    provider = _provider(peer, mo_reassembly_timeout=0.2)
    async with Listening(provider) as listening:
        await peer.wait_bound()
        statuses = await peer.send_mo("aaaa bbbb cccc", parts=3, order=[1, 3])
    assert statuses == [0, 0]
    [(items, _)] = listening.received
    assert [i.body for i in items] == ["aaaa […]cccc"]
    assert items[0].raw["missing_parts"] == [2]


async def test_nothing_is_acknowledged_that_was_not_stored(peer: SmppServerPeer) -> None:
    provider = _provider(peer)
    try:
        # A bind with no listener (a send-only process): the SMSC must try again later.
        sent = await provider.send(kit.template())
        status = await peer.deliver_receipt(sent.provider_message_id or "")
        assert status == pdu.Status.ESME_RX_T_APPN
    finally:
        await provider.aclose()
    async with Listening(_provider(peer), fail=True):
        await wait_for(lambda: _true(len(peer.binds) == 2))  # the listener's own bind
        assert await peer.send_mo("STOP") == [pdu.Status.ESME_RX_T_APPN]

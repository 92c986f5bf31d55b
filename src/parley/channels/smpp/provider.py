"""The SMPP provider: SMS over one transceiver bind per provider instance (per account and
worker process), shared by sends and by the listener that receives receipts and replies.

Sending: the body is split as the SMS preview counts it (`coding.encode_message`), each
part is a submit_sm; at most `window` submit_sm await their response at once and at
most `throughput` per second leave (token bucket), both per bind. A multi-part message
is identified by the message_id of its **first** part (`provider_message_id`); every
part's message_id is returned too (`part_ids`), recorded by the dispatcher, so that the
receipt of any part finds the message (inbox/message_parts.py, docs/providers.md). When a
later part fails after earlier ones were accepted (an unknown outcome, below), the
accepted parts' ids are returned all the same and recorded on the `needs_review` message.

Outcomes: submit_sm_resp ESME_ROK accepted; throttling, queue-full and system errors
retryable (before any part was accepted); other statuses permanent. No bind (connect
refused, bind refused, in reconnect back-off) is retryable: nothing was sent. A link
that drops, or a response that never comes, after a submit_sm was written leaves the
outcome unknown (the SMSC may have taken it), as does a later part failing after an
earlier part was accepted (the handset may hold half a message).

Receiving (`run(sink)`): keeps the bind up, reconnecting with exponential back-off and
jitter, and hands every deliver_sm to the sink as `(items, raw PDUs)`; the
deliver_sm_resp is sent only once the sink returned, so a receipt or reply that could
not be stored is offered again by the SMSC (ESME_RX_T_APPN). The parts of a long reply
are held (unanswered) until all arrived, then stored as one receipt whose raw bytes are
all the parts' PDUs; after `mo_reassembly_timeout` the parts that came are stored as
they are. `parse_webhook` re-parses such stored bytes (replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from parley.channels.base import (
    Capabilities,
    DeliveryEvent,
    EventSink,
    InboundMessage,
    OutboundMessage,
    ProviderConfigError,
    ProviderContext,
    SendResult,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.smpp import coding, dlr, pdu
from parley.channels.smpp.config import SmppSettings, parse_settings
from parley.channels.smpp.session import BindFailed, LinkLost, ResponseTimeout, Session
from parley.domain.channels import Channel
from parley.domain.status import EventType

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.parley.smpp-pdus"  # stored receipts: deliver_sm PDUs
RECEIVED_AT_HEADER = "x-parley-received-at"
PART_RETRIES = 3  # a later part refused as "busy" is tried again this often in place


class NotBound(ConnectionError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenBucket:
    """`rate` tokens per second, at most `capacity` saved up; `acquire` waits for one."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._stamp: float | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                if self._stamp is not None:
                    self._tokens = min(
                        self.capacity, self._tokens + (now - self._stamp) * self.rate
                    )
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


@dataclass
class _Assembly:
    """The parts of one long MO message received so far on this bind."""

    parts: dict[int, pdu.Pdu] = field(default_factory=dict)
    total: int = 0
    done: asyncio.Future[int] | None = None
    timer: asyncio.TimerHandle | None = None


class SmppProvider:
    name: ClassVar[str] = "smpp"
    channel: Channel = Channel.SMS
    capabilities: Capabilities = Capabilities(max_body_chars=1600, max_segments=10)
    # SMSCs accept several transceiver binds per account and deliver to any of them:
    # every worker process keeps its own bind and listens on it.
    listen_exclusively: ClassVar[bool] = False
    received_content_type: ClassVar[str] = CONTENT_TYPE

    def __init__(self, settings: SmppSettings, account_id: str = "") -> None:
        self.settings = settings
        self.account_id = account_id
        self._session: Session | None = None
        self._connect_lock = asyncio.Lock()
        self._window = asyncio.Semaphore(settings.window)
        self._bucket = TokenBucket(settings.throughput, max(1.0, settings.throughput / 10))
        self._reference = random.randrange(256)
        self._failures = 0
        self._next_attempt = 0.0  # loop time before which no new bind is tried
        self._sink: EventSink | None = None
        self._assemblies: dict[tuple[str, str, int, int], _Assembly] = {}
        self._pending_stores: set[asyncio.Future[None]] = set()  # keeps store tasks alive
        self._closed = False
        self.binds = 0  # how many binds this instance made (for tests and logs)

    def __repr__(self) -> str:
        return f"SmppProvider({self.settings.address!r})"

    # -- the bind -------------------------------------------------------------------

    async def _bound(self) -> Session:
        session = self._session
        if session is not None and session.alive:
            return session
        async with self._connect_lock:
            session = self._session
            if session is not None and session.alive:
                return session
            if self._closed:
                raise NotBound("provider closed")
            loop = asyncio.get_running_loop()
            wait = self._next_attempt - loop.time()
            if wait > 0:
                raise NotBound("reconnecting after a failure", retry_after=wait)
            session = Session(self.settings, self._on_deliver)
            try:
                await session.open()
            except (OSError, TimeoutError, BindFailed, LinkLost) as exc:
                self._failures += 1
                self._next_attempt = loop.time() + self._backoff(self._failures)
                raise NotBound(f"cannot bind: {exc}", self._next_attempt - loop.time()) from exc
            self._failures = 0
            self.binds += 1
            self._session = session
            return session

    def _backoff(self, failures: int) -> float:
        """Exponential back-off with full jitter between half and all of the step."""
        s = self.settings
        step = min(s.reconnect_max, s.reconnect_min * 2.0 ** max(0, failures - 1))
        return float(step * random.uniform(0.5, 1.0))

    async def run(self, sink: EventSink) -> None:
        """Keep the bind up and deliver what arrives to `sink`, until cancelled."""
        self._sink = sink
        loop = asyncio.get_running_loop()
        try:
            while not self._closed:
                try:
                    session = await self._bound()
                except NotBound as exc:
                    await asyncio.sleep(max(0.01, exc.retry_after or self.settings.reconnect_min))
                    continue
                await session.wait_closed()
                if self._closed:
                    break
                log.warning("smpp %s: link lost (%s); rebinding", self, session.close_reason)
                # A link that was up reconnects after the first back-off step.
                self._next_attempt = loop.time() + self._backoff(1)
        finally:
            if self._sink is sink:
                self._sink = None

    # -- sending --------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            parts = coding.encode_message(message.body, self._next_reference())
        except coding.EncodingError as exc:
            return SendResult(False, error_code="invalid_message", error_detail=str(exc))
        source = message.sender or self.settings.source_addr
        if not source:
            return SendResult(False, error_code="no_sender", error_detail="no source_addr set")
        try:
            session = await self._bound()
        except NotBound as exc:
            return SendResult(
                accepted=False,
                retryable=True,
                error_code="connect_failed",
                error_detail=str(exc),
                retry_after=exc.retry_after,
            )
        source_ton, source_npi, source_addr = address_type(source)
        dest_ton, dest_npi, dest_addr = address_type(message.to)
        ids: list[str] = []  # the message_id of each part accepted so far
        for part in parts:
            body = pdu.ShortMessage(
                source_addr=source_addr,
                destination_addr=dest_addr,
                short_message=part.short_message,
                source_addr_ton=source_ton,
                source_addr_npi=source_npi,
                dest_addr_ton=dest_ton,
                dest_addr_npi=dest_npi,
                esm_class=part.esm_class,
                registered_delivery=1 if self.settings.registered_delivery else 0,
                data_coding=part.data_coding,
            ).encode()
            # The first part is tried once (a retry later resends the whole message); a
            # later part is retried in place: the handset already holds the earlier ones.
            attempts = PART_RETRIES if ids else 1
            result: str | SendResult = SendResult(False, retryable=True, error_code="not_sent")
            delay = 0.0
            for attempt in range(attempts):
                if attempt:
                    await asyncio.sleep(delay)
                    try:  # the link may have dropped: the part may go on a new bind
                        session = await self._bound()
                    except NotBound as exc:
                        result = SendResult(
                            False,
                            retryable=True,
                            error_code="connect_failed",
                            error_detail=str(exc),
                        )
                        delay = min(5.0, exc.retry_after or 1.0)
                        continue
                result = await self._submit(session, body)
                if isinstance(result, str) or not result.retryable:
                    break
                delay = result.retry_after or 1.0
            if isinstance(result, str):
                ids.append(result)
                continue
            if not ids:
                return result
            # The parts accepted so far keep their ids: the dispatcher records them on the
            # `needs_review` message, so that their receipts (what a reviewer needs to
            # settle it) find the message. Part 1's id names the message, as when sent.
            return SendResult(
                accepted=False,
                outcome_unknown=True,
                error_code=result.error_code or "part_failed",
                error_detail=(
                    f"part {part.number} of {part.total} not accepted after part 1 was "
                    f"(message id {ids[0]}): {result.error_detail}"
                ),
                provider_message_id=ids[0],
                # How many parts the message has: fewer are on record, so their receipts
                # never settle it (inbox/message_parts.py).
                segments=len(parts),
                # Always as parts (one row at least, even for an SMSC that answers every
                # part with the same id): a part's receipt never settles the message.
                part_ids=tuple(ids) if len(set(ids)) > 1 else (ids[0],),
            )
        return SendResult(
            accepted=True,
            provider_message_id=ids[0],
            segments=len(parts),
            # (An SMSC answering every part with the same id tracks them as one message.)
            part_ids=tuple(ids) if len(set(ids)) > 1 else (),
        )

    async def _submit(self, session: Session, body: bytes) -> str | SendResult:
        """One submit_sm: its message_id, or the SendResult saying why not."""
        async with self._window:
            await self._bucket.acquire()
            try:
                response = await session.request(pdu.Command.SUBMIT_SM, body)
            except LinkLost as exc:
                if not exc.written:
                    return SendResult(
                        False, retryable=True, error_code="connection_lost", error_detail=str(exc)
                    )
                return SendResult(
                    False, outcome_unknown=True, error_code="connection_lost", error_detail=str(exc)
                )
            except ResponseTimeout as exc:
                return SendResult(
                    False, outcome_unknown=True, error_code="timeout", error_detail=str(exc)
                )
        status = response.command_status
        if response.command_id == pdu.Command.GENERIC_NACK and status == 0:
            status = pdu.Status.ESME_RSYSERR
        if status == pdu.Status.ESME_ROK:
            message_id = pdu.submit_sm_resp_message_id(response.body)
            if message_id:
                return message_id
            return SendResult(
                False,
                outcome_unknown=True,
                error_code="no_message_id",
                error_detail="submit_sm_resp carried no message_id",
            )
        retryable = dlr.is_retryable(status)
        return SendResult(
            accepted=False,
            retryable=retryable,
            error_code=pdu.status_name(status),
            error_detail=dlr.status_reason(status),
            retry_after=1.0 if status == pdu.Status.ESME_RTHROTTLED else None,
        )

    def _next_reference(self) -> int:
        self._reference = (self._reference + 1) % 256
        return self._reference

    # -- receiving ------------------------------------------------------------------

    async def _on_deliver(self, message: pdu.Pdu) -> int:
        """A deliver_sm arrived: its deliver_sm_resp status once it is stored (or not)."""
        sink = self._sink
        if sink is None:
            # Nobody is listening on this bind (a send-only process): let the SMSC retry
            # or deliver it on another bind rather than dropping it.
            return pdu.Status.ESME_RX_T_APPN
        try:
            sm = pdu.ShortMessage.decode(message.body)
        except pdu.PduError:
            log.warning("smpp %s: malformed deliver_sm refused", self)
            return pdu.Status.ESME_RX_P_APPN
        concat = None if is_receipt(sm) else concatenation(sm)
        if concat is None:
            return await self._store(sink, [message])
        key = (sm.source_addr, sm.destination_addr, concat.reference, concat.total)
        assembly = self._assemblies.get(key)
        if assembly is None:
            assembly = _Assembly(total=concat.total)
            assembly.done = asyncio.get_running_loop().create_future()
            assembly.timer = asyncio.get_running_loop().call_later(
                self.settings.mo_reassembly_timeout, self._complete, key
            )
            self._assemblies[key] = assembly
        assert assembly.done is not None
        assembly.parts.setdefault(concat.number, message)
        done = assembly.done
        if len(assembly.parts) >= assembly.total:
            self._complete(key)
        return await asyncio.shield(done)

    def _complete(self, key: tuple[str, str, int, int]) -> None:
        assembly = self._assemblies.pop(key, None)
        if assembly is None or assembly.done is None:
            return
        if assembly.timer is not None:
            assembly.timer.cancel()
        sink = self._sink
        parts = [assembly.parts[n] for n in sorted(assembly.parts)]
        done = assembly.done

        async def store() -> None:
            status = (
                await self._store(sink, parts) if sink is not None else pdu.Status.ESME_RX_T_APPN
            )
            if not done.done():
                done.set_result(status)

        def settle(_: asyncio.Future[None]) -> None:
            if not done.done():  # the store task failed or was cancelled: offer it again
                done.set_result(pdu.Status.ESME_RX_T_APPN)

        self._pending_stores.add(task := asyncio.ensure_future(store()))
        task.add_done_callback(self._pending_stores.discard)
        task.add_done_callback(settle)

    async def _store(self, sink: EventSink, messages: list[pdu.Pdu]) -> int:
        raw = b"".join(m.encode() for m in messages)
        items = parse_pdus(raw, self.settings, datetime.now(UTC))
        try:
            await sink(items, raw)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("smpp %s: storing a deliver_sm failed; the SMSC will retry", self)
            return pdu.Status.ESME_RX_T_APPN
        return pdu.Status.ESME_ROK

    # -- webhooks (none: receipts arrive on the bind) and stored receipts -------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        raise WebhookVerificationError("smpp receives over its bind, never by webhook")

    def parse_webhook(self, request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]:
        """Re-parse a stored receipt: the deliver_sm PDUs as received on the bind."""
        received_at = _received_at(request.header(RECEIVED_AT_HEADER))
        try:
            return parse_pdus(request.body, self.settings, received_at)
        except Exception:  # a stored receipt must never stop a replay
            log.exception("smpp %s: stored receipt does not parse", self)
            return []

    def receipt_key(self, raw: bytes) -> bytes:
        """What deduplicates a stored receipt: the PDUs without their sequence numbers
        (an SMSC offering a deliver_sm again numbers it anew)."""
        try:
            return b"".join(
                pdu.Pdu(p.command_id, p.command_status, 0, p.body).encode()
                for p in pdu.split_stream(raw)
            )
        except pdu.PduError:
            return raw

    async def aclose(self) -> None:
        self._closed = True
        for key in list(self._assemblies):
            assembly = self._assemblies.pop(key)
            if assembly.timer is not None:
                assembly.timer.cancel()
            if assembly.done is not None and not assembly.done.done():
                assembly.done.set_result(pdu.Status.ESME_RX_T_APPN)
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.unbind()


# -- parsing received PDUs ------------------------------------------------------------


def is_receipt(sm: pdu.ShortMessage) -> bool:
    kind = sm.esm_class & pdu.ESM_TYPE_MASK
    return kind in (pdu.ESM_SMSC_RECEIPT, pdu.ESM_SME_ACK, pdu.ESM_INTERMEDIATE)


def concatenation(sm: pdu.ShortMessage) -> coding.Concat | None:
    if sm.esm_class & pdu.ESM_UDHI:
        concat, _ = coding.split_udh(sm.payload)
        if concat is not None and concat.total > 1:
            return concat
    concat = coding.sar_concat(sm.tlvs)
    return concat if concat is not None and concat.total > 1 else None


def address_type(address: str) -> tuple[int, int, str]:
    """(TON, NPI, digits) for a sender or destination: E.164 -> international/ISDN,
    alphanumeric -> alphanumeric/unknown, other digits (short codes) -> unknown/ISDN."""
    address = address.strip()
    if address.startswith("+") and address[1:].isdigit():
        return 1, 1, address[1:]
    if address.isdigit():
        return 0, 1, address
    return 5, 0, address


def _phone(address: str, ton: int) -> str:
    if ton == 1 and address.isdigit():
        return "+" + address
    return address


def _received_at(value: str | None) -> datetime:
    if value:
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def parse_pdus(
    raw: bytes, settings: SmppSettings, received_at: datetime
) -> list[DeliveryEvent | InboundMessage]:
    """Receipts and MO messages in stored or just-received deliver_sm PDUs. The parts of
    one concatenated MO message become one InboundMessage."""
    try:
        pdus = pdu.split_stream(raw)
    except pdu.PduError:
        return []
    items: list[DeliveryEvent | InboundMessage] = []
    parts: dict[tuple[str, str, int, int], list[tuple[int, pdu.ShortMessage, pdu.Pdu]]] = {}
    for message in pdus:
        if message.command_id != pdu.Command.DELIVER_SM:
            continue
        try:
            sm = pdu.ShortMessage.decode(message.body)
        except pdu.PduError:
            continue
        if is_receipt(sm):
            event = _receipt_event(sm, settings, received_at)
            if event is not None:
                items.append(event)
            continue
        concat = concatenation(sm)
        if concat is None:
            items.append(_inbound([(1, sm, message)], 1, received_at))
            continue
        key = (sm.source_addr, sm.destination_addr, concat.reference, concat.total)
        parts.setdefault(key, []).append((concat.number, sm, message))
    for (_, _, _, total), group in parts.items():
        items.append(_inbound(group, total, received_at))
    return items


def _receipt_event(
    sm: pdu.ShortMessage, settings: SmppSettings, received_at: datetime
) -> DeliveryEvent | None:
    text = coding.decode_text(sm.payload, sm.data_coding)
    receipt = dlr.parse_receipt(text, sm.tlvs, settings.receipt_tz)
    if receipt is None:
        return None
    message_id = dlr.convert_id(receipt.message_id, settings.receipt_id_conversion)
    done = receipt.fields.get("done date", "")
    event_type = receipt.event_type
    if sm.esm_class & pdu.ESM_TYPE_MASK == pdu.ESM_INTERMEDIATE and event_type not in (
        EventType.SENT,
        EventType.UNKNOWN,
    ):
        event_type = EventType.SENT  # an intermediate notification is never final
    return DeliveryEvent(
        event_type=event_type,
        provider_message_id=message_id,
        provider_event_id=f"{message_id}:{receipt.stat}:{done}:{receipt.error or ''}",
        occurred_at=receipt.done_at or received_at,
        provider_status=receipt.stat,
        reason=receipt.reason,
        error_code=receipt.error if receipt.error and receipt.error.strip("0:") else None,
        raw={
            "receipt": receipt.fields,
            "esm_class": sm.esm_class,
            "source_addr": sm.source_addr,
            "destination_addr": sm.destination_addr,
            "tlvs": {f"0x{tag:04x}": value.hex() for tag, value in sm.tlvs.items()},
        },
    )


def _inbound(
    group: Iterable[tuple[int, pdu.ShortMessage, pdu.Pdu]], total: int, received_at: datetime
) -> InboundMessage:
    ordered = sorted(group, key=lambda g: g[0])
    texts: dict[int, str] = {}
    for number, sm, _ in ordered:
        payload = sm.payload
        if sm.esm_class & pdu.ESM_UDHI:
            _, payload = coding.split_udh(payload)
        texts.setdefault(number, coding.decode_text(payload, sm.data_coding))
    numbers = range(1, total + 1) if total > 1 else sorted(texts)
    body = "".join(texts.get(n, "[…]") for n in numbers)
    first = ordered[0][1]
    # No message id comes with an MO deliver_sm: a digest of the parts' PDUs (sequence
    # numbers left out) is stable across the SMSC offering it again and across replays.
    digest = hashlib.sha256()
    for _, _, message in ordered:
        digest.update(pdu.Pdu(message.command_id, 0, 0, message.body).encode())
    missing = [n for n in numbers if n not in texts]
    return InboundMessage(
        channel=Channel.SMS,
        sender=_phone(first.source_addr, first.source_addr_ton),
        recipient=_phone(first.destination_addr, first.dest_addr_ton),
        body=body,
        provider_message_id="mo-" + digest.hexdigest()[:40],
        occurred_at=received_at,
        raw={
            "source_addr": first.source_addr,
            "destination_addr": first.destination_addr,
            "data_coding": first.data_coding,
            "parts": total,
            "missing_parts": missing,
        },
    )


def create(context: ProviderContext) -> SmppProvider:
    if context.channel != Channel.SMS:
        raise ProviderConfigError(f"channel: smpp serves sms, not {context.channel}")
    return SmppProvider(parse_settings(context), context.account_id)


__all__ = ["SmppProvider", "create", "parse_pdus"]

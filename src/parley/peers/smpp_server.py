"""A local SMSC for tests: the `smpp34` library's SMPP 3.4 server (an implementation
independent of our client's codec), plus the glue a test needs around it.

- Binds are accepted (`binds` lists the system_ids); each submit_sm is recorded
  (`submissions`) and answered with a fresh message_id, or as scripted:
  `script(Status..., "drop", "accept")` answers the next submits with that
  command_status, by dropping every link without answering, or normally.
- `hold()` leaves submit_sm unanswered (`outstanding` counts them, `max_outstanding`
  remembers the peak: what a client's window allows) until `release()`.
- `deliver_receipt(message_id, stat)` and `send_mo(...)` push deliver_sm to a bound
  ESME and return the command_status of its deliver_sm_resp.
- Clients reach the server through a small TCP relay that counts the PDUs they send by
  command (`seen["enquire_link"]`) and can cut every link at once (`drop_links()`), the
  way a network failure would.

    async with SmppServerPeer() as peer:          # peer.port: where ESMEs connect
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import smpp34

log = logging.getLogger(__name__)

TLV_RECEIPTED_MESSAGE_ID: int = getattr(smpp34, "TLV_RECEIPTED_MESSAGE_ID", 0x001E)
TLV_MESSAGE_STATE: int = getattr(smpp34, "TLV_MESSAGE_STATE", 0x0427)

_COMMANDS = {
    0x00000009: "bind_transceiver",
    0x00000004: "submit_sm",
    0x80000005: "deliver_sm_resp",
    0x00000006: "unbind",
    0x00000015: "enquire_link",
    0x80000015: "enquire_link_resp",
    0x80000000: "generic_nack",
}
# Characters whose GSM 03.38 code equals their ASCII code: what send_mo accepts as GSM-7
# (the peer does not share our client's alphabet table).
_GSM_ASCII = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !\"#%&'()*+,-./:;<=>?"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Submission:
    session_id: str
    source_addr: str
    source_addr_ton: int
    destination_addr: str
    dest_addr_ton: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    message_id: str | None = None
    status: int | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def udh(self) -> bytes:
        if self.esm_class & 0x40 and self.short_message:
            return self.short_message[: 1 + self.short_message[0]]
        return b""

    @property
    def payload(self) -> bytes:
        return self.short_message[len(self.udh) :]

    @property
    def text(self) -> str:
        if self.data_coding == 8:
            return self.payload.decode("utf-16-be")
        return self.payload.decode("latin-1")  # GSM septets: ASCII-range text reads as is


class SmppServerPeer:
    def __init__(self, *, system_id: str = "PEERSMSC") -> None:
        self.system_id = system_id
        self.port = _free_port()
        self._inner_port = _free_port()
        self._server: Any = None
        self._relay: asyncio.Server | None = None
        self._events: asyncio.Task[None] | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._relay_tasks: set[asyncio.Task[None]] = set()
        self.sessions: dict[str, Any] = {}  # session_id -> smpp34.Esme
        self.binds: list[str] = []  # system_id of every bind, in order
        self.submissions: list[Submission] = []
        self.seen: Counter[str] = Counter()  # PDUs sent by clients, by command
        self._script: list[int | str] = []
        self._held: list[tuple[Any, Submission]] = []
        self._holding = False
        self.max_outstanding = 0
        self._ids = itertools.count(1)
        self._bound = asyncio.Condition()
        self._submitted = asyncio.Condition()

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> SmppServerPeer:
        self._server = smpp34.Server(
            host="127.0.0.1", port=self._inner_port, system_id=self.system_id
        )
        await self._server.start()
        self._events = asyncio.create_task(self._event_loop(), name="smpp-peer-events")
        self._relay = await asyncio.start_server(self._relay_client, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._relay is not None:
            self._relay.close()
        self.drop_links()
        for task in list(self._relay_tasks):
            task.cancel()
        if self._events is not None:
            self._events.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._events
        with contextlib.suppress(Exception):
            await self._server.stop()

    # -- scripting ------------------------------------------------------------------

    def script(self, *actions: int | str) -> None:
        """Answer the next submit_sm with these: a command_status, "drop" or "accept"."""
        self._script.extend(actions)

    def hold(self) -> None:
        self._holding = True

    def release(self) -> None:
        self._holding = False
        held, self._held = self._held, []
        for event, submission in held:
            self._accept(event, submission)

    def answer_held(self) -> int:
        """Answer the submit_sm held so far and keep holding the next ones."""
        held, self._held = self._held, []
        for event, submission in held:
            self._accept(event, submission)
        return len(held)

    @property
    def outstanding(self) -> int:
        return len(self._held)

    def drop_links(self) -> None:
        """Cut every client connection at once, without unbind."""
        for writer in list(self._links):
            transport = writer.transport
            transport.abort()
        self._links.clear()

    # -- waiting --------------------------------------------------------------------

    async def wait_bound(self, count: int = 1) -> None:
        async with asyncio.timeout(10), self._bound:
            await self._bound.wait_for(lambda: len(self.sessions) >= count)

    async def wait_submissions(self, count: int) -> list[Submission]:
        async with asyncio.timeout(10), self._submitted:
            await self._submitted.wait_for(lambda: len(self.submissions) >= count)
        return self.submissions

    # -- pushing deliver_sm ---------------------------------------------------------

    def _esme(self, session_id: str | None) -> Any:
        if session_id is not None and session_id in self.sessions:
            return self.sessions[session_id]
        if not self.sessions:
            raise RuntimeError("no ESME is bound")
        return next(reversed(self.sessions.values()))

    async def deliver_receipt(
        self,
        message_id: str,
        stat: str = "DELIVRD",
        *,
        err: str = "000",
        done: str | None = None,
        with_tlvs: bool = False,
        session_id: str | None = None,
        source_addr: str = "15558675310",
        destination_addr: str = "15005550006",
    ) -> int:
        """A delivery receipt for `message_id`; the ESME's deliver_sm_resp status."""
        done = done or datetime.now(UTC).strftime("%y%m%d%H%M")
        text = (
            f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:{done} done date:{done} stat:{stat} err:{err} text:"
        ).encode()
        tlvs = []
        if with_tlvs:
            states = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "REJECTD": 8}
            tlvs = [
                smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
                smpp34.Tlv(TLV_MESSAGE_STATE, bytes([states.get(stat, 7)])),
            ]
        response = await self._esme(session_id).deliver_sm(
            destination_addr,
            text,
            source_addr=source_addr,
            source_addr_ton=1,
            source_addr_npi=1,
            dest_addr_ton=1,
            dest_addr_npi=1,
            esm_class=0x04,
            tlvs=tlvs,
        )
        return int(response.command_status)

    async def send_mo(
        self,
        text: str,
        *,
        source_addr: str = "15558675310",
        destination_addr: str = "15005550006",
        ucs2: bool = False,
        parts: int = 1,
        reference: int = 7,
        order: list[int] | None = None,
        session_id: str | None = None,
    ) -> list[int]:
        """A mobile-originated message, split into `parts` deliver_sm with a concatenation
        UDH when more than one; the deliver_sm_resp status of each part."""
        if ucs2:
            data = text.encode("utf-16-be")
            unit = 2
        else:
            if not set(text) <= _GSM_ASCII:
                raise ValueError("the peer sends GSM-7 only for ASCII-compatible characters")
            data = text.encode("ascii")
            unit = 1
        units = len(data) // unit
        per = -(-units // parts)
        chunks = [data[i * per * unit : (i + 1) * per * unit] for i in range(parts)]
        esme = self._esme(session_id)
        calls = []
        for number in order or list(range(1, parts + 1)):
            chunk = chunks[number - 1]
            esm_class = 0
            if parts > 1:
                chunk = bytes([5, 0, 3, reference, parts, number]) + chunk
                esm_class = 0x40
            calls.append(
                esme.deliver_sm(
                    destination_addr,
                    chunk,
                    source_addr=source_addr,
                    source_addr_ton=1,
                    source_addr_npi=1,
                    dest_addr_ton=1,
                    dest_addr_npi=1,
                    esm_class=esm_class,
                    data_coding=8 if ucs2 else 0,
                )
            )
        responses = await asyncio.gather(*calls)
        return [int(r.command_status) for r in responses]

    # -- the server's events --------------------------------------------------------

    async def _event_loop(self) -> None:
        while True:
            event = await self._server.next()
            if isinstance(event, smpp34.Esme):
                async with self._bound:
                    self.sessions[event.session_id] = event
                    self.binds.append(event.system_id)
                    self._bound.notify_all()
            elif isinstance(event, smpp34.Unbound):
                self.sessions.pop(event.session_id, None)
            elif isinstance(event, smpp34.SubmitSmEvent):
                await self._on_submit(event)

    async def _on_submit(self, event: Any) -> None:
        submission = Submission(
            session_id=event.session_id,
            source_addr=event.source_addr,
            source_addr_ton=event.source_addr_ton,
            destination_addr=event.destination_addr,
            dest_addr_ton=event.dest_addr_ton,
            esm_class=event.esm_class,
            data_coding=event.data_coding,
            registered_delivery=event.registered_delivery,
            short_message=bytes(event.short_message),
        )
        async with self._submitted:
            self.submissions.append(submission)
            self._submitted.notify_all()
        action = self._script.pop(0) if self._script else "accept"
        if action == "drop":
            self._held.append((event, submission))  # never answered
            self.drop_links()
        elif isinstance(action, int):
            submission.status = action
            event.reject(action)
        elif self._holding:
            self._held.append((event, submission))
            self.max_outstanding = max(self.max_outstanding, len(self._held))
        else:
            self._accept(event, submission)

    def _accept(self, event: Any, submission: Submission) -> None:
        submission.message_id = f"{next(self._ids):08x}"
        submission.status = 0
        event.accept(message_id=submission.message_id)

    # -- the relay ------------------------------------------------------------------

    async def _relay_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._inner_port)
        except OSError:
            writer.transport.abort()
            return
        self._links.add(writer)
        self._links.add(up_writer)
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, count=True)),
            asyncio.create_task(self._pipe(up_reader, writer, count=False)),
        ]
        for task in tasks:
            self._relay_tasks.add(task)
            task.add_done_callback(self._relay_tasks.discard)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            self._links.discard(w)
            w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, OSError):
            while True:
                header = await reader.readexactly(16)
                length, command_id = struct.unpack_from(">II", header)
                body = await reader.readexactly(max(0, length - 16))
                if count:
                    self.seen[_COMMANDS.get(command_id, f"0x{command_id:08x}")] += 1
                writer.write(header + body)
                await writer.drain()

"""One SMPP bind: a TCP connection bound as a transceiver, with its reader and keep-alive.

- Requests get a sequence number (1 .. 0x7FFFFFFF, wrapping) and wait for the response
  with that number; a generic_nack carrying it answers it too.
- Everything the SMSC sends us is answered here: enquire_link -> enquire_link_resp,
  unbind -> unbind_resp (then the link closes), deliver_sm -> deliver_sm_resp with the
  status `on_deliver` returns (so a receipt is acknowledged only once it is stored),
  an unknown command -> generic_nack ESME_RINVCMDID.
- enquire_link is sent after `enquire_link_interval` seconds without traffic from the
  SMSC; no answer within `response_timeout` and the link is declared dead.
- When the link ends, every waiting request fails with `LinkLost`, telling whether its
  PDU had been handed to the connection (then the SMSC may have it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable

from parley.channels.smpp import pdu
from parley.channels.smpp.config import SmppSettings

log = logging.getLogger(__name__)

DeliverHandler = Callable[[pdu.Pdu], Awaitable[int]]


class LinkLost(ConnectionError):
    def __init__(self, message: str, *, written: bool) -> None:
        super().__init__(message)
        self.written = written


class ResponseTimeout(TimeoutError):
    pass


class BindFailed(ConnectionError):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind_transceiver refused: {pdu.status_name(status)}")
        self.status = status


class Session:
    def __init__(self, settings: SmppSettings, on_deliver: DeliverHandler) -> None:
        self.settings = settings
        self._on_deliver = on_deliver
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[pdu.Pdu]] = {}
        self._sequence = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._bound = False
        self._last_heard = 0.0
        self.close_reason: str | None = None
        self.smsc_system_id: str | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and bind as a transceiver (both within `connect_timeout`)."""
        s = self.settings
        try:
            async with asyncio.timeout(s.connect_timeout):
                self._reader, self._writer = await asyncio.open_connection(s.host, s.port)
                self._spawn(self._read_loop(), "smpp-reader")
                body = pdu.bind_transceiver_body(s.system_id, s.password, s.system_type)
                response = await self._request(pdu.Command.BIND_TRANSCEIVER, body, timeout=None)
        except BaseException:
            await self.close("bind did not complete")
            raise
        if response.command_status != pdu.Status.ESME_ROK:
            await self.close("bind refused")
            raise BindFailed(response.command_status)
        self.smsc_system_id = pdu.bind_resp_system_id(response.body)
        self._bound = True
        self._spawn(self._keep_alive(), "smpp-keepalive")
        log.info("smpp bound to %s (SMSC %s)", s.address, self.smsc_system_id)

    @property
    def alive(self) -> bool:
        return self._bound and not self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def unbind(self) -> None:
        """Leave politely: unbind, wait briefly for unbind_resp, close."""
        if self.alive:
            with contextlib.suppress(Exception):
                await self._request(
                    pdu.Command.UNBIND, b"", timeout=min(2.0, self.settings.response_timeout)
                )
        await self.close("unbound")

    async def close(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._bound = False
        self.close_reason = reason
        for sequence, future in list(self._pending.items()):
            if not future.done():
                future.set_exception(LinkLost(f"link closed: {reason}", written=True))
            self._pending.pop(sequence, None)
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 1)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        log.info("smpp link to %s closed: %s", self.settings.address, reason)

    # -- requests -------------------------------------------------------------------

    async def request(self, command_id: int, body: bytes) -> pdu.Pdu:
        """Send a request PDU on the bound link and return its response."""
        if not self.alive:
            raise LinkLost("not bound", written=False)
        return await self._request(command_id, body, timeout=self.settings.response_timeout)

    async def _request(self, command_id: int, body: bytes, *, timeout: float | None) -> pdu.Pdu:  # noqa: ASYNC109 - one deadline per request, set by the caller
        sequence = self._next_sequence()
        future: asyncio.Future[pdu.Pdu] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = future
        try:
            written = await self._write(pdu.Pdu(command_id, 0, sequence, body))
            if not written:
                raise LinkLost("link closed before the request was sent", written=False)
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                raise ResponseTimeout(
                    f"no response to {pdu.Command(command_id).name.lower()} in {timeout}s"
                ) from None
        finally:
            self._pending.pop(sequence, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: close() may have failed it unawaited

    def _next_sequence(self) -> int:
        sequence = next(self._sequence)
        if sequence > pdu.MAX_SEQUENCE:
            self._sequence = itertools.count(2)
            sequence = 1
        return sequence

    async def _write(self, message: pdu.Pdu) -> bool:
        """Hand a PDU to the connection; False when the link is already gone."""
        writer = self._writer
        if writer is None or self._closed.is_set() or writer.is_closing():
            return False
        async with self._write_lock:
            if self._closed.is_set() or writer.is_closing():
                return False  # closed while this write waited its turn
            writer.write(message.encode())
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                # The bytes may have left before the error: the caller treats the
                # request as possibly received.
                self._spawn(self.close("write failed"), "smpp-close")
        return True

    # -- the reader -----------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reason = "connection closed by the SMSC"
        try:
            while True:
                header = await self._reader.readexactly(pdu.HEADER_SIZE)
                length = int.from_bytes(header[:4], "big")
                if length < pdu.HEADER_SIZE or length > pdu.MAX_PDU_SIZE:
                    reason = f"malformed PDU (command_length {length})"
                    break
                body = await self._reader.readexactly(length - pdu.HEADER_SIZE)
                self._last_heard = asyncio.get_running_loop().time()
                await self._dispatch(pdu.decode(header + body))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("smpp reader failed")
            reason = "reader failed"
        self._spawn(self.close(reason), "smpp-close")

    async def _dispatch(self, message: pdu.Pdu) -> None:
        if message.is_response:
            future = self._pending.get(message.sequence_number)
            if future is not None and not future.done():
                future.set_result(message)
            elif message.command_id != pdu.Command.GENERIC_NACK:
                log.debug("smpp: response %s to no request", message.name)
            return
        command = message.command_id
        if command == pdu.Command.ENQUIRE_LINK:
            await self._respond(message, pdu.Command.ENQUIRE_LINK_RESP)
        elif command == pdu.Command.DELIVER_SM:
            self._spawn(self._deliver(message), "smpp-deliver")
        elif command == pdu.Command.UNBIND:
            await self._respond(message, pdu.Command.UNBIND_RESP)
            self._spawn(self.close("unbound by the SMSC"), "smpp-close")
        elif command == pdu.Command.DATA_SM:
            # Not used by this provider: refuse so the SMSC falls back to deliver_sm.
            await self._respond(message, pdu.Command.DATA_SM_RESP, pdu.Status.ESME_RINVCMDID)
        else:
            await self._respond(message, pdu.Command.GENERIC_NACK, pdu.Status.ESME_RINVCMDID)

    async def _deliver(self, message: pdu.Pdu) -> None:
        try:
            status = await self._on_deliver(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("smpp: handling a deliver_sm failed")
            status = pdu.Status.ESME_RX_T_APPN  # the SMSC will offer it again
        body = pdu.deliver_sm_resp_body()
        await self._respond(message, pdu.Command.DELIVER_SM_RESP, status, body)

    async def _respond(
        self, request: pdu.Pdu, command_id: int, status: int = 0, body: bytes = b""
    ) -> None:
        await self._write(pdu.Pdu(command_id, status, request.sequence_number, body))

    # -- keep-alive -----------------------------------------------------------------

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.enquire_link_interval
        self._last_heard = loop.time()
        while not self._closed.is_set():
            idle = loop.time() - self._last_heard
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            try:
                await self._request(
                    pdu.Command.ENQUIRE_LINK, b"", timeout=self.settings.response_timeout
                )
            except (ResponseTimeout, LinkLost):
                self._spawn(self.close("enquire_link unanswered"), "smpp-close")
                return
            self._last_heard = loop.time()

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

"""A local SMTP server that records what it receives and fails on purpose.

Used by tests, benchmarks and the demo in place of a real mail relay. Two server
implementations share one ledger:

- `"aiosmtpd"` (default): the aiosmtpd server, a complete and strict SMTP stack.
- `"minimal"`: a small asyncio protocol that speaks just enough ESMTP (EHLO, MAIL, RCPT,
  DATA, RSET, NOOP, QUIT, PIPELINING) and is roughly a third cheaper per message, for
  benchmarks where the sink must not be the bottleneck.

Failures are deterministic. Rates (`tempfail_rate`, `permfail_rate`) are decided by a
hash of (seed, Message-ID[, attempt]): a message chosen for a permanent failure always
fails, while a temporary failure is drawn afresh per attempt, so a retried message
eventually gets through -- and a re-run with the same seed fails the same messages.
`fail_next()` scripts the next replies exactly (451, 550, or a dropped connection).

The sink counts accepted deliveries per Message-ID so tests can assert "at most once",
and can append every accepted Message-ID to a file (flushed per line, not fsynced) that
a crash test in another process reads.

Run it in the current event loop (`async with SmtpSink() as sink`) or on its own loop
in a background thread (`with SmtpSink() as sink`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import warnings
import weakref
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from parley.peers.background import Peer

log = logging.getLogger(__name__)

TEMPFAIL = "451 4.3.0 Temporary failure, please try again later"
PERMFAIL = "550 5.7.1 Message rejected by policy"
# Close the connection when the client sends MAIL FROM: nothing can have been delivered.
DROP_BEFORE_DATA = "drop-before-data"
# Accept the message, then close the connection without replying: the client cannot
# know the message was delivered (the case that makes blind retries send twice).
DROP_AFTER_DATA = "drop-after-data"
# Accept the message and never reply (the client times out): outcome unknown again.
STALL_AFTER_DATA = "stall-after-data"
_SILENT_ACTIONS = (DROP_BEFORE_DATA, DROP_AFTER_DATA, STALL_AFTER_DATA)

Implementation = Literal["aiosmtpd", "minimal"]

_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(?:\r\n[ \t]+)?(<[^>\r\n]*>)")


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    message_id: str | None
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes | None  # the message as received (None when keep_data=False)
    received_at: float  # time.time()


def extract_message_id(data: bytes) -> str | None:
    head_end = data.find(b"\r\n\r\n")
    match = _MESSAGE_ID.search(data, 0, head_end if head_end >= 0 else len(data))
    return match.group(1).decode("ascii", "replace") if match else None


def _unit(seed: int, *parts: object) -> float:
    digest = hashlib.blake2b(
        ":".join(map(str, (seed, *parts))).encode("utf-8", "surrogateescape"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2**64


class SinkLedger:
    """What the sink received and the failure policy; shared by both implementations."""

    def __init__(
        self,
        *,
        tempfail_rate: float = 0.0,
        permfail_rate: float = 0.0,
        seed: int = 0,
        keep_data: bool = True,
        record_path: str | Path | None = None,
        reject_recipients: Iterable[str] = (),
    ) -> None:
        if not (0.0 <= tempfail_rate <= 1.0 and 0.0 <= permfail_rate <= 1.0):
            raise ValueError("failure rates must be between 0 and 1")
        self.tempfail_rate = tempfail_rate
        self.permfail_rate = permfail_rate
        self.seed = seed
        self.keep_data = keep_data
        self.reject_recipients = {a.lower() for a in reject_recipients}
        self.messages: list[ReceivedMessage] = []
        self.accepted: Counter[str] = Counter()  # Message-ID -> deliveries accepted
        self.attempts: Counter[str] = Counter()  # Message-ID -> DATA transactions seen
        self.replies: Counter[str] = Counter()  # reply code (or drop action) -> count
        self._script: deque[str] = deque()
        self._record_path = Path(record_path) if record_path else None
        self._record: IO[str] | None = None

    # -- scripting ---------------------------------------------------------------

    def fail_next(self, action: str, times: int = 1) -> None:
        """Answer the next `times` transactions with `action`: a reply line such as
        TEMPFAIL/PERMFAIL (or any "4xx ..."/"5xx ..."), DROP_BEFORE_DATA, DROP_AFTER_DATA
        or STALL_AFTER_DATA.
        """
        if action not in _SILENT_ACTIONS and not re.match(r"[2-5]\d\d[ -]", action):
            raise ValueError(f"not an SMTP reply or drop action: {action!r}")
        self._script.extend([action] * times)

    def take_drop_before_data(self) -> bool:
        if self._script and self._script[0] == DROP_BEFORE_DATA:
            self._script.popleft()
            self.replies[DROP_BEFORE_DATA] += 1
            return True
        return False

    # -- decisions ---------------------------------------------------------------

    def on_message(self, mail_from: str, rcpt_tos: Iterable[str], data: bytes) -> str:
        """Record a complete DATA transaction; returns the reply line, DROP_AFTER_DATA
        or STALL_AFTER_DATA."""
        message_id = extract_message_id(data)
        key = message_id or ""
        attempt = self.attempts[key]
        self.attempts[key] += 1
        action = self._script.popleft() if self._script else None
        if action is None:
            if self.permfail_rate and _unit(self.seed, "perm", key) < self.permfail_rate:
                action = PERMFAIL
            elif self.tempfail_rate and _unit(self.seed, "temp", key, attempt) < self.tempfail_rate:
                action = TEMPFAIL
        if action is None or action in _SILENT_ACTIONS or action.startswith("2"):
            self._accept(message_id, mail_from, tuple(rcpt_tos), data)
        if action is None:
            self.replies["250"] += 1
            return "250 2.0.0 OK queued as " + (message_id or "-")
        self.replies[action if action in _SILENT_ACTIONS else action[:3]] += 1
        return action

    def recipient_reply(self, address: str) -> str | None:
        """The refusal for RCPT TO `address`, or None to accept it."""
        if address.lower() in self.reject_recipients:
            self.replies["rcpt-550"] += 1
            return "550 5.1.1 No such user"
        return None

    def _accept(
        self, message_id: str | None, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes
    ) -> None:
        self.messages.append(
            ReceivedMessage(
                message_id, mail_from, rcpt_tos, data if self.keep_data else None, time.time()
            )
        )
        if message_id is not None:
            self.accepted[message_id] += 1
            if self._record_path is not None:
                if self._record is None:
                    self._record = self._record_path.open("a", buffering=1, encoding="utf-8")
                self._record.write(message_id + "\n")  # line-buffered: visible to readers

    # -- queries -----------------------------------------------------------------

    def accepted_count(self, message_id: str) -> int:
        return self.accepted[message_id]

    def duplicates(self) -> dict[str, int]:
        """Message-IDs accepted more than once (should be empty: at most once)."""
        return {mid: n for mid, n in self.accepted.items() if n > 1}

    def by_message_id(self, message_id: str) -> list[ReceivedMessage]:
        return [m for m in self.messages if m.message_id == message_id]

    def close(self) -> None:
        if self._record is not None:
            self._record.close()
            self._record = None


def read_recorded_ids(path: str | Path) -> Counter[str]:
    """Message-IDs a sink appended to `record_path`, with how often each was accepted."""
    file = Path(path)
    if not file.exists():
        return Counter()
    return Counter(line for line in file.read_text(encoding="utf-8").splitlines() if line)


# ---------------------------------------------------------------------------------------
# aiosmtpd implementation


class _AiosmtpdHandler:
    def __init__(self, ledger: SinkLedger) -> None:
        self.ledger = ledger

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.ledger.take_drop_before_data():
            server.transport.abort()
            await asyncio.Event().wait()  # cancelled by aiosmtpd's connection_lost
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.ledger.recipient_reply(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self.ledger.on_message(
            envelope.mail_from, envelope.rcpt_tos, bytes(envelope.original_content)
        )
        if reply == DROP_AFTER_DATA:
            server.transport.abort()
            await asyncio.Event().wait()  # cancelled by aiosmtpd's connection_lost
        if reply == STALL_AFTER_DATA:
            await asyncio.Event().wait()  # until the client gives up and disconnects
        return reply


class _Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.username = username.encode()
        self.password = password.encode()

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.username
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, handled=False)


# ---------------------------------------------------------------------------------------
# minimal implementation


class _MinimalSmtpProtocol(asyncio.Protocol):
    """Just enough ESMTP for a client submitting mail; pipelining-safe."""

    def __init__(self, ledger: SinkLedger, hostname: str) -> None:
        self.ledger = ledger
        self.hostname = hostname
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.in_data = False
        self.mail_from: str | None = None
        self.rcpt_tos: list[str] = []
        self.stalled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(f"220 {self.hostname} ESMTP parley-sink\r\n".encode())

    def data_received(self, data: bytes) -> None:
        if self.stalled:
            return
        self.buffer += data
        out: list[bytes] = []
        while self.transport is not None:
            if self.in_data:
                # The terminator is CRLF "." CRLF; an empty message is just "." CRLF.
                if self.buffer.startswith(b".\r\n"):
                    end, content = 3, b""
                else:
                    index = self.buffer.find(b"\r\n.\r\n")
                    if index < 0:
                        break
                    end, content = index + 5, bytes(self.buffer[: index + 2])
                del self.buffer[:end]
                self.in_data = False
                content = re.sub(rb"(?m)^\.\.", b".", content)
                reply = self.ledger.on_message(self.mail_from or "", self.rcpt_tos, content)
                self.mail_from, self.rcpt_tos = None, []
                if reply == DROP_AFTER_DATA:
                    self._flush(out)
                    self.transport.abort()
                    return
                if reply == STALL_AFTER_DATA:
                    self._flush(out)
                    self.stalled = True
                    return
                out.append(reply.encode() + b"\r\n")
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                if len(self.buffer) > 4096:
                    out.append(b"500 5.5.2 Line too long\r\n")
                    self.buffer.clear()
                break
            line = bytes(self.buffer[:line_end]).decode("utf-8", "replace")
            del self.buffer[: line_end + 2]
            if not self._command(line, out):
                return
        self._flush(out)

    def _flush(self, out: list[bytes]) -> None:
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            out.clear()

    def _command(self, line: str, out: list[bytes]) -> bool:
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb == "EHLO":
            out.append(
                f"250-{self.hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                "250-SMTPUTF8\r\n250 SIZE 33554432\r\n".encode()
            )
        elif verb == "HELO":
            out.append(f"250 {self.hostname}\r\n".encode())
        elif verb == "MAIL":
            if self.ledger.take_drop_before_data():
                self._flush(out)
                assert self.transport is not None
                self.transport.abort()
                return False
            self.mail_from = _path(arg, "FROM:")
            self.rcpt_tos = []
            out.append(b"250 2.1.0 OK\r\n")
        elif verb == "RCPT":
            if self.mail_from is None:
                out.append(b"503 5.5.1 Need MAIL first\r\n")
            else:
                address = _path(arg, "TO:")
                refusal = self.ledger.recipient_reply(address)
                if refusal is None:
                    self.rcpt_tos.append(address)
                    out.append(b"250 2.1.5 OK\r\n")
                else:
                    out.append(refusal.encode() + b"\r\n")
        elif verb == "DATA":
            if not self.rcpt_tos:
                out.append(b"503 5.5.1 Need RCPT first\r\n")
            else:
                self.in_data = True
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == "RSET":
            self.mail_from, self.rcpt_tos = None, []
            out.append(b"250 2.0.0 OK\r\n")
        elif verb == "NOOP":
            out.append(b"250 2.0.0 OK\r\n")
        elif verb == "QUIT":
            out.append(b"221 2.0.0 Bye\r\n")
            self._flush(out)
            assert self.transport is not None
            self.transport.close()
            return False
        else:
            out.append(b"502 5.5.1 Command not implemented\r\n")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _path(arg: str, prefix: str) -> str:
    arg = arg.strip()
    if arg.upper().startswith(prefix):
        arg = arg[len(prefix) :].strip()
    address = arg.split(" ", 1)[0]
    return address[1:-1] if address.startswith("<") and address.endswith(">") else address


# ---------------------------------------------------------------------------------------
# The server


class SmtpSink(SinkLedger, Peer):
    """An SMTP sink bound to `host:port` (port 0 picks a free one; see `.port`)."""

    thread_name = "smtp-sink"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        implementation: Implementation = "aiosmtpd",
        tempfail_rate: float = 0.0,
        permfail_rate: float = 0.0,
        seed: int = 0,
        keep_data: bool = True,
        record_path: str | Path | None = None,
        reject_recipients: Iterable[str] = (),
        credentials: tuple[str, str] | None = None,
        hostname: str = "sink.parley.test",
    ) -> None:
        super().__init__(
            tempfail_rate=tempfail_rate,
            permfail_rate=permfail_rate,
            seed=seed,
            keep_data=keep_data,
            record_path=record_path,
            reject_recipients=reject_recipients,
        )
        if credentials is not None and implementation != "aiosmtpd":
            raise ValueError("credentials need the aiosmtpd implementation")
        self.credentials = credentials
        self.host = host
        self.port = port
        self.implementation = implementation
        self.hostname = hostname
        self.connections = 0  # client connections accepted so far
        self._server: asyncio.Server | None = None
        self._protocols: weakref.WeakSet[asyncio.BaseProtocol] = weakref.WeakSet()

    def _protocol_factory(self) -> asyncio.BaseProtocol:
        self.connections += 1
        protocol = self._new_protocol()
        self._protocols.add(protocol)
        return protocol

    def disconnect_all(self) -> None:
        """Abort every open client connection (as a server restart or idle timeout would)."""
        for protocol in list(self._protocols):
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abort()

    def _new_protocol(self) -> asyncio.BaseProtocol:
        if self.implementation == "minimal":
            return _MinimalSmtpProtocol(self, self.hostname)
        from aiosmtpd.smtp import SMTP

        options: dict[str, Any] = {}
        if self.credentials is not None:
            # Plain-text AUTH on loopback: fine for a test peer, never for a real server.
            options = {
                "auth_required": True,
                "auth_require_tls": False,
                "authenticator": _Authenticator(*self.credentials),
            }
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return SMTP(
                _AiosmtpdHandler(self),
                hostname=self.hostname,
                enable_SMTPUTF8=True,
                data_size_limit=None,
                loop=asyncio.get_running_loop(),
                **options,
            )

    # -- in the current loop -------------------------------------------------------

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol_factory, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.disconnect_all()
        self.close()

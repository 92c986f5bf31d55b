"""The IMAP listener of an smtp account: reads new mail in one folder and hands it on.

Each new message (by UID) is fetched with BODY.PEEK[] (so its \\Seen flag, which a person
reading the same mailbox relies on, is left alone), parsed, and given to the sink with
its raw bytes. Only after the sink returns is the UID remembered, per folder and
UIDVALIDITY, in the `UidCursor`: a crash in between delivers the message again, which
the receipt store and the inbox absorb (Message-ID is the inbound message's id), while
nothing is ever skipped. A changed UIDVALIDITY (the server renumbered the folder) starts
over from UID 1 for the same reason.

The connection is plaintext, implicit TLS (`imap_tls`), or plaintext upgraded with
STARTTLS before the login (`imap_starttls`; see `_starttls`): with STARTTLS asked for and
not offered the listener never logs in.

New mail is noticed through IDLE when the server offers it (re-issued every few minutes
to keep the connection alive), otherwise by polling every `poll_interval` seconds.
Connection problems reconnect with exponential backoff until the task is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import ssl
from typing import Protocol

import aioimaplib

from parley.channels.base import EventSink
from parley.channels.smtp.config import ImapSettings
from parley.channels.smtp.inbound import UnparseableEmail, parse_email

log = logging.getLogger(__name__)

# RFC 2177 asks clients to re-issue IDLE at least every 29 minutes; NATs drop quieter
# connections much sooner.
IDLE_REFRESH_SECONDS = 300.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_UID = re.compile(rb"UID (\d+)")


class ImapError(Exception):
    """The server refused something we need (login, select): retried after a backoff."""


class UidCursor(Protocol):
    """Where the listener remembers the last UID it handed on (per folder + UIDVALIDITY)."""

    async def load(self, folder: str, uidvalidity: int) -> int: ...

    async def save(self, folder: str, uidvalidity: int, last_uid: int) -> None: ...


class MemoryCursor:
    """A cursor for one process's lifetime: a restart reads the folder again from UID 1
    (nothing is lost; what was handled is deduplicated downstream). Production listeners
    use `parley.inbox.imap_cursor.DatabaseCursor`."""

    def __init__(self) -> None:
        self._positions: dict[tuple[str, int], int] = {}

    async def load(self, folder: str, uidvalidity: int) -> int:
        return self._positions.get((folder, uidvalidity), 0)

    async def save(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        self._positions[(folder, uidvalidity)] = last_uid


class ImapListener:
    def __init__(self, settings: ImapSettings, cursor: UidCursor) -> None:
        self.settings = settings
        self.cursor = cursor
        self.connected = False

    async def run(self, sink: EventSink) -> None:
        backoff = BACKOFF_FIRST
        while True:
            self.connected = False
            try:
                await self._session(sink)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network, protocol, or a failing sink: reconnect
                log.warning(
                    "imap %s@%s:%s: %s; reconnecting in %.0fs",
                    self.settings.username,
                    self.settings.host,
                    self.settings.port,
                    exc,
                    backoff,
                )
            if self.connected:  # it worked for a while: start the backoff over
                backoff = BACKOFF_FIRST
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self, sink: EventSink) -> None:
        s = self.settings
        client = await self._connect()
        try:
            uidvalidity = await self._select(client)
            self.connected = True
            use_idle = s.idle and client.has_capability("IDLE")
            while True:
                await self._deliver_new(client, uidvalidity, sink)
                if use_idle:
                    await self._idle(client)
                else:
                    await asyncio.sleep(s.poll_interval)
        finally:
            await _logout_quietly(client)

    async def _connect(self) -> aioimaplib.IMAP4:
        s = self.settings
        context = _tls_context(s.validate_certs) if s.tls or s.starttls else None
        if s.tls:
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                host=s.host, port=s.port, timeout=s.timeout, ssl_context=context
            )
        else:
            client = aioimaplib.IMAP4(host=s.host, port=s.port, timeout=s.timeout)
        try:
            await client.wait_hello_from_server()
            if context is not None and s.starttls:
                await _starttls(client, context, s)
        except BaseException:
            _abandon(client)
            raise
        response = await client.login(s.username, s.password)
        if response.result != "OK":
            await _logout_quietly(client)
            raise ImapError(f"login refused: {_text(response.lines)}")
        return client

    async def _select(self, client: aioimaplib.IMAP4) -> int:
        response = await client.select(_quote(self.settings.folder))
        if response.result != "OK":
            raise ImapError(f"cannot select {self.settings.folder}: {_text(response.lines)}")
        for line in response.lines:
            match = _UIDVALIDITY.search(bytes(line))
            if match:
                return int(match.group(1))
        raise ImapError("the server did not report UIDVALIDITY")

    async def _deliver_new(
        self, client: aioimaplib.IMAP4, uidvalidity: int, sink: EventSink
    ) -> None:
        folder = self.settings.folder
        last = await self.cursor.load(folder, uidvalidity)
        response = await client.uid_search(f"UID {last + 1}:*", charset=None)
        if response.result != "OK":
            raise ImapError(f"search failed: {_text(response.lines)}")
        # `n:*` always matches the highest UID, even when it is below n: filter.
        uids = sorted(
            int(token)
            for line in response.lines[:-1]
            for token in bytes(line).split()
            if token.isdigit() and int(token) > last
        )
        for uid in uids:
            raw = await self._fetch(client, uid)
            if raw is not None:
                try:
                    items = parse_email(raw)
                except UnparseableEmail as exc:
                    log.warning("imap %s uid %s is not an email (%s); skipped", folder, uid, exc)
                    items = []
                await sink(items, raw)
            await self.cursor.save(folder, uidvalidity, uid)

    async def _fetch(self, client: aioimaplib.IMAP4, uid: int) -> bytes | None:
        response = await client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
        if response.result != "OK":
            raise ImapError(f"fetch of uid {uid} failed: {_text(response.lines)}")
        for i, line in enumerate(response.lines):
            if isinstance(line, bytearray) and i > 0:
                match = _FETCH_UID.search(bytes(response.lines[i - 1]))
                if match is None or int(match.group(1)) == uid:
                    return bytes(line)
        return None  # expunged meanwhile

    async def _idle(self, client: aioimaplib.IMAP4) -> None:
        """Wait in IDLE until the server pushes something (or the refresh timer ends)."""
        idle = await client.idle_start(timeout=IDLE_REFRESH_SECONDS)
        try:
            # Any push (EXISTS, EXPUNGE, FETCH...) or the refresh: look for new mail.
            await client.wait_server_push(timeout=IDLE_REFRESH_SECONDS + 30)
        finally:
            client.idle_done()
            await asyncio.wait_for(idle, timeout=self.settings.timeout)


def _tls_context(validate_certs: bool) -> ssl.SSLContext:
    """The context for implicit TLS and for STARTTLS alike (`validate_certs` false skips
    the certificate and host name checks)."""
    context = ssl.create_default_context()
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _starttls(
    client: aioimaplib.IMAP4, context: ssl.SSLContext, settings: ImapSettings
) -> None:
    """Upgrade the plaintext connection in place (RFC 3501 section 6.2.1), before LOGIN.

    aioimaplib knows the STARTTLS command but not the upgrade: after the server's OK the
    protocol's transport is swapped for the TLS one `loop.start_tls` returns. Everything
    the server said in plaintext is forgotten; the capabilities are read again over TLS.
    Nothing here ever sends the password: when STARTTLS is unavailable it raises.
    """
    host, timeout = settings.host, settings.timeout
    protocol = client.protocol
    if protocol.state != aioimaplib.NONAUTH:  # PREAUTH: already logged in, in plaintext
        raise ImapError("imap_starttls: the server pre-authenticated the plaintext connection")
    if not client.has_capability("STARTTLS"):
        raise ImapError(
            f"imap_starttls: {host} does not offer STARTTLS; refusing to log in in plaintext"
        )
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    response = await asyncio.wait_for(protocol.execute(command), timeout)
    if response.result != "OK":
        raise ImapError(f"imap_starttls: STARTTLS refused: {_text(response.lines)}")
    if protocol.incomplete_line:  # bytes after the OK, before the handshake: injected
        raise ImapError("imap_starttls: the server sent plaintext data after STARTTLS")
    loop = asyncio.get_running_loop()
    transport = await loop.start_tls(
        protocol.transport, protocol, context, server_hostname=host, ssl_handshake_timeout=timeout
    )
    if transport is None:
        raise ImapError("imap_starttls: the connection closed during the TLS handshake")
    protocol.transport = transport
    protocol.capabilities = set()
    await asyncio.wait_for(protocol.capability(), timeout)


def _quote(folder: str) -> str:
    return f'"{folder}"'


def _text(lines: list[bytes] | list[bytearray]) -> str:
    return " ".join(bytes(line).decode("utf-8", "replace") for line in lines)[:300]


def _abandon(client: aioimaplib.IMAP4) -> None:
    """Close a connection that never logged in: nothing to say to the server first."""
    transport = client.protocol.transport
    if transport is not None:
        transport.close()


async def _logout_quietly(client: aioimaplib.IMAP4) -> None:
    # The connection is being abandoned anyway: whatever goes wrong here changes nothing.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.logout(), timeout=2.0)

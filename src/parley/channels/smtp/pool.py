"""A pool of reused SMTP sessions and the mail transaction run on one of them.

Each pooled connection carries one SMTP session at a time; concurrent sends take
different connections, so up to `pool_size` transactions run in parallel. A connection
that fails or is left in an unknown state is dropped and its slot reconnects on next use.

The transaction is driven command by command (rather than `aiosmtplib.sendmail`) so we
know exactly when the end-of-data terminator left us: a connection lost before that
point cannot have delivered anything and is safe to retry; after it, the server may have
accepted the message and we never heard, so the outcome is unknown.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import SMTPResponse

from parley.channels.base import SendResult
from parley.channels.smtp.config import SmtpSettings
from parley.channels.smtp.mime import RenderedEmail

_LEADING_DOT = re.compile(rb"(?m)^\.")


class _ConnectionLost(Exception):
    """The session died before the end-of-data terminator was sent: nothing delivered."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: SendResult
    reusable: bool  # the session is in a clean state for the next transaction


def reply_result(code: int, text: str, message_id: str | None = None) -> SendResult:
    """Map an SMTP reply: 2xx accepted, 4xx retry later, 5xx permanent."""
    if 200 <= code < 300:
        return SendResult(accepted=True, provider_message_id=message_id)
    return SendResult(
        accepted=False,
        retryable=400 <= code < 500,
        error_code=str(code),
        error_detail=text or None,
    )


class SmtpPool:
    """Up to `pool_size` SMTP sessions to one server, reused across sends."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        # LIFO so a lightly loaded provider keeps reusing its warmest session instead of
        # cycling through (and keeping alive) all of them. `None` is an unconnected slot.
        self._slots: asyncio.LifoQueue[aiosmtplib.SMTP | None] = asyncio.LifoQueue()
        for _ in range(settings.pool_size):
            self._slots.put_nowait(None)
        self._closed = False

    async def send(self, email: RenderedEmail) -> SendResult:
        smtp = await self._slots.get()
        holder = _Holder(smtp)
        try:
            if self._closed:
                return SendResult(
                    accepted=False, retryable=True, error_code="closed", error_detail="pool closed"
                )
            return await self._send_with_reconnect(holder, email)
        except BaseException:
            # Cancelled or failed mid-transaction: the session state is unknown.
            holder.discard()
            raise
        finally:
            if holder.smtp is not None and (self._closed or not holder.smtp.is_connected):
                holder.discard()
            self._slots.put_nowait(holder.smtp)

    async def _send_with_reconnect(self, holder: _Holder, email: RenderedEmail) -> SendResult:
        reused = holder.smtp is not None and holder.smtp.is_connected
        if not reused:
            failure = await self._connect(holder)
            if failure is not None:
                return failure
        try:
            outcome = await self._transaction(holder.live, email)
        except _ConnectionLost as exc:
            if not reused:
                holder.discard()
                return _lost_before_data(exc)
            # A pooled session the server dropped while idle: reconnect once.
            failure = await self._connect(holder)
            if failure is not None:
                return failure
            try:
                outcome = await self._transaction(holder.live, email)
            except _ConnectionLost as exc2:
                holder.discard()
                return _lost_before_data(exc2)
        if not outcome.reusable:
            holder.discard()
        return outcome.result

    async def _connect(self, holder: _Holder) -> SendResult | None:
        """Replace the holder's session with a fresh one; a SendResult when that fails."""
        holder.discard()
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            local_hostname=s.helo_hostname,
            timeout=s.timeout,
            use_tls=s.use_tls,
            start_tls=s.starttls,
            validate_certs=s.validate_certs,
        )
        holder.smtp = smtp  # so that a cancellation mid-connect still closes it
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:
                await smtp.ehlo()
        except aiosmtplib.SMTPAuthenticationError as exc:
            holder.discard()
            # The account's credentials, not this message, are at fault: retry later
            # (an operator fixes the password) instead of failing a whole campaign.
            return SendResult(
                accepted=False,
                retryable=True,
                error_code=str(exc.code),
                error_detail=f"authentication failed: {exc.message}",
            )
        except aiosmtplib.SMTPResponseException as exc:
            # A refused greeting, EHLO or STARTTLS is about the server or the account,
            # not the message: retryable whatever the code.
            holder.discard()
            return SendResult(
                accepted=False,
                retryable=True,
                error_code=str(exc.code),
                error_detail=f"session setup refused: {exc.message}",
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            holder.discard()
            return SendResult(
                accepted=False,
                retryable=True,
                error_code="timeout" if isinstance(exc, TimeoutError) else "connect_failed",
                error_detail=f"cannot connect to {s.host}:{s.port}: {exc}",
            )
        return None

    async def _command(self, smtp: aiosmtplib.SMTP, *args: bytes) -> SMTPResponse:
        try:
            return await smtp.execute_command(*args)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise _ConnectionLost(str(exc)) from exc

    async def _reset(self, smtp: aiosmtplib.SMTP) -> bool:
        """RSET after a refused transaction; True when the session is clean for reuse."""
        if not smtp.is_connected:
            return False
        try:
            reply = await smtp.execute_command(b"RSET")
        except (aiosmtplib.SMTPException, OSError):
            return False
        return reply.code == 250

    async def _transaction(self, smtp: aiosmtplib.SMTP, email: RenderedEmail) -> _Outcome:
        mail_options: list[bytes] = []
        if email.smtputf8:
            if not smtp.supports_extension("smtputf8"):
                return _Outcome(
                    SendResult(
                        accepted=False,
                        error_code="smtputf8_unsupported",
                        error_detail="an address needs SMTPUTF8, which the server lacks",
                    ),
                    reusable=True,
                )
            mail_options += [b"SMTPUTF8", b"BODY=8BITMIME"]
        if smtp.supports_extension("size"):
            mail_options.append(b"SIZE=%d" % len(email.data))

        reply = await self._command(
            smtp, b"MAIL", b"FROM:<" + email.envelope_from.encode() + b">", *mail_options
        )
        if reply.code != 250:
            return _Outcome(reply_result(reply.code, reply.message), await self._reset(smtp))

        refused: list[tuple[str, SMTPResponse]] = []
        for recipient in email.envelope_to:
            reply = await self._command(smtp, b"RCPT", b"TO:<" + recipient.encode() + b">")
            if reply.code not in (250, 251):
                refused.append((recipient, reply))
        if len(refused) == len(email.envelope_to):
            # Retry if any refusal was temporary; otherwise the first reply explains it.
            worst = next((r for _, r in refused if 400 <= r.code < 500), refused[0][1])
            return _Outcome(reply_result(worst.code, worst.message), await self._reset(smtp))

        reply = await self._command(smtp, b"DATA")
        if reply.code != 354:
            return _Outcome(reply_result(reply.code, reply.message), await self._reset(smtp))

        protocol = smtp.protocol
        if protocol is None:
            raise _ConnectionLost("connection lost before the message was sent")
        payload = _LEADING_DOT.sub(b"..", email.data) + b".\r\n"
        try:
            protocol.write(payload)
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise _ConnectionLost(str(exc)) from exc
        # From here on the server may have the whole message: any failure to read its
        # reply leaves the outcome unknown, and a retry could deliver twice.
        try:
            reply = await protocol.read_response(timeout=self._settings.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return _Outcome(
                SendResult(
                    accepted=False,
                    retryable=False,
                    outcome_unknown=True,
                    error_code="timeout" if isinstance(exc, TimeoutError) else "connection_lost",
                    error_detail=f"no reply after the message was sent: {exc}",
                ),
                reusable=False,
            )
        result = reply_result(reply.code, reply.message, email.message_id)
        if refused and result.accepted:
            result = SendResult(
                accepted=True,
                provider_message_id=email.message_id,
                error_detail="refused recipients: "
                + ", ".join(f"{addr} ({r.code} {r.message})" for addr, r in refused),
            )
        # After the final reply the transaction is over; a refusal at this stage also
        # leaves the session ready for the next MAIL (RFC 5321 4.1.1.4), so no RSET.
        return _Outcome(result, reusable=True)

    async def aclose(self) -> None:
        """Close idle sessions; sessions in use are closed when their send finishes."""
        self._closed = True
        while not self._slots.empty():
            smtp = self._slots.get_nowait()
            if smtp is not None:
                await _quit_quietly(smtp)
        # Keep the pool's capacity so waiting senders see `closed` instead of hanging.
        for _ in range(self._settings.pool_size):
            self._slots.put_nowait(None)


class _Holder:
    """The session a send is using; whoever ends up with it returns it to the pool."""

    __slots__ = ("smtp",)

    def __init__(self, smtp: aiosmtplib.SMTP | None) -> None:
        self.smtp = smtp

    @property
    def live(self) -> aiosmtplib.SMTP:
        assert self.smtp is not None
        return self.smtp

    def discard(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None


def _lost_before_data(exc: BaseException) -> SendResult:
    return SendResult(
        accepted=False,
        retryable=True,
        error_code="connection_lost",
        error_detail=f"connection lost before the message was sent: {exc}",
    )


async def _quit_quietly(smtp: aiosmtplib.SMTP) -> None:
    try:
        if smtp.is_connected:
            await asyncio.wait_for(smtp.quit(), timeout=1.0)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        smtp.close()

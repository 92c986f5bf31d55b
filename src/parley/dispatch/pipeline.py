"""The dispatcher: gate, claim, send, record — for one job's batch of message ids.

Order of operations per chunk (why it is safe):
1. In one transaction, lock the messages, re-run the compliance gate (invariant 3), and
   mark the allowed ones `sending`; commit. A message is never handed to a provider
   before it is durably `sending` (invariant 2).
2. Call the providers concurrently, paced by the shared per-account token bucket.
3. In one transaction, record each outcome and its event; transient failures go back to
   `queued` with a new scheduled job in that same transaction (invariant 1 again).
A re-run that finds a message still `sending` knows a worker died between 1 and 3: it
cannot know whether the provider got it, so it marks it `needs_review` (or reconciles
with providers that can be asked) instead of sending again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from parley.channels.base import ChannelProvider, OutboundMessage, SendResult
from parley.compliance import gate
from parley.dispatch import outbox, ratelimit
from parley.dispatch.providers import AccountRow
from parley.dispatch.retry import RetryPolicy
from parley.domain.channels import Channel
from parley.domain.status import MessageStatus

if TYPE_CHECKING:
    from parley.bootstrap import Container

log = logging.getLogger(__name__)

_STATUS_VALUES = frozenset(s.value for s in MessageStatus)

LOAD_SQL = """
SELECT m.id::text, m.organization_id::text, m.status, m.channel, m.to_address,
       m.from_address, m.cc, m.bcc, m.subject, m.body, m.html_body,
       m.provider_account_id::text, m.rfc822_message_id, m.attempts, m.priority,
       coalesce(b.do_not_contact, false), c.status
FROM messages m
JOIN cases c ON c.id = m.case_id
LEFT JOIN borrowers b ON b.id = m.borrower_id
WHERE m.id = ANY(%s::uuid[])
ORDER BY m.id
FOR UPDATE OF m
"""

SET_STATUS_SQL = (
    "UPDATE messages SET status = %s, status_changed_at = %s WHERE id = ANY(%s::uuid[])"
)
CLAIM_SQL = (
    "UPDATE messages SET status = %s, status_changed_at = %s, attempts = attempts + 1 "
    "WHERE id = ANY(%s::uuid[])"
)

EVENT_SQL = """
INSERT INTO message_events (organization_id, message_id, event_type, status_before,
    status_after, source, provider_event_id, provider_status, error_code, reason,
    occurred_at, raw)
VALUES (%s, %s, %s, %s, %s, 'parley', NULL, %s, %s, %s, %s, NULL)
"""

DECISION_SQL = """
INSERT INTO compliance_decisions (organization_id, message_id, stage, outcome, defer_until,
    rules, facts)
VALUES (%s, %s, 'send', %s, %s, %s, %s)
"""


@dataclass(slots=True)
class Row:
    id: str
    organization_id: str
    status: str
    channel: str
    to_address: str
    from_address: str | None
    cc: list[str]
    bcc: list[str]
    subject: str | None
    body: str
    html_body: str | None
    account_id: str | None
    rfc822_message_id: str | None
    attempts: int
    priority: str
    do_not_contact: bool
    case_status: str


@dataclass(slots=True)
class Outcome:
    row: Row
    result: SendResult


class Dispatcher:
    def __init__(self, container: Container) -> None:
        self.c = container
        s = container.settings
        self.policy = RetryPolicy(s.max_attempts, s.retry_base_seconds, s.retry_max_seconds)
        self.chunk_size = max(1, s.dispatch_parallelism)

    async def run(self, message_ids: list[str]) -> None:
        for start in range(0, len(message_ids), self.chunk_size):
            await self._run_chunk(message_ids[start : start + self.chunk_size])

    async def _run_chunk(self, ids: list[str]) -> None:
        claimed, accounts = await self._claim(ids)
        if not claimed:
            return
        outcomes = await self._send_all(claimed, accounts)
        await self._record(outcomes)

    # -- step 1: gate and claim -------------------------------------------------------

    async def _claim(self, ids: list[str]) -> tuple[list[Row], dict[str, AccountRow]]:
        now = self.c.clock()
        events: list[tuple[Any, ...]] = []
        decisions: list[tuple[Any, ...]] = []
        claimed: list[Row] = []
        to_status: dict[str, list[str]] = defaultdict(list)
        errors: list[tuple[str, str, str]] = []  # (id, code, detail) for config failures
        deferred: dict[datetime, list[str]] = defaultdict(list)
        async with self.c.db.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(LOAD_SQL, (ids,))
            rows = [Row(*r) for r in await cur.fetchall()]
            account_ids = sorted({r.account_id for r in rows if r.account_id})
            accounts = await self.c.providers.accounts(account_ids)
            for row in rows:
                status = MessageStatus(row.status)
                if status is MessageStatus.SENDING:
                    # A worker died mid-send: don't guess, don't resend.
                    to_status[MessageStatus.NEEDS_REVIEW].append(row.id)
                    events.append(
                        self._event(
                            row,
                            "needs_review",
                            "sending",
                            now,
                            reason="worker stopped while sending; the "
                            "provider may or may not have the message",
                        )
                    )
                    continue
                if status not in (MessageStatus.QUEUED, MessageStatus.SCHEDULED):
                    continue  # cancelled, already sent, blocked: nothing to do
                account = accounts.get(row.account_id or "")
                problem = _account_problem(account)
                if problem:
                    errors.append((row.id, *problem))
                    events.append(
                        self._event(
                            row, "failed", row.status, now, code=problem[0], reason=problem[1]
                        )
                    )
                    continue
                decision = gate.evaluate(
                    gate.AttemptFacts(
                        channel=Channel(row.channel),
                        now=now,
                        borrower_do_not_contact=row.do_not_contact,
                        case_status=row.case_status,
                    )
                )
                if decision.outcome is gate.Outcome.BLOCK:
                    to_status[MessageStatus.BLOCKED].append(row.id)
                    events.append(
                        self._event(
                            row, "blocked", row.status, now, reason=", ".join(decision.reasons)
                        )
                    )
                    decisions.append(_decision_row(row, decision))
                elif decision.outcome is gate.Outcome.DEFER and decision.defer_until:
                    to_status[MessageStatus.SCHEDULED].append(row.id)
                    deferred[decision.defer_until].append(row.id)
                    events.append(
                        self._event(
                            row, "scheduled", row.status, now, reason=", ".join(decision.reasons)
                        )
                    )
                    decisions.append(_decision_row(row, decision))
                else:
                    to_status[MessageStatus.SENDING].append(row.id)
                    events.append(self._event(row, "sending", row.status, now))
                    row.attempts += 1
                    claimed.append(row)
            for status, status_ids in to_status.items():
                sql = CLAIM_SQL if status is MessageStatus.SENDING else SET_STATUS_SQL
                await conn.execute(sql, (status.value, now, status_ids))
            if errors:
                async with conn.cursor() as cur2:
                    await cur2.executemany(
                        "UPDATE messages SET status = 'failed', status_changed_at = %s, "
                        "error_code = %s, error_detail = %s WHERE id = %s",
                        [(now, code, detail, mid) for mid, code, detail in errors],
                    )
            for until, deferred_ids in deferred.items():
                await conn.execute(
                    "UPDATE messages SET scheduled_at = %s WHERE id = ANY(%s::uuid[])",
                    (until, deferred_ids),
                )
                await outbox.defer_send(self.c.jobs, conn, deferred_ids, schedule_at=until)
            await _insert_many(conn, EVENT_SQL, events)
            await _insert_many(conn, DECISION_SQL, decisions)
        return claimed, accounts

    def _event(
        self,
        row: Row,
        event: str,
        before: str,
        at: datetime,
        *,
        after: str | None = None,
        code: str | None = None,
        reason: str | None = None,
        provider_status: str | None = None,
    ) -> tuple[Any, ...]:
        if after is None:
            after = event if event in _STATUS_VALUES else before
        return (
            row.organization_id,
            row.id,
            event,
            before,
            after,
            provider_status,
            code,
            reason,
            at,
        )

    # -- step 2: send -----------------------------------------------------------------

    async def _send_all(self, rows: list[Row], accounts: dict[str, AccountRow]) -> list[Outcome]:
        by_account: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            by_account[row.account_id or ""].append(row)
        results = await asyncio.gather(
            *(self._send_account(accounts[a], group) for a, group in by_account.items())
        )
        return [o for group in results for o in group]

    async def _send_account(self, account: AccountRow, rows: list[Row]) -> list[Outcome]:
        try:
            provider = await self.c.providers.get(account)
        except Exception as exc:  # a config the factory rejects: permanent for these rows
            log.warning("provider account %s unusable: %s", account.id, exc)
            return [
                Outcome(
                    r, SendResult(False, error_code="provider_config_error", error_detail=str(exc))
                )
                for r in rows
            ]
        reservation = None
        if account.rate_per_second:
            async with self.c.db.pool.connection() as conn:
                reservation = await ratelimit.reserve(
                    conn,
                    account.id,
                    len(rows),
                    account.rate_per_second,
                    account.burst or max(1.0, account.rate_per_second),
                )
        start = asyncio.get_running_loop().time()
        sends = [
            ratelimit.paced(reservation, i, start, _bind(provider, _outbound(row)))
            for i, row in enumerate(rows)
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        outcomes = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, SendResult):
                outcomes.append(Outcome(row, result))
            else:
                # A provider bug: we can't tell whether it sent. Treat as unknown.
                log.error("provider %s raised for message %s: %r", provider.name, row.id, result)
                outcomes.append(
                    Outcome(
                        row,
                        SendResult(
                            False,
                            outcome_unknown=True,
                            error_code="provider_exception",
                            error_detail=repr(result)[:500],
                        ),
                    )
                )
        return outcomes

    # -- step 3: record ---------------------------------------------------------------

    async def _record(self, outcomes: list[Outcome]) -> None:
        now = self.c.clock()
        sent: list[tuple[Any, ...]] = []
        failed: list[tuple[Any, ...]] = []
        review: list[tuple[Any, ...]] = []
        retry: dict[datetime, list[str]] = defaultdict(list)
        retry_rows: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        for o in outcomes:
            r, res = o.row, o.result
            if res.accepted:
                sent.append((now, res.provider_message_id, res.segments, res.cost, r.id))
                events.append(self._event(r, "sent", "sending", now, provider_status="accepted"))
            elif res.outcome_unknown:
                review.append((now, res.error_code, res.error_detail, r.id))
                events.append(
                    self._event(
                        r,
                        "needs_review",
                        "sending",
                        now,
                        code=res.error_code,
                        reason=res.error_detail,
                    )
                )
            elif res.retryable and not self.policy.exhausted(r.attempts):
                delay = self.policy.delay(r.attempts, res.retry_after)
                at = (now + timedelta(seconds=delay)).replace(microsecond=0)
                retry[at].append(r.id)
                retry_rows.append((now, at, res.error_code, res.error_detail, r.id))
                events.append(
                    self._event(
                        r,
                        "deferred",
                        "sending",
                        now,
                        after="queued",
                        code=res.error_code,
                        reason=res.error_detail,
                    )
                )
            else:
                failed.append((now, res.error_code, res.error_detail, r.id))
                events.append(
                    self._event(
                        r, "failed", "sending", now, code=res.error_code, reason=res.error_detail
                    )
                )
        async with self.c.db.pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                if sent:
                    await cur.executemany(
                        "UPDATE messages SET status = 'sent', status_changed_at = %s, "
                        "sent_at = %s, provider_message_id = %s, "
                        "segments = coalesce(%s, segments), cost = %s "
                        "WHERE id = %s AND status IN ('sending', 'needs_review')",
                        [(t, t, pid, seg, cost, mid) for t, pid, seg, cost, mid in sent],
                    )
                if failed:
                    await cur.executemany(
                        "UPDATE messages SET status = 'failed', status_changed_at = %s, "
                        "error_code = %s, error_detail = %s "
                        "WHERE id = %s AND status = 'sending'",
                        failed,
                    )
                if review:
                    await cur.executemany(
                        "UPDATE messages SET status = 'needs_review', status_changed_at = %s, "
                        "error_code = %s, error_detail = %s "
                        "WHERE id = %s AND status = 'sending'",
                        review,
                    )
                if retry_rows:
                    await cur.executemany(
                        "UPDATE messages SET status = 'queued', status_changed_at = %s, "
                        "scheduled_at = %s, error_code = %s, error_detail = %s "
                        "WHERE id = %s AND status = 'sending'",
                        retry_rows,
                    )
            for at, retry_ids in retry.items():
                await outbox.defer_send(self.c.jobs, conn, retry_ids, schedule_at=at)
            await _insert_many(conn, EVENT_SQL, events)


def _bind(provider: ChannelProvider, message: OutboundMessage) -> Any:
    async def call() -> SendResult:
        return await provider.send(message)

    return call


def _outbound(row: Row) -> OutboundMessage:
    return OutboundMessage(
        message_id=row.id,
        channel=Channel(row.channel),
        to=row.to_address,
        sender=row.from_address,
        body=row.body,
        subject=row.subject,
        html=row.html_body,
        cc=tuple(row.cc or ()),
        bcc=tuple(row.bcc or ()),
        rfc822_message_id=row.rfc822_message_id,
    )


def _account_problem(account: AccountRow | None) -> tuple[str, str] | None:
    if account is None:
        return ("no_provider_account", "the message has no provider account")
    if not account.enabled:
        return ("provider_account_disabled", f"provider account {account.id} is disabled")
    return None


def _decision_row(row: Row, decision: gate.Decision) -> tuple[Any, ...]:
    return (
        row.organization_id,
        row.id,
        decision.outcome.value,
        decision.defer_until,
        orjson.dumps([v.as_record() for v in decision.verdicts]).decode(),
        orjson.dumps(decision.facts.as_record()).decode(),
    )


async def _insert_many(
    conn: psycopg.AsyncConnection, sql: str, rows: list[tuple[Any, ...]]
) -> None:
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(sql, rows)

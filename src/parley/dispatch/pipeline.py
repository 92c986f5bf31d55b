"""The dispatcher: pace, gate and claim, send, record — for one job's batch of message ids.

Per account and per sub-batch (why it is safe):
1. For a rate-limited account, claim only when this process has fewer than two of its
   batches claimed and not yet sent, so messages do not sit long in `sending` waiting
   for tokens (ratelimit.Pacer).
2. In one transaction, lock the messages, re-run the compliance gate (invariant 3),
   record every decision, and mark the allowed ones `sending` with this job's id;
   commit. A provider never sees a message that is not durably `sending` (invariant 2).
3. Call the provider concurrently; a rate-limited account's sends go one at a time,
   each when the token it takes from the shared bucket just before it is due.
4. In one transaction, record each outcome and its event — only for messages this job
   still holds (`status = 'sending'` and `claim_job_id` = this job); transient failures
   go back to `queued` with a new scheduled job in that same transaction (invariant 1),
   due a back-off (at least the provider's Retry-After) after the answer came.
A job that finds a message `sending` under a claim that is no longer running (its worker
died, or this very job died and was re-queued) cannot know whether the provider got it:
it marks it `needs_review` instead of sending again. A claim held by a running job is
left alone.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from parley.channels.base import Attachment, ChannelProvider, OutboundMessage, SendResult
from parley.compliance import caps, gate
from parley.compliance.assess import AttemptContext, assess
from parley.dispatch import email_send, outbox, ratelimit
from parley.dispatch.providers import AccountRow
from parley.dispatch.retry import RetryPolicy
from parley.dispatch.statements import (
    CLAIM_BATCH_SQL,
    EVENTS_COPY,
    FAIL_UNSENT_SQL,
    LOAD_SQL,
    PEEK_SQL,
    RECORD_SQL,
    SET_STATUS_SQL,
)
from parley.domain.channels import Channel
from parley.domain.status import MessageStatus
from parley.inbox import announce, message_parts
from parley.services import activity, contactability, unsubscribe, whatsapp_window
from parley.webhooks_out import queue as webhooks_out_queue

if TYPE_CHECKING:
    from parley.bootstrap import Container

log = logging.getLogger(__name__)

_STATUS_VALUES = frozenset(s.value for s in MessageStatus)
_PENDING = ("queued", "scheduled", "sending")


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
    case_id: str
    borrower_id: str | None
    contact_point_id: str | None
    purpose: str
    claim_job_id: int | None
    claim_job_status: str | None
    whatsapp: dict[str, Any] | None = None  # template / media / quick replies
    headers: dict[str, str] | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(slots=True)
class Outcome:
    row: Row
    result: SendResult
    # When the provider's answer came, for answers that were not an acceptance: a retry
    # waits from then (a Retry-After counts from the response), not from the record.
    answered_at: datetime | None = None


class Dispatcher:
    def __init__(self, container: Container, job_id: int | None = None) -> None:
        self.c = container
        self.job_id = job_id
        s = container.settings
        self.policy = RetryPolicy(s.max_attempts, s.retry_base_seconds, s.retry_max_seconds)
        self.chunk_size = max(1, s.dispatch_parallelism)

    async def run(self, message_ids: list[str]) -> None:
        async with self.c.db.pool.connection() as conn:
            cur = await conn.execute(PEEK_SQL, (_array(message_ids), list(_PENDING)))
            pending = await cur.fetchall()
            accounts = await self.c.providers.accounts(
                sorted({a for _, a in pending if a}), conn=conn
            )
        by_account: dict[str | None, list[str]] = defaultdict(list)
        for message_id, account_id in pending:
            by_account[account_id].append(message_id)
        for account_id, ids in by_account.items():
            await self._run_account(accounts.get(account_id or ""), ids)

    async def _run_account(self, account: AccountRow | None, ids: list[str]) -> None:
        problem = _account_problem(account)
        provider: ChannelProvider | None = None
        if problem is None:
            assert account is not None
            try:
                provider = await self.c.providers.get(account)
            except Exception as exc:  # a config the factory rejects: permanent for these
                log.warning("provider account %s unusable: %s", account.id, exc)
                problem = ("provider_config_error", str(exc)[:500])
        if problem is not None or provider is None or account is None:
            code, detail = problem or ("no_provider_account", "no provider account")
            await self._fail_unsent(ids, code, detail)
            return
        size = self.chunk_size
        pacer = None
        if account.rate_per_second:
            # About one second of tokens per claim, so nothing waits long in `sending`.
            size = max(1, min(size, int(account.rate_per_second)))
            if self.c.pacers is None:
                self.c.pacers = ratelimit.Pacers(self.c.db.pool)
            pacer = self.c.pacers.get(
                account.id,
                account.rate_per_second,
                account.burst or max(1.0, account.rate_per_second),
            )
        for start in range(0, len(ids), size):
            await self._run_batch(account, provider, ids[start : start + size], pacer)

    async def _run_batch(
        self,
        account: AccountRow,
        provider: ChannelProvider,
        ids: list[str],
        pacer: ratelimit.Pacer | None,
    ) -> None:
        if pacer is None:
            claimed = await self._claim(ids, account)
            if not claimed:
                return
            results, answered = await _send_all(provider, claimed, None, self.c.clock)
        else:
            # A rate-limited account's batch is claimed only when few of its messages
            # are already claimed here and waiting for their turn (ratelimit.Pacer).
            async with pacer.batches:
                claimed = await self._claim(ids, account)
                if not claimed:
                    return
                results, answered = await _send_all(provider, claimed, pacer, self.c.clock)
        outcomes = []
        for i, (row, result) in enumerate(zip(claimed, results, strict=True)):
            if isinstance(result, SendResult):
                outcomes.append(Outcome(row, result, answered.get(i)))
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
        await self._record(outcomes)

    # -- gate and claim ---------------------------------------------------------------

    async def _claim(self, ids: list[str], account: AccountRow | None = None) -> list[Row]:
        now = self.c.clock()
        # Events of the rare outcomes (review, blocked, deferred, window closed); the
        # `sending` events of the claimed messages are written by the claim statement.
        events: list[tuple[Any, ...]] = []
        decisions: list[dict[str, Any]] = []
        evidence: list[tuple[Any, Any]] = []
        allowed: dict[str, Row] = {}
        review: list[str] = []
        blocked: list[str] = []
        deferred: dict[datetime, list[str]] = defaultdict(list)
        async with self.c.db.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(LOAD_SQL, (ids,))
            rows = [Row(*r) for r in await cur.fetchall()]
            candidates: list[Row] = []
            for row in rows:
                status = MessageStatus(row.status)
                if status is MessageStatus.SENDING:
                    if self._claim_is_live(row):
                        continue  # another running job is sending it right now
                    review.append(row.id)
                    events.append(
                        _event(
                            row,
                            "needs_review",
                            "sending",
                            now,
                            reason="the job sending it stopped before recording the outcome; "
                            "the provider may or may not have the message",
                        )
                    )
                    continue
                if status not in (MessageStatus.QUEUED, MessageStatus.SCHEDULED):
                    continue  # cancelled, blocked, already sent: nothing to do
                candidates.append(row)
            # The gate at send time (invariant 3), with every fact read now, under the
            # per-(borrower, case) locks the frequency caps need; the claim below
            # records the attempts before this transaction releases them.
            # Equal contexts share one Decision object (assess's memo): its evidence is
            # stored once per batch and referenced by each message's decision row.
            shared: dict[int, int] = {}
            for row, decision in zip(
                candidates, await self._decide_all(conn, candidates, now), strict=True
            ):
                position = shared.get(id(decision))
                if position is None:
                    evidence.append((decision.rules_record(), decision.facts_record()))
                    position = shared[id(decision)] = len(evidence)  # 1-based (ORDINALITY)
                decisions.append(
                    {
                        "org": row.organization_id,
                        "id": row.id,
                        "outcome": decision.outcome.value,
                        "until": decision.defer_until,
                        "e": position,
                    }
                )
                if decision.outcome is gate.Outcome.BLOCK:
                    blocked.append(row.id)
                    reason = ", ".join(decision.reasons) or None
                    events.append(_event(row, "blocked", row.status, now, reason=reason))
                elif decision.outcome is gate.Outcome.DEFER and decision.defer_until:
                    deferred[decision.defer_until].append(row.id)
                    reason = ", ".join(decision.reasons) or None
                    events.append(_event(row, "scheduled", row.status, now, reason=reason))
                else:
                    allowed[row.id] = row
            if review:
                await conn.execute(SET_STATUS_SQL, ("needs_review", now, review))
            if blocked:
                await conn.execute(SET_STATUS_SQL, ("blocked", now, blocked))
            for until, deferred_ids in deferred.items():
                await conn.execute(
                    "UPDATE messages SET status = 'scheduled', status_changed_at = %s, "
                    "scheduled_at = %s WHERE id = ANY(%s::uuid[])",
                    (now, until, deferred_ids),
                )
                await outbox.defer_send(self.c.jobs, conn, deferred_ids, schedule_at=until)
            await _close_whatsapp_outside_window(conn, allowed, events, now)
            claimed: list[Row] = []
            if decisions:
                cur = await conn.execute(
                    CLAIM_BATCH_SQL,
                    {
                        "evidence": _jsonb(evidence),
                        "decisions": _jsonb(decisions),
                        "claim": _jsonb(
                            [{"id": r.id, "before": r.status} for r in allowed.values()]
                        ),
                        "now": now,
                        "job": self.job_id,
                    },
                )
                for (message_id,) in await cur.fetchall():
                    row = allowed[message_id]
                    row.attempts += 1
                    row.claim_job_id = self.job_id
                    if row.channel == "email":
                        row.headers = await _list_unsubscribe(self.c, conn, row.id)
                    claimed.append(row)
            # Attachments and tracking links are added to emails at send time.
            await email_send.prepare(self.c, conn, claimed, account)
            if events:
                await _copy_rows(conn, EVENTS_COPY, events, "parley")
                # `sending` is not announced: it lasts as long as the provider call, and
                # the outcome (sent, failed, ...) follows from this very batch. Kept out
                # of the claim's transaction, NOTIFY (which serializes commits
                # database-wide) is paid here only for the rare blocked / deferred /
                # needs-review rows.
                await _announce(conn, events, {r.id: r for r in rows})
        return claimed

    async def _decide_all(
        self, conn: psycopg.AsyncConnection, rows: list[Row], now: datetime
    ) -> list[gate.Decision]:
        """A decision per row, in order. Messages to the same person and debt in this
        batch count against each other's caps: each allowed one joins the next one's
        history before it is decided."""
        if not rows:
            return []
        requests = [
            contactability.AttemptRequest(
                organization_id=row.organization_id,
                case_id=row.case_id,
                borrower_id=row.borrower_id or "",
                contact_point_id=row.contact_point_id or "",
                channel=Channel(row.channel),
                purpose=row.purpose,
                message_id=row.id,
            )
            for row in rows
            if row.borrower_id and row.contact_point_id
        ]
        contexts = iter(
            await contactability.load_contexts(
                conn, requests, now, lock=True, exclude_message_ids=[r.id for r in rows]
            )
        )
        memo: dict[Any, Any] = {}
        earlier: dict[tuple[str, str], list[caps.PastAttempt]] = defaultdict(list)
        out: list[gate.Decision] = []
        for row in rows:
            if not (row.borrower_id and row.contact_point_id):
                out.append(_no_recipient(row, now))
                continue
            ctx = next(contexts)
            capped = _is_capped_context(ctx)
            key = (row.borrower_id, row.case_id)
            if capped and earlier[key]:
                ctx = replace(ctx, history=(*ctx.history, *earlier[key]))
            decision = assess(ctx, memo=memo)
            if capped and decision.allowed:
                earlier[key].append(contactability.attempt_now(ctx, row.contact_point_id, now))
            out.append(decision)
        return out

    def _claim_is_live(self, row: Row) -> bool:
        """Whether another job that is still running holds this message's claim."""
        return (
            row.claim_job_id is not None
            and row.claim_job_id != self.job_id
            and row.claim_job_status == "doing"
        )

    async def _fail_unsent(self, ids: list[str], code: str, detail: str) -> None:
        now = self.c.clock()
        async with self.c.db.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                FAIL_UNSENT_SQL,
                {
                    "now": now,
                    "ids": ids,
                    "codes": [code] * len(ids),
                    "details": [detail] * len(ids),
                },
            )
            failed = await cur.fetchall()
            events = [
                (org, mid, "failed", "queued", "failed", None, code, detail, now)
                for mid, org, *_ in failed
            ]
            await _copy_rows(conn, EVENTS_COPY, events, "parley")
            await announce.status_changes(
                conn,
                [
                    # Recorded as from `queued`, as the event row above says.
                    (org, announce.status_change_data(mid, case, ch, "failed", "queued", now, code))
                    for mid, org, _, case, ch in failed
                ],
            )

    # -- record -----------------------------------------------------------------------

    async def _record(self, outcomes: list[Outcome]) -> None:
        """Each outcome, its event and its announcement, in one statement; retries get
        their new jobs in the same transaction (invariant 1). A WhatsApp send Meta
        refused with 131047 also closes the number's window (`whatsapp_window`)."""
        now = self.c.clock()
        items: list[dict[str, Any]] = []
        retry_at: dict[str, datetime] = {}
        for o in outcomes:
            res, mid = o.result, o.row.id
            if res.accepted:
                items.append(
                    {
                        "id": mid,
                        "s": "sent",
                        "e": "sent",
                        "pid": res.provider_message_id,
                        "seg": res.segments,
                        "cost": res.cost,
                    }
                )
                continue
            if res.outcome_unknown:
                status, event, at = "needs_review", "needs_review", None
            elif res.retryable and not self.policy.exhausted(o.row.attempts):
                delay = self.policy.delay(o.row.attempts, res.retry_after)
                answered = min(now, o.answered_at or now)
                at = retry_at[mid] = _retry_slot_after(answered + timedelta(seconds=delay))
                status, event = "queued", "deferred"
            else:
                status, event, at = "failed", "failed", None
            item: dict[str, Any] = {
                "id": mid,
                "s": status,
                "e": event,
                "code": res.error_code,
                "detail": res.error_detail,
                "at": at,
            }
            if res.outcome_unknown and res.provider_message_id:
                # The parts the SMSC took before a later one failed: part 1's id names
                # the message, so that their receipts find it.
                item["pid"] = res.provider_message_id
                item["seg"] = res.segments
            items.append(item)
        if not items:
            return
        async with self.c.db.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                RECORD_SQL,
                {
                    "outcomes": _jsonb(items),
                    "now": now,
                    "job": self.job_id,
                    "at": now.isoformat(),
                    "channel": activity.CHANNEL,
                },
            )
            recorded = await cur.fetchall()
            # Messages sent as separately receipted parts (SMPP): every part's id, so that
            # each part's receipt finds the message (only those recorded here). A
            # `needs_review` one carries the parts the SMSC accepted before a later part
            # failed: their receipts are the evidence its reviewer needs (they are stored
            # on it without moving it, domain.status.status_after_parts).
            by_id = {o.row.id: o for o in outcomes}
            await message_parts.record_sent_parts(
                conn,
                [
                    (row[0], by_id[row[0]].result.part_ids)
                    for row in recorded
                    if row[1] in ("sent", "needs_review") and by_id[row[0]].result.part_ids
                ],
            )
            # Only messages this job still held get a new job.
            retries: dict[datetime, list[str]] = defaultdict(list)
            subscribed = []
            for mid, status, wanted, org, case_id, channel, code, _ in recorded:
                if status == "queued":
                    retries[retry_at[mid]].append(mid)
                if wanted:
                    data = announce.status_change_data(
                        mid, case_id, channel, status, "sending", now, code
                    )
                    subscribed.append((org, announce.EVENT, data))
            # Meta refused a free-form message with 131047: its window is closed now.
            await whatsapp_window.record_provider_closed(
                conn,
                [
                    (mid, now)
                    for mid, status, _, _, _, channel, code, _ in recorded
                    if status == "failed" and whatsapp_window.closes_window(channel, code)
                ],
                now,
            )
            for at, retry_ids in retries.items():
                await outbox.defer_retry(
                    self.c.jobs, conn, retry_ids, schedule_at=at, batch_size=self.chunk_size
                )
            if subscribed:
                await webhooks_out_queue.enqueue_many(conn, subscribed)
        lost = len(items) - len(recorded)
        if lost:
            log.warning("%d outcomes not recorded: their claim was taken over meanwhile", lost)


async def _close_whatsapp_outside_window(
    conn: psycopg.AsyncConnection, allowed: dict[str, Row], events: list[Any], now: datetime
) -> None:
    """WhatsApp session messages need the 24-hour window open when they are sent, not
    only when created (it may have closed while they waited): those fail permanently
    here, never reaching the provider. Our rule, so it holds for every provider."""
    rows = [r for r in allowed.values() if r.channel == "whatsapp"]
    if not rows:
        return
    closed = await whatsapp_window.closed_for(
        conn, [(r.id, r.organization_id, r.to_address, r.whatsapp) for r in rows], now
    )
    if not closed:
        return
    code = whatsapp_window.CLOSED_CODE
    await conn.execute(
        FAIL_UNSENT_SQL,
        {
            "now": now,
            "ids": list(closed),
            "codes": [code] * len(closed),
            "details": [*closed.values()],
        },
    )
    for message_id, detail in closed.items():
        row = allowed.pop(message_id)
        events.append(_event(row, "failed", row.status, now, code=code, reason=detail))


def _event(
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
    return (row.organization_id, row.id, event, before, after, provider_status, code, reason, at)


async def _announce(
    conn: psycopg.AsyncConnection, events: list[tuple[Any, ...]], rows: dict[str, Row]
) -> None:
    """One `message.status_changed` per event that moved a status, in one statement."""
    changes = []
    for org, mid, _event, before, after, _provider_status, code, _reason, at in events:
        if before != after:
            row = rows.get(mid)
            changes.append(
                (
                    org,
                    announce.status_change_data(
                        mid,
                        row.case_id if row else None,
                        row.channel if row else None,
                        after,
                        before,
                        at,
                        code,
                    ),
                )
            )
    await announce.status_changes(conn, changes)


# Retries are scheduled on a 100 ms grid: the retries of one batch (decided at the same
# `now`, with delays within a small jitter range or one Retry-After) share a few jobs,
# while a retry waits at most 0.1 s longer than asked. A whole-second grid added 0.5 s
# on average to every retry, and the last retries of a run decide when it ends.
_RETRY_GRID_US = 100_000


def _retry_slot_after(at: datetime) -> datetime:
    """Round up (never down: a provider's Retry-After is a floor) to the retry grid."""
    over = at.microsecond % _RETRY_GRID_US
    return at if over == 0 else at + timedelta(microseconds=_RETRY_GRID_US - over)


async def _send_all(
    provider: ChannelProvider,
    rows: list[Row],
    pacer: ratelimit.Pacer | None,
    clock: Callable[[], datetime],
) -> tuple[list[SendResult | BaseException], dict[int, datetime]]:
    """Send every row concurrently (a rate-limited account's each at its turn): the
    results in order, and when each answer that was not an acceptance came, by index.

    One task per message, queueing in the provider (its pool or semaphore) in the order
    the batches were claimed: a job's batch finishes, and is recorded, before later
    batches of other jobs get the provider, so claims, sends and records of the jobs
    overlap. (A few lanes per batch instead shared the provider round-robin between all
    running jobs: every batch finished late and together.)"""
    loop = asyncio.get_running_loop()
    if pacer is None:
        tasks = [loop.create_task(provider.send(_outbound(row))) for row in rows]
    else:
        tasks = [loop.create_task(_paced(provider, row, pacer)) for row in rows]
    answered: dict[int, datetime] = {}
    position = {task: i for i, task in enumerate(tasks)}

    def note(task: asyncio.Task[SendResult]) -> None:
        if task.cancelled() or task.exception() is not None or not task.result().accepted:
            answered[position[task]] = clock()

    for task in tasks:
        task.add_done_callback(note)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return results, answered


async def _paced(provider: ChannelProvider, row: Row, pacer: ratelimit.Pacer) -> SendResult:
    try:
        await pacer.wait_turn()
    except ratelimit.PacingUnavailable as exc:  # nothing was sent: try again later
        return SendResult(
            False, retryable=True, error_code="rate_limit_unavailable", error_detail=str(exc)
        )
    return await provider.send(_outbound(row))


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
        headers=row.headers or {},
        whatsapp=row.whatsapp,
        attachments=row.attachments,
    )


async def _list_unsubscribe(
    container: Container, conn: psycopg.AsyncConnection, message_id: str
) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe (and RFC 2369's List-Unsubscribe it builds on)."""
    url = await unsubscribe.url_for(container, conn, uuid.UUID(message_id))
    return {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def _account_problem(account: AccountRow | None) -> tuple[str, str] | None:
    if account is None:
        return ("no_provider_account", "the message has no provider account")
    if not account.enabled:
        return ("provider_account_disabled", f"provider account {account.id} is disabled")
    return None


def _no_recipient(row: Row, now: datetime) -> gate.Decision:
    facts = gate.AttemptFacts(
        channel=Channel(row.channel), now=now, borrower_do_not_contact=False, case_status=""
    )
    verdict = gate.RuleVerdict("recipient", gate.Outcome.BLOCK, "no_contact_point")
    return gate.combine(facts, (verdict,))


def _is_capped_context(ctx: AttemptContext) -> bool:
    frequency = ctx.policy.frequency_for(ctx.location.jurisdiction)
    return contactability.is_capped(frequency, ctx.channel)


def _jsonb(value: Any) -> str:
    """A parameter the statement reads as `%s::jsonb` (orjson writes it in C; psycopg
    would adapt a list element by element in Python)."""
    return orjson.dumps(value).decode()


def _array(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal for a parameter the statement casts (`%s::uuid[]`):
    one text value instead of a list psycopg adapts element by element (~3% of a
    worker's CPU). Elements are double-quoted with backslash and quote escaped; None is
    NULL; datetimes are ISO 8601 with their offset."""
    return "{" + ",".join([_array_element(v) for v in values]) + "}"


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text + '"'


async def _copy_rows(
    conn: psycopg.AsyncConnection, copy_sql: str, rows: list[tuple[Any, ...]], *constant: Any
) -> None:
    """COPY `rows` in, each followed by the `constant` trailing columns.

    The rows are formatted as COPY text here and written in one piece: psycopg's
    `write_row` adapts value by value and was a visible share of a worker's CPU at
    three rows per message. Values are str, None, int or tz-aware datetime."""
    if rows:
        tail = "".join("\t" + _copy_field(c) for c in constant) + "\n"
        data = "".join("\t".join([_copy_field(v) for v in row]) + tail for row in rows)
        async with conn.cursor().copy(copy_sql) as copy:
            await copy.write(data)


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _copy_escape(match: re.Match[str]) -> str:
    return _COPY_ESCAPES[match.group()]


def _copy_field(value: Any) -> str:
    """One field in COPY text format (NULL is \\N; backslash, tab and line breaks escaped)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _COPY_SPECIAL.sub(_copy_escape, value) if _COPY_SPECIAL.search(value) else value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)

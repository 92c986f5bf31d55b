"""Messages sent as separately receipted parts, against a real database: the resolver the
lock statements use, and the record statement for part events, checked against the
domain's model (`status_after_event` per part, `parts_event` for the message).

- Random receipts for the parts of several messages -- any order, duplicates, several
  events per receipt, failures, late deliveries -- leave every message and part exactly
  where the model says, every distinct event stored once with its part, and no message
  ever moved backward.
- The SQL form of `parts_event` agrees with the Python one on every combination.
- The resolver finds a message by its own provider id, by any part's id, prefers the
  part for part 1, and ignores other accounts' ids.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from parley.channels.base import DeliveryEvent
from parley.domain.channels import Channel
from parley.domain.status import RANK, EventType, MessageStatus, parts_event, status_after_event
from parley.inbox import message_parts, status_events
from tests.support import factories

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
FAILURES = {EventType.FAILED, EventType.REJECTED}
# Deliveries weighted so that about half the messages end delivered (some of them after
# a part failed first), the rest failed or (a part never heard of) sent.
KINDS = [EventType.SENT, EventType.UNKNOWN, EventType.FAILED, EventType.REJECTED]
KINDS += [EventType.DELIVERED] * 10


async def _account(container: Any, org_id: Any) -> str:
    account = await factories.account(
        container,
        org_id,
        "smpp",
        Channel.SMS,
        config={"host": "127.0.0.1", "port": 9, "system_id": "parley", "source_addr": "+1800"},
        secrets_={"password": "secret1"},
    )
    return str(account)


async def _message(
    container: Any, org_id: Any, case: dict[str, Any], account: str, pids: list[str]
) -> str:
    """A `sent` message whose parts have the SMSC ids `pids` (one id: no parts)."""
    message_id = str(uuid.uuid4())
    async with container.db.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO messages (id, organization_id, case_id, borrower_id, channel, "
            "direction, status, priority, to_address, cc, bcc, body, provider_account_id, "
            "provider, provider_message_id, segments, attempts, status_changed_at, "
            "created_at) VALUES (%s, %s, %s, %s, 'sms', 'outbound', 'sent', 'normal', "
            "'+12025550123', '[]', '[]', 'Hello', %s, 'smpp', %s, %s, 1, now(), now())",
            (message_id, org_id, case["case_id"], case["borrower_id"], account, pids[0], len(pids)),
        )
        if len(pids) > 1:
            await message_parts.record_sent_parts(conn, [(message_id, pids)])
    return message_id


def _event(pid: str, kind: EventType, n: int) -> DeliveryEvent:
    return DeliveryEvent(
        event_type=kind,
        provider_message_id=pid,
        provider_event_id=f"{pid}:{kind.value}:{n}",
        occurred_at=AT + timedelta(minutes=n),
        provider_status=kind.value,
        error_code=f"E{pid}" if kind in FAILURES else None,
        reason="undeliverable" if kind in FAILURES else None,
        raw={"n": n},
    )


class Model:
    """What the domain says a message of several parts goes through."""

    def __init__(self, parts: int) -> None:
        self.status = MessageStatus.SENT
        self.parts = [MessageStatus.SENT] * parts
        self.error: str | None = None
        self.seen: set[str] = set()
        self.history = [self.status]

    def apply(self, part: int, event: DeliveryEvent) -> None:
        if event.provider_event_id in self.seen:
            return
        self.seen.add(event.provider_event_id)
        self.parts[part - 1] = status_after_event(self.parts[part - 1], event.event_type)
        after = status_after_event(self.status, parts_event(self.parts))
        if after != self.status:
            if event.event_type in FAILURES:
                self.error = event.error_code or self.error
            self.status = after
            self.history.append(after)


async def test_random_part_receipts_follow_the_domain_model(container: Any, tenant: Any) -> None:
    org = tenant.organization_id
    case = await factories.borrower_with_case(container, org)
    account = await _account(container, org)
    rng = random.Random(20261122)
    for scenario in range(60):
        count = rng.choice([2, 3, 3, 4])
        pids = [f"s{scenario}p{n}" for n in range(1, count + 1)]
        message_id = await _message(container, org, case, account, pids)
        model = Model(count)
        events = [
            (part, _event(pids[part - 1], rng.choice(KINDS), n))
            for n, part in enumerate(
                [p for p in range(1, count + 1) for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3]))]
            )
        ]
        events += rng.sample(events, len(events) // 3)  # the SMSC offers some again
        rng.shuffle(events)
        while events:  # receipts of one to three events each
            k = rng.randint(1, 3)
            batch, events = events[:k], events[k:]
            async with container.db.pool.connection() as conn, conn.transaction():
                targets = await status_events.lock_messages(conn, account, [e for _, e in batch])
                _, unmatched = await status_events.record_events(
                    conn, targets, [e for _, e in batch]
                )
            assert unmatched == 0
            for part, event in batch:
                model.apply(part, event)
        await _check(container, message_id, model, scenario)


async def _check(container: Any, message_id: str, model: Model, scenario: int) -> None:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, error_code FROM messages WHERE id = %s", (message_id,)
        )
        assert await cur.fetchone() == (model.status.value, model.error), scenario
        cur = await conn.execute(
            "SELECT status FROM message_parts WHERE message_id = %s ORDER BY part",
            (message_id,),
        )
        assert [r[0] for r in await cur.fetchall()] == [p.value for p in model.parts], scenario
        cur = await conn.execute(
            "SELECT provider_event_id, part, status_before, status_after FROM message_events "
            "WHERE message_id = %s ORDER BY id",
            (message_id,),
        )
        rows = await cur.fetchall()
    assert sorted(r[0] for r in rows) == sorted(model.seen), scenario
    assert all(r[1] == int(r[0].split(":")[0].split("p")[-1]) for r in rows), scenario
    moves = [MessageStatus(r[3]) for r in rows if r[2] != r[3]]
    assert [MessageStatus.SENT, *moves] == model.history, scenario
    assert all(RANK[a] < RANK[b] for a, b in itertools.pairwise(model.history)), scenario


async def test_sql_parts_event_agrees_with_the_domain(container: Any) -> None:
    statuses = [MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.DELIVERED]
    combos = [list(c) for n in (1, 2, 3) for c in itertools.product(statuses, repeat=n)]
    async with container.db.pool.connection() as conn:
        for combo in combos:
            cur = await conn.execute(
                f"SELECT {message_parts.PARTS_EVENT_SQL} FROM unnest(%s::text[]) AS s",
                ([s.value for s in combo],),
            )
            assert (await cur.fetchone())[0] == parts_event(combo).value, combo


async def test_the_resolver_finds_messages_by_any_part(
    container: Any, tenant: Any, other_tenant: Any
) -> None:
    case = await factories.borrower_with_case(container, tenant.organization_id)
    account = await _account(container, tenant.organization_id)
    single = await _message(container, tenant.organization_id, case, account, ["one"])
    multi = await _message(container, tenant.organization_id, case, account, ["m1", "m2", "m3"])
    other_case = await factories.borrower_with_case(container, other_tenant.organization_id)
    other_account = await _account(container, other_tenant.organization_id)
    await _message(container, other_tenant.organization_id, other_case, other_account, ["x1", "m2"])

    def events(*pids: str) -> list[DeliveryEvent]:
        return [_event(pid, EventType.DELIVERED, 0) for pid in pids]

    async with container.db.pool.connection() as conn, conn.transaction():
        # One id (the scalar form of the statement) ...
        assert await status_events.lock_messages(conn, account, events("m2")) == {
            "m2": status_events.Target(
                multi, str(tenant.organization_id), str(case["case_id"]), "sms", 2
            )
        }
        assert (await status_events.lock_messages(conn, account, events("m1")))["m1"].part == 1
        assert (await status_events.lock_messages(conn, account, events("one")))["one"].part is None
        assert await status_events.lock_messages(conn, account, events("x1")) == {}
        # ... and several.
        targets = await status_events.lock_messages(
            conn, account, events("one", "m1", "m3", "nope", "x1")
        )
    assert {pid: (t.message_id, t.part) for pid, t in targets.items()} == {
        "one": (single, None),
        "m1": (multi, 1),
        "m3": (multi, 3),
    }


async def test_a_part_id_already_taken_is_not_recorded_again(container: Any, tenant: Any) -> None:
    case = await factories.borrower_with_case(container, tenant.organization_id)
    account = await _account(container, tenant.organization_id)
    first = await _message(container, tenant.organization_id, case, account, ["a1", "a2"])
    second = await _message(container, tenant.organization_id, case, account, ["b1", "a2", "b3"])
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT message_id::text, part, provider_message_id FROM message_parts "
            "ORDER BY provider_message_id"
        )
        assert await cur.fetchall() == [
            (first, 1, "a1"),
            (first, 2, "a2"),
            (second, 1, "b1"),
            (second, 3, "b3"),
        ]

"""Claims (invariant 2): a message `sending` under a live job is left alone; under a dead
one (or this same job, re-run after it died) it is flagged for review, never resent."""

from __future__ import annotations

import asyncio
from datetime import datetime

from parley.dispatch.pipeline import Dispatcher
from tests.support import factories


async def _message(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Hi"}
    )
    return r.json()["messageId"], data


async def _fake_job(container, status: str) -> int:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, args) "
            "VALUES ('dispatch', 'parley:send_messages', %s, '{}') RETURNING id",
            (status,),
        )
        return (await cur.fetchone())[0]


async def _state(container, mid):
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, claim_job_id, attempts FROM messages WHERE id = %s", (mid,)
        )
        return await cur.fetchone()


async def test_a_live_claim_is_left_alone_and_a_dead_one_is_reviewed(tenant, container):
    mid, _ = await _message(tenant, container)
    job_a = await _fake_job(container, "doing")
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE messages SET status = 'sending', claim_job_id = %s WHERE id = %s",
            (job_a, mid),
        )
    await Dispatcher(container, job_id=job_a + 1000).run([mid])
    assert (await _state(container, mid))[0] == "sending"  # job A is still running
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", (job_a,)
        )
    await Dispatcher(container, job_id=job_a + 1000).run([mid])
    status, claim, attempts = await _state(container, mid)
    assert (status, claim, attempts) == ("needs_review", job_a, 0)


async def test_a_job_rerun_after_dying_reviews_its_own_claims(tenant, container):
    mid, _ = await _message(tenant, container)
    job = await _fake_job(container, "doing")
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE messages SET status = 'sending', claim_job_id = %s WHERE id = %s",
            (job, mid),
        )
    await Dispatcher(container, job_id=job).run([mid])
    assert (await _state(container, mid))[0] == "needs_review"
    report = (await tenant.client.get(f"/api/messages/{mid}/delivery-report")).json()
    assert report["events"][-1]["event"] == "needs_review"


async def test_outcome_is_not_recorded_over_a_claim_taken_over(tenant, container):
    """The sending job learns the outcome after its claim was judged dead: no event, no
    retry job, the review stands."""
    mid, _ = await _message(tenant, container)
    job = await _fake_job(container, "doing")
    d = Dispatcher(container, job_id=job)
    claimed = await d._claim([mid])
    assert [r.id for r in claimed] == [mid]
    async with container.db.pool.connection() as conn:  # another job flags it meanwhile
        await conn.execute("UPDATE messages SET status = 'needs_review' WHERE id = %s", (mid,))
    from parley.channels.base import SendResult
    from parley.dispatch.pipeline import Outcome

    await d._record([Outcome(claimed[0], SendResult(False, retryable=True, error_code="451"))])
    assert (await _state(container, mid))[0] == "needs_review"
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE args->'message_ids' ? %s "
            "AND status = 'todo'",
            (mid,),
        )
        assert (await cur.fetchone())[0] == 1  # only the original API job, no retry job
        cur = await conn.execute(
            "SELECT count(*) FROM message_events WHERE message_id = %s AND event_type = 'deferred'",
            (mid,),
        )
        assert (await cur.fetchone())[0] == 0


async def test_concurrent_dispatchers_never_exhaust_the_pool(tenant, container):
    """More concurrent jobs than pooled connections still finish (no nested checkout)."""
    ids = []
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    for i in range(30):
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "sms", "body": f"m{i}"},
        )
        ids.append(r.json()["messageId"])
    await asyncio.wait_for(
        asyncio.gather(*(Dispatcher(container, job_id=None).run([m]) for m in ids)), 60
    )
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT status, count(*) FROM messages GROUP BY status")
        assert dict(await cur.fetchall()) == {"sent": 30}


async def test_concurrent_first_messages_share_one_thread(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    rs = await asyncio.gather(
        *(
            tenant.client.post(
                f"/api/cases/{data['case_id']}/messages",
                json={"messageType": "sms", "body": f"hello {i}"},
            )
            for i in range(6)
        )
    )
    assert all(r.status_code == 201 for r in rs), [r.text for r in rs]
    threads = (await tenant.client.get(f"/api/cases/{data['case_id']}/threads")).json()
    assert len(threads["threads"]) == 1 and threads["threads"][0]["messageCount"] == 6


async def test_a_person_resolves_a_message_needing_review(tenant, container):
    mid, _ = await _message(tenant, container)
    job = await _fake_job(container, "failed")
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE messages SET status = 'sending', claim_job_id = %s WHERE id = %s",
            (job, mid),
        )
    await Dispatcher(container, job_id=job + 1).run([mid])
    assert (await _state(container, mid))[0] == "needs_review"
    url = f"/api/messages/{mid}/resolve-review"
    bad = await tenant.client.post(url, json={"resolution": "maybe"})
    assert bad.status_code == 422
    r = await tenant.client.post(url, json={"resolution": "not_sent", "note": "not in logs"})
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert r.json()["errorCode"] == "not_sent_after_review"
    again = await tenant.client.post(url, json={"resolution": "sent"})
    assert again.status_code == 409
    report = (await tenant.client.get(f"/api/messages/{mid}/delivery-report")).json()
    last = report["events"][-1]
    assert last["event"] == "review_resolved" and "Ada Admin" in last["reason"]


async def test_provider_text_survives_the_event_copy(tenant, container):
    """Events are written as COPY text formatted by the dispatcher: a provider's error
    text with a backslash, tab, line breaks and non-ASCII reaches the row unchanged."""
    mid, _ = await _message(tenant, container)
    job = await _fake_job(container, "doing")
    d = Dispatcher(container, job_id=job)
    claimed = await d._claim([mid])
    from parley.channels.base import SendResult
    from parley.dispatch.pipeline import Outcome

    detail = 'mailbox "x\\y"\tfull\r\nretry later: é €'
    await d._record([Outcome(claimed[0], SendResult(False, error_code="552", error_detail=detail))])
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_type, status_before, status_after, error_code, reason, provider_status "
            "FROM message_events WHERE message_id = %s ORDER BY id DESC LIMIT 1",
            (mid,),
        )
        assert await cur.fetchone() == ("failed", "sending", "failed", "552", detail, None)


async def test_retries_due_at_the_same_time_share_a_waiting_job(container):
    """Retries of different batches due on the same slot join one waiting job; a job a
    worker already took, or one that is full, is not joined."""
    import uuid
    from datetime import UTC, timedelta

    from parley.dispatch import outbox

    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    first, second, third = ([str(uuid.uuid4()) for _ in range(n)] for n in (2, 3, 4))

    async def retry(ids, batch_size=10):
        async with container.db.pool.connection() as conn, conn.transaction():
            await outbox.defer_retry(
                container.jobs, conn, ids, schedule_at=at, batch_size=batch_size
            )

    async def jobs():
        async with container.db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, args->'message_ids' FROM procrastinate_jobs "
                "WHERE task_name = 'parley:send_messages' ORDER BY id"
            )
            return await cur.fetchall()

    await retry(first)
    await retry(second)
    ((job, ids),) = await jobs()
    assert ids == first + second
    await retry(third, batch_size=8)  # 5 + 4 would exceed a batch: a job of their own
    assert [ids for _, ids in await jobs()] == [first + second, third]
    async with container.db.pool.connection() as conn:
        await conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (job,))
    await retry(first, batch_size=100)
    assert [ids for _, ids in await jobs()] == [first + second, third + first]


async def test_outcome_announcements_are_what_activity_emit_would_send(
    tenant, container, database_url
):
    """The record statement builds its NOTIFY payloads in SQL: they must be the payload
    `activity.emit` builds for the same change (sent, and a failure with its code)."""
    import orjson
    import psycopg

    from parley.channels.base import SendResult
    from parley.dispatch.pipeline import Outcome
    from parley.inbox import announce
    from parley.services import activity

    ok, data = await _message(tenant, container)
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Two"}
    )
    bad = r.json()["messageId"]
    job = await _fake_job(container, "doing")
    d = Dispatcher(container, job_id=job)
    claimed = {row.id: row for row in await d._claim([ok, bad])}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listen:
        await listen.execute(f"LISTEN {activity.CHANNEL}")
        await d._record(
            [
                Outcome(claimed[ok], SendResult(True, provider_message_id="sbx_1")),
                Outcome(claimed[bad], SendResult(False, error_code="21610", error_detail="x")),
            ]
        )
        seen = {}
        async for note in listen.notifies(timeout=2.0, stop_after=2):
            payload = orjson.loads(note.payload)
            seen[payload["data"]["messageId"]] = payload
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT status_changed_at FROM messages WHERE id = %s", (ok,))
        (at,) = await cur.fetchone()
    case_id = str(data["case_id"])
    for mid, status, code in ((ok, "sent", None), (bad, "failed", "21610")):
        expected = {
            "org": str(tenant.organization_id),
            "type": announce.EVENT,
            "data": announce.status_change_data(mid, case_id, "sms", status, "sending", at, code),
        }
        want = orjson.loads(activity._payload(*expected.values()))
        got = seen[mid]
        # The same instant (the database may render the stored one in another zone).
        assert datetime.fromisoformat(got["data"].pop("timestamp")) == datetime.fromisoformat(
            want["data"].pop("timestamp")
        )
        assert got == want, mid

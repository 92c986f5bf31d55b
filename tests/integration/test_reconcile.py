"""Reconciliation of messages whose dispatch job ended without finishing them."""

from __future__ import annotations

from datetime import timedelta

from parley.dispatch.reconcile import reconcile
from tests.support import factories
from tests.support.live import drain


async def _send(tenant, container, n=2):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    ids = []
    for i in range(n):
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": f"{i}"}
        )
        ids.append(r.json()["messageId"])
    return ids


async def test_a_message_whose_job_failed_for_good_is_sent_after_all(tenant, container):
    ids = await _send(tenant, container)
    async with container.db.pool.connection() as conn:
        # The job gave up (e.g. a long outage exhausted its retries); time passes.
        await conn.execute("UPDATE procrastinate_jobs SET status = 'failed'")
    later = container.clock() + timedelta(minutes=10)
    assert await reconcile(container, now=later) == (2, 0)
    assert await reconcile(container, now=later) == (0, 0)  # they have a job again
    await drain(container)
    for mid in ids:
        assert (await tenant.client.get(f"/api/messages/{mid}")).json()["status"] == "sent"


async def test_recent_and_future_messages_are_left_alone(tenant, container):
    await _send(tenant, container)
    async with container.db.pool.connection() as conn:
        await conn.execute("UPDATE procrastinate_jobs SET status = 'failed'")
    assert await reconcile(container) == (0, 0)  # inside the grace period
    later = container.clock() + timedelta(minutes=10)
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE messages SET status = 'scheduled', scheduled_at = %s",
            (container.clock() + timedelta(hours=1),),
        )
    assert await reconcile(container, now=later) == (0, 0)  # not due yet


async def test_sending_under_an_ended_job_is_flagged_for_review(tenant, container):
    ids = await _send(tenant, container, n=1)
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM procrastinate_jobs")
        job = (await cur.fetchone())[0]
        await conn.execute("UPDATE procrastinate_jobs SET status = 'failed'")
        await conn.execute(
            "UPDATE messages SET status = 'sending', claim_job_id = %s",
            (job,),
        )
    later = container.clock() + timedelta(minutes=10)
    assert await reconcile(container) == (0, 0)  # the claim is recent: leave it
    assert await reconcile(container, now=later) == (0, 1)
    msg = (await tenant.client.get(f"/api/messages/{ids[0]}")).json()
    assert msg["status"] == "needs_review" and msg["errorCode"] == "claim_lost"


async def test_only_messages_no_live_job_carries_are_orphans(tenant, container):
    # Each send is its own job; the job of the second one failed for good.
    ids = await _send(tenant, container, n=3)
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE procrastinate_jobs SET status = 'failed' WHERE args->'message_ids' ? %s",
            (ids[1],),
        )
        cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")
        assert (await cur.fetchone())[0] == 2
    later = container.clock() + timedelta(minutes=10)
    assert await reconcile(container, now=later) == (1, 0)
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT args->'message_ids' FROM procrastinate_jobs WHERE status = 'todo' "
            "ORDER BY id DESC LIMIT 1"
        )
        assert (await cur.fetchone())[0] == [ids[1]]  # the new job carries just that one

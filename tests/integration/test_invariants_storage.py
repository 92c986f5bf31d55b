"""Invariants enforced by the database itself: append-only record (6) and the outbox (1)."""

from __future__ import annotations

import psycopg
import pytest

from parley.domain.channels import Channel
from tests.support import factories


async def _send_one(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id)
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={"messageType": "sms", "body": "Hello, please call us. Reply STOP to opt out."},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_message_content_cannot_be_edited_or_deleted(tenant, container):
    msg = await _send_one(tenant, container)
    async with container.db.pool.connection() as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute(
                "UPDATE messages SET body = 'changed' WHERE id = %s", (msg["messageId"],)
            )
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute("DELETE FROM messages WHERE id = %s", (msg["messageId"],))
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute(
                "UPDATE message_events SET reason = 'x' WHERE message_id = %s", (msg["messageId"],)
            )
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute(
                "DELETE FROM message_events WHERE message_id = %s", (msg["messageId"],)
            )
        # Delivery-state columns may still move.
        await conn.execute(
            "UPDATE messages SET status = 'sending' WHERE id = %s", (msg["messageId"],)
        )


async def test_message_and_its_job_are_written_together(tenant, container):
    msg = await _send_one(tenant, container)
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'parley:send_messages' "
            "AND args->'message_ids' ? %s",
            (msg["messageId"],),
        )
        assert (await cur.fetchone())[0] == 1


async def test_rejected_send_writes_neither_message_nor_job(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id)
    await factories.template(
        container, tenant.organization_id, "t1", Channel.SMS, "Hi {{ name }}, you owe {{ amount }}"
    )
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={"messageType": "sms", "templateId": "t1", "variables": {}},
    )
    assert r.status_code == 422
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert {e["field"] for e in problem["errors"]} == {"variables.name", "variables.amount"}
    async with container.db.pool.connection() as conn:
        for table in ("messages", "procrastinate_jobs", "message_events", "threads"):
            cur = await conn.execute(f"SELECT count(*) FROM {table}")
            assert (await cur.fetchone())[0] == 0, table


async def test_a_failure_after_the_job_insert_rolls_back_both(tenant, container, monkeypatch):
    """Break the commit after the job was deferred: neither row may survive."""
    from parley.services import messages as svc

    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id)
    real = svc.outbox.defer_send

    async def defer_then_fail(*args, **kwargs):
        await real(*args, **kwargs)
        raise RuntimeError("crash between job insert and commit")

    monkeypatch.setattr(svc.outbox, "defer_send", defer_then_fail)
    try:
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Hello"}
        )
        assert r.status_code == 500
    except RuntimeError as exc:  # the test transport re-raises app errors
        assert "crash between" in str(exc)
    async with container.db.pool.connection() as conn:
        for table in ("messages", "procrastinate_jobs"):
            cur = await conn.execute(f"SELECT count(*) FROM {table}")
            assert (await cur.fetchone())[0] == 0, table


async def test_every_message_has_its_job_before_and_after_sending(tenant, container):
    from tests.support.live import drain

    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    ids = []
    for i in range(3):
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "sms", "body": f"Message {i}"},
        )
        ids.append(r.json()["messageId"])

    async def jobs_for(mid, statuses):
        async with container.db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE args->'message_ids' ? %s "
                "AND status::text = ANY(%s)",
                (mid, statuses),
            )
            return (await cur.fetchone())[0]

    for mid in ids:
        assert await jobs_for(mid, ["todo"]) == 1
    await drain(container)
    for mid in ids:
        assert await jobs_for(mid, ["todo", "doing"]) == 0
        assert await jobs_for(mid, ["succeeded"]) == 1  # kept: which job sent it is known


async def test_unknown_template_variables_are_refused_and_nothing_is_written(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id)
    await factories.template(
        container,
        tenant.organization_id,
        "t1",
        Channel.SMS,
        "Hi #borrower.first_name, invoice {{ invoice.number }} of {{ amount }}",
    )
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={
            "messageType": "sms",
            "templateId": "t1",
            # "invoice" is used (first segment of invoice.number); the others are not.
            "variables": {"invoice": {"number": "1"}, "amount": "5", "bogusVar": "1", "x": 2},
        },
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    errors = r.json()["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [
        ("variables.bogusVar", "unknown_variable"),
        ("variables.x", "unknown_variable"),
    ]
    assert "(variables it uses: amount, invoice)" in errors[0]["message"]
    async with container.db.pool.connection() as conn:
        for table in ("messages", "procrastinate_jobs", "message_events", "threads"):
            cur = await conn.execute(f"SELECT count(*) FROM {table}")
            assert (await cur.fetchone())[0] == 0, table
    # The case's own objects cannot be replaced by a variable (a 422, not a crash).
    reserved = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={"messageType": "sms", "templateId": "t1", "variables": {"borrower": "x"}},
    )
    assert reserved.status_code == 422, reserved.text
    assert [(e["field"], e["code"]) for e in reserved.json()["errors"]] == [
        ("variables.borrower", "reserved_variable")
    ]
    ok = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={
            "messageType": "sms",
            "templateId": "t1",
            "variables": {"invoice": {"number": "1"}, "amount": "5"},
        },
    )
    assert ok.status_code == 201, ok.text

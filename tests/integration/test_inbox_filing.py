"""Filing a team-queue sender's messages on a borrower and case
(POST /api/inbox/{conversationId}/file): the messages join the case's conversation and
its agent, the sender's address can become a contact point, opt-outs reach the consent
ledger, the filing is audited and announced, and the database still refuses every other
change to a message's case.

Replies arrive as signed sandbox webhooks handled by the `process_inbound` job (run with
`drain`); what the tests read back is the API and, for the ledger and the guard, the
database.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from parley.domain.channels import Channel
from parley.inbox import live
from parley.services import consent
from tests.conftest import Tenant
from tests.integration.test_inbox import _inbox, _reply, inbox_world
from tests.integration.test_live_updates import connect, serving
from tests.support import factories
from tests.support.live import drain

STRANGER = "+13125550142"  # writes from a number nobody has on file


@pytest.fixture
async def world(container: Any, tenant: Tenant) -> Any:
    """As in test_inbox: Pat's case assigned to an agent (`owner`), Sam's unassigned,
    another agent (`other`), and the sandbox accounts replies come through."""
    w = await inbox_world(container, tenant)
    yield w
    await w["owner"].aclose()
    await w["other"].aclose()


async def _rows(container: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def _scalar(container: Any, sql: str, *params: Any) -> Any:
    rows = await _rows(container, sql, *params)
    return rows[0][0] if rows else None


async def _team_conversation(client: Any, sender: str = STRANGER) -> dict[str, Any]:
    (conv,) = [c for c in await _inbox(client, queue="team") if c["senderAddress"] == sender]
    return conv


async def _stranger_writes(
    container: Any, tenant: Any, world: dict[str, Any], *bodies: str, sender: str = STRANGER
) -> dict[str, Any]:
    for body in bodies:  # one at a time: their order is the order they are recorded in
        await _reply(tenant, world["accounts"], sender, body)
        await drain(container, ["receipts"])
    return await _team_conversation(tenant.client, sender)


def _file_body(world: dict[str, Any], who: str = "pat", **extra: Any) -> dict[str, Any]:
    return {
        "borrowerId": str(world[who]["borrower_id"]),
        "caseId": str(world[who]["case_id"]),
        **extra,
    }


async def _unfiled(container: Any) -> list[tuple[Any, ...]]:
    return await _rows(
        container,
        "SELECT id, body FROM messages WHERE case_id IS NULL ORDER BY created_at, id",
    )


# -- the happy path ---------------------------------------------------------------------


async def test_filing_moves_the_messages_to_the_case_conversation_and_its_agent(
    container, tenant, world
):
    owner = world["owner"]
    pat = world["pat"]
    src = await _stranger_writes(
        container, tenant, world, "Hi, this is Pat on my new phone", "Can I pay on Friday?"
    )
    assert src["unreadCount"] == 2
    # Pat's own conversation has one unread reply, newer than the stranger's texts.
    await _reply(tenant, world["accounts"], pat["phone"], "I got your letter")
    await drain(container, ["receipts"])
    (before,) = await _inbox(owner, agent="me")
    assert before["unreadCount"] == 1
    pats_reply = before["lastMessage"]
    r = await owner.get(f"/api/inbox/{src['conversationId']}/messages")
    assert r.status_code == 200, r.text
    listed = r.json()["messages"]
    assert [m["body"] for m in listed] == [
        "Can I pay on Friday?",
        "Hi, this is Pat on my new phone",
    ]
    assert r.json()["totalCount"] == 2
    message_ids = [m["messageId"] for m in reversed(listed)]

    r = await tenant.client.post(
        f"/api/inbox/{src['conversationId']}/file", json=_file_body(world, addContactPoint=True)
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["fromConversationId"] == src["conversationId"]
    assert out["fromConversationRemoved"] is True
    assert out["messageIds"] == message_ids  # oldest first
    assert out["caseId"] == str(pat["case_id"])
    assert out["borrowerId"] == str(pat["borrower_id"])
    assert out["filedBy"] == "Ada Admin"
    assert out["consentChanges"] == []
    cp = out["contactPoint"]
    assert (cp["type"], cp["value"], cp["added"]) == ("phone", STRANGER, True)
    conv = out["conversation"]
    assert conv["conversationId"] == before["conversationId"]  # merged into Pat's
    assert conv["assignedAgentId"] == str(pat["agent_id"])
    assert conv["unreadCount"] == 3
    assert conv["status"] == "open"
    # The older filed messages do not move the latest item (or the activity) back.
    assert conv["lastMessage"] == pats_reply
    assert conv["lastActivityAt"] == before["lastActivityAt"]

    # The team queue no longer has the sender; the case's agent has everything.
    assert [c for c in await _inbox(owner, queue="team") if c["caseId"] is None] == []
    assert (await owner.get(f"/api/inbox/{src['conversationId']}")).status_code == 404
    (mine,) = await _inbox(owner, agent="me")
    assert (mine["conversationId"], mine["unreadCount"]) == (before["conversationId"], 3)

    # Each message: on the case and borrower, the new contact point, the case's SMS thread.
    threads = (await owner.get(f"/api/cases/{pat['case_id']}/threads")).json()["threads"]
    (sms_thread,) = [t for t in threads if t["channel"] == "sms"]
    assert sms_thread["messageCount"] == 3
    assert sms_thread["lastMessageAt"] == pats_reply["at"]  # not moved back either
    for mid in message_ids:
        m = (await owner.get(f"/api/messages/{mid}")).json()
        assert (m["caseId"], m["borrowerId"], m["threadId"]) == (
            str(pat["case_id"]),
            str(pat["borrower_id"]),
            sms_thread["threadId"],
        )
        assert m["flags"] == ["unfiled"]  # how it arrived; the record is not rewritten
        report = (await owner.get(f"/api/messages/{mid}/delivery-report")).json()
        filed = [e for e in report["events"] if e["event"] == "filed"]
        assert len(filed) == 1
        assert "by Ada Admin" in filed[0]["reason"]
        assert filed[0]["status"] == "received"
    assert await _scalar(
        container, "SELECT contact_point_id FROM messages WHERE id = %s", message_ids[0]
    ) == uuid.UUID(cp["contactPointId"])
    case_messages = (await owner.get(f"/api/cases/{pat['case_id']}/messages")).json()
    assert set(message_ids) <= {m["messageId"] for m in case_messages["messages"]}
    # On the borrower's timeline, with the filing event.
    timeline = (await owner.get(f"/api/borrowers/{pat['borrower_id']}/timeline")).json()
    assert set(message_ids) <= {i["messageId"] for i in timeline["items"] if i["type"] == "message"}
    assert {i["messageId"] for i in timeline["items"] if i.get("event") == "filed"} == set(
        message_ids
    )
    # The audit record: who filed what, when.
    (filing,) = await _rows(
        container,
        "SELECT conversation_id, into_conversation_id, case_id, borrower_id, sender_address, "
        "message_ids, contact_point_added, filed_by_name, filed_by_user_id "
        "FROM conversation_filings",
    )
    assert filing[:5] == (
        uuid.UUID(src["conversationId"]),
        uuid.UUID(before["conversationId"]),
        pat["case_id"],
        pat["borrower_id"],
        STRANGER,
    )
    assert [str(i) for i in filing[5]] == message_ids
    assert filing[6:8] == (True, "Ada Admin")
    assert filing[8] is not None
    contact_points = (await owner.get(f"/api/borrowers/{pat['borrower_id']}/contact-points")).json()
    assert STRANGER in {c["value"] for c in contact_points["items"]}

    # The number is Pat's now: the next text goes straight to Pat's conversation.
    await _reply(tenant, world["accounts"], STRANGER, "Did you get my messages?")
    await drain(container, ["receipts"])
    (mine,) = await _inbox(owner, agent="me")
    assert mine["unreadCount"] == 4
    assert mine["lastMessage"]["preview"] == "Did you get my messages?"
    assert [c for c in await _inbox(owner, queue="team") if c["caseId"] is None] == []

    # Filing it again: 409, saying where it went.
    r = await tenant.client.post(f"/api/inbox/{src['conversationId']}/file", json=_file_body(world))
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["code"] == "already_filed"
    assert before["conversationId"] in r.json()["detail"]


async def test_filing_some_messages_leaves_the_rest_in_the_team_queue(container, tenant, world):
    src = await _stranger_writes(container, tenant, world, "first", "second", "third")
    listed = (await tenant.client.get(f"/api/inbox/{src['conversationId']}/messages")).json()
    first, second, third = (m["messageId"] for m in reversed(listed["messages"]))
    r = await tenant.client.post(f"/api/inbox/{src['conversationId']}/read")
    assert r.status_code == 200
    await _reply(tenant, world["accounts"], STRANGER, "fourth")
    await drain(container, ["receipts"])
    fourth = (await _team_conversation(tenant.client))["lastMessage"]["messageId"]

    r = await tenant.client.post(
        f"/api/inbox/{src['conversationId']}/file",
        json=_file_body(world, who="sam", messageIds=[fourth, first]),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["messageIds"] == [first, fourth]
    assert out["fromConversationRemoved"] is False
    assert out["contactPoint"] is None  # not added, and not on file
    conv = out["conversation"]
    assert conv["caseId"] == str(world["sam"]["case_id"])
    assert conv["assignedAgentId"] is None  # Sam's case has no agent: the team queue
    assert conv["unreadCount"] == 1  # "fourth" arrived after the last read
    assert conv["lastMessage"]["messageId"] == fourth

    left = await _team_conversation(tenant.client)
    assert left["conversationId"] == src["conversationId"]
    assert left["unreadCount"] == 0
    assert left["lastMessage"]["messageId"] == third
    listed = (await tenant.client.get(f"/api/inbox/{src['conversationId']}/messages")).json()
    assert [m["messageId"] for m in listed["messages"]] == [third, second]
    m = (await tenant.client.get(f"/api/messages/{first}")).json()
    assert m["caseId"] == str(world["sam"]["case_id"])
    assert (
        await _scalar(container, "SELECT contact_point_id FROM messages WHERE id = %s", first)
        is None
    )

    # An already filed message: 409, naming it; nothing else moves.
    r = await tenant.client.post(
        f"/api/inbox/{src['conversationId']}/file",
        json=_file_body(world, who="sam", messageIds=[second, first]),
    )
    assert r.status_code == 409, r.text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [
        ("messageIds.1", "already_filed")
    ]
    assert {body for _, body in await _unfiled(container)} == {"second", "third"}

    # The rest, later: the team-queue conversation goes.
    r = await tenant.client.post(
        f"/api/inbox/{src['conversationId']}/file", json=_file_body(world, who="sam")
    )
    assert r.status_code == 200, r.text
    assert r.json()["messageIds"] == [second, third]
    assert r.json()["fromConversationRemoved"] is True
    assert r.json()["conversation"]["conversationId"] == conv["conversationId"]
    assert await _unfiled(container) == []
    assert await _scalar(container, "SELECT count(*) FROM conversation_filings") == 2


async def test_idempotency_key_replays_the_filing(container, tenant, world):
    src = await _stranger_writes(container, tenant, world, "hello")
    url = f"/api/inbox/{src['conversationId']}/file"
    headers = {"Idempotency-Key": "file-" + uuid.uuid4().hex}
    first = await tenant.client.post(url, json=_file_body(world), headers=headers)
    assert first.status_code == 200, first.text
    again = await tenant.client.post(url, json=_file_body(world), headers=headers)
    assert again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    other = await tenant.client.post(url, json=_file_body(world, who="sam"), headers=headers)
    assert other.status_code == 422  # same key, different body
    assert await _scalar(container, "SELECT count(*) FROM conversation_filings") == 1


# -- who may file -------------------------------------------------------------------------


async def test_agents_file_what_they_see_on_any_case_and_other_tenants_get_404(
    container, tenant, other_tenant, world
):
    owner, other = world["owner"], world["other"]
    src = await _stranger_writes(container, tenant, world, "hello?")
    cid = src["conversationId"]

    # Another organization: the conversation does not exist for it.
    other_case = await factories.borrower_with_case(container, other_tenant.organization_id)
    r = await other_tenant.client.post(
        f"/api/inbox/{cid}/file",
        json={"borrowerId": str(other_case["borrower_id"]), "caseId": str(other_case["case_id"])},
    )
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert (await other_tenant.client.get(f"/api/inbox/{cid}/messages")).status_code == 404
    # ... and its case and borrower are unknown here, exactly like made-up ids.
    foreign = await tenant.client.post(
        f"/api/inbox/{cid}/file",
        json={"borrowerId": str(other_case["borrower_id"]), "caseId": str(other_case["case_id"])},
    )
    made_up = await tenant.client.post(
        f"/api/inbox/{cid}/file",
        json={"borrowerId": str(uuid.uuid4()), "caseId": str(uuid.uuid4())},
    )
    assert foreign.status_code == made_up.status_code == 422
    codes = [(e["field"], e["code"]) for e in foreign.json()["errors"]]
    assert codes == [("caseId", "unknown_case"), ("borrowerId", "unknown_borrower")]
    assert codes == [(e["field"], e["code"]) for e in made_up.json()["errors"]]
    assert (
        await tenant.client.post(f"/api/inbox/{uuid.uuid4()}/file", json=_file_body(world))
    ).status_code == 404

    # A supervisor gives the sender to one agent: another agent cannot see it, nor file it.
    r = await tenant.client.post(
        f"/api/inbox/{cid}/assign",
        json={"agentId": str(other.user_id)},  # type: ignore[attr-defined]
    )
    assert r.status_code == 200, r.text
    r = await owner.post(f"/api/inbox/{cid}/file", json=_file_body(world))
    assert r.status_code == 404
    assert len(await _unfiled(container)) == 1

    # The agent who has it files it on Pat's case (the owner's): the owner gets it, and
    # the filer still learns where it went.
    r = await other.post(f"/api/inbox/{cid}/file", json=_file_body(world))
    assert r.status_code == 200, r.text
    assert r.json()["filedBy"] == "Another Agent"
    assert r.json()["conversation"]["assignedAgentId"] == str(world["pat"]["agent_id"])
    assert await _inbox(other, agent="me") == []
    (mine,) = await _inbox(owner, agent="me")
    assert mine["conversationId"] == r.json()["conversation"]["conversationId"]
    assert (await other.get(f"/api/inbox/{mine['conversationId']}")).status_code == 404


# -- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"caseId": None}, "caseId"),
        ({"borrowerId": "not-a-uuid"}, "borrowerId"),
        ({"caseid": "x"}, "caseid"),  # unknown field (a typo)
        ({"addContactPoint": "maybe"}, "addContactPoint"),
        ({"messageIds": []}, "messageIds"),
        ({"messageIds": ["nope"]}, "messageIds.0"),
    ],
)
async def test_malformed_filing_requests_are_422(container, tenant, world, change, field):
    src = await _stranger_writes(container, tenant, world, "hello")
    body = {**_file_body(world), **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = await tenant.client.post(f"/api/inbox/{src['conversationId']}/file", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]]
    assert len(await _unfiled(container)) == 1


async def test_filing_refusals_change_nothing(container, tenant, world):
    """422s and 409s that only the data can tell: each leaves the messages, the
    conversations, the contact points and the ledger as they were."""
    src = await _stranger_writes(container, tenant, world, "hello")
    cid = src["conversationId"]
    url = f"/api/inbox/{cid}/file"

    async def state() -> tuple[Any, ...]:
        return (
            await _unfiled(container),
            await _rows(
                container,
                "SELECT id, case_id, unread_count, last_item_id FROM conversations ORDER BY id",
            ),
            await _rows(container, "SELECT id FROM contact_points ORDER BY id"),
            await _rows(container, "SELECT id FROM consent_events"),
            await _rows(container, "SELECT id FROM conversation_filings"),
            await _rows(container, "SELECT id FROM message_events WHERE event_type = 'filed'"),
        )

    before = await state()

    # Sam is not on Pat's case.
    r = await tenant.client.post(
        url,
        json={
            "borrowerId": str(world["sam"]["borrower_id"]),
            "caseId": str(world["pat"]["case_id"]),
        },
    )
    assert r.status_code == 422, r.text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("borrowerId", "not_on_case")]
    assert await state() == before

    # A message of another conversation, or none at all.
    await _reply(tenant, world["accounts"], "+13125550143", "someone else")
    await drain(container, ["receipts"])
    elsewhere = (await _team_conversation(tenant.client, "+13125550143"))["lastMessage"]
    before = await state()
    for wrong in (elsewhere["messageId"], str(uuid.uuid4())):
        r = await tenant.client.post(url, json=_file_body(world, messageIds=[wrong]))
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["code"] == "unknown_message"
    assert await state() == before

    # A sender address that cannot be a contact point (not a valid number).
    await _reply(tenant, world["accounts"], "+15555550100", "hi")
    await drain(container, ["receipts"])
    bad = await _team_conversation(tenant.client, "+15555550100")
    before_bad = await state()
    r = await tenant.client.post(
        f"/api/inbox/{bad['conversationId']}/file", json=_file_body(world, addContactPoint=True)
    )
    assert r.status_code == 422, r.text
    (err,) = r.json()["errors"]
    assert err["field"] == "addContactPoint"
    assert "+15555550100" in err["message"]
    assert await state() == before_bad

    # The address is someone else's contact point by now: 409, nothing added.
    r = await tenant.client.post(
        f"/api/borrowers/{world['sam']['borrower_id']}/contact-points",
        json={"type": "phone", "value": STRANGER},
    )
    assert r.status_code == 201, r.text
    before = await state()
    r = await tenant.client.post(url, json=_file_body(world, addContactPoint=True))
    assert r.status_code == 409, r.text
    (err,) = r.json()["errors"]
    assert (err["field"], err["code"]) == ("addContactPoint", "contact_point_taken")
    assert str(world["sam"]["borrower_id"]) in r.json()["detail"]
    assert await state() == before

    # A case's conversation has nothing unfiled.
    await _reply(tenant, world["accounts"], world["pat"]["phone"], "hi")
    await drain(container, ["receipts"])
    (pats,) = await _inbox(world["owner"], agent="me")
    r = await tenant.client.post(
        f"/api/inbox/{pats['conversationId']}/file", json=_file_body(world)
    )
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["code"] == "already_filed"
    assert len(await _unfiled(container)) == 3


async def test_a_known_borrower_without_a_case_files_only_on_their_own(container, tenant, world):
    r = await tenant.client.post(
        "/api/borrowers",
        json={
            "firstName": "Noor",
            "lastName": "Haddad",
            "address": {"country": "US"},
            "contactPoints": [{"type": "phone", "value": "+13125550188"}],
        },
    )
    assert r.status_code == 201, r.text
    noor = r.json()
    src = await _stranger_writes(container, tenant, world, "I owe you?", sender="+13125550188")
    assert src["borrowerId"] == noor["borrowerId"]
    r = await tenant.client.post(f"/api/inbox/{src['conversationId']}/file", json=_file_body(world))
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["code"] == "borrower_mismatch"
    # Noor becomes a co-borrower on Pat's case: now it files, on Noor's own contact point.
    r = await tenant.client.post(
        f"/api/cases/{world['pat']['case_id']}/borrowers", json={"borrowerId": noor["borrowerId"]}
    )
    assert r.status_code == 201, r.text
    r = await tenant.client.post(
        f"/api/inbox/{src['conversationId']}/file",
        json={"borrowerId": noor["borrowerId"], "caseId": str(world["pat"]["case_id"])},
    )
    assert r.status_code == 200, r.text
    noor_cp = noor["contactPoints"][0]["contactPointId"]
    assert r.json()["contactPoint"]["contactPointId"] == noor_cp
    assert r.json()["contactPoint"]["added"] is False
    assert r.json()["conversation"]["borrowerId"] == noor["borrowerId"]
    # A co-borrower is their own conversation, with the case's agent.
    assert r.json()["conversation"]["assignedAgentId"] == str(world["pat"]["agent_id"])


# -- opt-outs -----------------------------------------------------------------------------


async def _ledger(container: Any, borrower_id: Any) -> list[tuple[Any, ...]]:
    return await _rows(
        container,
        "SELECT channel, action, source, contact_point_id, source_message_id "
        "FROM consent_events WHERE borrower_id = %s ORDER BY id",
        borrower_id,
    )


async def test_a_stop_from_the_unknown_number_is_applied_once_filed(container, tenant, world):
    pat = world["pat"]
    src = await _stranger_writes(container, tenant, world, "who is this", "STOP")
    stop_id = src["lastMessage"]["messageId"]
    url = f"/api/inbox/{src['conversationId']}/file"
    assert await _ledger(container, pat["borrower_id"]) == []  # nobody to record it for

    # Without the address on file there is no contact point to revoke: refused, not lost.
    r = await tenant.client.post(url, json=_file_body(world))
    assert r.status_code == 422, r.text
    (err,) = r.json()["errors"]
    assert (err["field"], err["code"]) == ("addContactPoint", "contact_point_required")
    assert stop_id in err["message"]
    assert len(await _unfiled(container)) == 2

    r = await tenant.client.post(url, json=_file_body(world, addContactPoint=True))
    assert r.status_code == 200, r.text
    cp_id = r.json()["contactPoint"]["contactPointId"]
    changes = r.json()["consentChanges"]
    assert sorted((c["channel"], c["action"], c["contactPointId"]) for c in changes) == [
        (ch, "revoke", cp_id) for ch in ("sms", "voice", "whatsapp")
    ]
    assert {c["messageId"] for c in changes} == {stop_id}
    ledger = await _ledger(container, pat["borrower_id"])
    assert sorted(ledger) == sorted(
        (ch, "revoke", "reply_keyword", uuid.UUID(cp_id), uuid.UUID(stop_id))
        for ch in ("sms", "voice", "whatsapp")
    )
    # The gate now blocks texts to that number, not to Pat's other number; and no
    # confirmation was sent days after the fact.
    r = await tenant.client.post(
        f"/api/cases/{pat['case_id']}/messages",
        json={"messageType": "sms", "to": STRANGER, "body": "Please call us."},
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "blocked"
    r = await tenant.client.post(
        f"/api/cases/{pat['case_id']}/messages",
        json={"messageType": "sms", "to": pat["phone"], "body": "Please call us."},
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "queued"
    assert (
        await _rows(
            container,
            "SELECT purpose FROM messages WHERE direction = 'outbound' AND purpose <> 'collection'",
        )
        == []
    )


async def test_stop_then_start_and_medium_restrictions_from_an_unknown_number(
    container, tenant, world
):
    pat = world["pat"]
    email_cp = await _scalar(
        container,
        "SELECT id FROM contact_points WHERE borrower_id = %s AND kind = 'email'",
        pat["borrower_id"],
    )
    # "stop emailing me" by text names another medium: it needs no contact point for the
    # number and covers the borrower's email addresses (as for a known sender).
    src = await _stranger_writes(container, tenant, world, "please stop emailing me")
    r = await tenant.client.post(f"/api/inbox/{src['conversationId']}/file", json=_file_body(world))
    assert r.status_code == 200, r.text
    assert [
        (c["channel"], c["action"], c["contactPointId"]) for c in r.json()["consentChanges"]
    ] == [("email", "revoke", None)]
    async with container.db.pool.connection() as conn:
        state = await consent.latest_action(
            conn, pat["borrower_id"], email_cp, Channel.EMAIL, container.clock()
        )
    assert state == "revoke"

    # STOP, then START, from another new number: the last word counts.
    other_number = "+13125550143"
    src = await _stranger_writes(container, tenant, world, "STOP", "START", sender=other_number)
    r = await tenant.client.post(
        f"/api/inbox/{src['conversationId']}/file", json=_file_body(world, addContactPoint=True)
    )
    assert r.status_code == 200, r.text
    cp_id = uuid.UUID(r.json()["contactPoint"]["contactPointId"])
    actions = [(c["channel"], c["action"]) for c in r.json()["consentChanges"]]
    assert sorted(a for a in actions if a[1] == "revoke") == [
        ("sms", "revoke"),
        ("voice", "revoke"),
        ("whatsapp", "revoke"),
    ]
    assert [a for a in actions if a[1] == "grant"] == [("sms", "grant")]  # START: its channel
    async with container.db.pool.connection() as conn:
        state = await consent.latest_action(
            conn, pat["borrower_id"], cp_id, Channel.SMS, container.clock()
        )
    assert state == "grant"


async def test_a_stop_already_applied_at_receipt_is_not_applied_twice(container, tenant, world):
    r = await tenant.client.post(
        "/api/borrowers",
        json={
            "firstName": "Noor",
            "lastName": "Haddad",
            "address": {"country": "US"},
            "contactPoints": [{"type": "phone", "value": "+13125550188"}],
        },
    )
    noor = r.json()
    src = await _stranger_writes(container, tenant, world, "STOP", sender="+13125550188")
    recorded = await _ledger(container, noor["borrowerId"])
    assert {row[1] for row in recorded} == {"revoke"}  # at receipt (known, no case)
    r = await tenant.client.post(
        f"/api/cases/{world['pat']['case_id']}/borrowers", json={"borrowerId": noor["borrowerId"]}
    )
    assert r.status_code == 201, r.text
    r = await tenant.client.post(
        f"/api/inbox/{src['conversationId']}/file",
        json={"borrowerId": noor["borrowerId"], "caseId": str(world["pat"]["case_id"])},
    )
    assert r.status_code == 200, r.text
    assert r.json()["consentChanges"] == []
    assert await _ledger(container, noor["borrowerId"]) == recorded


async def test_an_unknown_whatsapp_sender_opens_the_window(container, tenant, world):
    from parley.services import whatsapp_window

    await _reply(tenant, world["accounts"], STRANGER, "hola", channel="whatsapp")
    await drain(container, ["receipts"])
    async with container.db.pool.connection() as conn:
        state = await whatsapp_window.state(
            conn, tenant.organization_id, STRANGER, container.clock()
        )
    assert state.is_open


# -- the database guard -----------------------------------------------------------------------


async def test_the_guard_allows_filing_once_and_nothing_else(container, tenant, world):
    pat, sam = world["pat"], world["sam"]
    src = await _stranger_writes(container, tenant, world, "one", "two")
    (one, _), (two, _) = await _unfiled(container)
    # Pat's thread on Pat's case, for the direct updates below.
    await _reply(tenant, world["accounts"], pat["phone"], "hi")
    await drain(container, ["receipts"])
    sms_thread = await _scalar(
        container, "SELECT id FROM threads WHERE case_id = %s AND channel = 'sms'", pat["case_id"]
    )
    sam_thread_case = sam["case_id"]

    async def refused(sql: str, *params: Any) -> None:
        async with container.db.pool.connection() as conn:
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                await conn.execute(sql, params)

    # Unfiled: a borrower not on the case, a thread of another case, content edited on the
    # way, or no borrower at all: refused.
    await refused(
        "UPDATE messages SET case_id = %s, borrower_id = %s WHERE id = %s",
        pat["case_id"],
        sam["borrower_id"],
        one,
    )
    await refused(
        "UPDATE messages SET case_id = %s, borrower_id = %s, thread_id = %s WHERE id = %s",
        sam_thread_case,
        sam["borrower_id"],
        sms_thread,
        one,
    )
    await refused(
        "UPDATE messages SET case_id = %s, borrower_id = %s, body = 'edited' WHERE id = %s",
        pat["case_id"],
        pat["borrower_id"],
        one,
    )
    await refused("UPDATE messages SET case_id = %s WHERE id = %s", pat["case_id"], one)
    sam_phone = await _scalar(
        container,
        "SELECT id FROM contact_points WHERE borrower_id = %s AND kind = 'phone'",
        sam["borrower_id"],
    )
    await refused(
        "UPDATE messages SET case_id = %s, borrower_id = %s, contact_point_id = %s WHERE id = %s",
        pat["case_id"],
        pat["borrower_id"],
        sam_phone,  # someone else's contact point
        one,
    )
    # A message that came with a borrower (known, but on no case) keeps that borrower,
    # even on a case the other borrower is on.
    r = await tenant.client.post(
        f"/api/cases/{pat['case_id']}/borrowers", json={"borrowerId": str(sam["borrower_id"])}
    )
    assert r.status_code == 201, r.text
    r = await tenant.client.post(
        "/api/borrowers",
        json={
            "firstName": "Noor",
            "lastName": "Haddad",
            "contactPoints": [{"type": "phone", "value": "+13125550177"}],
        },
    )
    assert r.status_code == 201, r.text
    noor = r.json()["borrowerId"]
    await _reply(tenant, world["accounts"], "+13125550177", "it's Noor")
    await drain(container, ["receipts"])
    noors = await _scalar(container, "SELECT id FROM messages WHERE borrower_id = %s", noor)
    await refused(
        "UPDATE messages SET case_id = %s, borrower_id = %s WHERE id = %s",
        pat["case_id"],
        sam["borrower_id"],
        noors,
    )

    # The filing transition itself passes (rolled back here: the API files for real).
    async with container.db.pool.connection() as conn, conn.transaction(force_rollback=True):
        await conn.execute(
            "UPDATE messages SET case_id = %s, borrower_id = %s, thread_id = %s WHERE id = %s",
            (pat["case_id"], pat["borrower_id"], sms_thread, one),
        )

    r = await tenant.client.post(f"/api/inbox/{src['conversationId']}/file", json=_file_body(world))
    assert r.status_code == 200, r.text
    # Filed: its case, borrower, contact point and thread are fixed from now on.
    await refused("UPDATE messages SET case_id = %s WHERE id = %s", sam["case_id"], one)
    await refused("UPDATE messages SET case_id = NULL WHERE id = %s", one)
    await refused("UPDATE messages SET borrower_id = %s WHERE id = %s", sam["borrower_id"], two)
    await refused("UPDATE messages SET thread_id = NULL WHERE id = %s", two)
    await refused("UPDATE messages SET body = 'edited' WHERE id = %s", two)
    await refused("DELETE FROM messages WHERE id = %s", two)
    # An outbound message never changes case either.
    r = await tenant.client.post(
        f"/api/cases/{pat['case_id']}/messages", json={"messageType": "sms", "body": "Hello"}
    )
    assert r.status_code == 201, r.text
    await refused(
        "UPDATE messages SET case_id = %s WHERE id = %s", sam["case_id"], r.json()["messageId"]
    )
    # The audit records are append-only too.
    await refused("UPDATE conversation_filings SET filed_by_name = 'someone else'")
    await refused("DELETE FROM conversation_filings")
    await refused("UPDATE message_events SET reason = 'x' WHERE event_type = 'filed'")


# -- live updates ---------------------------------------------------------------------------


async def test_filing_is_announced_to_the_case_agent_and_the_team_queue(container, tenant, world):
    pat = world["pat"]
    tokens = {
        name: world[name].headers["Authorization"].removeprefix("Bearer ")
        for name in ("owner", "other")
    }
    src = await _stranger_writes(container, tenant, world, "it's Pat, new number")
    cid = src["conversationId"]
    async with (
        serving(container) as (base, app),
        connect(base, tokens["owner"]) as mine,
        connect(base, tokens["other"]) as theirs,
    ):
        assert live.hub_for(app).subscribers == 2
        r = await tenant.client.post(
            f"/api/inbox/{cid}/file", json=_file_body(world, addContactPoint=True)
        )
        assert r.status_code == 200, r.text
        target = r.json()["conversation"]["conversationId"]
        filed = r.json()["messageIds"]

        # The case's agent: the conversation is theirs, with the messages in it.
        got: dict[tuple[str, str], dict[str, Any]] = {}
        while ("conversation.assigned", target) not in got or (
            "conversation.updated",
            target,
        ) not in got:
            event = await mine.next()
            assert event is not None
            data = event["data"]["data"]
            got[(event["event"], data.get("conversationId"))] = data
        assigned = got[("conversation.assigned", target)]
        assert assigned["assignedAgentId"] == str(pat["agent_id"])
        assert assigned["previousAgentId"] is None
        assert assigned["caseId"] == str(pat["case_id"])
        updates = {cid_: d for (kind, cid_), d in got.items() if kind == "conversation.updated"}
        assert updates[cid]["removed"] is True  # the team queue's, which they saw too
        assert updates[target]["filedFromConversationId"] == cid
        assert updates[target]["filedMessageIds"] == filed
        assert updates[target]["unreadCount"] == 1
        assert updates[target]["assignedAgentId"] == str(pat["agent_id"])

        # Another agent watching the team queue: the sender's conversation left it, and
        # where to; nothing of Pat's conversation (it is the owner's).
        gone = (await theirs.next_of("conversation.updated"))["data"]["data"]
        assert gone["conversationId"] == cid
        assert gone["removed"] is True
        assert gone["filedIntoConversationId"] == target
        assert gone["assignedAgentId"] is None
        # A marker the other agent does receive (a new unknown sender in the team queue):
        # everything before it was the one event above.
        await _reply(tenant, world["accounts"], "+13125550143", "marker")
        await drain(container, ["receipts"])
        seen = []
        while True:
            event = await theirs.next()
            assert event is not None
            seen.append(event)
            if event["event"] == "message.received":
                break
        assert all(e["data"]["data"].get("conversationId") != target for e in seen)
        assert seen[-1]["data"]["data"]["from"] == "+13125550143"


async def test_an_automatic_reply_from_an_unknown_address_revokes_nothing(container, tenant, world):
    import hashlib
    import hmac
    from email.utils import formatdate

    secret = "inbound-secret-for-tests"
    account = await factories.account(
        container,
        tenant.organization_id,
        "smtp",
        Channel.EMAIL,
        config={"host": "127.0.0.1", "port": 2525, "from_address": "collections@acme.test"},
        secrets_={"inbound_secret": secret},
        name="smtp-inbound",
    )

    async def email_from(sender: str, body: str, extra: str = "") -> None:
        raw = (
            f"From: {sender}\r\nTo: collections@acme.test\r\nSubject: Your letter\r\n"
            f"Date: {formatdate(usegmt=True)}\r\nMessage-ID: <{uuid.uuid4().hex}@example.net>\r\n"
            f"{extra}MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}\r\n"
        ).encode()
        digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        r = await tenant.client.post(
            f"/webhooks/smtp/{account}",
            content=raw,
            headers={"Content-Type": "message/rfc822", "X-Parley-Signature": f"sha256={digest}"},
        )
        assert r.status_code == 200, r.text
        await drain(container, ["receipts"])

    await email_from(
        "away@example.net",
        "I am out of the office until Monday. Reply STOP to unsubscribe.",
        "Auto-Submitted: auto-replied\r\n",
    )
    await email_from("person@example.net", "STOP")
    ooo = await _team_conversation(tenant.client, "away@example.net")
    m = (await tenant.client.get(f"/api/messages/{ooo['lastMessage']['messageId']}")).json()
    assert m["flags"] == ["unfiled", "auto_reply"]
    r = await tenant.client.post(f"/api/inbox/{ooo['conversationId']}/file", json=_file_body(world))
    assert r.status_code == 200, r.text
    assert r.json()["consentChanges"] == []
    # Control: a person's STOP by email from an unknown address does need the address.
    person = await _team_conversation(tenant.client, "person@example.net")
    r = await tenant.client.post(
        f"/api/inbox/{person['conversationId']}/file", json=_file_body(world)
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["code"] == "contact_point_required"
    r = await tenant.client.post(
        f"/api/inbox/{person['conversationId']}/file", json=_file_body(world, addContactPoint=True)
    )
    assert r.status_code == 200, r.text
    assert [(c["channel"], c["action"]) for c in r.json()["consentChanges"]] == [
        ("email", "revoke")
    ]
    assert r.json()["contactPoint"]["type"] == "email"
    assert r.json()["contactPoint"]["value"] == "person@example.net"

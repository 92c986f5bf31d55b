"""The reads `parley bench inbox` measures: an agent's screens (conversation lists, a
borrower's timeline, a thread's and a case's messages) through the same service
functions and SQL the API runs, the raw primitives beside them, the database's own
execution time of the two main ones, and the two main ones through the API."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(q[94], 3),
        "p99_ms": round(q[98], 3),
        "max_ms": round(ordered[-1], 3),
    }


async def measure(iterations: int, op: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    for i in range(min(20, iterations)):  # warm the caches and the statement plans
        await op(i)
    samples = []
    for i in range(iterations):
        start = time.perf_counter()
        await op(i)
        samples.append((time.perf_counter() - start) * 1000)
    return percentiles(samples)


async def server_time(
    conn: psycopg.AsyncConnection[Any],
    iterations: int,
    statement: Callable[[int], tuple[str, dict[str, Any]]],
) -> dict[str, float]:
    samples = []
    for i in range(iterations):
        sql, params = statement(i)
        cur = await conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        row = await cur.fetchone()
        assert row is not None
        samples.append(float(row[0][0]["Execution Time"]))
    return percentiles(samples)


@dataclass
class World:
    """The seeded organization's ids the reads pick from, found before any clock runs."""

    org_id: uuid.UUID
    agents: list[uuid.UUID]
    borrowers: list[uuid.UUID]
    cases: list[uuid.UUID]
    threads: list[uuid.UUID]
    sample_messages: list[uuid.UUID]
    third: list[tuple[datetime, uuid.UUID]]  # each agent's third-page cursor

    def agent(self, i: int) -> Any:
        from parley.services.auth import Principal, Role

        agents = self.agents
        return Principal(self.org_id, Role.AGENT, agents[i % len(agents)], "Agent", uuid.uuid4())


async def _ids(conn: psycopg.AsyncConnection[Any], sql: str, *params: Any) -> list[Any]:
    return [r[0] for r in await (await conn.execute(sql, params)).fetchall()]


async def load_world(conn: psycopg.AsyncConnection[Any], org: str) -> World:
    from parley.services import inbox

    world = World(
        org_id=uuid.UUID(org),
        agents=await _ids(
            conn, "SELECT id FROM users WHERE organization_id = %s AND role = 'agent'", org
        ),
        borrowers=await _ids(conn, "SELECT id FROM borrowers WHERE organization_id = %s", org),
        cases=await _ids(conn, "SELECT id FROM cases WHERE organization_id = %s", org),
        threads=await _ids(conn, "SELECT id FROM threads WHERE organization_id = %s", org),
        sample_messages=await _ids(
            conn, "SELECT id FROM messages WHERE organization_id = %s LIMIT 5000", org
        ),
        third=[],
    )
    for i in range(len(world.agents)):
        after = None
        for _ in range(2):
            rows, _more = await inbox.list_conversations(
                conn, world.agent(i), inbox.InboxQuery(limit=50, after=after)
            )
            after = (rows[-1]["last_activity_at"], rows[-1]["id"])
        world.third.append(after)  # type: ignore[arg-type]
    return world


async def measure_reads(
    conn: psycopg.AsyncConnection[Any], world: World, n: int, pick: list[int]
) -> dict[str, dict[str, float]]:
    """Every read's latency on `conn` (the DB layer), and the database's own execution
    time of the two main ones."""
    from parley.services import inbox, timeline
    from parley.services.auth import Principal, Role

    org_id, agents, borrowers = world.org_id, world.agents, world.borrowers
    agent, third, threads = world.agent, world.third, world.threads
    sample_messages, cases = world.sample_messages, world.cases
    supervisor = Principal(org_id, Role.SUPERVISOR, None, "Supervisor", uuid.uuid4())

    async def select_one(i: int) -> None:
        await (await conn.execute("SELECT 1")).fetchone()

    async def pk_lookup(i: int) -> None:
        cur = await conn.execute(
            "SELECT * FROM messages WHERE id = %s", (sample_messages[pick[i] % 5000],)
        )
        await cur.fetchone()

    async def inbox_first(i: int) -> None:
        await inbox.list_conversations(conn, agent(pick[i]), inbox.InboxQuery(limit=50))

    async def inbox_third(i: int) -> None:
        k = pick[i] % len(agents)
        await inbox.list_conversations(conn, agent(k), inbox.InboxQuery(limit=50, after=third[k]))

    async def inbox_unread(i: int) -> None:
        await inbox.list_conversations(
            conn, agent(pick[i]), inbox.InboxQuery(limit=50, agent="me", unread=True)
        )

    async def inbox_all(i: int) -> None:
        await inbox.list_conversations(conn, supervisor, inbox.InboxQuery(limit=50))

    async def timeline_first(i: int) -> None:
        await timeline.page(conn, org_id, borrowers[pick[i] % len(borrowers)], 50, None)

    async def thread_messages(i: int) -> None:
        # GET /api/threads/{id}/messages
        cur = await conn.execute(
            "SELECT * FROM threads WHERE id = %s AND organization_id = %s",
            (threads[pick[i] % len(threads)], org_id),
        )
        await cur.fetchone()
        cur = await conn.execute(
            "SELECT * FROM messages WHERE thread_id = %s AND organization_id = %s "
            "ORDER BY created_at, id LIMIT 500",
            (threads[pick[i] % len(threads)], org_id),
        )
        await cur.fetchall()

    async def case_messages(i: int) -> None:
        # GET /api/cases/{id}/messages: its total count and the first page
        case_id = cases[pick[i] % len(cases)]
        cur = await conn.execute(
            "SELECT count(*) FROM messages WHERE organization_id = %s AND case_id = %s",
            (org_id, case_id),
        )
        await cur.fetchone()
        cur = await conn.execute(
            "SELECT * FROM messages WHERE organization_id = %s AND case_id = %s "
            "ORDER BY created_at DESC, id DESC LIMIT 51",
            (org_id, case_id),
        )
        await cur.fetchall()

    results: dict[str, dict[str, float]] = {}
    for name, op in (
        ("raw_select_1", select_one),
        ("raw_message_by_pk", pk_lookup),
        ("inbox_agent_first_page", inbox_first),
        ("inbox_agent_third_page", inbox_third),
        ("inbox_agent_unread", inbox_unread),
        ("inbox_supervisor_all", inbox_all),
        ("timeline_first_page", timeline_first),
        ("thread_messages", thread_messages),
        ("case_messages_page", case_messages),
    ):
        results[name] = await measure(n, op)
    # The same two reads as PostgreSQL's own execution time (EXPLAIN ANALYZE): what
    # the database spends, without the client's round trip and scheduling.
    results["server_inbox_agent_first_page"] = await server_time(
        conn, n, lambda i: inbox.list_statement(agent(pick[i]), inbox.InboxQuery())
    )
    results["server_timeline_first_page"] = await server_time(
        conn,
        n,
        lambda i: (
            timeline.TIMELINE_SQL,
            timeline.statement_params(org_id, borrowers[pick[i] % len(borrowers)], 50, None),
        ),
    )
    return results


async def through_api(
    container: Any, world: World, n: int, pick: list[int]
) -> dict[str, dict[str, float]]:
    """GET /api/inbox and the timeline through the app (in-process ASGI, no sockets)."""
    import logging

    import httpx

    from parley.api.app import create_app

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request otherwise
    from parley.services.auth import Role, issue_token

    org_id, agents, borrowers = world.org_id, world.agents, world.borrowers
    async with container.db.session() as s:
        token = await issue_token(
            s, organization_id=org_id, role=Role.AGENT, name="bench", user_id=agents[0]
        )
        await s.commit()
    app = create_app(container)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bench",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:

        async def inbox_page(i: int) -> None:
            r = await client.get("/api/inbox")
            assert r.status_code == 200, r.text

        async def timeline_page(i: int) -> None:
            r = await client.get(f"/api/borrowers/{borrowers[pick[i] % len(borrowers)]}/timeline")
            assert r.status_code == 200, r.text

        return {
            "api_inbox_first_page": await measure(n, inbox_page),
            "api_timeline_first_page": await measure(n, timeline_page),
        }

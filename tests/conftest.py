"""Shared fixtures: one migrated database per test session, cleaned before each test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest

from tests.support.database import provision, truncate_sql

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

# CI runs the property tests derandomized: the same examples every run, so a red build
# is always reproducible (local runs keep exploring new examples).
hypothesis.settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with provision() as url:
        yield url


@pytest.fixture(scope="session")
async def session_container(database_url: str) -> AsyncIterator[Any]:
    from parley.bootstrap import create_container
    from parley.config import Settings

    settings = Settings(
        database_url=database_url,
        data_dir="/tmp/parley-test-data",
        public_base_url="http://127.0.0.1:8000",
        retry_base_seconds=0.2,
        retry_max_seconds=2.0,
    )
    container = await create_container(settings, migrate=False)
    yield container
    await container.close()


@pytest.fixture
async def container(session_container: Any) -> AsyncIterator[Any]:
    """The session's container on an empty database."""
    async with session_container.db.pool.connection() as conn:
        await conn.execute(truncate_sql())
    await session_container.providers.aclose()
    yield session_container


@dataclass
class Tenant:
    organization_id: Any
    token: str
    client: httpx.AsyncClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


# Tests of everything but contact hours run under a window open all day, so they do not
# depend on the hour the suite runs; the gate's own tests use the default policy and a
# fixed clock (tests/integration/test_compliance_*.py).
ALL_DAY = {"contactHours": {"start": "00:00", "end": "00:00"}}


async def make_tenant(
    container: Any, name: str = "Acme Collections", policy: dict[str, Any] | None = ALL_DAY
) -> Tenant:
    from parley.api.app import create_app
    from parley.services.auth import Role, issue_token
    from parley.storage.models import CompliancePolicy, Organization, User

    async with container.db.session() as session:
        org = Organization(name=name, default_locale="en_US", default_timezone="America/New_York")
        session.add(org)
        await session.flush()
        if policy is not None:
            session.add(CompliancePolicy(organization_id=org.id, settings=policy, version=1))
        user = User(
            organization_id=org.id,
            email=f"admin@{org.id.hex[:6]}.test",
            name="Ada Admin",
            role="admin",
        )
        session.add(user)
        await session.flush()
        token = await issue_token(
            session, organization_id=org.id, role=Role.ADMIN, name="test", user_id=user.id
        )
        await session.commit()
    app = create_app(container)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )
    return Tenant(organization_id=org.id, token=token, client=client)


@pytest.fixture
async def tenant(container: Any) -> AsyncIterator[Tenant]:
    t = await make_tenant(container)
    yield t
    await t.client.aclose()


@pytest.fixture
async def other_tenant(container: Any) -> AsyncIterator[Tenant]:
    t = await make_tenant(container, "Other Org")
    yield t
    await t.client.aclose()

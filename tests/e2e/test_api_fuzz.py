"""Property-based API fuzzing (schemathesis over /openapi.json): no input, however
strange, may produce a 5xx (invariant 7). Runs against a real `parley api` process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from parley.services.auth import hash_token
from tests.support.live import free_port

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "30"))


def _tenant(database_url: str) -> tuple[str, str]:
    """An organization with a token, a case, a template and sandbox accounts."""
    org, token = str(uuid.uuid4()), "prly_" + secrets.token_urlsafe(24)
    case, borrower = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO organizations (id, name, default_locale, default_timezone) "
            "VALUES (%s, 'Fuzz', 'en_US', 'UTC')",
            (org,),
        )
        conn.execute(
            "INSERT INTO api_tokens (id, organization_id, name, role, token_hash, "
            "prefix) VALUES (gen_random_uuid(), %s, 'fuzz', 'admin', %s, 'prly_')",
            (org, hash_token(token)),
        )
        conn.execute(
            "INSERT INTO borrowers (id, organization_id, first_name, last_name, "
            "do_not_contact) VALUES (%s, %s, 'Fu', 'Zz', false)",
            (borrower, org),
        )
        conn.execute(
            "INSERT INTO contact_points (id, organization_id, borrower_id, kind, value, "
            "is_primary, source) VALUES (gen_random_uuid(), %s, %s, 'phone', "
            "'+12025550199', true, 'borrower_provided')",
            (org, borrower),
        )
        conn.execute(
            "INSERT INTO cases (id, organization_id, case_number, creditor, "
            "original_amount, outstanding_amount, currency, status) VALUES "
            "(%s, %s, 'FZ-1', 'C', 10, 5, 'USD', 'open')",
            (case, org),
        )
        conn.execute(
            "INSERT INTO case_borrowers (case_id, borrower_id, organization_id, role) "
            "VALUES (%s, %s, %s, 'primary')",
            (case, borrower, org),
        )
        conn.execute(
            "INSERT INTO provider_accounts (id, organization_id, name, provider, "
            "channel, config, secrets, is_default, enabled) VALUES (gen_random_uuid(),"
            " %s, 'sbx', 'sandbox', 'sms', '{\"callbacks\": false}', "
            '\'{"signing_secret": "s"}\', true, true)',
            (org,),
        )
    return org, token


def test_no_request_produces_a_server_error(database_url, tmp_path):
    _, token = _tenant(database_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PARLEY_DATABASE_URL": database_url, "PARLEY_PORT": str(port)}
    log = tmp_path / "api.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley.cli", "api"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        headers = {"Authorization": f"Bearer {token}"}
        failures: list[str] = []
        tested = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            tested += 1

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def run(case):
                response = case.call(base_url=base, headers=headers, timeout=10)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} "
                        f"{case.body!r} -> {response.status_code} {response.text}"
                    )

            run()
        assert tested >= 15
        assert not failures, "\n".join(failures[:10]) + "\n" + log.read_text()[-3000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)

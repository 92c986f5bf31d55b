"""The README's first command, as a user runs it: `parley run --demo` on an embedded
PostgreSQL, then the tour (create a case, send an email and an SMS from templates,
watch both reach `delivered`), a second process on the same data directory, a restart
that keeps the data, and a clean stop of the embedded server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.live import free_port
from tests.support.places import daytime_place, tour_borrower, tour_case

pytestmark = pytest.mark.slow


def _start(args: list[str], data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PARLEY_PORT"] = str(port)
    return subprocess.Popen(
        [sys.executable, "-m", "parley.cli", "--data-dir", str(data_dir), *args],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-4000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become healthy:\n" + log.read_text()[-4000:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _postgres_running(pgdata: Path) -> bool:
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] == "postgres" and str(pgdata) in " ".join(p.info["cmdline"] or []):
            return True
    return False


def _until(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out; last: {value!r}"
        time.sleep(0.2)


def test_demo_tour_restart_and_shared_data_dir(tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "run.log"
    port, port2 = free_port(), free_port()
    proc = _start(["run", "--demo"], data_dir, port, log)
    try:
        _wait_healthy(port, proc, log)
        token = re.search(r"API token \(admin\): (\S+)", log.read_text()).group(1)
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        # Daytime for the borrower, or the gate rightly holds the messages (`scheduled`)
        # and this test would pass or fail by the hour it runs at.
        b = api.post("/api/borrowers", json=tour_borrower(daytime_place()))
        assert b.status_code == 201, b.text
        c = api.post("/api/cases", json=tour_case(b.json()["borrowerId"]))
        assert c.status_code == 201, c.text
        case_id = c.json()["caseId"]
        preview = api.post("/api/message-templates/sms-reminder/preview", json={"caseId": case_id})
        assert preview.status_code == 200 and preview.json()["segments"] >= 1, preview.text
        ids = []
        for body in (
            {"messageType": "sms", "templateId": "sms-reminder"},
            {"messageType": "email", "templateId": "balance-reminder"},
        ):
            r = api.post(f"/api/cases/{case_id}/messages", json=body)
            assert r.status_code == 201, r.text
            ids.append(r.json()["messageId"])
        # The seed document's example request, verbatim.
        seed = api.post(
            "/api/cases/550e8400-e29b-41d4-a716-446655440000/messages",
            json={
                "messageType": "email",
                "to": "debtor@example.com",
                "subject": "Payment Reminder - Invoice INV-2024-001",
                "body": "Dear customer,\n\nThis is a reminder...",
                "cc": ["creditor@example.com"],
                "priority": "normal",
                "templateId": "payment-reminder-v1",
            },
        )
        assert seed.status_code == 201, seed.text
        sms_seed = api.post(
            "/api/cases/550e8400-e29b-41d4-a716-446655440000/messages",
            json={
                "messageType": "sms",
                "to": "+4512345678",
                "body": "Payment reminder: Invoice INV-2024-001 due. Please contact us.",
                "priority": "high",
            },
        )
        assert sms_seed.status_code == 201, sms_seed.text

        def delivered():
            reports = [api.get(f"/api/messages/{m}/delivery-report").json() for m in ids]
            return (
                reports
                if all(r["status"] in ("delivered", "read", "opened") for r in reports)
                else None
            )

        for report in _until(delivered, timeout=60):
            events = [e["event"] for e in report["events"]]
            assert events[:3] == ["queued", "sending", "sent"] and "delivered" in events

        # A second process on the same data directory reuses the running server.
        proc2 = _start(["api"], data_dir, port2, tmp_path / "api2.log")
        try:
            _wait_healthy(port2, proc2, tmp_path / "api2.log")
            r = httpx.get(
                f"http://127.0.0.1:{port2}/api/messages/{ids[0]}",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200
        finally:
            _stop(proc2)
        assert _postgres_running(data_dir / "pgdata")  # still serving the first process
    finally:
        _stop(proc)
    assert _until(lambda: not _postgres_running(data_dir / "pgdata"))

    # Restart: the data survived, and the same token still works.
    proc = _start(["run", "--demo"], data_dir, port, log)
    try:
        _wait_healthy(port, proc, log)
        r = httpx.get(
            f"http://127.0.0.1:{port}/api/messages/{ids[1]}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200 and r.json()["status"] in ("delivered", "opened")
    finally:
        _stop(proc)
    assert _until(lambda: not _postgres_running(data_dir / "pgdata"))


def test_ctrl_c_on_dev_py_demo_stops_the_embedded_server(tmp_path):
    """The README's first command, stopped the way a terminal's Ctrl-C stops it: SIGINT
    to the whole process group (dev.py and `parley run` at once; dev.py passes one on
    too, so `parley` sees two). Everything exits and no PostgreSQL is left running."""
    data_dir, log = tmp_path / "data", tmp_path / "dev.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(PARLEY_PORT=str(port), PARLEY_DATA_DIR=str(data_dir))
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, str(root / "dev.py"), "demo"],
        env=env,
        cwd=root,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    try:
        _wait_healthy(port, proc, log)
        assert _postgres_running(data_dir / "pgdata")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
    assert _until(lambda: not _postgres_running(data_dir / "pgdata")), log.read_text()[-4000:]

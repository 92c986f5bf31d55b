"""Smoke test of the dispatch benchmarks (`parley bench dispatch-email|dispatch-sms`).

Both workloads run in quick mode, at the same time, as `parley` subprocesses, each
against its own throw-away database found the way the workloads find one
($PARLEY_TEST_DATABASE_URL's server, else an embedded PostgreSQL). We check the record
each writes: its shape and every correctness check (nothing lost, nothing sent twice,
retries happen, failures are terminal, no self-inflicted 429). Timings and gate
verdicts depend on the machine and are only required to be present, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKLOADS = ("dispatch-email", "dispatch-sms")


def _start(workload: str, results: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PARLEY_BENCH_DATABASE_URL"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parley.cli",
            "bench",
            workload,
            "--quick",
            "--raw-runs",
            "1",
            "--results",
            str(results),
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_quick_runs_record_passing_correctness_checks(tmp_path: Path) -> None:
    runs = {}
    for workload in WORKLOADS:
        results, log = tmp_path / f"{workload}.jsonl", tmp_path / f"{workload}.log"
        runs[workload] = (_start(workload, results, log), results, log)
    for workload, (process, results, log) in runs.items():
        code = process.wait(timeout=180)
        output = log.read_text(errors="replace")
        assert results.exists(), f"{workload} wrote no record:\n{output[-3000:]}"
        lines = results.read_text().splitlines()
        assert len(lines) == 1
        record = json.loads(lines[0])

        assert record["workload"] == workload
        assert not record.get("error"), output[-3000:]
        assert record["quick"] is True
        assert record["machine"]["nproc"] >= 1 and record["machine"]["cpu_model"]
        for name in ("python", "postgresql", "aiosmtplib", "aiohttp", "procrastinate"):
            assert record["versions"][name], name
        for key in ("raw_figure", "parley_figure", "ratio", "settings", "raw_runs"):
            assert key in record, key
        assert {g["gate"] for g in record["gates"]} >= {"parley >= 0.5x raw"}
        # The exit status follows the verdicts, whatever they are on this machine.
        assert code == (0 if record["passed"] else 1), output[-3000:]

        failed = [c for c in record["checks"] if not c["passed"]]
        assert not failed, json.dumps(failed, indent=1)
        names = {c["check"] for c in record["checks"]}
        if workload == "dispatch-email":
            assert names >= {
                "all terminal",
                "sent + failed == total",
                "sink accepted each sent message once",
                "tempfails retried",
                "permfails terminal",
            }
            parley = record["parley"]
            assert (
                parley["statuses"].get("sent", 0) + parley["statuses"].get("failed", 0)
                == parley["total"]
            )
        else:
            assert names >= {
                "all terminal",
                "peer accepted each sent message once",
                "rate phase: all terminal",
                "no 429 caused by us",
            }
            assert record["rate_phase"]["peer_stats"]["rate_limited"] == 0

"""`parley bench inbox`'s keep-awake loops (bench/processes.py KeepAwake): idle-class, and
gone with the bench even when it is killed without running its cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from parley.bench.processes import KeepAwake

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux SCHED_IDLE only")

PARENT = (
    "import time; from parley.bench.processes import KeepAwake; "
    "k = KeepAwake(2).__enter__(); print(' '.join(str(p.pid) for p in k.procs), flush=True); "
    "time.sleep(120)"
)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_loops_run_idle_class_and_stop_on_exit() -> None:
    with KeepAwake(2) as awake:
        assert awake.describe() == "2 SCHED_IDLE busy loop(s)"
        pids = [p.pid for p in awake.procs]
        assert all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in pids)
        assert all(os.getpriority(os.PRIO_PROCESS, pid) == 19 for pid in pids)
    assert not any(_running(pid) for pid in pids)
    assert KeepAwake(0).__enter__().describe() == "off"


def test_loops_end_when_the_bench_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = [int(x) for x in parent.stdout.readline().split()]
    assert len(pids) == 2
    parent.kill()  # no cleanup runs
    parent.wait()
    # Idle-class loops get CPU only when nothing else wants it: allow a loaded machine.
    deadline = time.monotonic() + 90
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in pids if _running(pid)]
    for pid in alive:  # never leave them behind, even when the test fails
        os.kill(pid, 9)
    assert alive == []

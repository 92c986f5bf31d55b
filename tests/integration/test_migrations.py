"""The migrations produce exactly the schema the models describe (no drift)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from parley.storage.db import sqlalchemy_url
from parley.storage.models import Base


def test_models_and_migrations_agree(database_url):
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    # Procrastinate's own tables are installed by migration 0001 and are not modelled.
    ours = [d for d in diff if "procrastinate" not in str(d)]
    assert ours == []

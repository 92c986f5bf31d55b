"""Alembic environment: runs migrations synchronously over psycopg 3."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from parley.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        # One migrator at a time when several processes start together.
        connection.exec_driver_sql("SELECT pg_advisory_lock(725786657900)")
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        connection.exec_driver_sql("SELECT pg_advisory_unlock(725786657900)")
        connection.commit()


run_migrations_online()

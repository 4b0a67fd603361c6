"""Alembic environment: runs online against the engine handed in by :mod:`renewer.migrations`."""

from __future__ import annotations

from alembic import context

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, transactional_ddl=engine.dialect.name != "mysql")
    with context.begin_transaction():
        context.run_migrations()

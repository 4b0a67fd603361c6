"""Alembic migrations for the renewer's job store, shipped inside the package.

``certloop renewer db upgrade|downgrade|current`` calls :func:`upgrade`, :func:`downgrade` and
:func:`current`; the daemon runs :func:`upgrade` at start-up unless ``database.auto_migrate`` is off.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

__all__ = ["HEAD", "current", "downgrade", "upgrade"]

HEAD = "0001"
_HERE = Path(__file__).resolve().parent


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("version_locations", str(_HERE / "versions"))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(_config(engine), revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()

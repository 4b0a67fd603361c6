"""Alembic migrations for the renewer's job store, shipped inside the package.

``certloop renewer db upgrade|downgrade|current`` calls :func:`upgrade`, :func:`downgrade` and
:func:`current`; the daemon runs :func:`upgrade` at start-up unless ``database.auto_migrate`` is off.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine

from certloop.renewer.errors import MigrationError

__all__ = ["HEAD", "current", "downgrade", "upgrade"]


HEAD = "0003"
_HERE = Path(__file__).resolve().parent


def _script_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("version_locations", str(_HERE / "versions"))
    cfg.set_main_option("path_separator", "os")
    return cfg


def _config(engine: Engine) -> Config:
    cfg = _script_config()
    cfg.attributes["engine"] = engine
    return cfg


def _translate(engine: Engine, exc: CommandError, action: str, target: str) -> MigrationError:
    """Alembic's errors at the one seam, as something an operator can act on."""
    at = current(engine)
    if at is not None and at not in _known_revisions():
        return MigrationError(
            f"the database is at schema revision {at!r}, which this certloop does not know (it knows up to "
            f"{HEAD!r}): a newer certloop migrated it. Run the newer version, or use it to "
            f"`certloop renewer db downgrade {HEAD}` before going back to this one.",
            at,
        )
    return MigrationError(f"cannot {action} the database schema to {target!r} (now at {at!r}): {exc}", at)


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(_script_config()).walk_revisions()}


def upgrade(engine: Engine, revision: str = "head") -> None:
    try:
        command.upgrade(_config(engine), revision)
    except CommandError as exc:
        raise _translate(engine, exc, "upgrade", revision) from exc


def downgrade(engine: Engine, revision: str) -> None:
    try:
        command.downgrade(_config(engine), revision)
    except CommandError as exc:
        raise _translate(engine, exc, "downgrade", revision) from exc


def current(engine: Engine) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()

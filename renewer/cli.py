"""``certloop renewer``: run the daemon, check its config, manage its database and backups.

    certloop renewer --config.file renewer.yml [--web.listen-address 127.0.0.1:9442]
    certloop renewer --config.file renewer.yml --config.check
    certloop renewer --config.file renewer.yml db upgrade|current|downgrade REVISION
    certloop renewer --config.file renewer.yml backup --out FILE [--passphrase-file F]
    certloop renewer --config.file renewer.yml restore --in FILE [--passphrase-file F] [--force]

Exit codes: 0 ok, 1 runtime failure, 2 bad config, 64 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from certloop.errors import CertloopError, ConfigError
from renewer import migrations
from renewer.backup import make_backup, read_backup, restore_backup, write_backup
from renewer.config import RenewerConfig, load_config

__all__ = ["main"]

log = logging.getLogger("renewer")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # usage errors exit 64, not 2
        self.print_usage(sys.stderr)
        print(f"certloop renewer: {message}", file=sys.stderr)
        raise SystemExit(64)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="certloop renewer", description="Renew certificates on Alertmanager webhooks.")
    p.add_argument("--config.file", dest="config_file", default="renewer.yml", help="YAML config file")
    p.add_argument("--config.check", dest="config_check", action="store_true", help="validate the config and exit")
    p.add_argument("--web.listen-address", dest="listen", help="host:port to serve on (overrides `listen`)")
    p.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command")
    db = sub.add_parser("db", help="manage the job store schema (Alembic migrations)")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("revision", nargs="?", help="target revision (upgrade: default head; downgrade: required)")
    bk = sub.add_parser("backup", help="write an encrypted archive of the database and data_dir")
    bk.add_argument("--out", required=True, type=Path)
    bk.add_argument("--passphrase-file", type=Path, help="encrypt with this passphrase instead of the keystore key")
    rs = sub.add_parser("restore", help="restore an archive into the configured (fresh) database and data_dir")
    rs.add_argument("--in", dest="infile", required=True, type=Path)
    rs.add_argument("--passphrase-file", type=Path)
    rs.add_argument("--force", action="store_true", help="replace rows of a database that already has jobs")
    return p


def _passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError("--passphrase-file", f"cannot read {path}: {exc.strerror}") from exc
    if len(text) < 12:
        raise ConfigError("--passphrase-file", "the passphrase must be at least 12 characters")
    return text


def _db(cfg: RenewerConfig, action: str, revision: str | None) -> int:
    from renewer.daemon import open_store

    store = open_store(cfg, migrate=False)
    try:
        if action == "upgrade":
            migrations.upgrade(store.engine, revision or "head")
        elif action == "downgrade":
            if not revision:
                print("certloop renewer: db downgrade needs a revision (e.g. base)", file=sys.stderr)
                return 64
            migrations.downgrade(store.engine, revision)
        print(migrations.current(store.engine) or "base (empty)")
    finally:
        store.close()
    return 0


def _backup(cfg: RenewerConfig, args: argparse.Namespace) -> int:
    from renewer.daemon import open_keystore, open_store, utc_now

    passphrase = _passphrase(args.passphrase_file)
    key = None if passphrase is not None else open_keystore(cfg, create=False).key
    store = open_store(cfg, migrate=False)
    try:
        doc = make_backup(store, cfg.data_dir, utc_now())
    finally:
        store.close()
    write_backup(doc, args.out, key=key, passphrase=passphrase)
    rows = sum(len(v) for v in doc["database"].values())
    print(f"wrote {args.out}: {rows} database rows, {len(doc['files'])} files")
    return 0


def _restore(cfg: RenewerConfig, args: argparse.Namespace) -> int:
    from renewer.daemon import open_keystore, open_store

    passphrase = _passphrase(args.passphrase_file)
    key = None if passphrase is not None else open_keystore(cfg, create=False).key
    doc = read_backup(args.infile, key=key, passphrase=passphrase)
    store = open_store(cfg, migrate=True)
    try:
        result = restore_backup(doc, store, cfg.data_dir, overwrite=args.force)
    finally:
        store.close()
    print(f"restored {sum(result.rows.values())} database rows and {result.files} files into {cfg.data_dir}")
    return 0


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr,
        format="ts=%(asctime)s level=%(levelname)s component=%(name)s msg=%(message)s",
    )
    for noisy in ("alembic", "apscheduler"):  # their INFO lines repeat on every start / tick
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        cfg = load_config(args.config_file)
    except ConfigError as exc:
        print(f"certloop renewer: config error: {exc}", file=sys.stderr)
        return 2
    if args.config_check:
        print(f"{args.config_file}: ok ({len(cfg.certificates)} certificate(s))")
        return 0
    try:
        if args.command == "db":
            return _db(cfg, args.action, args.revision)
        if args.command == "backup":
            return _backup(cfg, args)
        if args.command == "restore":
            return _restore(cfg, args)
        return _serve(cfg, args)
    except ConfigError as exc:
        print(f"certloop renewer: config error: {exc}", file=sys.stderr)
        return 2
    except CertloopError as exc:
        print(f"certloop renewer: {exc}", file=sys.stderr)
        return 1


def _serve(cfg: RenewerConfig, args: argparse.Namespace) -> int:
    from renewer.daemon import Daemon

    daemon = Daemon(Path(args.config_file), cfg, listen=args.listen)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop is a dependency; plain asyncio still works without it
        pass
    asyncio.run(daemon.run())
    return 0

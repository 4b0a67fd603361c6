"""``certloop renewer``: run the daemon, check its config, manage its database and backups.

    certloop renewer --config.file renewer.yml [--web.listen-address 127.0.0.1:10794]
    certloop renewer --config.file renewer.yml --config.check
    certloop renewer --config.file renewer.yml db upgrade|current|downgrade REVISION
    certloop renewer --config.file renewer.yml backup --out FILE|DIR/|s3://B/P/[NAME] [--passphrase-file F]
                     [--keep-daily N --keep-weekly M]
    certloop renewer --config.file renewer.yml backup verify FILE|DIR/|URL [--passphrase-file F]
                     [--scratch-database postgresql://...]
    certloop renewer backup prune DIR/|s3://B/P/ --keep-daily N --keep-weekly M [--dry-run]
    certloop renewer --config.file renewer.yml restore --in FILE|DIR/|URL [--passphrase-file F] [--force]

Exit codes are certloop's (:mod:`certloop.exitcodes`, docs/exit-codes.md); a failure is one line naming what
failed (a database URL with its password hidden), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from certloop import __version__, logs
from certloop.config import parse_listen_address
from certloop.errors import CertloopError, ConfigError, ListenError
from certloop.exitcodes import ExitCode, UsageParser, VerifyExit
from certloop.httpserver import DEFAULT_MAX_CONNECTIONS, tune_collector
from certloop.renewer.backup import make_backup, restore_backup, seal, unseal
from certloop.renewer.backupsite import Place, archive_name, archives, expired, parse_location
from certloop.renewer.backupverify import verify_backup
from certloop.renewer.config import RenewerConfig, load_config
from certloop.renewer.errors import ArchiveDamaged, BackupError, Mismatch, StoreUnavailable, WrongKey
from certloop.webconfig import WebConfigFile

__all__ = ["main"]

log = logging.getLogger("renewer")


def _listen(text: str) -> str:
    try:
        parse_listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    p = UsageParser(prog="certloop renewer", description="Renew certificates on Alertmanager webhooks.")
    p.add_argument("--config.file", dest="config_file", default="renewer.yml", help="YAML config file")
    p.add_argument("--config.check", dest="config_check", action="store_true", help="validate the config and exit")
    p.add_argument("--config.expand-env", dest="expand_env", action="store_true",
                   help="expand ${VAR} and ${VAR:-default} in every string of the config file ($$ writes a $)")
    p.add_argument("--web.listen-address", dest="listen", type=_listen,
                   help="host:port to serve on (overrides `listen`)")
    logs.add_flags(p)
    p.add_argument("--version", action="version", version=f"certloop renewer {__version__}")
    p.add_argument("--web.config.file", dest="web_config", metavar="FILE",
                   help="TLS and people's sign-in (basic_auth_users, bcrypt) for the listener, in exporter-toolkit's "
                        "format; roles come from auth.users in the config file")
    p.add_argument("--web.max-connections", dest="max_connections", type=_positive, default=DEFAULT_MAX_CONNECTIONS,
                   metavar="N", help="open HTTP connections allowed; beyond it the oldest idle one is closed, and "
                   f"only when all are busy is a new one refused with 503 (default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                   help="answer POST /-/reload (off by default, as in Prometheus; SIGHUP always reloads)")
    sub = p.add_subparsers(dest="command")
    db = sub.add_parser("db", help="manage the job store schema (Alembic migrations)")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("revision", nargs="?", help="target revision (upgrade: default head; downgrade: required)")
    bk = sub.add_parser("backup", help="write an encrypted archive of the database and data_dir (or verify/prune)")
    bk.add_argument("--out", help="a file, a directory (trailing /) or an s3://bucket/prefix/[name] URL")
    bk.add_argument("--passphrase-file", type=Path, help="encrypt with this passphrase instead of the keystore key")
    _retention(bk, required=False)
    bks = bk.add_subparsers(dest="backup_command")
    vf = bks.add_parser("verify", help="decrypt, check and restore an archive into a scratch database, compare")
    vf.add_argument("location", help="an archive file or URL; a directory or prefix means its newest archive")
    vf.add_argument("--passphrase-file", type=Path)
    vf.add_argument("--scratch-database", metavar="URL",
                    help="restore into a new database on this PostgreSQL server (dropped after) instead of SQLite")
    pr = bks.add_parser("prune", help="delete archives outside the retention (renewer-*.clb names only)")
    pr.add_argument("location", help="a directory (trailing /) or an s3://bucket/prefix/ URL")
    pr.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    _retention(pr, required=True)
    rs = sub.add_parser("restore", help="restore an archive into the configured (fresh) database and data_dir")
    rs.add_argument("--in", dest="infile", required=True,
                    help="an archive file or URL; a directory or prefix means its newest archive")
    rs.add_argument("--passphrase-file", type=Path)
    rs.add_argument("--force", action="store_true", help="replace rows of a database that already has jobs")
    return p


def _retention(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--keep-daily", type=int, metavar="N", required=required,
                        help="keep the newest archive of each of the N latest days")
    parser.add_argument("--keep-weekly", type=int, metavar="M", required=required,
                        help="keep the newest archive of each of the M latest ISO weeks")


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
    from certloop.renewer.daemon import open_store

    if action == "downgrade" and not revision:
        print("certloop renewer: db downgrade needs a revision (e.g. base)", file=sys.stderr)
        return ExitCode.USAGE
    store = open_store(cfg, migrate=False, deadline=False)
    try:
        if action == "upgrade":
            store.migrate(revision or "head")
        elif action == "downgrade":
            assert revision is not None
            store.downgrade(revision)
        print(store.revision() or "base (empty)")
    finally:
        store.close()
    return ExitCode.OK


def _secrets(cfg: RenewerConfig | None, passphrase_file: Path | None) -> tuple[bytes | None, bytes | None]:
    """(keystore key, passphrase): the passphrase when given, else the configured keystore key."""
    from certloop.renewer.daemon import open_keystore

    passphrase = _passphrase(passphrase_file)
    if passphrase is not None:
        return None, passphrase
    if cfg is None:
        raise ConfigError("--config.file", "without --passphrase-file the keystore key of the config is needed")
    return open_keystore(cfg, create=False).key, None


def _archive(location: str) -> tuple[Place, str]:
    """The archive a location names; a directory or prefix names its newest ``renewer-*.clb``."""
    place, name = parse_location(location)
    if name is None:
        found = archives(place.names())
        if not found:
            raise BackupError(place.describe(), "no renewer-*.clb archive here")
        name = found[0].name
    return place, name


def _backup(cfg: RenewerConfig, args: argparse.Namespace) -> int:
    from certloop.renewer.daemon import open_store, utc_now

    if args.out is None:
        print("certloop renewer: backup needs --out (or a subcommand: verify, prune)", file=sys.stderr)
        return ExitCode.USAGE
    place, name = parse_location(args.out)
    pruning = args.keep_daily is not None or args.keep_weekly is not None
    if pruning and name is not None:
        print("certloop renewer: --keep-daily/--keep-weekly need --out to be a directory or prefix (ending in /)",
              file=sys.stderr)
        return ExitCode.USAGE
    key, passphrase = _secrets(cfg, args.passphrase_file)
    now = utc_now()
    store = open_store(cfg, migrate=False, deadline=False)
    try:
        doc = make_backup(store, cfg.data_dir, now)
    finally:
        store.close()
    name = name or archive_name(now)
    place.put(name, seal(doc, key=key, passphrase=passphrase))
    rows = sum(len(v) for v in doc["database"].values())
    print(f"wrote {place.describe(name)}: {rows} database rows, {len(doc['files'])} files")
    if pruning:
        _prune(place, args.keep_daily or 0, args.keep_weekly or 0, dry_run=False)
    return ExitCode.OK


def _prune(place: Place, keep_daily: int, keep_weekly: int, *, dry_run: bool) -> int:
    if keep_daily < 0 or keep_weekly < 0 or keep_daily + keep_weekly == 0:
        print("certloop renewer: --keep-daily and --keep-weekly must be >= 0 and not both 0", file=sys.stderr)
        return ExitCode.USAGE
    names = place.names()
    doomed = expired(names, keep_daily=keep_daily, keep_weekly=keep_weekly)
    for name in doomed:
        if not dry_run:
            place.delete(name)
        print(f"{'would delete' if dry_run else 'deleted'} {place.describe(name)}")
    print(f"kept {len(archives(names)) - len(doomed)} archive(s) in {place.describe()}")
    return ExitCode.OK


def _verify(cfg: RenewerConfig | None, args: argparse.Namespace) -> int:
    key, passphrase = _secrets(cfg, args.passphrase_file)
    place, name = _archive(args.location)
    where = place.describe(name)
    try:
        doc = unseal(place.get(name), where, key=key, passphrase=passphrase)
        result = verify_backup(doc, where, scratch_server=args.scratch_database)
    except (WrongKey, ArchiveDamaged, Mismatch) as exc:  # exit codes 3, 4, 5 (VerifyExit)
        print(f"certloop renewer: verify failed: {exc}", file=sys.stderr)
        return {WrongKey: VerifyExit.WRONG_KEY, ArchiveDamaged: VerifyExit.DAMAGED, Mismatch: VerifyExit.MISMATCH}[
            type(exc)]
    tables = ", ".join(f"{t} {n}" for t, n in result.rows.items())
    print(f"verified {where}: made {doc.get('created_at', '?')}, restored into scratch {result.database}: "
          f"{sum(result.rows.values())} database rows ({tables}), {result.files} files, all equal")
    return ExitCode.OK


def _restore(cfg: RenewerConfig, args: argparse.Namespace) -> int:
    from certloop.renewer.daemon import open_store

    key, passphrase = _secrets(cfg, args.passphrase_file)
    place, name = _archive(args.infile)
    doc = unseal(place.get(name), place.describe(name), key=key, passphrase=passphrase)
    store = open_store(cfg, migrate=True, deadline=False)
    try:
        result = restore_backup(doc, store, cfg.data_dir, overwrite=args.force)
    finally:
        store.close()
    print(f"restored {sum(result.rows.values())} database rows and {result.files} files into {cfg.data_dir} "
          f"from {place.describe(name)}")
    return ExitCode.OK


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    logs.configure(args.log_level, args.log_format)
    for noisy in ("alembic", "apscheduler"):  # their INFO lines repeat on every start / tick
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    backup_command = getattr(args, "backup_command", None)
    cfg: RenewerConfig | None = None
    try:
        cfg = load_config(args.config_file, expand_env=args.expand_env)
    except ConfigError as exc:
        # prune needs no config; verify needs it only for the keystore key (_secrets says so if missing)
        if backup_command not in {"verify", "prune"} or Path(args.config_file).exists():
            print(f"certloop renewer: config error: {exc}", file=sys.stderr)
            return ExitCode.CONFIG
    web: WebConfigFile | None = None
    if cfg is not None and args.command is None:
        try:
            web = _web_config(cfg, args.web_config)
        except ConfigError as exc:
            print(f"certloop renewer: --web.config.file: {exc}", file=sys.stderr)
            return ExitCode.CONFIG
    if args.config_check and cfg is not None:
        print(f"{args.config_file}: ok ({len(cfg.certificates)} certificate(s))")
        return ExitCode.OK
    args.web = web
    try:
        return _dispatch(cfg, args, backup_command)
    except ConfigError as exc:
        print(f"certloop renewer: config error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except StoreUnavailable as exc:
        print(f"certloop renewer: database {exc.database or '(unknown)'} unavailable ({exc.operation}): "
              f"{exc.detail}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    except ListenError as exc:
        print(f"certloop renewer: {exc}", file=sys.stderr)
        return ExitCode.CANNOT_LISTEN
    except CertloopError as exc:
        print(f"certloop renewer: {exc}", file=sys.stderr)
        return ExitCode.FAILURE


def _dispatch(cfg: RenewerConfig | None, args: argparse.Namespace, backup_command: str | None) -> int:
    if backup_command == "prune":
        place, name = parse_location(args.location)
        if name is not None:
            print("certloop renewer: backup prune needs a directory or prefix (ending in /)", file=sys.stderr)
            return ExitCode.USAGE
        return _prune(place, args.keep_daily, args.keep_weekly, dry_run=args.dry_run)
    if backup_command == "verify":
        return _verify(cfg, args)
    assert cfg is not None  # main returned CONFIG for every other command without a config
    if args.command == "db":
        return _db(cfg, args.action, args.revision)
    if args.command == "backup":
        return _backup(cfg, args)
    if args.command == "restore":
        return _restore(cfg, args)
    return _serve(cfg, args)


def _web_config(cfg: RenewerConfig, path: str | None) -> WebConfigFile | None:
    """The web config, checked against the renewer's auth: TLS in one place, every role's user can sign in."""
    if path is None:
        if cfg.auth.users:
            raise ConfigError("auth.users", "people sign in with --web.config.file's basic_auth_users: give the flag")
        return None
    web = WebConfigFile(Path(path))
    if web.ssl_context is not None and cfg.auth.tls_cert_file is not None:
        raise ConfigError("tls_server_config", "TLS is set both here and in auth.tls_cert_file: keep one")
    missing = sorted(set(cfg.auth.users) - set(web.config.basic_auth_users))
    if missing:
        raise ConfigError("auth.users", f"no password in basic_auth_users for {', '.join(missing)}")
    return web


def _serve(cfg: RenewerConfig, args: argparse.Namespace) -> int:
    from certloop.renewer.daemon import Daemon

    daemon = Daemon(Path(args.config_file), cfg, listen=args.listen, max_connections=args.max_connections,
                    web=args.web, expand_env=args.expand_env, enable_lifecycle=args.enable_lifecycle)
    tune_collector()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop is a dependency; plain asyncio still works without it
        pass
    asyncio.run(daemon.run())
    return ExitCode.OK

"""``certloop check``: look at endpoints and certificate files now and print what a human needs.

The I/O shell around the pure parts: arguments and an optional config file become endpoints and
the exporter's ``files:`` groups; endpoints are resolved (every address) and probed with bounded
concurrency through :mod:`certloop.probe`; files are listed, read and judged by the exporter's own file
source (:meth:`exporter.sources.files.FileSource.listed` and ``judge``), so a file's verdict here is the
one its ``certloop_verify_verdict`` series carries. Each endpoint address and each file becomes a
:class:`exporter.table.Row` whose status is :func:`exporter.table.decide`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from certloop.caches import Caches
from certloop.config import parse_duration
from certloop.errors import CertloopError, FailureReason, FileReason, ProbeError
from certloop.exitcodes import ExitCode, UsageParser
from certloop.exporter.config import ExporterConfig, FileGroup, load_config, split_target
from certloop.exporter.report import ExporterCaches, Observation
from certloop.exporter.sources.base import Context, ProbeCounter
from certloop.exporter.sources.filebatch import Job
from certloop.exporter.sources.files import FileSource
from certloop.exporter.table import Row, Thresholds, decide, exit_code, render_json, render_table
from certloop.facts import chain_roles, facts
from certloop.probe import Names, addresses_of, probe_address, target_names
from certloop.resolve import Resolver, parse_nameserver
from certloop.truststore import TrustStore
from certloop.verify import earliest_expiry, verify_chain

__all__ = ["Endpoint", "file_row", "main", "parse_target", "run"]

_DEFAULT_PORT = 443
# File reasons that mean "could not get at the file" (UNREACHABLE); the others describe its content (INVALID).
_ACCESS_REASONS = {
    FileReason.NOT_FOUND, FileReason.PERMISSION_DENIED, FileReason.NOT_A_FILE,
    FileReason.SYMLINK_LOOP, FileReason.UNREADABLE,
}
_CERT_SUFFIXES = (".pem", ".crt", ".cer", ".cert", ".der", ".p12", ".pfx")
_FILE_BATCH = 64  # files judged per trip to the worker thread: progress moves, the stages stay batched

_EPILOG = """\
targets:
  host:port, host (port 443), [v6addr]:port, the path of an existing certificate file
  (PEM bundle, DER or PKCS#12) or a directory (the files the exporter takes from it: *.pem,
  *.crt, *.cer, *.cert, *.der, *.p12, *.pfx). Every A/AAAA address of a host is probed, one row
  each; every file is one row.

--config FILE checks the endpoints and files of an exporter config file, read and validated by
the exporter's own config model (`certloop config schema exporter`): a file the exporter refuses
is refused here with the same message. Endpoints take their group's and module's server_name,
starttls, ca_file, ip_protocol and timeouts; files are listed and judged by the exporter's own
file source (globs, directories, recursive, include/exclude, password, global.max_file_bytes).
Flags win over the config.

status:
  OK, WARN (expires within --warn), CRIT (within --crit), EXPIRED (leaf or intermediate),
  INVALID (reason: not_yet_valid; for an endpoint also unknown_authority, incomplete_chain,
  self_signed, hostname_mismatch, invalid; for a file a content problem: no_certificate, empty,
  parse_error, too_large, ...), UNREACHABLE (reason: dns, connect, refused, timeout, handshake, starttls,
  no_certificate, chain_too_large, bad_server_name (a name that cannot be sent: an empty label,
  a label over 63 characters, a NUL ...), or a file access problem: not_found,
  permission_denied, ...). Internationalised names are sent as IDNA 2008 (UTS 46) A-labels.
  Endpoints are verified against the trust store (--ca-file, else the config's global.ca_file,
  else the system store; a module's ca_file for its endpoints) for the server name. A file is
  judged as the exporter judges it: its certificates as one chain, leaf first, verified against
  the same trust store for no name, expiry the earliest of leaf and intermediates. Its status
  follows the file alerts, which do not fire on a file's verdict: EXPIRED (leaf or intermediate),
  INVALID (not_yet_valid), INVALID/UNREACHABLE when it cannot be read, else OK/WARN/CRIT by the
  time left with any other verdict shown as the reason: a file holding only a leaf is
  OK (incomplete_chain), a self-signed one OK (self_signed). A key in a .pem file found in a
  directory is INVALID (no_certificate), as the exporter reports it. A chain with weak crypto
  (RSA < 2048, EC < 256, a SHA-1/MD5 signature) is at least WARN (weak_crypto), endpoint or file.

exit codes:
  0  every certificate OK
  1  the worst is WARN
  2  something is CRIT, EXPIRED, INVALID or UNREACHABLE
  64 usage error
  78 a --config file the exporter refuses (the same code as the exporter's)

Colour is used when stdout is a terminal and NO_COLOR is not set; a progress line is shown on
stderr when it is a terminal.
"""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One TLS endpoint to probe. ``target`` is shown as given."""

    target: str
    host: str
    port: int
    server_name: str | None = None
    starttls: str | None = None
    ca_file: str | None = None
    """A module's own trust bundle (the exporter's ``modules.NAME.ca_file``); None: the run's."""
    ip_protocol: str = "both"
    connect_timeout: float | None = None
    handshake_timeout: float | None = None


@dataclass(frozen=True)
class Settings:
    """Probe settings from the flags, falling back to the config file's ``global``."""

    thresholds: Thresholds
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    concurrency: int = 32
    ca_file: str | None = None
    resolver: tuple[str, ...] = ()


def parse_target(text: str) -> tuple[str, int]:
    """``host:port``, ``host``, ``[v6]:port``, ``[v6]`` or a bare IPv6 address; port 443 by default."""
    value = text.strip()
    if not value:
        raise ValueError("empty target")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [ipv6]:port, got {text!r}")
        port_text = rest[1:] if rest else str(_DEFAULT_PORT)
    elif value.count(":") > 1:  # a bare IPv6 address
        host, port_text = value, str(_DEFAULT_PORT)
    else:
        host, sep, port_text = value.partition(":")
        port_text = port_text if sep else str(_DEFAULT_PORT)
    if not host or "/" in host or " " in host:
        raise ValueError(f"invalid host in {text!r}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected a port between 1 and 65535 in {text!r}")
    return host, int(port_text)


def _looks_like_path(text: str) -> bool:
    return os.path.exists(text) or "/" in text or text.lower().endswith((*_CERT_SUFFIXES, ".key"))


# ------------------------------------------------------------------------------------------ config


def load_check_config(path: str, *, expand_env: bool = False) -> tuple[list[Endpoint], ExporterConfig]:
    """The endpoints of an exporter config file, and the config itself, read by the exporter's model.

    The same file the exporter accepts, with the same errors for what it refuses (unknown keys
    included); each endpoint takes its group's and module's settings as the exporter's
    ``spec_for`` combines them. Its ``files:`` groups are listed at run time by the exporter's file
    source (:func:`file_source`).
    """
    config = load_config(path, expand_env=expand_env)
    g = config.global_
    endpoints: list[Endpoint] = []
    seen: set[str] = set()
    for group in config.endpoints:
        module = config.module(group.module)
        for target in group.targets:
            if target in seen:  # listed twice: the first group's settings win, as in the exporter
                continue
            seen.add(target)
            host, port = split_target(target)
            endpoints.append(Endpoint(
                target, host, port,
                server_name=group.server_name or module.server_name,
                starttls=group.starttls or module.starttls,
                ca_file=module.ca_file,
                ip_protocol=module.ip_protocol,
                connect_timeout=(module.connect_timeout or g.connect_timeout).total_seconds(),
                handshake_timeout=(module.handshake_timeout or g.handshake_timeout).total_seconds(),
            ))
    return endpoints, config


def file_source(
    config: ExporterConfig | None, paths: Sequence[str], trust: TrustStore, caches: ExporterCaches,
    clock: Callable[[], datetime],
) -> FileSource:
    """The exporter's file source over the config's ``files:`` groups plus one group for the PATH
    arguments (the exporter's defaults: a directory's files by the default include)."""
    base = config if config is not None else ExporterConfig()
    groups = [*base.files, FileGroup(paths=list(paths))] if paths else list(base.files)
    config = base.model_copy(update={"files": groups})
    ctx = Context(config, {None: trust}, Resolver(), ProbeCounter(), caches, clock)  # files resolve no name
    return FileSource(ctx, watch=False)


# ------------------------------------------------------------------------------------------ probing


def file_row(obs: Observation, *, now: datetime, thresholds: Thresholds) -> Row:
    """A file's row from the exporter's observation of it: the chain's verdict and earliest expiry
    (the leaf's facts shown), or the failure's reason (UNREACHABLE when the file could not be got
    at, INVALID when its content is the problem)."""
    chain = obs.chain
    if chain is None:
        reason = obs.reason or FileReason.UNREADABLE.value
        status, why = decide(None, None, now=now, thresholds=thresholds, failure=reason,
                             unreachable=reason in _ACCESS_REASONS)
        return Row(obs.target, "file", status, why)
    leaf = chain.facts[0]
    status, why = decide(chain.verdict, chain.expiry, now=now, thresholds=thresholds, kind="file",
                         weak=any(f.weak_crypto for f in chain.facts))
    return Row(
        obs.target, "file", status, why, subject=leaf.subject, issuer=leaf.issuer, not_before=leaf.not_before,
        not_after=chain.expiry, leaf_not_after=leaf.not_after, verdict=chain.verdict,
        fingerprint_sha256=leaf.fingerprint_sha256,
    )


class Prober:
    """Resolves and probes endpoints with bounded concurrency; ``clock`` gives the verification time."""

    def __init__(
        self, settings: Settings, trust: TrustStore, resolver: Resolver, clock: Callable[[], datetime],
        caches: Caches,
    ) -> None:
        self.settings = settings
        self.trust = trust
        self.caches = caches
        self._trusts: dict[str, TrustStore] = {}
        self.clock = clock
        self._resolver = resolver
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def endpoint_rows(self, ep: Endpoint) -> list[Row]:
        names = target_names(ep.host, ep.server_name)
        base = {"server_name": names.verified}
        try:
            async with self._slots:
                addresses = await addresses_of(ep.host, self._resolver, ep.ip_protocol, names)
        except ProbeError as exc:
            return [self._failure(ep, None, str(exc.reason), base)]
        return list(await asyncio.gather(*(self._probe(ep, a, names, base) for a in addresses)))

    async def _probe(self, ep: Endpoint, address: str, names: Names, base: dict[str, Any]) -> Row:
        async with self._slots:
            probed = await probe_address(
                address, ep.port, names, self.caches, starttls=ep.starttls,
                connect_timeout=ep.connect_timeout or self.settings.connect_timeout,
                handshake_timeout=ep.handshake_timeout or self.settings.handshake_timeout,
            )
        if probed.error is not None or probed.presented is None:
            failed = probed.error.reason if probed.error is not None else FailureReason.HANDSHAKE
            return self._failure(ep, address, str(failed), base)
        now = self.clock()
        chain = list(probed.chain)
        caches = self.caches
        try:
            verdict = verify_chain(chain, trust=self._trust(ep), at=now, hostname=names.verified, caches=caches)
            described = [facts(c, caches) for c in chain]
            expiry = earliest_expiry(described, chain_roles(chain, caches))
            leaf = described[0]
        except ValueError:  # a field that decodes lazily and does not: as the exporter says it
            return self._failure(ep, address, str(FailureReason.HANDSHAKE), base)
        status, reason = decide(verdict, expiry, now=now, thresholds=self.settings.thresholds,
                                weak=any(f.weak_crypto for f in described))
        return Row(
            ep.target, "endpoint", status, reason, address=address, subject=leaf.subject, issuer=leaf.issuer,
            not_before=leaf.not_before, not_after=expiry, leaf_not_after=leaf.not_after, verdict=verdict,
            fingerprint_sha256=leaf.fingerprint_sha256, tls_version=probed.presented.tls_version, **base,
        )

    def _trust(self, ep: Endpoint) -> TrustStore:
        """The module's bundle when it names one (read once per run), else the run's trust store."""
        if ep.ca_file is None:
            return self.trust
        if ep.ca_file not in self._trusts:
            self._trusts[ep.ca_file] = TrustStore.from_file(ep.ca_file, self.caches)
        return self._trusts[ep.ca_file]

    def _failure(self, ep: Endpoint, address: str | None, reason: str, base: dict[str, Any]) -> Row:
        status, why = decide(None, None, now=self.clock(), thresholds=self.settings.thresholds, failure=reason)
        return Row(ep.target, "endpoint", status, why, address=address, **base)


class Progress:
    """``checking 12/40`` on a terminal's stderr, erased at the end; silent otherwise."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream, self.total, self.done = stream, total, 0
        self.enabled = total > 1 and stream.isatty()

    def step(self) -> None:
        self.done += 1
        if self.enabled:
            self.stream.write(f"\rchecking {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


async def collect(
    endpoints: Sequence[Endpoint], files: FileSource | None, jobs: Sequence[Job], settings: Settings,
    trust: TrustStore, *, clock: Callable[[], datetime], progress: Progress, caches: Caches,
) -> list[Row]:
    """Every row: the endpoints in the order given, then the ``jobs`` (what ``files`` listed) in order.

    Files are judged in a worker thread, a batch at a time as the exporter's sweep judges them, while
    endpoints are probed. ``caches`` is the run's: an intermediate shared by many files or endpoints
    is parsed and described once.
    """
    resolver = Resolver(settings.resolver or None, timeout=settings.connect_timeout)
    prober = Prober(settings, trust, resolver, clock, caches)

    async def one_endpoint(ep: Endpoint) -> list[Row]:
        rows = await prober.endpoint_rows(ep)
        progress.step()
        return rows

    async def all_files() -> list[Row]:
        rows: list[Row] = []
        if files is None:
            return rows
        now = clock()
        for start in range(0, len(jobs), _FILE_BATCH):
            batch = list(jobs[start : start + _FILE_BATCH])
            for obs in await asyncio.to_thread(files.judge, batch, now):
                rows.append(file_row(obs, now=now, thresholds=settings.thresholds))
                progress.step()
        return rows

    results = await asyncio.gather(*(one_endpoint(e) for e in endpoints), all_files())
    return [row for group in results for row in group]


# ------------------------------------------------------------------------------------------ CLI


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    p = UsageParser(
        prog="certloop check", description="Check TLS endpoints and certificate files now and print a table.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("items", nargs="*", metavar="TARGET|PATH", help="host:port or certificate file")
    p.add_argument("--config", metavar="FILE", help="also check the endpoints and files of an exporter config")
    p.add_argument("--warn", type=_duration, default=timedelta(days=21), metavar="DURATION",
                   help="WARN at or below this time left (default 21d)")
    p.add_argument("--crit", type=_duration, default=timedelta(days=7), metavar="DURATION",
                   help="CRIT at or below this (default 7d)")
    p.add_argument("--output", choices=("table", "json"), default="table", help="output format (default table)")
    p.add_argument("--server-name", metavar="NAME", help="SNI and verified name for every target "
                   "(default: each target's host)")
    p.add_argument("--starttls", metavar="PROTO", help="STARTTLS protocol for every target (smtp, imap, ...)")
    p.add_argument("--ca-file", metavar="PEM", help="trust bundle (default: the system store)")
    p.add_argument("--timeout", type=_duration, metavar="DURATION",
                   help="connect and handshake timeout each (default 5s)")
    p.add_argument("--resolver", metavar="HOST:PORT", action="append", default=[],
                   help="DNS server to resolve targets with (repeatable; default: the system resolver)")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="probes in flight at once (default: global.concurrency of --config, else 32)")
    return p


def _colour(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def run(
    argv: Sequence[str], *, clock: Callable[[], datetime] | None = None,
    stdout: TextIO | None = None, stderr: TextIO | None = None,
) -> int:
    """The command with injectable clock and streams (tests); :func:`main` uses the real ones."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    now_fn = clock or (lambda: datetime.now(UTC))
    parser = _parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # --help, or a usage error (UsageParser)
        return ExitCode.OK if exc.code == 0 else ExitCode.USAGE
    if args.crit > args.warn:
        print("certloop check: --crit must not be longer than --warn", file=err)
        return ExitCode.USAGE
    if args.concurrency is not None and args.concurrency < 1:
        print("certloop check: --concurrency must be at least 1", file=err)
        return ExitCode.USAGE
    endpoints: list[Endpoint] = []
    paths: list[str] = []
    config: ExporterConfig | None = None
    caches = ExporterCaches()  # what this run parses, describes and verifies, remembered for the run
    try:
        if args.config:
            endpoints, config = load_check_config(args.config)
    except (ValueError, CertloopError) as exc:  # what the exporter refuses in the same file
        print(f"certloop check: {exc}", file=err)
        return ExitCode.CONFIG
    try:
        for item in args.items:
            if os.path.isdir(item) or _looks_like_path(item):  # listed as a path in a files: group
                paths.append(item)
                continue
            host, port = parse_target(item)
            endpoints.append(Endpoint(item, host, port))
        if args.server_name or args.starttls:
            endpoints = [replace(e, server_name=args.server_name or e.server_name,
                                 starttls=args.starttls or e.starttls) for e in endpoints]
        timeout = args.timeout.total_seconds() if args.timeout else None
        if timeout:  # the flag wins over the config's module and global timeouts
            endpoints = [replace(e, connect_timeout=None, handshake_timeout=None) for e in endpoints]
        g = config.global_ if config is not None else None
        settings = Settings(
            thresholds=Thresholds(args.warn, args.crit),
            connect_timeout=timeout or (g.connect_timeout.total_seconds() if g else 5.0),
            handshake_timeout=timeout or (g.handshake_timeout.total_seconds() if g else 5.0),
            concurrency=args.concurrency or (g.concurrency if g else 32),
            ca_file=args.ca_file or (g.ca_file if g else None),
            resolver=tuple(args.resolver or (g.resolver if g else ())),
        )
        for nameserver in settings.resolver:
            parse_nameserver(nameserver)
    except (ValueError, CertloopError) as exc:
        print(f"certloop check: {exc}", file=err)
        return ExitCode.USAGE
    has_files = bool(paths) or (config is not None and bool(config.files))
    jobs: list[Job] = []
    if endpoints or has_files:
        try:
            trust = TrustStore.from_file(settings.ca_file, caches) if settings.ca_file else TrustStore.system(caches)
        except CertloopError as exc:  # the bundle of --ca-file (usage) or of the config's global.ca_file
            print(f"certloop check: {exc}", file=err)
            return ExitCode.USAGE if args.ca_file else ExitCode.CONFIG if settings.ca_file else ExitCode.FAILURE
        files = file_source(config, paths, trust, caches, now_fn) if has_files else None
        jobs = files.listed(now_fn()) if files is not None else []
    if not endpoints and not jobs:  # also: the config's files name nothing that exists
        parser.print_usage(err)
        print("certloop check: nothing to check (give TARGET, PATH or --config)", file=err)
        return ExitCode.USAGE
    progress = Progress(err, len(endpoints) + len(jobs))
    try:
        rows = asyncio.run(collect(endpoints, files, jobs, settings, trust, clock=now_fn, progress=progress,
                                   caches=caches))
    finally:
        progress.close()
    now = now_fn()
    if args.output == "json":
        print(render_json(rows, now=now), file=out)
    else:
        print(render_table(rows, now=now, colour=_colour(out)), file=out)
    return exit_code(rows)


def main(argv: Sequence[str]) -> int:
    """Entry point of ``certloop check`` (see :data:`certloop.cli.COMMANDS`)."""
    return run(argv)

"""Config reloader sidecar: when a mounted ConfigMap changes, ask the daemon beside it to reload.

Why it exists: neither certloop daemon watches its config file; both re-read it on SIGHUP or
``POST /-/reload`` (the renewer's needs the bearer token). The kubelet updates a ConfigMap volume
mounted as a directory (never with ``subPath``, which freezes the file) by writing a new hidden
directory and swapping the ``..data`` symlink. This loop notices that swap and POSTs ``/-/reload`` on
loopback, so a ``kubectl apply`` of a changed ConfigMap reaches the running daemon without a restart.

What must stay true:
- Standard library only: it runs with the certloop image's interpreter, nothing to install.
- The change test is the content of the watched files (a digest of every regular file the directory
  names, symlinks followed), so it does not depend on kubelet internals and also works for a plain
  directory (tests, compose). Polling, not inotify: one ``stat``+read of a few small files per tick.
- The first tick reloads once whatever the digest: a change landing between the daemon's start and this
  loop's first look would otherwise be missed until the next one.
- A rejected config (HTTP 500: the daemon keeps the old one and says why) is logged once, not
  retried; an unreachable daemon (starting, restarting) is retried on the next tick until it answers.
- The token is read from its file on every attempt (a rotated Secret is picked up) and never logged.
- A token file that cannot be read (the Secret not mounted yet, wrong permissions, a directory in its
  place) is not fatal: the tick logs ``token_unreadable`` with the path and the OS error, sends nothing,
  and the next tick tries again. The same error is logged once, a different one again, and the recovery
  once (``token_readable``), so a pod waiting for its Secret neither crash-loops nor floods its log.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType


def digest(directory: Path) -> str:
    """A digest of the names and contents of the regular files in ``directory`` (kubelet's ``..*``
    bookkeeping entries skipped; the user-visible names are symlinks into ``..data``)."""
    h = hashlib.sha256()
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".."):
            continue
        try:
            if not entry.is_file():
                continue
            content = entry.read_bytes()
        except OSError:  # swapped away between listing and reading: the next tick sees the new state
            continue
        h.update(entry.name.encode() + b"\0" + hashlib.sha256(content).digest())
    return h.hexdigest()


def log(event: str, **fields: object) -> None:
    print(json.dumps({"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **fields}),
          flush=True)


class TokenUnreadable(Exception):
    """The token file could not be read; ``error`` says why (the OS error text) and holds no secret."""

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(error)


def read_token(token_file: Path) -> str:
    """The bearer token, read afresh. Raises :class:`TokenUnreadable` (what went wrong, never the content)."""
    try:
        return token_file.read_text().strip()
    except OSError as exc:
        raise TokenUnreadable(exc.strerror or str(exc)) from exc
    except UnicodeDecodeError as exc:  # its message quotes a byte of the file: say where, not what
        raise TokenUnreadable(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def reload(url: str, token: str | None, timeout: float) -> int | None:
    """POST the reload; the HTTP status, or None when the daemon could not be reached."""
    request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310 - main() allows http(s) only
    if token is not None:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL is our own flag
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    # Not answered: URLError (refused, unresolvable), a timeout or a reset are all OSError; a reply that is
    # not HTTP (something else on the port while the daemon restarts) is an HTTPException. Retried.
    except (OSError, http.client.HTTPException):
        return None


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for unit in ("ms", "s", "m"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    raise argparse.ArgumentTypeError(f"expected a duration like 5s, got {text!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watch-dir", type=Path, required=True, help="the mounted ConfigMap directory")
    parser.add_argument("--reload-url", required=True, help="e.g. http://127.0.0.1:10794/-/reload")
    parser.add_argument("--token-file", type=Path, help="bearer token for the reload (the renewer's)")
    parser.add_argument("--interval", type=parse_duration, default=parse_duration("5s"))
    args = parser.parse_args(argv)
    if not args.reload_url.startswith(("http://", "https://")):
        print(f"config_reloader: --reload-url {args.reload_url!r}: expected an http:// URL", file=sys.stderr)
        return 2
    if not args.watch_dir.is_dir():
        print(f"config_reloader: --watch-dir {args.watch_dir}: not a directory", file=sys.stderr)
        return 2

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    applied: str | None = None  # unknown which version the daemon read: reload once it answers
    token_error: str | None = None  # the token file's last logged error, None while it reads
    log("watching", dir=str(args.watch_dir), url=args.reload_url)
    while not stopping:
        current = digest(args.watch_dir)
        if current == applied:
            time.sleep(args.interval)
            continue
        token = None
        if args.token_file is not None:
            try:
                token = read_token(args.token_file)
            except TokenUnreadable as exc:
                if exc.error != token_error:
                    log("token_unreadable", file=str(args.token_file), error=exc.error)
                    token_error = exc.error
                time.sleep(args.interval)  # retried on the next tick: a Secret may be mounted late
                continue
            if token_error is not None:
                log("token_readable", file=str(args.token_file))
                token_error = None
        status = reload(args.reload_url, token, timeout=max(args.interval, 10.0))
        if status is None:
            log("reload_unreachable", url=args.reload_url)  # retried on the next tick
            time.sleep(args.interval)
            continue
        applied = current
        if status == 200:
            log("reloaded", status=status)
        else:
            log("reload_rejected", status=status)  # the daemon keeps its old config and says why
    return 0


if __name__ == "__main__":
    sys.exit(main())

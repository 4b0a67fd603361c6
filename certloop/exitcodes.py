"""Exit codes of every certloop command: one failure, one code, whichever command meets it.

A script, a systemd unit (``RestartPreventExitStatus=``) or a Kubernetes probe branches on these numbers,
so they are a contract, listed once for people in docs/exit-codes.md (a test keeps that table equal to
these enums) and changed only with a note in docs/operations/upgrade.md.

The choice, and what must stay true:

- **0** success, **1** a failure at run time that no other code names. 1 is also what Python exits with
  on an uncaught exception, so a bug and an unnamed failure look alike; the message tells them apart.
- **1 and 2 belong to ``certloop check``'s verdict** (:class:`CheckExit`: 1 the worst certificate is WARN,
  2 CRIT or worse). That is documented for cron and CI jobs and stays; so no other failure may take 2,
  or a script could not tell "a certificate is bad" from "check did not run".
- **Every other failure of the process takes its number from sysexits(3)** (64-78), which no verdict
  overlaps: 64 usage (a bad flag or argument), 69 a service certloop needs does not answer (the
  renewer's database), 71 the operating system refused a resource needed to start (the listen address is
  taken or privileged), 78 a bad configuration (the config file, a secret it names, ``--web.config.file``).
  argparse's own 2 for a bad flag is replaced by 64 (:class:`UsageParser`) for that reason.
- **Command-specific verdicts stay below 64**: ``renewer backup verify``'s 3, 4 and 5
  (:class:`VerifyExit`) tell a wrong key from a damaged archive from a restore that differs.

A code's meaning never changes; a new failure gets a new member here and a row in the table.
"""

from __future__ import annotations

import argparse
import sys
from enum import IntEnum
from typing import NoReturn

__all__ = ["CheckExit", "ExitCode", "UsageParser", "VerifyExit"]


class ExitCode(IntEnum):
    """What ended the process, the same for every command (``check``, ``exporter``, ``renewer``, ...)."""

    OK = 0
    """Success, or a clean stop on SIGTERM/SIGINT."""
    FAILURE = 1
    """A failure at run time that no other code names (the message says what failed)."""
    USAGE = 64
    """EX_USAGE: an unknown flag, a missing argument, a flag's value out of range."""
    UNAVAILABLE = 69
    """EX_UNAVAILABLE: a service certloop needs does not answer or refuses the connection: the renewer's
    database (at start, ``db``, ``backup``, ``restore``)."""
    CANNOT_LISTEN = 71
    """EX_OSERR: the listen address cannot be bound (in use, a privileged port, no such address)."""
    CONFIG = 78
    """EX_CONFIG: the configuration is wrong: the config file (``--config.file``, ``check --config``), a
    secret file it names, ``--web.config.file``. The message names the key."""
    INTERRUPTED = 130
    """Ctrl-C before the work was done (the shell's 128 + SIGINT): ``demo`` before its loop closed."""


class CheckExit(IntEnum):
    """``certloop check``'s verdict over every certificate it looked at: the worst row decides."""

    OK = 0
    """Every certificate is OK."""
    WARN = 1
    """The worst is WARN (expires within ``--warn``)."""
    CRIT = 2
    """At least one is CRIT, EXPIRED, INVALID or UNREACHABLE."""


class VerifyExit(IntEnum):
    """``certloop renewer backup verify``'s verdicts on an archive it could read."""

    WRONG_KEY = 3
    """Wrong keystore key or passphrase."""
    DAMAGED = 4
    """Not a certloop archive, truncated, altered or of an unknown format."""
    MISMATCH = 5
    """The restored rows or files differ from the archive's."""


class UsageParser(argparse.ArgumentParser):
    """argparse, with a usage error exiting :attr:`ExitCode.USAGE` instead of argparse's 2.

    Sub-parsers made by :meth:`add_subparsers` are of this class too (argparse uses the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)

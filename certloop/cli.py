"""The ``certloop`` command: a thin dispatcher to each component's own CLI.

Components are looked up by module name at run time so the shared core never imports the
packages built on it (import-linter enforces that), and a broken component cannot stop the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence

from certloop import __version__
from certloop.exitcodes import ExitCode

# subcommand -> ("module:function", one-line help). Each function takes argv (without the subcommand).
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("certloop.exporter.check:main", "check endpoints and certificate files now, print a table"),
    "exporter": ("certloop.exporter.cli:main", "run the Prometheus exporter (/metrics inventory and /probe)"),
    "renewer": ("certloop.renewer.cli:main", "run the renewer daemon, or manage its database and backups"),
    "config": ("certloop.cli:config_main", "print the JSON Schema of a component's config"),
    "assets": ("certloop.assets:main", "print where the installed rules, dashboards, units and migrations are"),
    "demo": ("stack.demo:main", "run the whole loop on loopback with demo certificates"),
}

# component -> "module:function" returning the JSON Schema dict of its config file.
SCHEMAS: dict[str, str] = {
    "exporter": "certloop.exporter.config:json_schema",
    "renewer": "certloop.renewer.config:json_schema",
}


def _resolve(ref: str) -> Callable[..., object]:
    module, _, attr = ref.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    assert callable(fn)
    return fn  # type: ignore[no-any-return]


def config_main(argv: Sequence[str]) -> int:
    """``certloop config schema [exporter|renewer]``: print a config file's JSON Schema."""
    args = list(argv)
    usage = f"usage: certloop config schema [{'|'.join(SCHEMAS)}]"
    if args and args[0] in {"-h", "--help"}:
        print(f"{usage}\n\nPrint the JSON Schema of a component's config file (default: exporter).")
        return ExitCode.OK
    if not args or args[0] != "schema" or len(args) > 2 or (len(args) == 2 and args[1] not in SCHEMAS):
        print(usage, file=sys.stderr)
        return ExitCode.USAGE
    component = args[1] if len(args) == 2 else "exporter"
    schema = _resolve(SCHEMAS[component])()
    print(json.dumps(schema, indent=2, sort_keys=True))
    return ExitCode.OK


def _usage() -> str:
    lines = ["usage: certloop COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'certloop COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return ExitCode.OK
    if args[0] == "--version":
        print(f"certloop {__version__}")
        return ExitCode.OK
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"certloop: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return ExitCode.USAGE
    if args[0] == "demo" and importlib.util.find_spec("stack") is None:
        # stack/ (the real peers of the demo and the tests) is not installed with the wheel
        print("certloop demo runs from a source checkout: clone the repository and run `make demo`",
              file=sys.stderr)
        return ExitCode.UNAVAILABLE
    rc = _resolve(entry[0])(args[1:])
    return int(rc) if isinstance(rc, int) else ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""The operations documentation only shows commands, files and links that exist.

Every `certloop ...` command in docs/operations/*.md (code blocks and inline code) is checked against the
real CLI: each distinct subcommand path answers `--help`, every option used appears in that help, and
subcommand words are among the choices the parser offers. Repository paths mentioned in the text exist,
and every relative link (runbooks included) resolves, down to the heading anchor.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from certloop.cli import COMMANDS, SCHEMAS
from certloop.config import validate_model
from certloop.renewer.config import RenewerConfig

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "docs" / "operations"
PAGES = sorted(OPS.glob("*.md"))
CERTLOOP = Path(sys.executable).with_name("certloop")
EXPECTED_PAGES = {
    "README.md", "installation.md", "scaling.md", "backup.md", "upgrade.md", "troubleshooting.md", "daily.md",
    "sizing.md", "disaster-recovery.md", "incident-response.md", "security.md", "log-shipping.md",
}

# A `certloop` token right after these is an argument (a user, group or namespace), not the command.
_NOT_A_COMMAND_AFTER = {"-u", "-g", "-o", "-n", "--user", "--group", "--owner", "--namespace", "chgrp", "chown"}
_OPERATOR = re.compile(r"\s(?:\|\||&&|\||;|2?>>?|<)\s?")
_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)  # list items indent their fences
_INLINE = re.compile(r"`([^`\n]+)`")
_REPO_PATH = re.compile(
    r"(?<![\w./@:$-])((?:deploy|compose|alerting|dashboards|docs|renewer|exporter|certloop|stack|scripts|tests|benchmarks)"
    r"/[\w./*@-]*)"
)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


# -- extraction ---------------------------------------------------------------------------------------------


def _code_lines(text: str) -> Iterator[str]:
    """Lines of fenced code blocks (continuations joined) and inline code spans outside them."""
    for block in _FENCE.findall(text):
        yield from block.replace("\\\n", " ").splitlines()
    yield from _INLINE.findall(_FENCE.sub("", text))


def commands_in(text: str) -> list[list[str]]:
    """Argument lists (after `certloop`) of every certloop command shown in ``text``."""
    found = []
    for line in _code_lines(text):
        if not re.search(r"(?:^|[\s/])certloop\s", line):
            continue
        line = re.sub(r"\$\([^)]*\)", "SUBST", line)  # $(date +%F) is one value
        for segment in _OPERATOR.split(line):
            try:
                tokens = shlex.split(segment, comments=True)
            except ValueError:
                tokens = segment.split()
            for i, tok in enumerate(tokens[:-1]):
                if tok != "certloop" and not tok.endswith("/bin/certloop"):
                    continue
                if i > 0 and tokens[i - 1] in _NOT_A_COMMAND_AFTER:
                    continue
                nxt = tokens[i + 1]
                if (re.fullmatch(r"[a-z][a-z-]*", nxt) and nxt != "certloop") or nxt.startswith("--"):
                    found.append(tokens[i + 1 :])
    return found


# -- the CLI as its help describes it -------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """What one (sub)command accepts, read from its `--help`."""

    text: str
    options: dict[str, bool]  # option -> takes a value
    choices: tuple[tuple[frozenset[str], bool], ...]  # positional choice groups, in order; bool: a subcommand
    free_positionals: bool  # accepts other positional arguments (targets, a revision, ...)


def _parse_help(text: str) -> Level:
    options: dict[str, bool] = {}
    for spec in re.findall(r"(?m)^[ \t]+(-\S.*?)(?:[ \t]{2,}|$)", text):
        for part in spec.split(", "):
            name, _, metavar = part.partition(" ")
            if name.startswith("-"):
                options[name] = bool(metavar)
    usage = text.split("\n\n", 1)[0]
    _, _, after = text.partition("positional arguments:")
    positional = after.split("\n\n", 1)[0]
    choices = []
    free = False
    for line in positional.splitlines():
        m = re.match(r"^  (\S+)", line)
        if not m:
            continue
        name = m.group(1)
        if name.startswith("{"):
            group = frozenset(name.strip("{}").split(","))
            choices.append((group, f"{name} ..." in usage))
        else:
            free = True
    return Level(text, options, tuple(choices), free)


@functools.cache
def level(path: tuple[str, ...]) -> Level:
    done = subprocess.run([str(CERTLOOP), *path, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"`certloop {' '.join(path)} --help` exited {done.returncode}: {done.stderr}"
    return _parse_help(done.stdout)


def problems(args: list[str]) -> list[str]:
    """What is wrong with ``certloop <args>`` according to the CLI itself (empty: it parses)."""
    shown = "certloop " + " ".join(args)
    head = args[0]
    if head in {"--version", "--help", "-h"}:
        return []
    if head not in COMMANDS:
        return [f"{shown}: unknown command {head!r} (known: {', '.join(COMMANDS)})"]
    if head == "config":  # `certloop config` has no --help; its one form is `config schema [component]`
        rest = args[1:]
        if rest[:1] != ["schema"] or len(rest) > 2 or (len(rest) == 2 and rest[1] not in SCHEMAS):
            return [f"{shown}: expected `certloop config schema [{'|'.join(SCHEMAS)}]`"]
        return []
    path = [head]
    current = level(tuple(path))
    pending = list(current.choices)
    out = []
    i = 1
    while i < len(args):
        tok = args[i]
        i += 1
        if tok == "...":  # a placeholder in prose
            continue
        if tok.startswith("-") and len(tok) > 1:
            name = tok.split("=", 1)[0]
            if name not in current.options:
                out.append(f"{shown}: option {name} is not in `certloop {' '.join(path)} --help`")
            elif current.options[name] and "=" not in tok:
                i += 1  # its value
            continue
        if pending:
            group, is_subcommand = pending.pop(0)
            if tok not in group:
                out.append(f"{shown}: {tok!r} is not one of {sorted(group)} of `certloop {' '.join(path)}`")
                return out
            if is_subcommand:
                path.append(tok)
                current = level(tuple(path))
                pending = list(current.choices)
            continue
        if not current.free_positionals:
            out.append(f"{shown}: unexpected argument {tok!r} for `certloop {' '.join(path)}`")
    return out


def _all_commands() -> list[tuple[str, list[str]]]:
    return [(page.name, cmd) for page in PAGES for cmd in commands_in(page.read_text(encoding="utf-8"))]


# -- tests ---------------------------------------------------------------------------------------------------


def test_operations_pages_exist() -> None:
    """docs/operations/ holds the index and the five operations pages."""
    assert {p.name for p in PAGES} >= EXPECTED_PAGES


def test_every_certloop_command_shown_parses() -> None:
    """Each `certloop` command in the operations docs uses real subcommands and options (checked via --help)."""
    commands = _all_commands()
    assert len(commands) >= 50, "the extractor found too few commands: is it still reading the code blocks?"
    paths = set()
    failures = []
    for page, cmd in commands:
        failures += [f"{page}: {p}" for p in problems(cmd)]
        paths.add(tuple(t for t in cmd[:2] if not t.startswith("-")))
    assert not failures, "\n".join(failures)
    for needed in [("check",), ("exporter",), ("renewer",)]:
        assert any(p[: len(needed)] == needed for p in paths), f"no `certloop {' '.join(needed)}` command shown"
    shown = {tuple(c) for _, c in commands}
    for sub in ("backup", "restore", "db"):
        assert any("renewer" in c and sub in c for c in shown), f"no `certloop renewer ... {sub}` command shown"


def test_certloop_config_schema_as_documented_prints_json() -> None:
    """`certloop config schema exporter|renewer` (no --help of its own) runs and prints a JSON Schema."""
    for component in SCHEMAS:
        done = subprocess.run([str(CERTLOOP), "config", "schema", component], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["type"] == "object"


@pytest.mark.parametrize("bad", [
    "certloop renewer --config.file r.yml backup --outt FILE",
    "certloop renewer --config.file r.yml db upgrayde",
    "certloop renewer --config.file r.yml backupp --out FILE",
    "certloop exporter --config.file e.yml --config.chek",
    "certloop exporter --config.file e.yml stray",
    "certloop renewr --config.check",
    "certloop config scheme renewer",
])
def test_checker_rejects_wrong_commands(bad: str) -> None:
    """The command check is not vacuous: misspelt subcommands, options and arguments are reported."""
    [args] = commands_in(f"```sh\n{bad}\n```\n")
    assert problems(args), f"{bad!r} was accepted"


def test_extractor_skips_users_groups_and_namespaces() -> None:
    """`sudo -u certloop certloop ...`, `chgrp certloop` and `kubectl -n certloop` yield only the real command."""
    text = ("```sh\nsudo -u certloop certloop renewer --config.check\nsudo chgrp certloop /etc/x\n"
            "kubectl -n certloop exec deploy/x -- certloop renewer --config.check | grep ok\n"
            "30 3 * * * certloop /usr/local/bin/certloop check a:443\n```\n")
    assert commands_in(text) == [["renewer", "--config.check"], ["renewer", "--config.check"], ["check", "a:443"]]


def test_repository_paths_mentioned_exist() -> None:
    """Every repository path the operations docs name (deploy/..., compose/..., alerting/...) exists."""
    missing = []
    checked = 0
    for page in PAGES:
        for raw in _REPO_PATH.findall(page.read_text(encoding="utf-8")):
            path = raw.rstrip(".")
            checked += 1
            hits = list(REPO.glob(path.rstrip("/"))) if "*" in path else [REPO / path] if (REPO / path).exists() else []
            if not hits:
                missing.append(f"{page.name}: {path}")
    assert checked >= 30
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    found = {_slug(h) for h in re.findall(r"(?m)^#{1,6} (.+)$", text)}
    return found | set(re.findall(r'<a id="([^"]+)"></a>', text))


def test_relative_links_and_anchors_resolve() -> None:
    """Every relative link in docs/operations (runbooks, references, other pages) hits a file and heading."""
    broken = []
    runbook_links = 0
    for page in PAGES:
        for target in _LINK.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            runbook_links += "/runbooks/" in str(dest)
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.name}: {target} (no heading #{anchor})")
    assert runbook_links >= 21
    assert not broken, "\n".join(broken)


def test_index_links_every_runbook() -> None:
    """docs/operations/README.md links the runbook of every alert in docs/runbooks/."""
    index = (OPS / "README.md").read_text(encoding="utf-8")
    runbooks = sorted(p.name for p in (REPO / "docs" / "runbooks").glob("*.md"))
    assert runbooks
    missing = [name for name in runbooks if f"(../runbooks/{name})" not in index]
    assert not missing, f"runbooks not linked from docs/operations/README.md: {missing}"


def test_yaml_examples_parse_and_renewer_examples_validate() -> None:
    """Every YAML example is valid YAML; one with `certificates:` validates against the renewer's config model."""
    validated = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"^[ \t]*```yaml\n(.*?)^[ \t]*```", text, re.S | re.M):
            data = yaml.safe_load(textwrap.dedent(block).replace("@SHARDS@", "3").replace("@SHARD@", "0"))
            if isinstance(data, dict) and "certificates" in data:
                validate_model(RenewerConfig, data, source=page.name)
                validated += 1
    assert validated >= 1

"""Render each component's config JSON Schema into a Markdown reference.

    python -m docs.gen_reference [--out DIR]     # default: docs/reference/ (``make generate`` runs it)

The input is exactly what ``certloop config schema exporter|renewer`` prints (``exporter.config.json_schema()``,
``renewer.config.json_schema()``). Every key is listed with its full path (``endpoints[].targets``,
``modules.<name>.starttls``, ``certificates[].issuer.directory``), its type, default, description and
allowed values. Nested models get their own section; a discriminated union (the renewer's issuer ``type``)
gets one section per variant.

JSON Schema leaves out defaults made by a factory (``default_factory``: lists, maps, nested models), so
those are read from the pydantic models named in the schema's ``$defs``. ``tests/docs/test_reference.py``
regenerates into a temporary directory and fails when the committed files differ.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticUndefined

from certloop.config import format_duration

__all__ = ["COMPONENTS", "NOTES", "Component", "iter_paths", "main", "render", "render_component", "undescribed_paths"]

Schema = Mapping[str, Any]

DEFAULT_OUT = Path(__file__).resolve().parent / "reference"
_LONG_DEFAULT = 60  # characters; longer defaults go into a YAML block below the table


@dataclass(frozen=True)
class Component:
    """One config file: where its schema and root model live, and what the page is called."""

    name: str
    schema_ref: str  # "module:function" returning the JSON Schema
    model_ref: str  # "module:Class", the root pydantic model (for factory defaults)
    flag: str  # how the file is handed to the program

    def schema(self) -> dict[str, Any]:
        result = _load(self.schema_ref)()
        assert isinstance(result, dict)
        return result

    def model(self) -> type[BaseModel]:
        model = _load(self.model_ref)
        assert isinstance(model, type) and issubclass(model, BaseModel)
        return model


COMPONENTS: tuple[Component, ...] = (
    Component("exporter", "certloop.exporter.config:json_schema", "certloop.exporter.config:ExporterConfig",
              "certloop exporter --config.file FILE"),
    Component("renewer", "certloop.renewer.config:json_schema", "certloop.renewer.config:RenewerConfig",
              "certloop renewer --config.file FILE"),
)


# Descriptions for keys whose model field carries none (yet). The schema's own description always wins;
# tests/docs/test_reference.py fails when a note names a key that no longer exists or that now has its own
# description, so the models stay the one source once they document a key.
NOTES: dict[str, dict[str, str]] = {
    "exporter": {
        "modules": "named probe settings, chosen by `/probe?module=NAME` or by an endpoint group's `module`. "
                   "A module called `default` replaces the built-in default",
        "endpoints": "groups of TLS endpoints swept on `global.interval`",
        "files": "groups of certificate files swept on `global.files_interval`",
        "global.connect_timeout": "time allowed for the TCP connection",
        "global.handshake_timeout": "time allowed for STARTTLS and the TLS handshake",
        "modules.<name>.starttls": "protocol to upgrade before TLS: `smtp`, `imap`, `pop3`, `ftp`, `postgres`, "
                                   "`mysql` or `ldap`",
        "modules.<name>.server_name": "SNI and the name verified; default: the target's host",
        "modules.<name>.connect_timeout": "overrides `global.connect_timeout`",
        "modules.<name>.handshake_timeout": "overrides `global.handshake_timeout`",
        "modules.<name>.ca_file": "PEM trust bundle for this module; overrides `global.ca_file`",
        "endpoints[].targets": "`host:port` or `[ipv6]:port`; every A/AAAA address of the host is probed",
        "endpoints[].server_name": "SNI and the name verified; default: the target's host",
        "endpoints[].module": "a name from `modules` (or `default`); give `module` or `starttls`, not both",
        "endpoints[].starttls": "protocol to upgrade before TLS (see `modules.<name>.starttls`)",
        "endpoints[].expect_file": "certificate file the endpoint should serve; "
                                   "`certloop_endpoint_matches_file` says whether it does",
        "endpoints[].labels": "static labels on every series of these targets, e.g. `certificate: shop-prod`. "
                              "The renewer acts on the `certificate` label",
        "files[].paths": "files, directories or shell globs",
        "files[].recursive": "descend into subdirectories of the directories in `paths`",
        "files[].password": "PKCS#12 password, literally or as `${ENV}`",
        "files[].password_file": "file holding the PKCS#12 password",
        "files[].labels": "static labels on every series of these files",
    },
    "renewer": {
        "data_dir": "state: the SQLite job store, the keystore key, sealed keys, issuer accounts and homes",
        "worker": "how jobs are run and retried",
        "rate_limits": "the rate-limit ledger; a renewal that would exceed a rule waits",
        "alerts": "which alerts start a renewal",
        "certificates": "the managed certificates",
        "auth.token_file": "file holding the bearer token (at least 16 characters)",
        "auth.tls_cert_file": "server certificate for HTTPS on `listen`",
        "auth.tls_key_file": "private key of `tls_cert_file`",
        "database.busy_timeout": "SQLite only: how long a statement waits for the database lock (in the daemon, "
                                 "never longer than `database.timeout`)",
        "keystore.key": "32 bytes as 64 hex digits or base64, literally or as `${ENV}`",
        "keystore.key_file": "file holding the key (64 hex digits or base64)",
        "worker.backoff_base": "first retry delay; it doubles per attempt, with jitter",
        "worker.backoff_max": "longest retry delay",
        "worker.issue_timeout": "deadline for one issuance attempt",
        "scheduler.enabled": "run the safety net",
        "scheduler.interval": "how often every certificate is checked against `renew_before`",
        "rate_limits[].name": "the rule's name; the `limit` label of `certloop_renewer_ratelimit_remaining`",
        "rate_limits[].issuer": "issuer type the rule counts (`acme`, `certbot`, ...); `*`: every issuer",
        "rate_limits[].scope": "what is counted (see the section text)",
        "rate_limits[].limit": "events allowed per `window`",
        "rate_limits[].window": "sliding window",
        "alerts.label": "alert label that names the certificate id",
        "certificates[].domains": "DNS names to request; a wildcard only as the whole leftmost label",
        "certificates[].key_type": "key of the new certificate",
        "certificates[].deploy": "commands run after the files are written, in order, e.g. "
                                 '`["nginx", "-t"]`, `["nginx", "-s", "reload"]`',
        "certificates[].min_lifetime": "a new certificate must stay valid at least this long, else it is rejected",
        "certificates[].trust_bundle": "PEM bundle the new chain must verify to before it is installed",
        "certificates[].issuer.ca_bundle": "PEM bundle to trust the ACME server's HTTPS (pebble, step-ca)",
        "certificates[].issuer.email": "account contact address",
        "certificates[].issuer.directory": "ACME directory URL",
        "certificates[].issuer.poll_timeout": "deadline for authorizations and the order to become valid",
        "certificates[].issuer.webroot": "http-01 by webroot: the directory served at `/.well-known/acme-challenge/`",
        "certificates[].issuer.http01_port": "http-01 by certbot's standalone listener on this port",
        "certificates[].issuer.http_port": "http-01 by lego's own listener on this port",
        "certificates[].issuer.standalone_port": "http-01 by acme.sh's standalone listener on this port",
        "certificates[].issuer.server": "ACME directory URL or an acme.sh short name (`letsencrypt`, `zerossl`)",
        "certificates[].issuer.dns": "acme.sh DNS API hook, e.g. `dns_cf`; credentials from the renewer's "
                                     "environment",
        "certificates[].issuer.executable": "program to run (name on PATH or absolute path)",
        "certificates[].issuer": "who issues the certificate; each kind has its own keys (sections below)",
        "certificates[].issuer.type": "the issuer kind",
        "certificates[].issuer.argv": "program and arguments, no shell. It gets `CERTLOOP_CERT_PATH`, "
                                      "`CERTLOOP_FULLCHAIN_PATH`, `CERTLOOP_KEY_PATH`, `CERTLOOP_DOMAINS`, "
                                      "`CERTLOOP_CERTIFICATE_ID`, `CERTLOOP_KEY_TYPE` in its environment",
        "certificates[].issuer.token": "httpsok token, literally or as `${ENV}`",
        "certificates[].issuer.token_file": "file holding the httpsok token",
        "certificates[].issuer.cert_path": "certificate file httpsok writes; must not be one of `outputs`",
        "certificates[].issuer.key_path": "key file httpsok writes; must not be one of `outputs`",
        "certificates[].issuer.eab.kid": "EAB key id from the CA",
        "certificates[].issuer.eab.hmac_key": "EAB HMAC key (base64url), literally or as `${ENV}`",
        "certificates[].issuer.eab.hmac_key_file": "file holding the EAB HMAC key",
        "certificates[].issuer.http01.webroot": "directory served at `/.well-known/acme-challenge/`",
        "certificates[].issuer.dns01.hook": "command that publishes the TXT record",
        "certificates[].issuer.dns01.cleanup": "command that removes it",
        "certificates[].issuer.dns01.timeout": "deadline for each hook run",
        "certificates[].outputs.cert": "leaf certificate (PEM)",
        "certificates[].outputs.key": "private key (PEM), written with `key_mode`",
        "certificates[].outputs.fullchain": "leaf followed by the intermediates (PEM)",
        "certificates[].outputs.chain": "intermediates only (PEM)",
        "certificates[].outputs.owner": "owner user name of the written files",
        "certificates[].outputs.group": "group name of the written files",
        "certificates[].outputs.mode": "mode of the certificate files",
        "certificates[].outputs.key_mode": "mode of the key file; must not be world-readable",
        "certificates[].deploy[].argv": "program and arguments, no shell",
        "certificates[].deploy[].timeout": "a step running longer fails the deployment",
        "certificates[].verify.endpoints": "endpoints that must serve the new leaf; none: no serving check",
        "certificates[].verify.timeout": "deadline for every endpoint to serve the new leaf",
        "certificates[].verify.endpoints[].server_name": "SNI to send; default: the endpoint's host",
    },
}


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


# -- factory defaults (not part of JSON Schema) ------------------------------------------------------------


def _models_in(annotation: Any, seen: dict[str, type[BaseModel]]) -> None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.__name__ in seen:
            return
        seen[annotation.__name__] = annotation
        for field in annotation.model_fields.values():
            _models_in(field.annotation, seen)
        return
    for arg in get_args(annotation):
        _models_in(arg, seen)


def factory_defaults(root: type[BaseModel]) -> dict[tuple[str, str], Any]:
    """``(model name, key) -> JSON value`` for every field whose default comes from a factory."""
    models: dict[str, type[BaseModel]] = {}
    _models_in(root, models)
    out: dict[tuple[str, str], Any] = {}
    for name, model in models.items():
        for field_name, field in model.model_fields.items():
            if field.default_factory is None or field.default is not PydanticUndefined:
                continue
            value = field.default_factory()  # type: ignore[call-arg]  # config factories take no arguments
            key = field.alias or field_name
            out[(name, key)] = TypeAdapter(field.annotation or Any).dump_python(value, mode="json")
    return out


# -- schema walking ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    path: str
    type: str
    default: str
    description: str
    long_default: str | None = None  # YAML text when the default is too long for the table
    own_description: bool = True  # False: the schema has none (NOTES may supply one)


@dataclass(frozen=True)
class Section:
    path: str  # "" for the top level
    title: str
    description: str
    rows: tuple[Row, ...]


_ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def _iso_to_duration(text: str) -> str:
    """pydantic writes timedelta defaults as ISO 8601 (``PT1M30S``); config files use ``1m30s``."""
    m = _ISO_DURATION.match(text)
    if not m or text in {"P", "PT"}:
        return text
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return format_duration(timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds))


def _prose(text: str | None) -> str:
    """A docstring or description on one line ending in a full stop, reST ``literals`` as Markdown `code`."""
    if not text:
        return ""
    text = " ".join(re.sub(r"``(.+?)``", r"`\1`", text).split()).replace("|", "\\|")
    parts = text.split("`")  # outside code spans, a `*` would start emphasis
    text = "`".join(p if i % 2 else p.replace("*", "\\*") for i, p in enumerate(parts))
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def _ref_name(node: Schema) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _non_null(node: Schema) -> tuple[Schema, bool]:
    """Strip ``anyOf [X, null]`` into (X, nullable)."""
    options = node.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1 and len(rest) < len(options):
            merged = {k: v for k, v in node.items() if k != "anyOf"}
            return {**rest[0], **merged}, True
    return node, False


def _flow(value: Any) -> str:
    """A JSON value in YAML flow style, as a user would write it."""
    if isinstance(value, str):
        plain = re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./:@-]*", value) and value not in {"true", "false", "null"}
        return value if plain else json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def _block(value: Any, indent: str = "") -> Iterator[str]:
    """A JSON value in YAML block style (for long defaults)."""
    if isinstance(value, list) and value:
        for item in value:
            if isinstance(item, dict) and item:
                first = True
                for k, v in item.items():
                    yield f"{indent}{'- ' if first else '  '}{k}: {_flow(v)}"
                    first = False
            else:
                yield f"{indent}- {_flow(item)}"
    elif isinstance(value, dict) and value:
        for k, v in value.items():
            yield f"{indent}{k}: {_flow(v)}"
    else:
        yield f"{indent}{_flow(value)}"


class _Renderer:
    def __init__(
        self, schema: Schema, defaults: Mapping[tuple[str, str], Any], notes: Mapping[str, str] | None = None,
    ) -> None:
        self.notes = notes or {}
        self.root = schema
        self.defs: Mapping[str, Schema] = schema.get("$defs", {})
        self.defaults = defaults
        self.sections: list[Section] = []

    def type_of(self, node: Schema, path: str) -> str:
        node, _ = _non_null(node)
        name = _ref_name(node)
        if name is not None:
            return f"mapping, see [`{path}`](#{anchor(path)})"
        if "discriminator" in node:
            prop = node["discriminator"]["propertyName"]
            kinds = ", ".join(f"`{k}`" for k in node["discriminator"]["mapping"])
            return f"mapping; `{prop}` chooses the kind: {kinds}; see [`{path}`](#{anchor(path)})"
        if "const" in node:
            return f"`{_flow(node['const'])}` (constant)"
        if "anyOf" in node:
            return " or ".join(self.type_of(o, path) for o in node["anyOf"] if o.get("type") != "null")
        kind = node.get("type")
        if kind == "array":
            items = node.get("items", {})
            inner = f"{path}[]"
            if _ref_name(items) or "discriminator" in items:
                return f"list of mappings, see [`{inner}`](#{anchor(inner)})"
            return f"list of {self.type_of(items, inner)}"
        if kind == "object":
            values = node.get("additionalProperties")
            if isinstance(values, dict):
                inner = f"{path}.<name>"
                if _ref_name(values):
                    return f"map of name to mapping, see [`{inner}`](#{anchor(inner)})"
                return f"map of name to {self.type_of(values, inner)}"
            return "mapping"
        fmt = node.get("format")
        if fmt == "duration":
            return "duration"
        if fmt == "path":
            return "file path"
        return {"string": "string", "integer": "integer", "boolean": "boolean", "number": "number"}.get(
            str(kind), str(kind)
        )

    def constraints(self, node: Schema) -> list[str]:
        node, _ = _non_null(node)
        out: list[str] = []
        if "enum" in node:
            out.append("One of: " + ", ".join(f"`{_flow(v)}`" for v in node["enum"]) + ".")
        if "pattern" in node:
            out.append(f"Must match `{node['pattern']}`.")
        low, high = node.get("minimum"), node.get("maximum")
        if low is not None and high is not None:
            out.append(f"From {low} to {high}.")
        elif low is not None:
            out.append(f"At least {low}.")
        elif high is not None:
            out.append(f"At most {high}.")
        if node.get("minItems"):
            out.append(f"At least {node['minItems']} item{'s' if node['minItems'] > 1 else ''}.")
        return out

    def default_of(self, model: str, key: str, node: Schema, required: bool) -> tuple[str, str | None]:
        if required:
            return "**required**", None
        plain, _ = _non_null(node)
        if "default" in node:
            value = node["default"]
        elif (model, key) in self.defaults:
            value = self.defaults[(model, key)]
            if _ref_name(plain) is not None:
                return "see section", None
        else:
            return "unset", None
        if value is None:
            return "unset", None
        if plain.get("format") == "duration" and isinstance(value, str):
            value = _iso_to_duration(value)
        if isinstance(value, int) and not isinstance(value, bool) and key.endswith("mode"):
            return f"`0{value:o}` (octal)", None
        if isinstance(value, list | dict) and not value:
            return "`[]`" if isinstance(value, list) else "`{}`", None
        text = _flow(value)
        if len(text) > _LONG_DEFAULT:
            return "see below", "\n".join(_block(value))
        return f"`{text}`", None

    def describe(self, node: Schema, path: str) -> tuple[str, bool]:
        """The description (schema text, else the note for ``path``) plus constraints; and whether the schema
        itself describes the key."""
        plain, _ = _non_null(node)
        text = node.get("description") or plain.get("description")
        name = _ref_name(plain)
        if not text and name is not None:
            text = self.defs[name].get("description")
        own = bool(text)
        text = text or self.notes.get(path)
        parts = [_prose(text)] if text else []
        parts += self.constraints(node)
        return " ".join(parts), own

    def children(self, node: Schema, path: str) -> Iterator[tuple[str, str, str]]:
        """Nested models of a property: (section path, title suffix, ``$defs`` name)."""
        plain, _ = _non_null(node)
        if plain.get("type") == "array":
            yield from self.children(plain.get("items", {}), f"{path}[]")
            return
        values = plain.get("additionalProperties")
        if plain.get("type") == "object" and isinstance(values, dict):
            yield from self.children(values, f"{path}.<name>")
            return
        name = _ref_name(plain)
        if name is not None:
            yield path, "", name
            return
        if "discriminator" in plain:
            prop = plain["discriminator"]["propertyName"]
            for value, ref in plain["discriminator"]["mapping"].items():
                yield path, f"{prop}: {value}", ref.rsplit("/", 1)[-1]

    def section(self, path: str, suffix: str, model_name: str) -> None:
        model = self.root if path == "" else self.defs[model_name]
        required = set(model.get("required", []))
        rows: list[Row] = []
        nested: list[tuple[str, str, str]] = []
        for key, node in model.get("properties", {}).items():
            key_path = f"{path}.{key}" if path else key
            default, long_default = self.default_of(model_name, key, node, key in required)
            description, own = self.describe(node, key_path)
            rows.append(Row(key_path, self.type_of(node, key_path), default, description, long_default, own))
            nested += self.children(node, key_path)
        title = f"`{path}`" if path else "Top level"
        if suffix:
            title += f" with `{suffix}`"
        self.sections.append(Section(path, title, _prose(model.get("description")), tuple(rows)))
        for child_path, child_suffix, child in nested:
            self.section(child_path, child_suffix, child)


def anchor(path: str) -> str:
    """The HTML id of a section: ``certificates[].issuer`` -> ``certificates-issuer``."""
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "top-level"


def render(
    schema: Schema, *, component: str, flag: str, root_model: str = "",
    defaults: Mapping[tuple[str, str], Any] | None = None,
) -> str:
    """The Markdown reference page of one component's config schema (pure).

    ``defaults`` maps (model name, key) to factory-made defaults; ``root_model`` names the top level's model.
    """
    r = _Renderer(schema, defaults or {}, NOTES.get(component))
    r.section("", "", root_model)
    lines = [
        f"<!-- Generated by `python -m docs.gen_reference` from `certloop config schema {component}`. "
        "Do not edit by hand: change the config models, then run `make generate`. -->",
        "",
        f"# {component.capitalize()} configuration reference",
        "",
        f"The {component} reads one YAML file: `{flag}`. Unknown keys are errors. An error names the path of "
        "the bad key, for example `certificates[0].domains`. Durations use the Prometheus notation "
        "(`500ms`, `30s`, `5m`, `1h30m`, `7d`, `1w`). Keys that hold secrets accept `${ENV_VAR}`, or have a "
        "matching `*_file` key; their descriptions say which. With `--config.expand-env`, `${VAR}` and "
        "`${VAR:-default}` are expanded in every string; without it a `${...}` elsewhere is an error.",
        "",
        f"Check a file without starting the {component}: `{flag} --config.check`. "
        f"The machine-readable schema: `certloop config schema {component}`.",
        "",
        "In a path, `[]` means each item of a list and `<name>` means each key of a map.",
        "",
        "## Contents",
        "",
    ]
    seen: set[str] = set()
    for section in r.sections:
        ident = _section_id(section, seen)
        lines.append(f"- [{section.title}](#{ident})")
    seen.clear()
    for section in r.sections:
        ident = _section_id(section, seen)
        lines += ["", f'<a id="{ident}"></a>', "", f"## {section.title}", ""]
        if section.description:
            lines += [section.description, ""]
        lines += ["| Key | Type | Default | Description |", "|---|---|---|---|"]
        lines += [f"| `{row.path}` | {row.type} | {row.default} | {row.description} |" for row in section.rows]
        for row in section.rows:
            if row.long_default is not None:
                key = row.path.rsplit(".", 1)[-1]
                lines += ["", f"Default of `{row.path}`:", "", "```yaml", f"{key}:", row.long_default, "```"]
    return "\n".join(lines) + "\n"


def _section_id(section: Section, seen: set[str]) -> str:
    ident = anchor(section.path)
    if ident in seen:  # union variants share a path: the first keeps the plain id, the rest add the kind
        ident = anchor(f"{section.path} {section.title.rsplit('`', 2)[-2]}")
    seen.add(ident)
    return ident


def iter_paths(schema: Schema) -> Iterator[str]:
    """Every key path the schema defines (for completeness checks)."""
    r = _Renderer(schema, {})
    r.section("", "", "")
    for section in r.sections:
        for row in section.rows:
            yield row.path


def undescribed_paths(schema: Schema) -> Iterator[str]:
    """Key paths where at least one occurrence has no description in the schema itself."""
    r = _Renderer(schema, {})
    r.section("", "", "")
    seen: set[str] = set()
    for section in r.sections:
        for row in section.rows:
            if not row.own_description and row.path not in seen:
                seen.add(row.path)
                yield row.path


def render_component(component: Component) -> str:
    model = component.model()
    return render(component.schema(), component=component.name, flag=component.flag,
                  root_model=model.__name__, defaults=factory_defaults(model))


def write_all(out: Path, components: Sequence[Component] = COMPONENTS,
              renderer: Callable[[Component], str] = render_component) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for component in components:
        path = out / f"{component.name}-config.md"
        path.write_text(renderer(component), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docs.gen_reference", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

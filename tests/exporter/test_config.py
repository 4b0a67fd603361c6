"""The exporter's config file: defaults, one bad file per error with its exact message, the CLI check, the schema."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from certloop.errors import ConfigError
from certloop.exporter.config import json_schema, load_config, parse_config
from tests.exporter.support import run_cli, write_config

BAD = Path(__file__).parent / "bad_configs"
BAD_FILES = sorted(BAD.glob("*.yml"))


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{path.name} must start with '# error: <exact message>'"
    return first.removeprefix("# error: ")


def test_there_is_a_bad_config_per_error() -> None:
    """The directory holds the bad configs the parametrised test below walks (a guard against an empty glob)."""
    assert len(BAD_FILES) >= 15


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_config_is_rejected_with_its_message(path: Path) -> None:
    """Each bad file fails to load with exactly the message in its first line, prefixed by the file name."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {_expected(path)}"


def test_empty_file_is_refused_and_an_empty_mapping_is_not(tmp_path: Path) -> None:
    """A 0-byte file (``: > exporter.yml``) is an error naming the file, as are a comments-only file
    and a YAML null document (bad_configs/); ``{}`` says "nothing configured" on purpose and loads.
    Before: the empty file loaded as a config that monitors nothing."""
    empty = tmp_path / "exporter.yml"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        load_config(empty)
    assert str(info.value).startswith(f"{empty}: the file is empty")
    with pytest.raises(ConfigError, match="the file is empty"):
        parse_config(None)
    empty.write_text("{}\n")
    nothing = load_config(empty)
    assert (nothing.endpoints, nothing.files) == ([], [])
    (tmp_path / "zero.yml").write_bytes(b"")
    checked = run_cli(f"--config.file={tmp_path / 'zero.yml'}", "--config.check")
    assert checked.returncode == 78 and "the file is empty" in checked.stderr


def test_defaults_and_durations() -> None:
    """``{}`` is valid: 5m sweeps, 64 probes in flight, the system trust store, the default module."""
    config = parse_config({})
    assert config.global_.interval.total_seconds() == 300
    assert config.global_.concurrency == 64
    assert config.global_.ca_file is None
    assert config.module(None).ip_protocol == "both"
    parsed = parse_config({"global": {"interval": "1h30m", "jitter": "0s"},
                           "endpoints": [{"targets": ["[::1]:443", "shop.example:8443"],
                                          "labels": {"certificate": "shop"}}]})
    assert parsed.global_.interval.total_seconds() == 5400
    assert parsed.endpoints[0].labels == {"certificate": "shop"}


def test_config_check_cli(tmp_path: Path) -> None:
    """``--config.check`` exits 0 for a good file and 1 with the path-naming message for a bad one."""
    good = write_config(tmp_path / "good.yml", {"endpoints": [{"targets": ["127.0.0.1:443"]}]})
    ok = run_cli(f"--config.file={good}", "--config.check")
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    bad = BAD / "bad_target.yml"
    failed = run_cli(f"--config.file={bad}", "--config.check")
    assert failed.returncode == 78
    assert f"{bad}: {_expected(bad)}" in failed.stderr


def test_json_schema_is_printed_by_the_cli() -> None:
    """``certloop config schema exporter`` prints the JSON Schema, which knows every top-level key."""
    schema = json_schema()
    assert set(schema["properties"]) == {"global", "modules", "endpoints", "files"}
    out = subprocess.run([sys.executable, "-m", "certloop.cli", "config", "schema", "exporter"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout)["properties"]["global"]


def test_cli_refuses_a_bad_or_busy_listen_address(tmp_path: Path) -> None:
    """A malformed --web.listen-address exits 64; an address already in use exits 71 with the reason."""
    good = write_config(tmp_path / "good.yml", {})
    bad = run_cli(f"--config.file={good}", "--web.listen-address=nonsense")
    assert bad.returncode == 64 and "--web.listen-address" in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = run_cli(f"--config.file={good}", f"--web.listen-address=127.0.0.1:{busy.getsockname()[1]}")
    assert taken.returncode == 71 and "cannot listen" in taken.stderr

"""certloop.logs: one record per line, logfmt or JSON, whatever a message or an exception holds."""

from __future__ import annotations

import io
import json
import logging

import pytest

from certloop import logs
from tests.support.logfmt import DaemonLogError, parse_daemon_log, parse_line


@pytest.fixture
def capture():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


HOSTILE = 'deploy step failed: nginx: [emerg] "ssl_certificate" x=1\nsecond line\r\n\ttab \\ back\x00nul 中文'


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_every_record_is_one_parseable_line_even_with_newlines_quotes_and_tracebacks(capture, fmt) -> None:
    logs.configure("debug", fmt, stream=capture)
    log = logging.getLogger("certloop.renewer.worker")
    log.warning("attempt failed: %s", HOSTILE)
    try:
        raise ValueError("boom\nwith a second line")
    except ValueError:
        log.exception("job failed")
    log.info("plain", extra={"certificate": "shop web", "attempt": 2})
    lines = capture.getvalue().splitlines()
    assert len(lines) == 3, lines
    records = parse_daemon_log(capture.getvalue(), fmt)
    assert records[0]["level"] == "warn" and records[0]["logger"] == "certloop.renewer.worker"
    assert records[0]["msg"] == f"attempt failed: {HOSTILE}"
    assert records[1]["level"] == "error" and "ValueError: boom\nwith a second line" in records[1]["error"]
    assert records[2]["certificate"] == "shop web" and str(records[2]["attempt"]) == "2"


def test_levels_filter_and_warning_is_accepted_as_warn(capture) -> None:
    logs.configure("warning", "logfmt", stream=capture)
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    (record,) = parse_daemon_log(capture.getvalue(), "logfmt")
    assert record["msg"] == "shown" and record["level"] == "warn"
    assert logs.child_flags() == ["--log.level=warn", "--log.format=logfmt"]


def test_child_flags_follow_the_json_format(capture) -> None:
    logs.configure("debug", "json", stream=capture)
    assert logs.child_flags() == ["--log.level=debug", "--log.format=json"]


@pytest.mark.parametrize(
    ("value", "rendered"),
    [("plain", "plain"), ("", '""'), ("a b", '"a b"'), ("k=v", '"k=v"'), ('say "hi"', '"say \\"hi\\""'),
     ("a\nb", '"a\\nb"'), ("\x01", '"\\u0001"'), ("中文", "中文")],
)
def test_logfmt_values_are_bare_only_when_unambiguous(value, rendered) -> None:
    assert logs.logfmt_value(value) == rendered
    assert parse_line(f"k={rendered}")["k"] == value


def test_the_reader_rejects_what_is_not_logfmt() -> None:
    """The old renewer format: `msg=` followed by unquoted words does not parse (and must not)."""
    with pytest.raises(DaemonLogError):
        parse_line("ts=2026-12-07 10:00:00,123 level=INFO component=renewer msg=renewal started for shop")
    with pytest.raises(DaemonLogError):
        parse_daemon_log("plain text from print()\n", "logfmt")
    with pytest.raises(DaemonLogError):
        parse_daemon_log(json.dumps(["not", "an", "object"]) + "\n", "json")


def test_an_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"--log\.format"):
        logs.configure("info", "xml")

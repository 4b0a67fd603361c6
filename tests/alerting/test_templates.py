"""Every notification template renders a realistic notification into the text operators read.

`amtool template render` (Alertmanager 0.25) executes the templates exactly as Alertmanager does, on
notification data built from alerts as the generated rules produce them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.alerting.payloads import SHOP_SOON, SHOP_UNTRUSTED
from tests.alerting.rules import ALERTMANAGER_DIR, alerts

TEMPLATES = ALERTMANAGER_DIR / "templates"
RUNBOOK = "https://github.com/certloop/certloop/blob/main/docs/runbooks/CertloopCertificateExpiringSoon.md"
DASHBOARD = "http://localhost:3000/d/certloop-detail?var-target=shop.example%3A443"


def notification(status: str = "firing") -> dict[str, Any]:
    """What Alertmanager hands a receiver for the shop group: two critical alerts about one certificate."""
    group = [SHOP_SOON, SHOP_UNTRUSTED]
    ends = "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-27T11:00:00Z"
    return {
        "receiver": "oncall-critical",
        "status": status,
        "alerts": [{"status": status, "labels": a["labels"], "annotations": a["annotations"],
                    "startsAt": "2026-11-27T10:00:00Z", "endsAt": ends,
                    "generatorURL": "http://prometheus.example:9090/graph", "fingerprint": f"f{i}"}
                   for i, a in enumerate(group)],
        "groupLabels": {"team": "web", "certificate": "shop"},
        "commonLabels": {"team": "web", "certificate": "shop", "severity": "critical", "job": "certloop-exporter"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
    }


def render(tmp_path: Path, text: str, data: dict[str, Any], kind: str = "text") -> str:
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run(
        ["amtool", "template", "render", f"--template.glob={TEMPLATES}/*.tmpl", f"--template.text={text}",
         f"--template.type={kind}", f"--template.data={data_file}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


CASES = [
    ("certloop.email.en.subject", "text", ['[FIRING:2] certloop critical: certificate "shop" (team web)']),
    ("certloop.email.en.text", "text", [
        'TLS certificate "shop" served at shop.example:443 (address 127.0.0.1) expires in 13d 23h 30m 0s',
        "Alert:       CertloopCertificateExpiringSoon (critical)", "Certificate: shop",
        "Where:       shop.example:443 (address 127.0.0.1)", "Time left:   13d 23h 30m 0s",
        "Reason:      unknown_authority", "Since:       2026-11-27 10:00 UTC", f"Runbook:     {RUNBOOK}",
        f"Dashboard:   {DASHBOARD}", "Alertmanager: http://alertmanager.example:9093"]),
    ("certloop.email.en.html", "html", [
        '<html lang="en">', "<td>Where</td><td>shop.example:443 (address 127.0.0.1)</td>",
        "<td>Time left</td><td>13d 23h 30m 0s</td>", f'<a href="{RUNBOOK}">Runbook</a>', ">Dashboard</a>"]),
    ("certloop.email.zh.subject", "text", ["[告警:2] certloop 严重：证书「shop」（团队 web）"]),
    ("certloop.email.zh.text", "text", [
        "【严重】证书临近过期", "【严重】证书链验证失败", "证书：shop", "位置：shop.example:443（地址 127.0.0.1）",
        "剩余时间：13d 23h 30m 0s", "原因：未知的颁发机构（unknown_authority）", f"处理手册：{RUNBOOK}",
        f"仪表盘：{DASHBOARD}"]),
    ("certloop.email.zh.html", "html", [
        '<html lang="zh-CN">', "<td>剩余时间</td><td>13d 23h 30m 0s</td>", f'<a href="{RUNBOOK}">处理手册</a>']),
    ("certloop.slack.en.title", "text", ['[FIRING:2] certificate "shop" (team web)']),
    ("certloop.slack.en.text", "text", [
        "*Time left:* 13d 23h 30m 0s", "*Reason:* unknown_authority", f"<{RUNBOOK}|Runbook>",
        f"<{DASHBOARD}|Dashboard>", "*Where:* shop.example:443 (address 127.0.0.1)"]),
    ("certloop.slack.zh.title", "text", ["[告警:2] 证书「shop」（团队 web）"]),
    ("certloop.slack.zh.text", "text", [
        "*【严重】证书临近过期*", "*剩余时间：* 13d 23h 30m 0s", f"<{RUNBOOK}|处理手册>", f"<{DASHBOARD}|仪表盘>"]),
    ("certloop.slack.color", "text", ["danger"]),
    ("certloop.wecom.en", "text", [
        '### <font color="warning">FIRING:2</font> certificate "shop" (team web)', "> Certificate: shop",
        '> Time left: <font color="warning">13d 23h 30m 0s</font>', f"[Runbook]({RUNBOOK})",
        f"[Dashboard]({DASHBOARD})"]),
    ("certloop.wecom.zh", "text", [
        '### <font color="warning">告警:2</font> 证书「shop」（团队 web）', "**【严重】证书临近过期**",
        "> 位置：shop.example:443（地址 127.0.0.1）", "> 原因：未知的颁发机构（unknown_authority）",
        f"[处理手册]({RUNBOOK})", f"[仪表盘]({DASHBOARD})"]),
]


@pytest.mark.parametrize(("name", "kind", "expected"), CASES, ids=[c[0] for c in CASES])
def test_template_renders_certificate_place_time_reason_and_links(
    tmp_path: Path, name: str, kind: str, expected: list[str]
) -> None:
    """The template shows what operators need: certificate, where it is served, time left, reason, links."""
    out = render(tmp_path, f'{{{{ template "{name}" . }}}}', notification(), kind)
    for fragment in expected:
        assert fragment in out, f"{name}: {fragment!r} not in:\n{out}"


@pytest.mark.parametrize(("name", "expected"), [
    ("certloop.email.en.subject", "[RESOLVED] certloop critical: certificate \"shop\" (team web)"),
    ("certloop.email.zh.subject", "[已恢复] certloop 严重：证书「shop」（团队 web）"),
    ("certloop.slack.color", "good"),
    ("certloop.wecom.zh", '<font color="info">已恢复</font>'),
])
def test_resolved_notifications_say_so(tmp_path: Path, name: str, expected: str) -> None:
    """A resolved notification is marked resolved in each language and is green on Slack."""
    assert expected in render(tmp_path, f'{{{{ template "{name}" . }}}}', notification("resolved"))


def test_every_alert_has_a_chinese_name(tmp_path: Path) -> None:
    """Chinese templates name every alert of the generated rules in Chinese, never by its English id."""
    names = [rule["alert"] for rule in alerts()]
    text = "".join(f'{n}={{{{ template "certloop.alertname.zh" "{n}" }}}}\n' for n in names)
    rendered = dict(line.split("=", 1) for line in render(tmp_path, text, notification()).splitlines() if line)
    assert set(rendered) == set(names)
    for name, chinese in rendered.items():
        assert chinese and chinese != name and not chinese.isascii(), f"{name} has no Chinese name"

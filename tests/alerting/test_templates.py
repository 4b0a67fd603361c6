"""Every notification template renders a realistic notification into the text operators read.

`amtool template render` (Alertmanager 0.25) executes the templates exactly as Alertmanager does, on
notification data built from alerts as the generated rules produce them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.alerting.payloads import SHOP_SOON, SHOP_UNTRUSTED, promtool_alert, with_labels
from tests.alerting.rules import ALERTMANAGER_DIR, PROMTOOL_TESTS, alerts

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
    ("certloop.email.zh.subject", "text", ["[告警:2] certloop 紧急：证书「shop」（团队 web）"]),
    ("certloop.email.zh.text", "text", [
        "【紧急】证书临近过期", "【紧急】证书链验证失败", "证书：shop", "位置：shop.example:443（地址 127.0.0.1）",
        "剩余时间：13天 23小时 30分 0秒", "原因：未知的颁发机构（unknown_authority）", f"处理手册：{RUNBOOK}",
        f"仪表盘：{DASHBOARD}",
        "详情：证书「shop」（shop.example:443，地址 127.0.0.1）将在 13天 23小时 30分 0秒 后过期"]),
    ("certloop.email.zh.html", "html", [
        '<html lang="zh-CN">', "<td>剩余时间</td><td>13天 23小时 30分 0秒</td>", f'<a href="{RUNBOOK}">处理手册</a>',
        "（结论 unknown_authority：没有受信任的根证书签发它）"]),
    ("certloop.slack.en.title", "text", ['[FIRING:2] certificate "shop" (team web)']),
    ("certloop.slack.en.text", "text", [
        "*Time left:* 13d 23h 30m 0s", "*Reason:* unknown_authority", f"<{RUNBOOK}|Runbook>",
        f"<{DASHBOARD}|Dashboard>", "*Where:* shop.example:443 (address 127.0.0.1)"]),
    ("certloop.slack.zh.title", "text", ["[告警:2] 证书「shop」（团队 web）"]),
    ("certloop.slack.zh.text", "text", [
        "*【紧急】证书临近过期*", "*剩余时间：* 13天 23小时 30分 0秒", f"<{RUNBOOK}|处理手册>", f"<{DASHBOARD}|仪表盘>",
        ">证书「shop」（shop.example:443，地址 127.0.0.1）的证书链无法通过信任库验证"]),
    ("certloop.slack.color", "text", ["danger"]),
    ("certloop.wecom.en", "text", [
        '### <font color="warning">FIRING:2</font> certificate "shop" (team web)', "> Certificate: shop",
        '> Time left: <font color="warning">13d 23h 30m 0s</font>', f"[Runbook]({RUNBOOK})",
        f"[Dashboard]({DASHBOARD})"]),
    ("certloop.wecom.zh", "text", [
        '### <font color="warning">告警:2</font> 证书「shop」（团队 web）', "**【紧急】证书临近过期**",
        '> 剩余时间：<font color="warning">13天 23小时 30分 0秒</font>',
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
    ("certloop.email.zh.subject", "[已恢复] certloop 紧急：证书「shop」（团队 web）"),
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


def _group(alerts_: list[dict[str, Any]], group_labels: dict[str, str], status: str = "firing") -> dict[str, Any]:
    """A notification for ``alerts_`` (each with labels and annotations) grouped by ``group_labels``."""
    common = {k: v for k, v in alerts_[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts_)}
    return {
        "receiver": "r", "status": status,
        "alerts": [{"status": status, "labels": a["labels"], "annotations": a["annotations"],
                    "startsAt": "2026-11-27T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "", "fingerprint": f"f{i}"} for i, a in enumerate(alerts_)],
        "groupLabels": group_labels, "commonLabels": common, "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
    }


def _promtool_alerts() -> list[dict[str, Any]]:
    """Every alert every promtool case expects: labels and annotations as the generated rules render them."""
    found = []
    for path in sorted(PROMTOOL_TESTS.glob("*_test.yml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                found += [{"labels": {"alertname": check["alertname"], **a["exp_labels"]},
                           "annotations": dict(a.get("exp_annotations", {}))} for a in check["exp_alerts"]]
    return found


DOWN = promtool_alert("health_test.yml", "CertloopExporterDown")
RENEWER_DOWN = promtool_alert("health_test.yml", "CertloopRenewerDown")


def test_groups_without_a_certificate_get_a_subject_a_person_understands(tmp_path: Path) -> None:
    """A group with no certificate label and mixed severities used to read `[FIRING:2] certloop : certloop
    (team platform)`; it now names the first alert and the count, under the highest severity."""
    exporter_down = with_labels(DOWN, team="platform", severity="major")
    renewer_down = with_labels(RENEWER_DOWN, team="platform", severity="critical")
    data = _group([exporter_down, renewer_down], {"team": "platform"})
    en = render(tmp_path, '{{ template "certloop.email.en.subject" . }}', data)
    zh = render(tmp_path, '{{ template "certloop.email.zh.subject" . }}', data)
    assert en == ("[FIRING:2] certloop critical: certloop exporter exporter:10793 is down (1 of 2 alerts) "
                  "(team platform)")
    assert zh == "[告警:2] certloop 紧急：certloop 导出器 exporter:10793 不可用（共 2 条告警）（团队 platform）"
    single = _group([exporter_down], {"team": "platform"})
    assert render(tmp_path, '{{ template "certloop.slack.zh.title" . }}', single) == (
        "[告警:1] certloop 导出器 exporter:10793 不可用（团队 platform）")


@pytest.mark.parametrize("name", ["certloop.email.zh.text", "certloop.email.zh.html", "certloop.slack.zh.text",
                                  "certloop.wecom.zh", "certloop.email.zh.subject", "certloop.sms.zh"])
def test_chinese_bodies_carry_no_english_prose(tmp_path: Path, name: str) -> None:
    """Every alert the rules produce, in a Chinese body: its Chinese description is there, and no English
    summary, description or time left is (label values, URLs and ids may stay ASCII)."""
    every = _promtool_alerts()
    out = render(tmp_path, f'{{{{ template "{name}" . }}}}', _group(every, {}))
    for alert in every:
        for key in ("summary", "description", "time_left"):
            english = alert["annotations"].get(key)
            assert not english or english not in out, f"{name}: English {key} of {alert['labels']['alertname']}"
        if name in {"certloop.email.zh.text", "certloop.slack.zh.text", "certloop.wecom.zh"}:
            assert alert["annotations"]["description_zh"] in out


def test_every_alert_has_chinese_annotations() -> None:
    """Each alert of the generated rules carries summary_zh and description_zh in Chinese (expiry alerts
    also time_left_zh): the Chinese templates read nothing else."""
    for rule in alerts():
        annotations = rule["annotations"]
        for key in ("summary_zh", "description_zh"):
            assert re.search(r"[\u4e00-\u9fff]", annotations.get(key, "")), f"{rule['alert']}: no Chinese {key}"
        if "time_left" in annotations:
            assert "time_left_zh" in annotations, rule["alert"]


# -- SMS: one message each ----------------------------------------------------------------------------

GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")


def _sms(tmp_path: Path, data: dict[str, Any]) -> tuple[str, str]:
    out = render(tmp_path, '{{ template "certloop.sms.zh" . }}\x1e{{ template "certloop.sms.en" . }}', data)
    zh, en = out.split("\x1e")
    return zh, en


def test_sms_fits_one_message_for_every_alert(tmp_path: Path) -> None:
    """For every alert the rules produce (as promtool renders it) and for every alert name with 60-character
    labels, a 300-character summary and a group of 100: Chinese fits one UCS-2 SMS (70 characters), English
    one GSM-7 SMS (160 characters of the basic set)."""
    cases = [_group([a], {}) for a in _promtool_alerts()]
    long = "x" * 60
    for rule in alerts():
        alert = {"labels": {"alertname": rule["alert"], "severity": rule["labels"]["severity"], "certificate": long,
                            "target": long, "instance": long},
                 "annotations": {"summary": "s" * 300, "time_left_zh": "364天 23小时 59分 59秒"}}
        cases += [_group([alert] * 100, {"certificate": long}), _group([alert], {}, status="resolved")]
    for data in cases:
        zh, en = _sms(tmp_path, data)
        name = data["alerts"][0]["labels"]["alertname"]
        assert 0 < len(zh) <= 70, f"{name}: {len(zh)} characters: {zh}"
        assert 0 < len(en) <= 160 and set(en) <= GSM_BASIC, f"{name}: {en!r}"


def test_sms_text_says_severity_name_subject_and_time_left(tmp_path: Path) -> None:
    zh, en = _sms(tmp_path, notification())
    assert zh == "certloop紧急：证书临近过期 shop 剩13天 23小时 等2条"
    assert en.startswith("certloop critical: TLS certificate \"shop\" served at shop.example:443") and \
        en.endswith(" - 1 of 2 alerts")
    zh, _ = _sms(tmp_path, notification("resolved"))
    assert zh.startswith("已恢复 certloop紧急：")


def test_every_severity_has_its_chinese_name(tmp_path: Path) -> None:
    """The four levels read 紧急, 严重, 警告, 信息 (docs/alerts.md), whatever severityLevels is set to."""
    expected = {"critical": "紧急", "major": "严重", "warning": "警告", "info": "信息"}
    text = "".join(f'{level}={{{{ template "certloop.severity.zh" "{level}" }}}}\n' for level in expected)
    rendered = dict(line.split("=", 1) for line in render(tmp_path, text, notification()).splitlines() if line)
    assert rendered == expected

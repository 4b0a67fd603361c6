"""The example Alertmanager config and templates, exercised by a real Alertmanager (Debian's 0.25).

One Alertmanager runs for the module with the example config moved to loopback (tests/alerting/loopback.py
says exactly what changes: endpoints and timers, not routes, inhibition or templates). Alerts shaped
exactly like those Prometheus sends from the generated rules (labels and annotations taken from the
promtool expectations) are posted once; each test then waits for its deliveries with a deadline.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from certloop.renewer.config import DEFAULT_ALERTNAMES
from stack.alertmanager import Alertmanager
from stack.moto import MotoServer
from stack.process import wait_until
from stack.receiver import Receiver
from tests.alerting.loopback import RENEWER_PATH, FakeWeCom, Mail, SmtpSink, loopback_config
from tests.alerting.payloads import (
    API_EXPIRING,
    CN_SOON,
    LEGACY_EXPIRING,
    SHOP_EXPIRING,
    SHOP_RENEWAL_FAILED,
    SHOP_SOON,
    SHOP_UNTRUSTED,
)
from tests.alerting.rules import ALERTMANAGER_DIR, alerts

EXAMPLE = ALERTMANAGER_DIR / "alertmanager.yml"
TEMPLATES = ALERTMANAGER_DIR / "templates"
TOKEN = "renewer-secret-token"
POSTED = [SHOP_SOON, SHOP_EXPIRING, SHOP_UNTRUSTED, SHOP_RENEWAL_FAILED, API_EXPIRING, LEGACY_EXPIRING, CN_SOON]
DEADLINE = 20.0


@dataclass
class Loop:
    am: Alertmanager
    receiver: Receiver
    smtp: SmtpSink
    wecom: FakeWeCom
    moto: MotoServer

    def webhook_alerts(self, path: str) -> list[dict[str, Any]]:
        return [a for r in self.receiver.requests if r.path == path for a in r.json()["alerts"]]

    def slack_texts(self, receiver: str) -> list[str]:
        return [att["title"] + "\n" + att["text"] for r in self.receiver.requests
                if r.path == f"/{receiver}/slack" for att in r.json()["attachments"]]

    def mails_to(self, address: str) -> list[Mail]:
        return [m for m in self.smtp.mails if address in m.to]


def _wait(what: str, predicate: Any) -> None:
    wait_until(predicate, DEADLINE, what)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[Loop]:
    """A real Alertmanager with the example config on loopback, the posted alerts delivered to fakes."""
    workdir = tmp_path_factory.mktemp("alertmanager")
    token_file = workdir / "renewer-token"
    token_file.write_text(TOKEN + "\n")
    receiver, smtp, wecom = Receiver(), SmtpSink(), FakeWeCom()
    receiver.start()
    smtp.start()
    wecom.start()
    config = loopback_config(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")), receiver_url=receiver.url,
                             smtp_port=smtp.port, wecom_api_url=wecom.api_url, token_file=token_file,
                             templates_dir=TEMPLATES, sns_api_url=moto.url)
    am = Alertmanager(workdir, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    try:
        am.start()
        now = datetime.now(UTC)
        am.post_alerts([{**alert, "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
                         "generatorURL": "http://prometheus.example:9090/graph"} for alert in POSTED])
        yield Loop(am, receiver, smtp, wecom, moto)
    finally:
        am.stop()
        wecom.stop()
        smtp.stop()
        receiver.stop()


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["amtool", *args], capture_output=True, text=True, timeout=60)


def test_example_config_passes_amtool_check_config(tmp_path: Path) -> None:
    """`amtool check-config` accepts the example as shipped, and with its templates loaded from this repo."""
    shipped = _amtool("check-config", str(EXAMPLE))
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    config["templates"] = [str(TEMPLATES / "*.tmpl")]
    local = tmp_path / "alertmanager.yml"
    local.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    checked = _amtool("check-config", str(local))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # amtool parses the templates too: a syntax error in any .tmpl fails this check.
    assert "1 templates\n  SUCCESS" in checked.stdout and "7 receivers" in checked.stdout


@pytest.mark.parametrize(("labels", "receivers"), [
    ({"alertname": "CertloopCertificateExpiring", "certificate": "shop", "severity": "warning", "team": "web"},
     "certloop-renewer,ops-warning"),
    ({"alertname": "CertloopCertificateExpiringSoon", "certificate": "shop", "severity": "critical"},
     "certloop-renewer,oncall-critical"),
    ({"alertname": "CertloopCertificateExpired", "certificate": "shop", "severity": "critical",
      "team": "platform-cn"}, "certloop-renewer,platform-cn-critical"),
    ({"alertname": "CertloopCertificateExpiring", "severity": "warning"}, "ops-warning"),
    ({"alertname": "CertloopRenewalFailed", "certificate": "shop", "severity": "major"}, "ops-major"),
    ({"alertname": "CertloopRenewalOverdue", "certificate": "shop", "severity": "major"},
     "certloop-renewer,ops-major"),
    ({"alertname": "CertloopCertificateWeakCrypto", "certificate": "shop", "severity": "warning",
      "team": "platform-cn"}, "platform-cn"),
    ({"alertname": "CertloopCertificateDisappeared", "severity": "info"}, "ops-info"),
])
def test_routing_tree_picks_receivers(labels: dict[str, str], receivers: str) -> None:
    """Renewal alerts with a certificate reach the renewer and people; the rest route by team and severity."""
    result = _amtool("config", "routes", "test", f"--config.file={EXAMPLE}",
                     *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receivers


def test_renewal_route_names_the_alerts_the_renewer_renews_on() -> None:
    """The renewal route's alertnames are alerts of the generated rules and exactly the renewer's default
    `alerts.renew_on`, so the example config and the renewer agree out of the box."""
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    [route] = [r for r in config["route"]["routes"] if r["receiver"] == "certloop-renewer"]
    assert route["continue"] is True
    assert 'certificate=~".+"' in route["matchers"]
    [names] = [m.split("=~", 1)[1].strip('"') for m in route["matchers"] if m.startswith("alertname=~")]
    routed = set(names.split("|"))
    assert routed <= {rule["alert"] for rule in alerts()}
    assert routed == set(DEFAULT_ALERTNAMES)


def test_renewer_gets_renewable_alerts_with_its_bearer_token(loop: Loop) -> None:
    """The renewer's webhook receives the expiry alerts carrying a certificate label, authenticated with
    the bearer token from credentials_file, and nothing else."""
    wanted = {("CertloopCertificateExpiringSoon", "shop"), ("CertloopCertificateExpiring", "api"),
              ("CertloopCertificateExpiringSoon", "cn-shop")}

    def got() -> set[tuple[str, str]]:
        return {(a["labels"]["alertname"], a["labels"].get("certificate", "")) for a in
                loop.webhook_alerts(RENEWER_PATH)}

    _wait("renewable alerts at the renewer", lambda: wanted <= got())
    requests = [r for r in loop.receiver.requests if r.path == RENEWER_PATH]
    assert {r.headers["Authorization"] for r in requests} == {f"Bearer {TOKEN}"}
    assert got() == wanted  # no renewal-failed, no certificate-less alert, the inhibited warning never
    assert {r.json()["receiver"] for r in requests} == {"certloop-renewer"}


def test_critical_inhibits_warning_for_the_same_certificate(loop: Loop) -> None:
    """ExpiringSoon (critical) silences Expiring (warning) about the same target and certificate, but not
    the renewal failure (no target) nor warnings about other certificates."""

    def state(alertname: str, certificate: str) -> dict[str, Any]:
        [alert] = loop.am.alerts(alertname=alertname, certificate=certificate)
        status: dict[str, Any] = alert["status"]
        return status

    _wait("the warning to be inhibited", lambda: state("CertloopCertificateExpiring", "shop")["inhibitedBy"])
    assert state("CertloopCertificateExpiring", "shop")["state"] == "suppressed"
    assert state("CertloopRenewalFailed", "shop")["state"] == "active"
    assert state("CertloopCertificateExpiring", "api")["state"] == "active"
    _wait("ops-warning to hear about api", lambda: any('"api"' in t for t in loop.slack_texts("ops-warning")))
    assert not any('"shop"' in t for t in loop.slack_texts("ops-warning"))


def test_people_hear_about_renewals_grouped_by_certificate(loop: Loop) -> None:
    """`continue: true`: the on-call channel gets the alerts the renewer got, one message per certificate
    listing every critical alert about it, with time left, reason and links; the SMS webhook gets it too."""
    _wait("on-call Slack message", lambda: loop.slack_texts("oncall-critical"))
    [text] = [t for t in loop.slack_texts("oncall-critical") if 'certificate "shop"' in t]
    assert text.startswith('[FIRING:2] certificate "shop" (team web)')
    assert "`CertloopCertificateExpiringSoon` (critical)" in text
    assert "*Time left:* 13d 23h 30m 0s" in text
    assert "*Reason:* unknown_authority" in text
    assert "|Runbook>" in text and "docs/runbooks/CertloopCertificateExpiringSoon.md" in text
    assert "var-target=shop.example%3A443|Dashboard>" in text
    _wait("SMS gateway webhook", lambda: loop.webhook_alerts("/oncall-critical/webhook"))
    names = {a["labels"]["alertname"] for a in loop.webhook_alerts("/oncall-critical/webhook")}
    assert names == {"CertloopCertificateExpiringSoon", "CertloopCertificateVerificationFailing"}


def test_english_email_for_critical_and_major(loop: Loop) -> None:
    """On-call gets an English email naming the certificate, where it is served, time left and the runbook;
    the renewal failure goes to the ops mailbox."""
    _wait("on-call email", lambda: loop.mails_to("oncall@example.com"))
    [mail] = loop.mails_to("oncall@example.com")
    assert mail.subject == '[FIRING:2] certloop critical: certificate "shop" (team web)'
    assert "Certificate: shop" in mail.text
    assert "Where:       shop.example:443 (address 127.0.0.1)" in mail.text
    assert "Time left:   13d 23h 30m 0s" in mail.text
    assert "Runbook:     https://github.com/certloop/certloop/blob/main/docs/runbooks/" in mail.text
    assert "<td>Time left</td><td>13d 23h 30m 0s</td>" in mail.html
    _wait("ops email", lambda: loop.mails_to("ops@example.com"))
    [ops] = loop.mails_to("ops@example.com")
    assert ops.subject == '[FIRING:1] certloop major: certificate "shop"'
    assert "Reason:      failed" in ops.text
    assert "failed at 1970-01-01 00:20:00 +0000 UTC" in ops.text


def test_chinese_team_gets_wecom_and_email_in_chinese(loop: Loop) -> None:
    """The platform-cn team's critical alert arrives on WeCom (markdown) and by email, in Chinese."""
    def to_team() -> list[dict[str, Any]]:
        return [m for m in loop.wecom.sent() if m.get("toparty") == "3"]

    _wait("WeCom message to the team's party", to_team)
    [message] = to_team()
    assert message["path"].endswith("/cgi-bin/message/send?access_token=wecom-token")
    assert message["msgtype"] == "markdown" and message["agentid"] == "1000002"
    content = message["markdown"]["content"]
    assert "证书「cn-shop」（团队 platform-cn）" in content
    assert "**【紧急】证书临近过期**" in content
    assert "> 位置：cn.example:443（地址 127.0.0.1）" in content
    assert '> 剩余时间：<font color="warning">13天 23小时 30分 0秒</font>' in content
    assert "[处理手册](https://github.com/certloop/certloop/blob/main/docs/runbooks/" in content
    _wait("Chinese email", lambda: loop.mails_to("platform-cn-oncall@example.com"))
    [mail] = loop.mails_to("platform-cn-oncall@example.com")
    assert mail.subject == "[告警:1] certloop 紧急：证书「cn-shop」（团队 platform-cn）"
    assert "剩余时间：13天 23小时 30分 0秒" in mail.text and "处理手册：" in mail.text
    # Chinese throughout: the Chinese description, not the English one.
    assert f"详情：{CN_SOON['annotations']['description_zh']}" in mail.text
    assert CN_SOON["annotations"]["description"] not in mail.text + mail.html
    _wait("DingTalk/Feishu relay", lambda: loop.webhook_alerts("/platform-cn-critical/webhook"))


def test_on_call_wecom_message_is_english(loop: Loop) -> None:
    """The on-call WeCom party gets the English markdown variant for the shop certificate."""

    def to_oncall() -> list[dict[str, Any]]:
        return [m for m in loop.wecom.sent() if m.get("toparty") == "2"]

    _wait("WeCom message to on-call", to_oncall)
    [message] = to_oncall()
    content = message["markdown"]["content"]
    assert content.startswith('### <font color="warning">FIRING:2</font> certificate "shop" (team web)')
    assert '> Time left: <font color="warning">13d 23h 30m 0s</font>' in content
    assert "> Reason: unknown_authority" in content


def test_critical_pages_by_sms_through_sns(loop: Loop) -> None:
    """Alertmanager's own SNS notifier, pointed at moto's server (nothing AWS runs here), texts the on-call
    number in English and the Chinese team's number in Chinese: one message each, within one SMS."""

    def sms_to(number: str) -> list[str]:
        return [m["message"] for m in loop.moto.sent_sms() if m["phone_number"] == number]

    _wait("the on-call SMS", lambda: sms_to("+15555550100"))
    _wait("the Chinese team's SMS", lambda: sms_to("+8613800138000"))
    [english] = sms_to("+15555550100")
    # The group's first alert, in Alertmanager's order, with the count of the others.
    assert english in {f"certloop critical: {a['annotations']['summary']} - 1 of 2 alerts"
                       for a in (SHOP_SOON, SHOP_UNTRUSTED)}, english
    [chinese] = sms_to("+8613800138000")
    assert chinese == "certloop紧急：证书临近过期 cn-shop 剩13天 23小时"
    assert len(english) <= 160 and len(chinese) <= 70
    # Only critical routes page by SMS: the major renewal failure and the warnings sent none.
    assert {m["phone_number"] for m in loop.moto.sent_sms()} == {"+15555550100", "+8613800138000"}

"""The status page's words in English and Chinese: one catalogue, the language chosen per request.

    lang, explicit = choose_language(req.arg("lang"), req.headers.get("accept-language"))
    text = Text(lang)
    text("Renew now")                           # "立即续期"
    text("{n} days left", n=3.5)                # "剩余 3.5 天"
    text.phrase("manual renewal (forced)")      # "手动续期（强制）": what the renewer itself recorded

Operators read the page in Chinese, so every label, button, state name, reason, empty-state text and the
timeline's legend has a zh entry in :data:`CATALOGUE`, keyed by its English text (gettext's convention:
templates stay readable, and the English page needs no lookup). A plain dict rather than gettext's .po/.mo
files: two languages, a few hundred strings, no build step, no new dependency.

Text the renewer recorded itself (job reasons, waits, audit details) is stored in English; :data:`PHRASES`
turns its known shapes into Chinese when shown (the values inside stay as recorded). Text written by
others (a CA's error, a deploy step's stderr) is shown as it came.

What must stay true: a template asks only for keys in the catalogue (:meth:`Text.__call__` raises on a
missing one, and a test renders every template in both languages and walks the zh page's text for
English words of the catalogue); the language is ``?lang=zh|en`` when given (and kept in links and
forms), else the best of ``Accept-Language``, else English.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

__all__ = ["CATALOGUE", "LANGUAGES", "PHRASES", "Lang", "Text", "choose_language"]

Lang = Literal["en", "zh"]
LANGUAGES: tuple[Lang, ...] = ("en", "zh")

# English -> Chinese. Placeholders ({n}, {name}) are filled after the lookup, the same in both.
CATALOGUE: Mapping[str, str] = {
    # the frame
    "certloop renewer": "certloop 续期服务",
    "Status": "状态",
    "no role": "无角色",
    "Language": "语言",
    "Back to the status page": "返回状态页",
    # roles
    "viewer": "查看者",
    "operator": "操作员",
    "admin": "管理员",
    "alertmanager": "告警管理器",
    # the certificates table
    "Certificates": "证书",
    "As of {when}.": "截至 {when}。",
    "Expires and days left are for the leaf installed now; \"served now\" is what each verify endpoint "
    "presents, probed live.":
        "“到期”和“剩余天数”指当前已安装的叶证书；“当前在用”是每个验证端点实际提供的证书（实时探测）。",
    "Certificate": "证书",
    "Domains": "域名",
    "Issuer": "签发方",
    "Expires": "到期",
    "Days left": "剩余天数",
    "Served now": "当前在用",
    "Next renewal": "下次续期",
    "Last job": "最近任务",
    "Why waiting / failed": "等待或失败原因",
    "nothing installed": "尚未安装",
    "(due now)": "（现在到期）",
    "none": "无",
    "Renew now": "立即续期",
    "Retry": "重试",
    # served now
    "probing": "探测中",
    "(probing again)": "（正在重新探测）",
    "days": "天",
    "drift: not the installed leaf": "漂移：不是已安装的证书",
    "probe failed: {reason}": "探测失败：{reason}",
    "no verify endpoint": "未配置验证端点",
    "SHA-256 fingerprint {fingerprint}": "SHA-256 指纹 {fingerprint}",
    # why a probe failed (certloop.errors.FailureReason)
    "the name did not resolve": "域名无法解析",
    "could not connect": "无法连接",
    "connection refused": "连接被拒绝",
    "probe timed out": "探测超时",
    "TLS handshake failed": "TLS 握手失败",
    "STARTTLS failed": "STARTTLS 协商失败",
    "no certificate presented": "未提供证书",
    "certificate chain too large": "证书链过大",
    "the server name cannot be sent": "无法发送该服务器名称",
    # job states and what starts a job
    "queued": "排队中",
    "issuing": "签发中",
    "installing": "安装中",
    "verifying": "验证中",
    "succeeded": "成功",
    "failed": "失败",
    "rolled_back": "已回滚",
    "alert": "告警",
    "schedule": "定时",
    "manual": "手动",
    "retry": "重试",
    # the timeline
    "Timeline": "时间线",
    "When each certificate expires and renews": "各证书的到期与续期时间",
    "Each bar runs from now to the installed leaf's expiry; the orange mark is the next renewal.":
        "每条横条从现在延伸到已安装证书的到期时间；橙色标记为下次续期。",
    "Expired or nothing installed: red bar.": "已过期或尚未安装：红色横条。",
    "now": "现在",
    "+{n}d": "+{n}天",
    "{certificate}: {n} days left": "{certificate}：剩余 {n} 天",
    "{certificate}: nothing installed": "{certificate}：尚未安装",
    "{certificate}: next renewal": "{certificate}：下次续期",
    # recent renewals
    "Recent renewals": "最近续期",
    "Job": "任务",
    "Result": "结果",
    "Finished (UTC)": "完成时间（UTC）",
    "Started by": "触发方式",
    "No finished renewals yet.": "暂无已完成的续期。",
    # the audit trail
    "Audit trail": "审计记录",
    "When (UTC)": "时间（UTC）",
    "Who": "操作者",
    "Action": "操作",
    "On": "对象",
    "Address": "地址",
    "Detail": "详情",
    "(not signed in)": "（未登录）",
    "Nothing recorded yet.": "暂无记录。",
    "renew": "续期",
    "reload": "重新加载配置",
    "webhook": "告警通知",
    "refused": "拒绝",
    # one job
    "Job {id}": "任务 {id}",
    "Why it started": "触发原因",
    "Created": "创建时间",
    "Attempt": "尝试次数",
    "Error": "错误",
    "Installed leaf expires": "已安装证书到期",
    "{when} ({n} days left)": "{when}（剩余 {n} 天）",
    "This page reloads every 2 seconds until the job finishes.": "任务完成前，本页每 2 秒自动刷新。",
    "Event trail": "事件记录",
    "From": "从",
    "To": "到",
    "Reason": "原因",
    "By": "执行者",
    # answers to the buttons
    "Job {id} queued for {certificate}": "已为 {certificate} 创建任务 {id}",
    "Job {id} already open for {certificate}": "{certificate} 已有进行中的任务 {id}",
    "See job {id}": "查看任务 {id}",
    # errors
    "The job store is unavailable. Try again in a moment.": "任务存储暂时不可用，请稍后再试。",
    "No such job.": "没有这个任务。",
    "This form did not come from this page (CSRF token missing or wrong). Reload the status page and press "
    "the button again.": "此表单并非来自本页（CSRF 令牌缺失或错误）。请刷新状态页后再点击按钮。",
    "This form is older than the {hours} hours a form is valid (CSRF token expired). Reload the status page "
    "and press the button again.": "此表单已超过 {hours} 小时的有效期（CSRF 令牌已过期）。请刷新状态页后再点击按钮。",
    "nothing was queued": "没有创建任务",
}

# What the renewer itself records, in English, as it reads in Chinese: (pattern, zh template). The
# pattern's named groups are filled into the template as recorded; ``{state}`` is translated too.
PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.S), zh) for p, zh in (
    (r"manual renewal \(forced\)", "手动续期（强制）"),
    (r"manual renewal", "手动续期"),
    (r"retry of job (?P<job>\d+) \((?P<state>[a-z_]+)\)", "重试任务 {job}（{state}）"),
    (r"alert (?P<name>\S+) firing \(fingerprint (?P<fp>\S+)\)", "告警 {name} 触发（指纹 {fp}）"),
    (r"safety net: (?P<why>.+)", "安全网：{why}"),
    (r"waiting: (?P<why>.+); next try (?P<when>\S+)", "等待：{why}；下次尝试 {when}"),
    # renewer/worker.py's transitions
    (r"issuing with (?P<issuer>\S+) \(attempt (?P<n>\d+)\)", "使用 {issuer} 签发（第 {n} 次尝试）"),
    (r"installing \(deploy attempt (?P<n>\d+)\)", "安装中（第 {n} 次部署尝试）"),
    (r"deploy steps done; verifying the served leaf", "部署步骤完成；正在验证在用证书"),
    (r"verified: leaf (?P<fp>\S+) served by (?P<n>\d+) endpoint\(s\)", "已验证：证书 {fp} 由 {n} 个端点提供"),
    (r"issuance failed \((?P<detail>.+)\); retry at (?P<when>\S+)", "签发失败（{detail}）；将于 {when} 重试"),
    (r"issuance failed needs a human: (?P<detail>.+)", "签发失败，需要人工处理：{detail}"),
    (r"issuance failed after (?P<n>\d+) attempt\(s\): (?P<detail>.+)", "签发失败（已尝试 {n} 次）：{detail}"),
    (r"rolled back: (?P<detail>.+) \(after (?P<n>\d+) deploy attempts\)", "已回滚：{detail}（部署尝试 {n} 次后）"),
    (r"rolled back: (?P<detail>.+); deployment retried at (?P<when>\S+) \(no re-issue\)",
     "已回滚：{detail}；将于 {when} 重新部署（不重新签发）"),
    (r"ROLLBACK FAILED, live files may be broken: (?P<detail>.+)", "回滚失败，在用文件可能已损坏：{detail}"),
    # the API's and the status page's
    (r"job (?P<job>\d+) \(already open\) \(status page\)", "任务 {job}（已在进行中）（状态页）"),
    (r"job (?P<job>\d+) \(status page\)", "任务 {job}（状态页）"),
    (r"job (?P<job>\d+) \(already open\)", "任务 {job}（已在进行中）"),
    (r"job (?P<job>\d+)", "任务 {job}"),
    (r"CSRF token missing or wrong", "CSRF 令牌缺失或错误"),
    (r"CSRF token expired", "CSRF 令牌已过期"),
    (r"queued by an alert", "由告警创建"),
    (r"no such certificate in the configuration", "配置中没有这个证书"),
    (r"job (?P<job>\d+) is (?P<state>[a-z_]+): only a failed or rolled-back job can be retried",
     "任务 {job} 为{state}：只有失败或已回滚的任务可以重试"),
    (r"job store unavailable; retry", "任务存储不可用，请重试"),
    (r"(?P<who>\S+) \(role (?P<role>[a-z]+)\) may not do this", "{who}（角色 {role}）无权执行此操作"),
))
_TRANSLATED_GROUPS = frozenset({"state", "role"})


def choose_language(query: str | None, accept_language: str | None) -> tuple[Lang, bool]:
    """The language of a page, and whether the request chose it with ``?lang=`` (then links keep it).

    ``Accept-Language`` is read as RFC 9110 says (``zh-CN,zh;q=0.9,en;q=0.8``): the highest-weighted
    range we have wins, ``zh-*`` is Chinese, ``*`` or nothing known is English."""
    if query in LANGUAGES:
        return query, True
    best: tuple[float, Lang] = (0.0, "en")
    for part in (accept_language or "")[:512].split(",")[:32]:
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > best[0]:
            best = (weight, primary)
    return best[1], False


class Text:
    """The words of one page in ``lang`` (a Jinja global: ``{{ _("Renew now") }}``)."""

    def __init__(self, lang: Lang) -> None:
        self.lang = lang

    def __call__(self, english: str, **values: object) -> str:
        if english not in CATALOGUE:
            raise KeyError(f"not in the status page's catalogue (renewer/i18n.py): {english!r}")
        template = CATALOGUE[english] if self.lang == "zh" else english
        return template.format(**values) if values else template

    def word(self, english: str) -> str:
        """A state, role, trigger or action name: translated when the catalogue knows it, else as is."""
        return CATALOGUE.get(english, english) if self.lang == "zh" else english

    def phrase(self, recorded: str | None) -> str:
        """A text the renewer recorded (a job's reason, an audit detail, an error) in this language."""
        if recorded is None:
            return ""
        if self.lang != "zh":
            return recorded
        for pattern, zh in PHRASES:
            found = pattern.fullmatch(recorded)
            if found:
                groups = {k: (self.word(v) if k in _TRANSLATED_GROUPS else v) for k, v in found.groupdict().items()}
                return zh.format(**groups)
        return recorded

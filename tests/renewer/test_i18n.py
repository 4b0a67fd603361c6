"""The status page in Chinese throughout: one catalogue (renewer/i18n.py), the language from ?lang= (kept in
links and forms) or Accept-Language, and every template rendered by a real renewer in both languages with
no English word of the catalogue left in the Chinese page's text (nor Chinese in the English one)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import bcrypt
import pytest
import yaml

from certloop.renewer.i18n import CATALOGUE, PHRASES, Text, choose_language
from stack.process import free_port, wait_until
from tests.renewer.conftest import TOKEN, RenewerProcess, Setup

PASSWORD = "correct horse battery"
TEMPLATES = Path(__file__).resolve().parents[2] / "renewer" / "templates"
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()}


class _Visible(HTMLParser):
    """Text a person sees: text nodes (SVG titles included) and the title/aria-label/alt attributes,
    without <style>, and without <code> (machine text: fingerprints, a TLS stack's own error)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"style", "code"}:  # code: machine text (fingerprints, a TLS stack's error), shown as data
            self._skip += 1
        for name, value in attrs:
            if name in {"title", "aria-label", "alt", "placeholder"} and value:
                self.texts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in {"style", "code"}:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(data.strip())


def visible(html: str) -> list[str]:
    parser = _Visible()
    parser.feed(html)
    return parser.texts


def _words(text: str) -> set[str]:
    """The words of ``text``, leaving out data identifiers: paths, host names, addresses, times."""
    out = set()
    for token in text.split():
        token = token.strip("()[]{},;:!?\"'“”")
        if any(c in token for c in "/.:=@") or not token:
            continue
        out.update(w.lower() for w in re.findall(r"[A-Za-z]{3,}", token))
    return out


# English words of the catalogue that Chinese text keeps on purpose (TLS, CSRF, SHA, UTC, STARTTLS,
# certloop): those appearing in the Chinese translations themselves.
ENGLISH = set().union(*(_words(en) for en in CATALOGUE)) - set().union(*(_words(zh) for zh in CATALOGUE.values()))


def english_leaks(html: str) -> list[str]:
    return [t for t in visible(html) if _words(t) & ENGLISH]


def test_every_catalogue_entry_has_a_chinese_rendering() -> None:
    """Each English string has a zh entry with Chinese in it and the same placeholders; each phrase too."""
    for en, zh in CATALOGUE.items():
        assert zh and CJK.search(zh), f"no Chinese for {en!r}"
        assert set(re.findall(r"\{(\w+)\}", en)) == set(re.findall(r"\{(\w+)\}", zh)), en
    for pattern, zh in PHRASES:
        assert CJK.search(zh), pattern.pattern
        assert set(re.findall(r"\{(\w+)\}", zh)) == set(pattern.groupindex), pattern.pattern


def test_every_string_a_template_asks_for_is_in_the_catalogue() -> None:
    """A static scan of the templates' _("...") calls: a missing key would fail the page at render time."""
    asked: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        source = template.read_text()
        asked.update(m.group(2).replace('\\"', '"') for m in re.finditer(r'_\((["\'])((?:\\.|(?!\1).)*)\1', source))
    assert asked, "no _() calls found"
    missing = sorted(asked - set(CATALOGUE))
    assert not missing, missing
    with pytest.raises(KeyError, match="not in the status page's catalogue"):
        Text("zh")("An English string nobody translated")


@pytest.mark.parametrize(("query", "header", "expected"), [
    ("zh", "en", ("zh", True)),
    ("en", "zh-CN", ("en", True)),
    (None, "zh-CN,zh;q=0.9,en;q=0.8", ("zh", False)),
    (None, "en-US,en;q=0.9,zh;q=0.8", ("en", False)),
    (None, "fr-FR, zh-TW;q=0.5", ("zh", False)),
    (None, "de, fr;q=0.9", ("en", False)),
    (None, "zh;q=0, en;q=0.1", ("en", False)),
    (None, "zh;q=banana", ("en", False)),
    (None, None, ("en", False)),
    ("xx", None, ("en", False)),
])
def test_the_language_comes_from_the_query_then_accept_language(query: str | None, header: str | None,
                                                                 expected: tuple[str, bool]) -> None:
    assert choose_language(query, header) == expected


def test_recorded_phrases_read_in_chinese() -> None:
    zh = Text("zh")
    assert zh.phrase("manual renewal (forced)") == "手动续期（强制）"
    assert zh.phrase("retry of job 7 (failed)") == "重试任务 7（失败）"
    assert zh.phrase("waiting: rate limit x; next try 2026-01-01T00:00:00+00:00") == (
        "等待：rate limit x；下次尝试 2026-01-01T00:00:00+00:00")
    assert zh.phrase("a CA said no") == "a CA said no"  # text from elsewhere is shown as it came
    assert Text("en").phrase("manual renewal") == "manual renewal"


@pytest.fixture
def renewer(make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
            tmp_path: Path) -> RenewerProcess:
    """shop (nothing installed), blog (a leaf, a finished job), dead (its endpoint refuses: a failed
    probe); users vera (viewer) and otto (operator)."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {u: hashed for u in ("vera", "otto")}}))
    setup = make_setup(["shop", "blog", "dead"], days=30)
    setup.data["certificates"][2]["verify"] = {"endpoints": [{"endpoint": f"127.0.0.1:{free_port()}"}]}
    # the machine's token is named (the audit trail shows names; a legacy token is called "token", an
    # English word this test would take for a leak)
    setup.data["auth"] = {"tokens": [{"name": "deployer", "token": TOKEN, "role": "admin"}],
                          "users": {"vera": "viewer", "otto": "operator"}}
    setup.write()
    r = start_renewer(setup.path, extra=[f"--web.config.file={web}"])
    job = r.post("/api/v1/certificates/blog/renew?force=true").json()["job_id"]
    wait_until(lambda: r.get(f"/api/v1/jobs/{job}").json()["state"] == "succeeded", 60, "blog's leaf")
    return r


def _pages(r: RenewerProcess, lang: str | None, accept: str | None) -> dict[str, tuple[int, str]]:
    """Every template, rendered for otto: status, a job, the 404 error, the queued answer (303) and the
    CSRF refusal (403); viewer vera's POST is refused so the audit trail has a refusal too."""
    s, q = r.session, f"?lang={lang}" if lang else ""
    headers = {**basic("otto"), **({"Accept-Language": accept} if accept else {})}
    s.post(r.url + "/status/certificates/shop/renew", headers=basic("vera"), timeout=10)
    status = s.get(r.url + "/status" + q, headers=headers, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', status.text).group(1)  # type: ignore[union-attr]
    queued = s.post(r.url + "/status/certificates/blog/renew" + q, data={"csrf": token}, headers=headers,
                    timeout=10, allow_redirects=False)
    job = queued.headers["Location"]
    wait_until(lambda: "refresh" not in s.get(r.url + job, headers=headers, timeout=10).text, 60, "the job")
    refused = s.post(r.url + "/status/certificates/blog/renew" + q, data={"csrf": "1." + "0" * 64},
                     headers=headers, timeout=10)
    return {
        "status": (status.status_code, s.get(r.url + "/status" + q, headers=headers, timeout=30).text),
        "job": (200, s.get(r.url + job, headers=headers, timeout=10).text),
        "missing job": (404, s.get(r.url + "/status/jobs/99999" + q, headers=headers, timeout=10).text),
        "queued": (queued.status_code, queued.text),
        "csrf refusal": (refused.status_code, refused.text),
        "location": (0, job),
    }


@pytest.mark.parametrize(("lang", "accept"), [("zh", None), (None, "zh-CN,zh;q=0.9,en;q=0.5")])
def test_the_chinese_pages_have_no_english_words_of_the_catalogue(renewer: RenewerProcess, lang: str | None,
                                                                   accept: str | None) -> None:
    pages = _pages(renewer, lang, accept)
    assert [pages[k][0] for k in ("status", "job", "missing job", "queued", "csrf refusal")] == [
        200, 200, 404, 303, 403]
    for name in ("status", "job", "missing job", "queued", "csrf refusal"):
        html = pages[name][1]
        assert '<html lang="zh-CN">' in html, name
        assert not english_leaks(html), (name, english_leaks(html))
    status = pages["status"][1]
    for words in ("证书", "剩余天数", "当前在用", "立即续期", "时间线", "最近续期", "审计记录", "尚未安装",
                  "探测失败：连接被拒绝", "未配置验证端点", "成功", "拒绝", "手动续期（强制）", "现在",
                  "每条横条从现在延伸到"):
        assert words in status, words
    assert "CSRF 令牌缺失或错误" in pages["csrf refusal"][1]
    assert "事件记录" in pages["job"][1]
    if lang:  # chosen with ?lang=: every link and form of ours keeps it, so does the button's redirect
        links = re.findall(r'(?:href|action)="(/status[^"]*)"(?! hreflang)', status)  # not the language switch
        assert links and all(link.endswith("?lang=zh") for link in links), links
        assert pages["location"][1].endswith("?lang=zh")


def test_the_english_pages_have_no_chinese_but_the_language_switch(renewer: RenewerProcess) -> None:
    pages = _pages(renewer, None, "en-US,en;q=0.9")
    for name in ("status", "job", "missing job", "queued", "csrf refusal"):
        html = pages[name][1]
        texts = [t for t in visible(html) if CJK.search(t)]
        assert texts == ["中文"], (name, texts)
    assert "Renew now" in pages["status"][1] and "no verify endpoint" in pages["status"][1]
    assert not pages["location"][1].endswith("lang=en")  # not chosen: links stay as they were

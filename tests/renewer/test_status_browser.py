"""The status page in a real browser: Debian's headless chromium driven by Selenium through Debian's
chromedriver (its path given explicitly: Selenium never downloads a driver here), against a real renewer
on loopback that renews through pebble and installs into a real nginx.

Sign-in is HTTP basic auth; the browser sends it as an extra header set over the DevTools protocol
(Network.setExtraHTTPHeaders), which is what a browser does after its password prompt.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.renewer.conftest import TOKEN, RenewerProcess, Setup
from tests.renewer.standins.peers import AcmeStack, acme_stack_fixture  # noqa: F401  # fixture

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PASSWORD = "correct horse battery"
# CERTLOOP_SCREENSHOT=docs/images/status-page.png: where the operator test saves the picture for the docs
SCREENSHOT = os.environ.get("CERTLOOP_SCREENSHOT")


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()


@pytest.fixture
def renewer(acme_stack: AcmeStack, make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
            tmp_path: Path) -> RenewerProcess:
    """shop: renewed by pebble (ACME http-01 through nginx's webroot), installed where nginx serves it and
    proven served; blog: a `command` issuer with a 60-day leaf. Users vera (viewer) and otto (operator)."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"vera": hashed, "otto": hashed}}))
    setup = make_setup(["blog"], days=60)
    acme = {"type": "acme", "directory": acme_stack.pebble.directory_url,
            "ca_bundle": str(acme_stack.pebble.ca_bundle_path), "http01": {"webroot": str(acme_stack.webroot)}}
    shop = acme_stack.spec_data(acme, renew_before="1/3", min_lifetime="1h")
    setup.data["certificates"].insert(0, shop)
    setup.data["auth"] = {"token": TOKEN, "users": {"vera": "viewer", "otto": "operator"}}
    setup.write()
    r = start_renewer(setup.path, extra=[f"--web.config.file={web}"])
    job = r.post("/api/v1/certificates/blog/renew?force=true").json()["job_id"]
    WebDriverWait(None, 60, 0.2).until(lambda _: r.get(f"/api/v1/jobs/{job}").json()["state"] == "succeeded")
    return r


@pytest.fixture
def browser() -> Iterator[Callable[[str], webdriver.Chrome]]:
    """``browser("vera")``: a headless chromium signed in as that user (several may be open at once)."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "scripts/bootstrap.sh installs chromium and chromium-driver"
    opened: list[webdriver.Chrome] = []

    def open_as(user: str) -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1280,1000", "--no-proxy-server", "--disable-extensions"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        opened.append(driver)
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": basic(user)}})
        return driver

    yield open_as
    for driver in opened:
        driver.quit()


def _audit(r: RenewerProcess) -> list[dict[str, object]]:
    events: list[dict[str, object]] = requests.get(r.url + "/api/v1/audit", headers={"Authorization": basic("vera")},
                                                   timeout=10).json()["events"]
    return events


def test_a_viewer_sees_every_certificate_and_its_days_left(renewer: RenewerProcess,
                                                          browser: Callable[[str], webdriver.Chrome]) -> None:
    driver = browser("vera")
    driver.get(renewer.url + "/")
    driver.find_element(By.LINK_TEXT, "/status").click()
    WebDriverWait(driver, 20, 0.2).until(lambda d: d.current_url.endswith("/status"))
    shop = driver.find_element(By.ID, "cert-shop")
    blog = driver.find_element(By.ID, "cert-blog")
    assert "shop.example" in shop.text and "blog.example" in blog.text
    shop_days = float(shop.find_element(By.CLASS_NAME, "days-left").text)
    blog_days = float(blog.find_element(By.CLASS_NAME, "days-left").text)
    assert 1 < shop_days <= 2 and 59 < blog_days <= 60, (shop_days, blog_days)
    assert driver.find_elements(By.CSS_SELECTOR, "button") == []  # a viewer gets no buttons
    assert driver.find_element(By.ID, "timeline").is_displayed()


def test_an_operator_renews_now_and_sees_the_job_succeed(renewer: RenewerProcess, acme_stack: AcmeStack,
                                                         browser: Callable[[str], webdriver.Chrome]) -> None:
    """Renew now -> the job's page (it reloads itself, no script) -> succeeded, with the new leaf's days left
    (pebble's leaf, far beyond the 2 days of the leaf nginx served before); nginx serves it."""
    driver = browser("otto")
    driver.get(renewer.url + "/status")
    driver.find_element(By.ID, "renew-shop").click()
    WebDriverWait(driver, 20, 0.2).until(lambda d: re.search(r"/status/jobs/[0-9]+$", d.current_url))
    WebDriverWait(driver, 120, 0.5).until(
        lambda d: d.find_element(By.ID, "job-state").text in {"succeeded", "failed", "rolled_back"})
    assert driver.find_element(By.ID, "job-state").text == "succeeded", driver.find_element(By.ID, "events").text
    days = float(re.search(r"\(([0-9.]+) days left\)",  # type: ignore[union-attr]
                           driver.find_element(By.ID, "days-left").text).group(1))
    assert days > 10, days
    driver.get(renewer.url + "/status")
    row = driver.find_element(By.ID, "cert-shop")
    assert float(row.find_element(By.CLASS_NAME, "days-left").text) == pytest.approx(days, abs=0.2)
    assert any(e["actor"] == "otto" and e["action"] == "renew" and e["status"] == 303 for e in _audit(renewer))
    if SCREENSHOT:
        driver.set_window_size(1280, 1150)
        assert driver.save_screenshot(SCREENSHOT)


def test_a_viewers_post_is_refused_and_audited(renewer: RenewerProcess,
                                              browser: Callable[[str], webdriver.Chrome]) -> None:
    """The viewer has no button; a form posted anyway (written into the page by the test) gets 403."""
    driver = browser("vera")
    driver.get(renewer.url + "/status")
    driver.execute_script(
        "const f = document.createElement('form'); f.method = 'post';"
        "f.action = '/status/certificates/shop/renew'; document.body.appendChild(f); f.submit();")
    WebDriverWait(driver, 10, 0.2).until(lambda d: "may not do this" in d.page_source)
    assert any(e["actor"] == "vera" and e["action"] == "refused" and e["status"] == 403
               and e["target"] == "POST /status/certificates/shop/renew" for e in _audit(renewer))


def test_a_post_without_the_csrf_token_is_refused(renewer: RenewerProcess,
                                                 browser: Callable[[str], webdriver.Chrome]) -> None:
    """The operator's form with its hidden csrf field removed: 403, nothing queued, audited."""
    driver = browser("otto")
    driver.get(renewer.url + "/status")
    jobs_before = len(requests.get(renewer.url + "/api/v1/jobs", headers={"Authorization": basic("vera")},
                                   timeout=10).json()["jobs"])
    driver.execute_script("document.querySelector('#cert-blog input[name=csrf]').remove();")
    driver.find_element(By.ID, "renew-blog").click()
    WebDriverWait(driver, 20, 0.2).until(lambda d: d.find_elements(By.ID, "error"))  # the answer has loaded
    assert "CSRF token missing or wrong" in driver.find_element(By.ID, "error").text
    assert len(requests.get(renewer.url + "/api/v1/jobs", headers={"Authorization": basic("vera")},
                            timeout=10).json()["jobs"]) == jobs_before
    assert any(e["actor"] == "otto" and e["status"] == 403 and e["detail"] == "CSRF token missing or wrong"
               for e in _audit(renewer))


def test_the_chinese_page_in_the_browser(renewer: RenewerProcess, browser: Callable[[str], webdriver.Chrome]) -> None:
    """?lang=zh: headings, columns, buttons and states in Chinese; the language is kept by the links."""
    driver = browser("otto")
    driver.get(renewer.url + "/status?lang=zh")
    assert driver.find_element(By.TAG_NAME, "h1").text == "证书"
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    header = driver.find_element(By.CSS_SELECTOR, "#certificates tr").text
    for word in ("证书", "剩余天数", "当前在用", "下次续期"):
        assert word in header, header
    assert driver.find_element(By.ID, "renew-shop").text == "立即续期"
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "最近续期" in body and "审计记录" in body and "时间线" in body and "成功" in body
    assert "Renew now" not in body and "Recent renewals" not in body
    driver.find_element(By.LINK_TEXT, "English").click()
    WebDriverWait(driver, 20, 0.2).until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Certificates")

"""The economic report's HTML page in a real headless Chromium (Selenium): it opens with no SEVERE console
entry, both charts are inline SVGs that are drawn, nothing is fetched, and a full-page screenshot is saved
as the test's artifact (its path is printed; ``pytest -s`` or ``-rA`` shows it).

Chromium and its driver come from Debian (``apt-get install chromium chromium-driver``; ``.ci/run``
installs them). Without them the test fails when ``CI`` is set and is skipped elsewhere, saying what to
install."""

from __future__ import annotations

import base64
import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from broker.economics import economic_report, select_documents
from tests.economics_support import TENANT_ID, priced_documents, tenant

INSTALL = "Chromium is missing: apt-get install chromium chromium-driver"


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL)
        pytest.skip(INSTALL)
    return chromium, driver


@pytest.fixture
def browser():
    chromium, driver_path = _browser_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        message = "selenium is missing: pip install -e '.[dev]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_the_html_report_opens_in_chromium_with_its_charts(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from broker.economics_render import to_html

    documents = select_documents(priced_documents(), TENANT_ID).documents
    report = economic_report(documents, TENANT_ID, tenant(), date(2026, 3, 1), date(2026, 4, 30), "client")
    page = tmp_path / "economics-report.html"
    page.write_text(to_html(report), encoding="utf-8")
    text = page.read_text(encoding="utf-8")
    assert "http" not in text and "<script" not in text and "<link" not in text  # self-contained

    browser.get(page.as_uri())
    assert browser.title == "Economic report: acme, 2026-03-01 to 2026-04-30"
    charts = browser.find_elements(By.CSS_SELECTOR, "figure > svg")
    labels = [chart.get_attribute("aria-label") for chart in charts]
    assert labels == ["Monthly revenue against cost per client", "Allowance usage per contract"]
    for chart in charts:
        assert chart.size["width"] > 300 and chart.size["height"] > 200, chart.size
        # matplotlib drew bars (paths) inside it, and the glyphs they reference resolve
        assert len(chart.find_elements(By.CSS_SELECTOR, "path")) > 20
    total = browser.find_element(By.CSS_SELECTOR, "tr.total").text.split()
    assert total[:2] == ["Total", "5"] and "451.00" in total and "63.05" in total
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []

    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    png = base64.b64decode(shot["data"])
    artifact = Path(tmp_path) / "economics-report.png"
    artifact.write_bytes(png)
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    print(f"economic report screenshot: {artifact} (page: {page})")

"""The operator console in a real headless Chromium (Selenium, Debian's chromium and chromium-driver, the
fixture of ``tests/test_economics_html.py``: skipped without them, failing when ``CI`` is set): log in,
filter, search, open a document's history; a full-page screenshot of the invoice list is saved as the
test's artifact (its path is printed; ``pytest -s`` or ``-rA`` shows it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from broker.console.app import create_console_app
from broker.console.auth import SessionSigner
from broker.embedded import free_port
from tests.console_support import SECRET, TODAY, filled_database, operators
from tests.test_economics_html import browser  # noqa: F401 - the Chromium fixture (skip/fail as there)


@contextmanager
def served(tmp_path) -> Iterator[str]:
    """The console on the scenario's database, served by uvicorn on a free loopback port; yields its URL."""
    engine = filled_database(tmp_path)
    try:
        with serving(create_console_app(engine, operators(), SessionSigner(SECRET), today=lambda: TODAY)) as url:
            yield url
    finally:
        engine.dispose()


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port (in a thread); yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the console did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def click(driver, by: str, what: str) -> None:
    """Click the element and wait until the page it leads to replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, what).click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(page))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def log_in(driver, name: str) -> None:
    """On the login page: log in as the operator ``name`` (password ``<name>-pw``) and wait for the next page."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(f"{name}-pw")
    click(driver, By.ID, "login")


def _rows(driver) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, "table.invoices tbody tr")
    ]


def test_log_in_filter_and_open_a_documents_history(browser, tmp_path):  # noqa: F811 - the fixture
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with served(tmp_path) as url:
        browser.get(f"{url}/?q=100")
        assert browser.current_url.startswith(f"{url}/login?next=")
        log_in(browser, "bob")
        assert browser.current_url == f"{url}/?q=100"  # back where the login started
        assert [row[2] for row in _rows(browser)] == [
            "ACME-WO-1004-R1",
            "ACME-WO-1003-R1",
            "",  # not billable: no invoice
            "ACME-WO-1001-R1",
        ]
        assert "nordic-hvac" not in browser.page_source  # bob's tenant only

        browser.find_element(By.ID, "f-q").clear()
        Select(browser.find_element(By.ID, "f-status")).select_by_value("overdue")
        click(browser, By.ID, "apply")
        assert browser.current_url.endswith("status=overdue&q=")
        overdue = _rows(browser)
        assert [(row[0], *row[6:10]) for row in overdue] == [
            ("1004", "246.00 EUR", "100.00 EUR", "146.00 EUR", "partially paid overdue"),
            ("1003", "49.20 EUR", "", "", "delivered overdue"),
        ]

        browser.find_element(By.ID, "f-q").send_keys("1004")
        click(browser, By.ID, "apply")
        click(browser, By.LINK_TEXT, "1004")
        assert browser.title == "acme-fm:wo:1004 · operator console"
        assert browser.find_element(By.TAG_NAME, "h1").text == "Document acme-fm:wo:1004"
        history = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")[:3]]
            for row in browser.find_elements(By.CSS_SELECTOR, "table.history tbody tr")
        ]
        assert history == [
            ["2026-03-02 10:00:00.070", "invoice", "r1"],
            ["2026-03-02 10:00:00.080", "outcome", "created"],
            ["2026-03-02 10:00:00.090", "payment", "billing.invoice.partially_paid"],
        ]
        text = browser.find_element(By.TAG_NAME, "main").text
        assert "X-ACME-WO-1004-R1 / ACME-WO-1004-R1" in text and "146.00" in text and "HVAC labour" in text

        browser.get(f"{url}/")
        assert len(_rows(browser)) == 4
        assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1400, max(600, height))  # the whole page in one shot
        artifact = tmp_path / "console-invoices.png"
        assert browser.save_screenshot(str(artifact))
        png = artifact.read_bytes()
        assert png[:4] == b"\x89PNG" and len(png) > 20_000
        print(f"operator console screenshot: {artifact}")

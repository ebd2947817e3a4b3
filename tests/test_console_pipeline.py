"""The operator console over the real pipeline (issue 12): the embedded Tansu, the Xero emulator (spec
validation on), one ``python -m broker run`` worker, the status view reading the topics in a thread, and the
console served by uvicorn, for the whole module.

* In Chromium (the fixture of ``tests/test_economics_html.py``: skipped without it, failing when ``CI`` is
  set): an invoice for a contact Xero does not know is dead-lettered; the operator logs in, sees it
  dead-lettered with its reason, the contact is created, Replay delivers it exactly once; Replay again is
  refused and publishes nothing.
* Payments: ``broker payments`` (in-process, as in ``tests/test_payments.py``) takes the emulator's signed
  webhooks after "partially paid" then "mark paid"; ``billing.payments`` holds one record per change
  within seconds, and the console's API and pages show ``partially_paid`` then ``paid`` with exact amounts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import Engine

from broker.config import load_config
from broker.console.app import create_console_app
from broker.console.auth import SessionSigner
from broker.embedded import EmbeddedKafka
from broker.kafka import ensure_topics, publish
from broker.payments.service import payment_routes_of
from broker.settings import TOPIC_EVENTS, TOPIC_INVOICES
from broker.statusdb.read import InvoiceRow, document_dead_letters, get_invoice
from connectors.sdk.oauth2 import MemoryTokenStore
from connectors.xero.emulator import XeroEmulator
from tests.conftest import WorkerProcess
from tests.console_support import SECRET, operators, status_view
from tests.delivery_support import FAST_ENV, ORG_ACME, ORG_NORDIC, delivery_config, topic_records, wait_for, work_order
from tests.test_console_browser import click, log_in, serving
from tests.test_economics_html import browser  # noqa: F401 - the Chromium fixture (skip/fail as there)
from tests.test_payments import Service, payments, secrets_env  # noqa: F401 - secrets_env is a fixture

pytestmark = pytest.mark.integration

#: The contact of client CLI-NEW: unknown to Xero until the replay test creates it (the fix).
NEW_CONTACT = "3f1c2a10-5b1e-4c7a-9d01-0000000c0de5"
XERO_KEY = "console-pipeline-xero-webhook-key"
BOB = ("bob", "bob-pw")


@dataclass
class Env:
    kafka: str
    xero: XeroEmulator
    config: Path
    worker: WorkerProcess
    engine: Engine
    url: str

    def invoice(self, key: str) -> InvoiceRow | None:
        return get_invoice(self.engine, key)

    def wait_status(self, key: str, status: str, timeout: float = 60, outcome: str | None = None) -> InvoiceRow:
        """The version ``key`` once the status view shows it ``status`` (and, when given, with the deliver
        stage's ``outcome`` read too: a dead letter may be read before the outcome that gives its reason)."""
        wait_for(
            lambda: (row := self.invoice(key)) is not None and row.status == status and outcome in (None, row.outcome),
            timeout=timeout,
            what=f"{key} {status} in the status view (now {getattr(self.invoice(key), 'status', None)})",
            workers=[self.worker],
        )
        row = self.invoice(key)
        assert row is not None
        return row

    def invoices(self, number: str) -> list[dict]:
        return [inv for inv in self.xero.invoices() if inv["InvoiceNumber"] == number]


@pytest.fixture(scope="module")
def env(xero_validator, tmp_path_factory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("console-pipeline")
    # the payments service reads invoices with its own connection: the demo refresh token stays usable
    emulator = XeroEmulator(
        tenant_ids=(ORG_ACME, ORG_NORDIC),
        request_validator=xero_validator,
        webhook_key=XERO_KEY,
        refresh_grace_seconds=1800,
    )
    with EmbeddedKafka() as kafka, emulator as xero:
        clients = {"acme-fm": {"CLI-NEW": {"name": "Cliente Novo, Lda", "contact_id": NEW_CONTACT}}}
        config = delivery_config(tmp, xero.url, clients=clients)
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
        raw["tenants"]["acme-fm"]["billing"]["payments"] = {"webhook_secret_env": "XERO_WEBHOOK_KEY"}
        config.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
        ensure_topics(kafka.bootstrap, 4)
        worker = WorkerProcess(config, kafka.bootstrap, tmp, **FAST_ENV).start()
        try:
            with status_view(kafka.bootstrap, tmp) as engine:
                app = create_console_app(engine, operators(), SessionSigner(SECRET), bootstrap=kafka.bootstrap)
                with serving(app) as url:
                    yield Env(kafka.bootstrap, xero, config, worker, engine, url)
        finally:
            worker.stop()
        assert not xero.validation_failures, xero.validation_failures


def _cells(driver, table: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, f"table.{table} tbody tr")
    ]


def _table_html(page: str, cls: str) -> str:
    """The HTML inside the page's table of class ``cls``."""
    return page.split(f'<table class="{cls}">', 1)[1].split("</table>", 1)[0]


def _copies(kafka: str, order_key: str) -> int:
    """How many records of ``order_key`` ``billing.invoices`` holds (the priced one and replayed copies)."""
    return sum(1 for r in topic_records(kafka, TOPIC_INVOICES) if r.key == order_key.encode())


def test_replay_a_dead_letter_in_the_console_and_see_it_delivered_once(env, browser):  # noqa: F811 - the fixture
    from selenium.webdriver.common.by import By

    order_key, key, number = "acme-fm:wo:RPL-1", "acme-fm:wo:RPL-1:r1", "ACME-WO-RPL-1-R1"
    publish(env.kafka, TOPIC_EVENTS, [work_order("acme-fm", "RPL-1", client="CLI-NEW")])
    env.wait_status(key, "dead_lettered", outcome="dead_lettered")
    wait_for(lambda: document_dead_letters(env.engine, order_key), timeout=30, what="the dead letter in the view")
    [dead] = document_dead_letters(env.engine, order_key)

    browser.get(f"{env.url}/documents/{order_key}")
    log_in(browser, "bob")
    [version] = _cells(browser, "versions")
    assert version[:3] == [key, number, "dead lettered"]
    assert NEW_CONTACT in version[-1] and "does not exist" in version[-1]  # the reason
    [row] = _cells(browser, "dead-letters")
    assert row[0] == dead.id and row[2:4] == ["deliver", "permanent"] and row[5:8] == ["400", "1", "0"]
    assert NEW_CONTACT in row[4] and "does not exist" in row[4]
    assert env.invoices(number) == []

    env.xero.add_contact("Cliente Novo, Lda", ORG_ACME, contact_id=NEW_CONTACT)  # the fix
    click(browser, By.CSS_SELECTOR, "table.dead-letters button.replay")
    notice = browser.find_element(By.CSS_SELECTOR, "p.notice").text
    assert notice.startswith(f"Replayed {dead.id} to {TOPIC_INVOICES}:"), notice
    delivered = env.wait_status(key, "delivered")
    assert delivered.outcome == "created" and delivered.external_number == number
    browser.refresh()
    [version] = _cells(browser, "versions")
    assert version[2] == "delivered" and version[6] == "created"
    assert [inv["InvoiceID"] for inv in env.invoices(number)] == [delivered.external_id]
    assert _copies(env.kafka, order_key) == 2  # the original and the one replay

    click(browser, By.CSS_SELECTOR, "table.dead-letters button.replay")  # again: the console's guard
    notice = browser.find_element(By.CSS_SELECTOR, "p.notice").text
    assert notice.startswith(f"Not replayed: dead letter {dead.id} was replayed by bob at "), notice
    assert _copies(env.kafka, order_key) == 2 and len(env.invoices(number)) == 1
    assert env.wait_status(key, "delivered").outcome == "created"
    audit = httpx.get(f"{env.url}/api/audit", params={"action": "replay_dead_letter"}, auth=BOB).json()
    assert [(r["target"], r["outcome"]) for r in audit["items"]] == [(dead.id, "refused"), (dead.id, "ok")]
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_partially_paid_then_paid_in_xero_shows_in_the_console(env, secrets_env, monkeypatch):  # noqa: F811
    order_key, key, number = "acme-fm:wo:PAY-1", "acme-fm:wo:PAY-1:r1", "ACME-WO-PAY-1-R1"
    publish(env.kafka, TOPIC_EVENTS, [work_order("acme-fm", "PAY-1")])
    delivered = env.wait_status(key, "delivered")
    assert delivered.total is not None and delivered.external_id is not None
    total, part = delivered.total, Decimal("20.00")
    monkeypatch.setenv("XERO_WEBHOOK_KEY", XERO_KEY)
    routes = payment_routes_of(load_config(env.config), token_store=MemoryTokenStore())

    def records() -> list[tuple[str, str, str, str]]:
        return [
            (r["type"], r["data"]["amount"], r["data"]["amount_paid"], r["data"]["amount_due"])
            for r in payments(env.kafka)
            if r["key"] == key
        ]

    def paid_in_xero(amount: Decimal | None, count: int) -> None:
        """Mark ``amount`` (``None``: the rest) paid in the emulator: its webhook gives the ``count``-th record
        of the invoice on billing.payments within a few seconds, then the status view reads it."""
        env.xero.mark_paid(str(delivered.external_id), amount)
        started = time.monotonic()
        wait_for(lambda: len(records()) >= count, timeout=10, what=f"payment record {count} on billing.payments")
        assert time.monotonic() - started < 5 and len(records()) == count
        env.wait_status(key, "paid" if amount is None else "partially_paid", timeout=10)

    with httpx.Client(base_url=env.url, auth=BOB) as console:

        def shown(state: str, paid: Decimal) -> None:
            """The console's API: the document's version and payments, and the invoice list, exact amounts."""
            due = str(total - paid)
            doc = console.get(f"/api/documents/{order_key}").json()
            [version] = doc["versions"]
            assert (version["status"], version["payment_state"]) == (state, state)
            assert (version["amount_paid"], version["amount_due"]) == (str(paid), due)
            assert (doc["payments"][-1]["state"], doc["payments"][-1]["amount_paid"]) == (state, str(paid))
            [item] = console.get("/api/invoices", params={"q": "PAY-1"}).json()["items"]
            assert (item["status"], item["amount_paid"], item["amount_due"]) == (state, str(paid), due)

        with Service(env.kafka, routes) as service:
            env.xero.webhooks.url = f"{service.url}/webhooks/payments/xero/acme-fm"
            paid_in_xero(part, 1)
            assert records() == [("billing.invoice.partially_paid", "20.00", "20.00", str(total - part))]
            shown("partially_paid", part)
            paid_in_xero(None, 2)
            assert records()[1] == ("billing.invoice.paid", str(total - part), str(total), "0.00")
            shown("paid", total)
            assert env.xero.webhooks.wait_idle() and len(records()) == 2

        found = console.get("/api/invoices", params={"status": "paid"}).json()
        assert [i["invoice_key"] for i in found["items"]] == [key] and found["status_counts"]["paid"] == 1
        assert console.get("/api/invoices", params={"status": "partially_paid"}).json()["items"] == []

    with httpx.Client(base_url=env.url) as pages:  # the pages, after logging in with the form
        assert pages.post("/login", data={"username": "bob", "password": "bob-pw"}).status_code == 303
        listed = pages.get("/", params={"status": "paid"}).text
        assert number in listed and '<span class="badge s-paid">paid</span>' in listed
        assert f"<td class=num>{total} EUR</td><td class=num>{total} EUR</td><td class=num>0.00 EUR</td>" in listed
        page = pages.get(f"/documents/{order_key}").text
        versions, payments_table = _table_html(page, "versions"), _table_html(page, "payments")
        assert '<span class="badge s-paid">paid</span>' in versions
        assert f"<td class=num>{total} EUR</td><td class=num>0.00 EUR</td>" in versions
        assert payments_table.count("<tr>") == 3  # the header and two records
        assert (
            f'<span class="badge s-partially_paid">partially paid</span></td><td class=num>{part} EUR</td>'
            f"<td class=num>{part} EUR</td><td class=num>{total - part} EUR</td>"
        ) in payments_table
        assert (
            f'<span class="badge s-paid">paid</span></td><td class=num>{total - part} EUR</td>'
            f"<td class=num>{total} EUR</td><td class=num>0.00 EUR</td>"
        ) in payments_table

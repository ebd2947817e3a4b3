"""``broker payments`` end to end for QuickBooks, PayPal, FreshBooks (webhooks) and Zoho, InvoiceXpress (polled).

Nothing is mocked: the five emulators on loopback send their systems' real signed webhooks (or are polled),
one payments service (uvicorn in a thread) reads the invoices back through the connectors and publishes to
``billing.payments`` on one embedded Tansu, shared by the module's tests (each test looks at its own
system's records only). Invoices are created by the connectors themselves (``deliver``), so they carry the
broker's marker.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal as D
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from broker.payments.service import PaymentRoute
from connectors.freshbooks.connector import FreshBooksConnector
from connectors.freshbooks.emulator import FreshBooksEmulator
from connectors.freshbooks.payments import FreshBooksPayments
from connectors.invoicexpress.connector import InvoiceXpressConnector
from connectors.invoicexpress.emulator import InvoiceXpressEmulator, default_accounts
from connectors.invoicexpress.payments import InvoiceXpressPayments
from connectors.paypal.connector import PayPalConnector
from connectors.paypal.emulator import DEFAULT_WEBHOOK_ID, PayPalEmulator
from connectors.paypal.payments import PayPalPayments
from connectors.quickbooks.connector import QuickBooksConnector
from connectors.quickbooks.emulator import QuickBooksEmulator
from connectors.quickbooks.payments import QuickBooksPayments
from connectors.sdk.interface import Connector
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.oauth2 import MemoryTokenStore
from connectors.sdk.payments import PaymentSource
from connectors.zoho.connector import ZohoConnector
from connectors.zoho.emulator import ZohoEmulator
from connectors.zoho.payments import ZohoPayments
from tests import test_freshbooks_connector as fb
from tests import test_invoicexpress_connector as ix
from tests import test_paypal_connector as pp
from tests import test_quickbooks_connector as qb
from tests import test_zoho_connector as zo
from tests.test_payments import Service, amounts, payments

TENANT = "acme"
QBO_VERIFIER = "qbo-verifier-token-test"
FB_VERIFIER = "fb-verifier-test-0123"
POLL_SECONDS = 1.0


@dataclass
class System:
    """One billing system of the module: its emulator, how to make its connector, its payment source."""

    emulator: Any
    connector: Callable[[], Connector]
    source: PaymentSource


@dataclass
class World:
    bootstrap: str
    service: Service
    systems: dict[str, System]

    def hook_url(self, system: str) -> str:
        return f"{self.service.url}/webhooks/payments/{system}/{TENANT}"


def call(system: System, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """``fn(connector)`` on a fresh connector of ``system``, in a loop of its own (the service has its own)."""

    async def go() -> Any:
        connector = system.connector()
        try:
            return await fn(connector)
        finally:
            await connector.aclose()

    return asyncio.run(go())


def deliver(system: System, invoice: Invoice) -> str:
    """Create ``invoice`` through the system's connector; its external id."""
    return str(call(system, lambda c: c.deliver(invoice)).external_id)


def records_of(bootstrap: str, system: str, external_id: str) -> list[dict]:
    return [
        r
        for r in payments(bootstrap)
        if r["data"]["billing_system"] == system and r["data"]["external_id"] == external_id
    ]


def wait_for(bootstrap: str, system: str, external_id: str, count: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = records_of(bootstrap, system, external_id)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from broker.embedded import EmbeddedKafka

    with pytest.MonkeyPatch.context() as env, EmbeddedKafka() as kafka:
        for name, value in {
            "QBO_CLIENT_SECRET": qb.SECRET,
            "QBO_REFRESH_TOKEN": qb.REFRESH,
            "PAYPAL_CLIENT_SECRET": pp.SECRET,
            "FRESHBOOKS_CLIENT_SECRET": fb.SECRET,
            "FRESHBOOKS_REFRESH_TOKEN": fb.REFRESH,
            "ZOHO_CLIENT_SECRET": zo.SECRET,
            "ZOHO_REFRESH_TOKEN": zo.REFRESH,
            "INVOICEXPRESS_API_KEY": ix.KEY,
        }.items():
            env.setenv(name, value)
        qbo = QuickBooksEmulator(
            client_secret=qb.SECRET, refresh_token=qb.REFRESH, realm_ids=(qb.REALM,), webhook_verifier=QBO_VERIFIER
        ).start()
        paypal = PayPalEmulator(client_secret=pp.SECRET, account_email=pp.ACCOUNT).start()
        freshbooks = FreshBooksEmulator(
            client_secret=fb.SECRET, refresh_token=fb.REFRESH, refresh_grace_seconds=3600, webhook_verifier=FB_VERIFIER
        ).start()
        zoho = ZohoEmulator(
            client_id="1000.UNIT",
            client_secret=zo.SECRET,
            refresh_token=zo.REFRESH,
            contacts={zo.CUSTOMER: {"contact_name": "Hotel Atlântico Lisboa, S.A.", "email": "contas@hotel.example"}},
        ).start()
        accounts = default_accounts()
        accounts["acme-demo"]["api_key"] = ix.KEY
        invoicexpress = InvoiceXpressEmulator(accounts=accounts).start()
        makers: dict[str, tuple[Any, type[Connector], dict[str, Any]]] = {
            "quickbooks": (qbo, QuickBooksConnector, qb.settings_for(qbo)),
            "paypal": (paypal, PayPalConnector, pp.settings_for(paypal)),
            "freshbooks": (freshbooks, FreshBooksConnector, fb.settings_for(freshbooks)),
            "zoho": (zoho, ZohoConnector, zo.settings(zoho)),
            "invoicexpress": (invoicexpress, InvoiceXpressConnector, ix.settings_for(invoicexpress)),
        }
        secrets = {"quickbooks": QBO_VERIFIER, "paypal": DEFAULT_WEBHOOK_ID, "freshbooks": FB_VERIFIER}
        classes: dict[str, type[PaymentSource]] = {
            "quickbooks": QuickBooksPayments,
            "paypal": PayPalPayments,
            "freshbooks": FreshBooksPayments,
            "zoho": ZohoPayments,
            "invoicexpress": InvoiceXpressPayments,
        }
        systems: dict[str, System] = {}
        for name, (emu, cls, settings) in makers.items():
            # one token store per system, shared by the service's connector and the tests' (FreshBooks'
            # refresh tokens are single-use)
            store = MemoryTokenStore()

            def connector(
                cls: type[Connector] = cls, settings: dict = settings, store: MemoryTokenStore = store
            ) -> Any:
                return cls(settings, tenant=TENANT, token_store=store)

            secret = secrets.get(name)
            source = classes[name](connector(), secret=secret.encode() if secret else None)
            systems[name] = System(emu, connector, source)
        routes = {
            (name, TENANT): PaymentRoute(system.source, poll_seconds=POLL_SECONDS) for name, system in systems.items()
        }
        try:
            with Service(kafka.bootstrap, routes) as service:
                built = World(kafka.bootstrap, service, systems)
                qbo.webhooks.url = built.hook_url("quickbooks")
                paypal.webhooks.url = built.hook_url("paypal")
                yield built
        finally:
            for emu in (qbo, paypal, freshbooks, zoho, invoicexpress):
                emu.stop()
                assert emu.server_errors == []


# --------------------------------------------------------------------------- QuickBooks
def test_quickbooks_payment_webhooks_partial_then_paid_redelivered_and_forged(world):
    system = world.systems["quickbooks"]
    emu: QuickBooksEmulator = system.emulator
    invoice = qb.make_invoice("ACME-WO-5101-R1", tenant=TENANT)
    ident = deliver(system, invoice)
    total = invoice.total

    emu.pay(qb.REALM, ident, D("50.00"))
    first = wait_for(world.bootstrap, "quickbooks", ident, 1)
    assert [amounts(r) for r in first] == [("billing.invoice.partially_paid", "50.00", "50.00", str(total - 50))]
    assert first[0]["key"] == invoice.invoice_key and first[0]["data"]["invoice_number"] == "ACME-WO-5101-R1"
    assert first[0]["data"]["currency"] == "EUR" and first[0]["data"]["total"] == str(total)

    emu.pay(qb.REALM, ident)
    both = wait_for(world.bootstrap, "quickbooks", ident, 2)
    assert amounts(both[1]) == ("billing.invoice.paid", str(total - 50), str(total), "0.00")

    emu.webhooks.redeliver()  # Intuit retries the same notification
    assert emu.webhooks.wait_idle() and emu.webhooks.deliveries[-1][1] == 200
    name, body = emu.webhooks.sent[-1]
    assert name == "Payment.Create" and json.loads(body)["eventNotifications"][0]["realmId"] == qb.REALM
    forged = httpx.post(
        world.hook_url("quickbooks"), content=body, headers={"intuit-signature": emu.webhook_signature(body, "x")}
    )
    assert forged.status_code == 401 and forged.json()["detail"] == "header 'intuit-signature' does not match the body"
    unsigned = httpx.post(world.hook_url("quickbooks"), content=body)
    assert unsigned.status_code == 401
    time.sleep(0.3)
    assert len(records_of(world.bootstrap, "quickbooks", ident)) == 2


# --------------------------------------------------------------------------- PayPal
def paypal_headers(transmission_id: str, when: datetime, sig: str = "c2lnbmF0dXJl") -> dict[str, str]:
    return {
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "PAYPAL-TRANSMISSION-SIG": sig,
        "PAYPAL-CERT-URL": "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


def test_paypal_webhooks_verified_by_paypal_partial_then_paid_forged_tampered_and_stale(world):
    system = world.systems["paypal"]
    emu: PayPalEmulator = system.emulator
    invoice = pp.make_invoice("ACME-WO-5201-R1")
    ident = deliver(system, invoice)
    total = invoice.total

    emu.record_payment(ident, D("50.00"))
    first = wait_for(world.bootstrap, "paypal", ident, 1)
    assert [amounts(r) for r in first] == [("billing.invoice.partially_paid", "50.00", "50.00", str(total - 50))]
    assert first[0]["key"] == invoice.invoice_key and first[0]["data"]["invoice_number"] == "ACME-WO-5201-R1"

    emu.record_payment(ident)
    both = wait_for(world.bootstrap, "paypal", ident, 2)
    assert amounts(both[1]) == ("billing.invoice.paid", str(total - 50), str(total), "0.00")
    name, body = emu.webhooks.sent[-1]
    assert name == "INVOICING.INVOICE.PAID" and json.loads(body)["resource"]["id"] == ident

    emu.webhooks.redeliver()  # a new transmission of the same event: verified, nothing new
    assert emu.webhooks.wait_idle() and emu.webhooks.deliveries[-1][1] == 200

    now = datetime.now(UTC)
    forged = httpx.post(world.hook_url("paypal"), content=body, headers=paypal_headers(str(uuid.uuid1()), now))
    assert forged.status_code == 401 and "FAILURE" in forged.json()["detail"]
    stale = httpx.post(
        world.hook_url("paypal"),
        content=body,
        headers=paypal_headers(str(uuid.uuid1()), datetime(2026, 1, 1, tzinfo=UTC)),
    )
    assert stale.status_code == 401 and "tolerance is 300 s" in stale.json()["detail"]
    assert httpx.post(world.hook_url("paypal"), content=body).status_code == 401  # no transmission headers
    time.sleep(0.3)
    assert len(records_of(world.bootstrap, "paypal", ident)) == 2
    metrics = httpx.get(f"{world.service.url}/metrics/").text
    assert 'broker_payment_webhooks_refused_total{billing_system="paypal",reason="stale"}' in metrics


@pytest.mark.parametrize(
    ("name", "invoice", "amounts_voided", "event"),
    [
        # QBO zeroes a voided invoice's amounts (the emulator writes them as the integer 0, as QBO's JSON does)
        ("quickbooks", qb.make_invoice("ACME-WO-5102-R1", tenant=TENANT), ("0", "0", "0"), "Invoice.Void"),
        ("paypal", pp.make_invoice("ACME-WO-5202-R1"), ("0.00", "0.00", "0.00"), "INVOICING.INVOICE.CANCELLED"),
    ],
)
def test_void_or_cancel_is_one_voided_record(world, name, invoice, amounts_voided, event):
    system = world.systems[name]
    ident = deliver(system, invoice)
    previous = ExternalInvoice(external_id=ident, number=invoice.invoice_number, marker=invoice.invoice_key)
    retired = call(system, lambda c: c.retire(previous, key=f"k-{ident}", reason="cancelled", issued=date(2026, 3, 3)))
    assert retired.action == "voided" and system.emulator.webhooks.sent[-1][0] == event
    found = wait_for(world.bootstrap, name, ident, 1)
    assert [amounts(r) for r in found] == [("billing.invoice.voided", *amounts_voided)]
    assert found[0]["key"] == invoice.invoice_key


# --------------------------------------------------------------------------- FreshBooks
def test_freshbooks_callbacks_registered_verified_partial_then_paid_redelivered_and_forged(world):
    system = world.systems["freshbooks"]
    emu: FreshBooksEmulator = system.emulator
    callbacks = f"events/account/{fb.ACCOUNT}/events/callbacks"

    async def register(c: FreshBooksConnector) -> dict:
        url = c.url(c.settings.api_url, callbacks)
        resp = await c._api("POST", url, body={"callback": {"event": "payment", "uri": world.hook_url("freshbooks")}})
        return c._result(resp, "register")["callback"]

    callback = call(system, register)
    assert callback["verified"] is False
    assert emu.webhooks.wait_idle() and emu.webhooks.deliveries[-1][:2] == ("callback.verify", 200)

    invoice = fb.make_invoice("ACME-WO-5301-R1")
    ident = deliver(system, invoice)
    total = invoice.total
    emu.pay(fb.ACCOUNT, ident, D("10.00"))  # the callback is not verified yet: nothing is sent
    assert emu.webhooks.wait_idle() and emu.webhooks.sent[-1][0] == "callback.verify"

    async def confirm(c: FreshBooksConnector) -> dict:
        url = c.url(c.settings.api_url, f"{callbacks}/{callback['callbackid']}")
        resp = await c._api("PUT", url, body={"callback": {"verifier": FB_VERIFIER}})
        return c._result(resp, "verify")["callback"]

    assert call(system, confirm)["verified"] is True
    emu.pay(fb.ACCOUNT, ident, D("40.00"))
    first = wait_for(world.bootstrap, "freshbooks", ident, 1)
    assert [amounts(r) for r in first] == [("billing.invoice.partially_paid", "50.00", "50.00", str(total - 50))]
    assert first[0]["key"] == invoice.invoice_key and first[0]["data"]["invoice_number"] == "ACME-WO-5301-R1"

    emu.pay(fb.ACCOUNT, ident)
    both = wait_for(world.bootstrap, "freshbooks", ident, 2)
    assert amounts(both[1]) == ("billing.invoice.paid", str(total - 50), str(total), "0.00")

    emu.webhooks.redeliver()
    assert emu.webhooks.wait_idle() and emu.webhooks.deliveries[-1][1] == 200
    name, body = emu.webhooks.sent[-1]
    assert name == "payment.create"
    fields = dict(pair.split("=") for pair in body.decode().split("&"))
    forged = httpx.post(
        world.hook_url("freshbooks"),
        content=urlencode(fields).encode(),
        headers={"X-FreshBooks-Hmac-SHA256": emu.webhook_signature(fields, "another-verifier")},
    )
    assert forged.status_code == 401
    assert forged.json()["detail"] == "header 'x-freshbooks-hmac-sha256' does not match the form fields"
    time.sleep(0.3)
    assert len(records_of(world.bootstrap, "freshbooks", ident)) == 2


# --------------------------------------------------------------------------- polled: Zoho, InvoiceXpress
def polled(world: World, name: str, ident: str, pay: Callable[[], Any], count: int) -> list[dict]:
    """``pay()``, then the invoice's records once there are ``count``, which must take at most one polling
    interval (plus the reads and Kafka's acknowledgement)."""
    pay()
    started = time.monotonic()
    found = wait_for(world.bootstrap, name, ident, count, timeout=POLL_SECONDS * 2 + 3)
    assert time.monotonic() - started < POLL_SECONDS + 3
    return found


def test_zoho_polled_partial_then_paid_within_one_interval(world):
    system = world.systems["zoho"]
    emu: ZohoEmulator = system.emulator
    invoice = zo.make_invoice("ACME-WO-5401-R1")
    ident = deliver(system, invoice)
    time.sleep(POLL_SECONDS * 1.5)  # polls see the unpaid invoice: nothing is published
    assert records_of(world.bootstrap, "zoho", ident) == []

    first = polled(world, "zoho", ident, lambda: emu.record_payment(ident, D("50.00")), 1)
    assert [amounts(r) for r in first] == [("billing.invoice.partially_paid", "50.00", "50.00", "184.01")]
    assert first[0]["key"] == invoice.invoice_key and first[0]["data"]["total"] == "234.01"

    both = polled(world, "zoho", ident, lambda: emu.record_payment(ident), 2)
    assert amounts(both[1]) == ("billing.invoice.paid", "184.01", "234.01", "0.00")
    time.sleep(POLL_SECONDS * 2)  # later polls re-read the same second: no new record
    assert len(records_of(world.bootstrap, "zoho", ident)) == 2


def test_invoicexpress_polled_settled_within_one_interval(world):
    system = world.systems["invoicexpress"]
    emu: InvoiceXpressEmulator = system.emulator
    invoice = ix.make_invoice("ACME-WO-5501-R1")
    ident = deliver(system, invoice)
    emu.mark_paid(int(ident), D("50.00"))  # partly paid: still final, not reported (docs/payments.md)
    time.sleep(POLL_SECONDS * 1.5)
    assert records_of(world.bootstrap, "invoicexpress", ident) == []

    found = polled(world, "invoicexpress", ident, lambda: emu.mark_paid(int(ident)), 1)
    assert [amounts(r) for r in found] == [("billing.invoice.paid", "209.41", "209.41", "0.00")]
    assert found[0]["key"] == invoice.invoice_key
    time.sleep(POLL_SECONDS * 2)
    assert len(records_of(world.bootstrap, "invoicexpress", ident)) == 1

"""``broker payments`` end to end: emulators send their real signed webhooks (or are polled), the service
reads the invoices back through the connectors and publishes to ``billing.payments`` on a real Tansu.

Nothing is mocked: the Xero, Stripe and Moloni emulators on loopback, the ASGI service under uvicorn in a
thread, Kafka from the ``kafka`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import date
from decimal import Decimal as D

import httpx
import pytest
import uvicorn

from broker.embedded import free_port
from broker.intake import KafkaPublisher
from broker.kafka import ensure_topics
from broker.payments.recorder import Recorder
from broker.payments.service import PaymentRoute, create_payments_app
from broker.settings import TOPIC_PAYMENTS
from connectors.moloni.connector import MoloniConnector
from connectors.moloni.emulator import MoloniEmulator
from connectors.moloni.payments import MoloniPayments
from connectors.sdk.oauth2 import MemoryTokenStore
from connectors.stripe.connector import StripeConnector
from connectors.stripe.emulator import DEFAULT_API_KEY, StripeEmulator
from connectors.stripe.payments import StripePayments
from connectors.xero.connector import XeroConnector
from connectors.xero.emulator import XeroEmulator
from connectors.xero.payments import XeroPayments
from tests.delivery_support import topic_records
from tests.test_moloni_connector import make_invoice as moloni_invoice
from tests.test_moloni_connector import settings_for as moloni_settings
from tests.test_xero_connector import settings_for as xero_settings

XERO_KEY = "test-xero-webhook-key"
STRIPE_SECRET = "whsec_test_payments"
TENANT = "acme-fm"


@pytest.fixture
def secrets_env(monkeypatch):
    for name, value in {
        "XERO_CLIENT_SECRET": "demo-secret",
        "XERO_REFRESH_TOKEN": "demo-refresh-token",
        "STRIPE_SECRET_KEY": DEFAULT_API_KEY,
        "MOLONI_CLIENT_SECRET": "demo-secret",
        "MOLONI_REFRESH_TOKEN": "demo-refresh-token",
    }.items():
        monkeypatch.setenv(name, value)


class Service:
    """The payments app under uvicorn in a thread (``with``); ``url`` once started."""

    def __init__(self, bootstrap: str, routes: dict[tuple[str, str], PaymentRoute]):
        ensure_topics(bootstrap, 2, [TOPIC_PAYMENTS])
        publisher = KafkaPublisher(bootstrap, timeout=5.0, max_batch_size=1, idempotent=False, topic=TOPIC_PAYMENTS)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_payments_app(routes, Recorder(publisher))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Service:
        self.thread.start()
        for _ in range(600):
            if self.server.started and httpx.get(f"{self.url}/readyz").status_code == 200:
                return self
            time.sleep(0.05)
        raise AssertionError("the payments service did not get ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def payments(bootstrap: str) -> list[dict]:
    """Every record on billing.payments (key and CloudEvent), oldest first."""
    records = sorted(topic_records(bootstrap, TOPIC_PAYMENTS), key=lambda r: (r.timestamp, r.partition, r.offset))
    return [{"key": r.key.decode(), **json.loads(r.value)} for r in records]


def wait_for_records(bootstrap: str, count: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = payments(bootstrap)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def amounts(record: dict) -> tuple[str, str, str, str]:
    data = record["data"]
    return record["type"], data["amount"], data["amount_paid"], data["amount_due"]


# --------------------------------------------------------------------------- Xero
def xero_invoice(emu: XeroEmulator, number: str, key: str) -> str:
    contact = emu.add_contact("Hotel Atlântico Lisboa, S.A.")
    return emu.add_invoice(
        {
            "Type": "ACCREC",
            "Contact": {"ContactID": contact},
            "InvoiceNumber": number,
            "Reference": f"WO 1001 broker:{key}",
            "Date": date.today().isoformat(),
            "DueDate": date.today().isoformat(),
            "CurrencyCode": "EUR",
            "Status": "AUTHORISED",
            "LineItems": [
                {
                    "Description": "HVAC labour",
                    "Quantity": 1,
                    "UnitAmount": 100,
                    "AccountCode": "200",
                    "TaxType": "OUTPUT2",
                }
            ],
        }
    )


def test_xero_webhooks_partially_paid_then_paid_deduplicated_and_forged_refused(kafka, secrets_env):
    emu = XeroEmulator(webhook_key=XERO_KEY).start()
    settings = xero_settings(emu, tax_types={"23": "OUTPUT2"})
    source = XeroPayments(
        XeroConnector(settings, tenant=TENANT, token_store=MemoryTokenStore()), secret=XERO_KEY.encode()
    )
    try:
        with Service(kafka, {("xero", TENANT): PaymentRoute(source)}) as service:
            emu.webhooks.url = f"{service.url}/webhooks/payments/xero/{TENANT}"
            assert emu.intent_to_receive() == {"ok": True, "bad_signature_status": 401, "good_signature_status": 200}
            ident = xero_invoice(emu, "ACME-WO-1001-R1", f"{TENANT}:wo:1001:r1")  # total 123.00 (23 % VAT)

            emu.mark_paid(ident, D("23.00"))
            first = wait_for_records(kafka, 1)
            assert [amounts(r) for r in first] == [("billing.invoice.partially_paid", "23.00", "23.00", "100.00")]
            record = first[0]
            assert record["key"] == f"{TENANT}:wo:1001:r1" and record["tenant"] == TENANT
            assert record["data"]["external_id"] == ident and record["data"]["invoice_number"] == "ACME-WO-1001-R1"
            assert record["data"]["billing_system"] == "xero" and record["data"]["currency"] == "EUR"

            emu.mark_paid(ident)
            both = wait_for_records(kafka, 2)
            assert [amounts(r) for r in both][1] == ("billing.invoice.paid", "100.00", "123.00", "0.00")

            # Xero retries the same body: answered 200, no second record
            emu.webhooks.redeliver()
            assert emu.webhooks.wait_idle()
            assert emu.webhooks.deliveries[-1][1] == 200
            # a forged webhook: another key, same shape -> 401, nothing read, nothing published
            body = json.dumps(
                {"events": [], "firstEventSequence": 9, "lastEventSequence": 9, "entropy": "X" * 20}
            ).encode()
            forged = httpx.post(
                emu.webhooks.url, content=body, headers={"x-xero-signature": emu.webhook_signature(body, "wrong-key")}
            )
            assert forged.status_code == 401 and forged.json()["detail"] == (
                "header 'x-xero-signature' does not match the body"
            )
            assert len(payments(kafka)) == 2
            metrics = httpx.get(f"{service.url}/metrics/").text
            assert 'broker_payment_webhooks_refused_total{billing_system="xero",reason="bad_signature"}' in metrics
            assert 'broker_payment_records_total{billing_system="xero",type="billing.invoice.paid"}' in metrics
    finally:
        emu.stop()


# --------------------------------------------------------------------------- Stripe
def test_stripe_webhooks_partial_then_paid_redelivery_forged_and_stale(kafka, secrets_env):
    emu = StripeEmulator(webhook_secret=STRIPE_SECRET).start()
    connector = StripeConnector({"api_url": emu.url, "secret_key_env": "STRIPE_SECRET_KEY"}, tenant=TENANT)
    source = StripePayments(connector, secret=STRIPE_SECRET.encode())
    try:
        with Service(kafka, {("stripe", TENANT): PaymentRoute(source)}) as service:
            url = f"{service.url}/webhooks/payments/stripe/{TENANT}"
            emu.webhooks.url = url
            customer = emu.add_customer("Hotel Atlântico Lisboa, S.A.")
            metadata = {"broker_invoice_key": f"{TENANT}:wo:2001:r1", "broker_invoice_number": "ACME-WO-2001-R1"}
            ident = emu.add_invoice(customer, 12345, metadata=metadata)

            emu.mark_partially_paid(ident, 2345)
            first = wait_for_records(kafka, 1)
            assert [amounts(r) for r in first] == [("billing.invoice.partially_paid", "23.45", "23.45", "100.00")]
            assert first[0]["key"] == f"{TENANT}:wo:2001:r1" and first[0]["data"]["invoice_number"] == "ACME-WO-2001-R1"

            emu.mark_paid(ident)
            both = wait_for_records(kafka, 2)
            assert amounts(both[1]) == ("billing.invoice.paid", "100.00", "123.45", "0.00")

            emu.webhooks.redeliver()  # Stripe's retry, signed anew
            assert emu.webhooks.wait_idle() and emu.webhooks.deliveries[-1][1] == 200

            name, body = emu.webhooks.sent[-1]
            assert name == "invoice.paid"
            stale = httpx.post(
                url, content=body, headers={"Stripe-Signature": emu.webhook_signature(body, int(time.time()) - 1000)}
            )
            assert stale.status_code == 401 and "tolerance is 300 s" in stale.json()["detail"]
            forged = httpx.post(
                url,
                content=body,
                headers={"Stripe-Signature": emu.webhook_signature(body, int(time.time()), "whsec_x")},
            )
            assert forged.status_code == 401
            assert len(payments(kafka)) == 2
            metrics = httpx.get(f"{service.url}/metrics/").text
            assert 'broker_payment_webhooks_refused_total{billing_system="stripe",reason="stale"}' in metrics
        # a restarted service reads billing.payments back: a redelivery still adds nothing
        again = StripeConnector({"api_url": emu.url, "secret_key_env": "STRIPE_SECRET_KEY"}, tenant=TENANT)
        restarted = StripePayments(again, secret=STRIPE_SECRET.encode())
        with Service(kafka, {("stripe", TENANT): PaymentRoute(restarted)}) as service:
            emu.webhooks.url = f"{service.url}/webhooks/payments/stripe/{TENANT}"
            emu.webhooks.redeliver()
            assert emu.webhooks.wait_idle() and emu.webhooks.deliveries[-1][1] == 200
            assert len(payments(kafka)) == 2
    finally:
        emu.stop()


# --------------------------------------------------------------------------- Moloni (polled)
def test_moloni_polled_partial_then_paid_within_one_interval(kafka, secrets_env):
    emu = MoloniEmulator().start()
    interval = 1.0
    try:
        invoice = moloni_invoice("ACME-WO-3001-R1")

        async def deliver() -> str:
            connector = MoloniConnector(moloni_settings(emu), tenant="acme", token_store=MemoryTokenStore())
            try:
                return (await connector.deliver(invoice)).external_id
            finally:
                await connector.aclose()

        document_id = int(asyncio.run(deliver()))
        connector = MoloniConnector(moloni_settings(emu), tenant="acme", token_store=MemoryTokenStore())
        source = MoloniPayments(connector)
        with Service(kafka, {("moloni", "acme"): PaymentRoute(source, poll_seconds=interval)}):
            time.sleep(interval)  # a poll or two: nothing paid, nothing published
            assert payments(kafka) == []
            emu.mark_paid(document_id, D("50.00"))
            started = time.monotonic()
            first = wait_for_records(kafka, 1, timeout=interval * 2 + 3)
            assert time.monotonic() - started < interval + 3
            total = str(invoice.total)
            assert [amounts(r) for r in first] == [
                ("billing.invoice.partially_paid", "50.00", "50.00", str(invoice.total - D("50.00")))
            ]
            assert first[0]["key"] == invoice.invoice_key and first[0]["data"]["external_id"] == str(document_id)

            emu.mark_paid(document_id)
            both = wait_for_records(kafka, 2, timeout=interval * 2 + 3)
            assert amounts(both[1]) == ("billing.invoice.paid", str(invoice.total - D("50.00")), total, "0.00")
            time.sleep(interval * 2)  # later polls re-read the same second: no new record
            assert len(payments(kafka)) == 2
    finally:
        emu.stop()

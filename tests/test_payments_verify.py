"""Unit tests of the payment sources' webhook verification and parsing (exact vectors, no network).

The expected signatures were computed outside Python, with ``openssl dgst -sha256 -hmac <key>``
(``| base64`` for Xero's Base64 form), over the exact bytes below.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from broker.payments.recorder import Recorder, cloud_event, event_id
from broker.payments.source import InvoiceState, Webhook, WebhookRefused
from broker.payments.stripe import StripePayments, stripe_signature
from broker.payments.xero import XeroPayments, xero_signature
from connectors.stripe.connector import StripeConnector
from connectors.xero.connector import XeroConnector

ORG = "00000000-0000-0000-0000-000000000001"
XERO_KEY = b"xero-test-key"
XERO_BODY = b'{"events":[],"firstEventSequence":1,"lastEventSequence":1,"entropy":"ABCDEFGHIJKLMNOPQRST"}'
XERO_SIGNATURE = "lyb3KMsPcT44Z605nN+Tr8Il4Z37fyNnbs1I5/bPMUA="
STRIPE_SECRET = b"whsec_test"
STRIPE_BODY = b'{"id":"evt_1","type":"invoice.paid"}'
STRIPE_T = 1700000000
STRIPE_V1 = "4aa90aa69730f112c87accbf54203d1076675eae3b18a5cb82b5ab9e7f5cd5bc"


def xero_source() -> XeroPayments:
    settings = {"xero_tenant_id": ORG, "client_id": "c", "client_secret_env": "X_SECRET", "refresh_token_env": "X_RT"}
    return XeroPayments(XeroConnector(settings, tenant="acme-fm"), secret=XERO_KEY)


def stripe_source(tolerance: float = 300.0) -> StripePayments:
    return StripePayments(
        StripeConnector({"secret_key_env": "S_KEY"}, tenant="acme-fm"), secret=STRIPE_SECRET, tolerance=tolerance
    )


def refusal(source, headers: dict[str, str], body: bytes, now: float = 0.0) -> WebhookRefused:
    with pytest.raises(WebhookRefused) as info:
        source.verify(Webhook(headers, body), now)
    return info.value


def test_xero_signature_vector_and_verification():
    assert xero_signature(XERO_KEY, XERO_BODY) == XERO_SIGNATURE
    source = xero_source()
    source.verify(Webhook({"x-xero-signature": XERO_SIGNATURE}, XERO_BODY), 0.0)  # no exception
    assert refusal(source, {}, XERO_BODY).reason == "bad_signature"
    wrong = refusal(source, {"x-xero-signature": XERO_SIGNATURE}, XERO_BODY + b" ")
    assert (wrong.reason, wrong.detail) == ("bad_signature", "header 'x-xero-signature' does not match the body")
    forged = xero_signature(b"another-key", XERO_BODY)
    assert refusal(source, {"x-xero-signature": forged}, XERO_BODY).reason == "bad_signature"


def test_xero_invoice_ids_keep_the_organisations_invoice_events_once():
    event = {"eventCategory": "INVOICE", "eventType": "UPDATE", "tenantId": ORG.upper(), "resourceId": "inv-1"}
    payload = {
        "events": [
            event,
            {**event, "resourceId": "inv-2"},
            event,
            {**event, "eventCategory": "CONTACT", "resourceId": "c-1"},
            {**event, "tenantId": "99999999-0000-0000-0000-000000000009", "resourceId": "other-org"},
        ]
    }
    assert xero_source().invoice_ids(payload) == ["inv-1", "inv-2"]
    assert xero_source().invoice_ids({"events": []}) == []  # intent to receive
    with pytest.raises(ValueError, match="events"):
        xero_source().invoice_ids({"nope": 1})


def test_stripe_signature_vector_tolerance_and_rolled_secrets():
    assert stripe_signature(STRIPE_SECRET, STRIPE_T, STRIPE_BODY) == STRIPE_V1
    source = stripe_source()
    header = f"t={STRIPE_T},v1={STRIPE_V1}"
    source.verify(Webhook({"stripe-signature": header}, STRIPE_BODY), STRIPE_T + 300)
    # several v1 (a secret being rolled): one match suffices; v0 is ignored
    source.verify(Webhook({"stripe-signature": f"t={STRIPE_T},v1=00ff,v1={STRIPE_V1},v0=aa"}, STRIPE_BODY), STRIPE_T)
    stale = refusal(source, {"stripe-signature": header}, STRIPE_BODY, now=STRIPE_T + 301)
    assert stale.reason == "stale" and "301 s from now; the tolerance is 300 s" in stale.detail
    assert refusal(source, {"stripe-signature": header}, STRIPE_BODY, now=STRIPE_T - 301).reason == "stale"
    # the timestamp is signed: moving it breaks the signature (bad_signature, checked before staleness)
    moved = refusal(source, {"stripe-signature": f"t={STRIPE_T + 1},v1={STRIPE_V1}"}, STRIPE_BODY, now=STRIPE_T)
    assert moved.reason == "bad_signature"
    for bad in ("", f"v1={STRIPE_V1}", f"t=abc,v1={STRIPE_V1}", f"t={STRIPE_T}"):
        assert (
            refusal(source, {"stripe-signature": bad} if bad else {}, STRIPE_BODY, STRIPE_T).reason == "bad_signature"
        )


def test_stripe_invoice_ids_of_invoice_and_invoice_payment_events():
    source = stripe_source()
    assert source.invoice_ids({"type": "invoice.paid", "data": {"object": {"object": "invoice", "id": "in_1"}}}) == [
        "in_1"
    ]
    payment = {"object": "invoice_payment", "id": "inpay_1", "invoice": "in_2"}
    assert source.invoice_ids({"type": "invoice_payment.paid", "data": {"object": payment}}) == ["in_2"]
    assert source.invoice_ids({"type": "customer.created", "data": {"object": {"id": "cus_1"}}}) == []
    with pytest.raises(ValueError, match="no invoice id"):
        source.invoice_ids({"type": "invoice.paid", "data": {"object": {"id": "cus_1"}}})


def test_cloud_event_amounts_are_exact_strings_and_ids_deterministic():
    state = InvoiceState(
        "inv-1", "ACME-WO-1-R1", "acme-fm:wo:1:r1", "EUR", D("123.00"), D("23.00"), D("100.00"), "partially_paid"
    )
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    event = cloud_event("acme-fm", "xero", state, D("0"), now)
    assert event["type"] == "billing.invoice.partially_paid" and event["time"] == "2026-03-02T10:00:00Z"
    assert event["data"] == {
        "invoice_key": "acme-fm:wo:1:r1",
        "invoice_number": "ACME-WO-1-R1",
        "billing_system": "xero",
        "external_id": "inv-1",
        "currency": "EUR",
        "status": "partially_paid",
        "amount": "23.00",
        "amount_paid": "23.00",
        "amount_due": "100.00",
        "total": "123.00",
    }
    assert event["id"] == event_id("acme-fm", "xero", "inv-1", "partially_paid", D("23.0"))
    assert event["id"] != event_id("acme-fm", "xero", "inv-1", "paid", D("23.00"))
    paid = cloud_event(
        "acme-fm",
        "xero",
        InvoiceState("inv-1", None, "k", "EUR", D("123.00"), D("123.00"), D("0.00"), "paid"),
        D("23.00"),
        now,
    )
    assert (paid["data"]["amount"], paid["data"]["amount_due"]) == ("100.00", "0.00")


def test_recorder_remembers_records_read_back():
    recorder = Recorder(publisher=None)  # type: ignore[arg-type] - remember() needs no publisher
    state = InvoiceState("inv-1", "N", "k", "EUR", D("10.00"), D("10.00"), D("0.00"), "paid")
    event = cloud_event("t", "xero", state, D("0"), datetime(2026, 3, 2, tzinfo=UTC))
    recorder.remember(json.dumps(event).encode())
    recorder.remember(b"not json")
    assert recorder.last == {("t", "xero", "inv-1"): ("paid", D("10.00"))}
    assert recorder.latest == {("t", "xero"): datetime(2026, 3, 2, tzinfo=UTC)}

"""Unit tests of the payment sources' webhook verification and parsing (exact vectors, no network).

The expected signatures were computed outside Python, with ``openssl dgst -sha256 -hmac <key>``
(``-binary | base64`` for the Base64 forms of Xero, QuickBooks and FreshBooks), over the exact bytes below.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from broker.payments.recorder import Recorder, cloud_event, event_id
from connectors.freshbooks.connector import FreshBooksConnector
from connectors.freshbooks.payments import FreshBooksPayments, form_fields, freshbooks_signature
from connectors.invoicexpress.connector import InvoiceXpressConnector
from connectors.invoicexpress.payments import InvoiceXpressPayments
from connectors.paypal.connector import PayPalConnector
from connectors.paypal.payments import PayPalPayments, verification_request
from connectors.quickbooks.connector import QuickBooksConnector
from connectors.quickbooks.payments import QuickBooksPayments, intuit_signature
from connectors.sdk.payments import InvoiceState, PaymentSource, ReadMemo, Webhook, WebhookRefused, payment_status
from connectors.stripe.connector import StripeConnector
from connectors.stripe.payments import StripePayments, stripe_signature
from connectors.xero.connector import XeroConnector
from connectors.xero.payments import XeroPayments, xero_signature
from connectors.zoho.connector import ZohoConnector
from connectors.zoho.payments import ZohoPayments, zoho_time

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


# --------------------------------------------------------------------------- QuickBooks
REALM = "9341452000000001"
QBO_KEY = b"qbo-verifier"
QBO_BODY = (
    b'{"eventNotifications":[{"realmId":"9341452000000001","dataChangeEvent":{"entities":[{"name":"Payment",'
    b'"id":"131","operation":"Create","lastUpdated":"2026-03-02T10:00:00.000Z"}]}}]}'
)
QBO_SIGNATURE = "msuQpNsRLFMXQBeqA+ue90z0h7RZtsrt8go8Vksabm4="


def qbo_source() -> QuickBooksPayments:
    settings = {"realm_id": REALM, "client_id": "c", "client_secret_env": "Q_S", "refresh_token_env": "Q_R"}
    return QuickBooksPayments(QuickBooksConnector(settings, tenant="acme"), secret=QBO_KEY)


def test_quickbooks_intuit_signature_vector_and_verification():
    assert intuit_signature(QBO_KEY, QBO_BODY) == QBO_SIGNATURE
    source = qbo_source()
    source.verify(Webhook({"intuit-signature": QBO_SIGNATURE}, QBO_BODY), 0.0)
    assert refusal(source, {}, QBO_BODY).detail == "header 'intuit-signature' is missing"
    assert refusal(source, {"intuit-signature": QBO_SIGNATURE}, QBO_BODY.replace(b"131", b"132")).reason == (
        "bad_signature"
    )
    forged = intuit_signature(b"another-token", QBO_BODY)
    assert refusal(source, {"intuit-signature": forged}, QBO_BODY).reason == "bad_signature"


def test_quickbooks_entities_of_the_realm_in_both_payload_shapes():
    source = qbo_source()
    entity = {"name": "Invoice", "id": "130", "operation": "Update"}
    legacy = {
        "eventNotifications": [
            {
                "realmId": REALM,
                "dataChangeEvent": {
                    "entities": [
                        entity,
                        {**entity, "id": "140", "operation": "Delete"},
                        {"name": "Payment", "id": "131", "operation": "Create"},
                        {"name": "Customer", "id": "58", "operation": "Update"},
                        entity,
                    ]
                },
            },
            {"realmId": "123", "dataChangeEvent": {"entities": [{**entity, "id": "999"}]}},
        ]
    }
    assert source.invoice_ids(legacy) == ["130"]
    assert source.payment_ids(legacy) == ["131"]
    cloud = [
        {"type": "qbo.invoice.updated.v1", "intuitentityid": "150", "intuitaccountid": REALM},
        {"type": "qbo.payment.created.v1", "intuitentityid": "151", "intuitaccountid": REALM},
        {"type": "qbo.invoice.updated.v1", "intuitentityid": "152", "intuitaccountid": "123"},
    ]
    assert (source.invoice_ids(cloud), source.payment_ids(cloud)) == (["150"], ["151"])
    with pytest.raises(ValueError, match="eventNotifications"):
        source.invoice_ids({"nope": 1})
    with pytest.raises(ValueError, match="intuitentityid"):
        source.invoice_ids([{"type": "qbo.invoice.updated.v1"}])


# --------------------------------------------------------------------------- PayPal
PAYPAL_EVENT = b'{"id":"WH-1","event_type":"INVOICING.INVOICE.PAID","resource":{"id":"INV2-AAAA-BBBB"}}'
PAYPAL_T = 1772445600  # 2026-03-02T10:00:00Z


def paypal_hook(body: bytes = PAYPAL_EVENT, **changes: str) -> Webhook:
    headers = {
        "paypal-transmission-id": "69cd13f0-d67a-11e5-baa3-778b53f4ae55",
        "paypal-transmission-time": "2026-03-02T10:00:00Z",
        "paypal-transmission-sig": "c2ln",
        "paypal-cert-url": "https://api.paypal.com/v1/notifications/certs/CERT-1",
        "paypal-auth-algo": "SHA256withRSA",
    }
    headers.update(changes)
    return Webhook({k: v for k, v in headers.items() if v}, body)


def test_paypal_verification_request_carries_the_transmission_and_refuses_missing_or_stale():
    request = verification_request(paypal_hook(), "1JE4291016473214C", PAYPAL_T + 300, 300.0)
    assert request == {
        "auth_algo": "SHA256withRSA",
        "cert_url": "https://api.paypal.com/v1/notifications/certs/CERT-1",
        "transmission_id": "69cd13f0-d67a-11e5-baa3-778b53f4ae55",
        "transmission_sig": "c2ln",
        "transmission_time": "2026-03-02T10:00:00Z",
        "webhook_id": "1JE4291016473214C",
        "webhook_event": {"id": "WH-1", "event_type": "INVOICING.INVOICE.PAID", "resource": {"id": "INV2-AAAA-BBBB"}},
    }
    with pytest.raises(WebhookRefused) as missing:
        verification_request(paypal_hook(**{"paypal-transmission-sig": ""}), "W", PAYPAL_T, 300.0)
    assert (missing.value.reason, missing.value.detail) == (
        "bad_signature",
        "header 'PAYPAL-TRANSMISSION-SIG' is missing",
    )
    with pytest.raises(WebhookRefused) as stale:
        verification_request(paypal_hook(), "W", PAYPAL_T + 301, 300.0)
    assert stale.value.reason == "stale" and "301 s from now; the tolerance is 300 s" in stale.value.detail
    with pytest.raises(WebhookRefused) as not_json:
        verification_request(paypal_hook(b"[1]"), "W", PAYPAL_T, 300.0)
    assert not_json.value.reason == "bad_signature"


def test_paypal_invoice_ids_of_invoice_events():
    source = PayPalPayments(
        PayPalConnector({"client_id": "c", "client_secret_env": "P_S"}, tenant="acme"), secret=b"1JE4291016473214C"
    )
    assert source.invoice_ids({"event_type": "INVOICING.INVOICE.PAID", "resource": {"id": "INV2-1"}}) == ["INV2-1"]
    nested = {"event_type": "INVOICING.INVOICE.CANCELLED", "resource": {"invoice": {"id": "INV2-2"}}}
    assert source.invoice_ids(nested) == ["INV2-2"]
    assert source.invoice_ids({"event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {"id": "X"}}) == []
    with pytest.raises(ValueError, match=r"resource\.id"):
        source.invoice_ids({"event_type": "INVOICING.INVOICE.PAID", "resource": {}})


# --------------------------------------------------------------------------- FreshBooks
FB_KEY = b"fb-verifier"
FB_BODY = b"name=payment.create&object_id=2001&account_id=ACME01&business_id=4390001&identity_id=12345&user_id=1"
FB_SIGNATURE = "Ph7Lb2Xk7ywIl5IBsXX99JlmqcdP6TjTdJUQPaNr46o="  # over the JSON text of the six fields


def fb_source() -> FreshBooksPayments:
    settings = {"account_id": "ACME01", "client_id": "c", "client_secret_env": "F_S", "refresh_token_env": "F_R"}
    return FreshBooksPayments(FreshBooksConnector(settings, tenant="acme"), secret=FB_KEY)


def test_freshbooks_signature_vector_over_the_json_of_the_form_fields():
    fields = form_fields(FB_BODY)
    assert list(fields) == ["name", "object_id", "account_id", "business_id", "identity_id", "user_id"]
    assert freshbooks_signature(FB_KEY, fields) == FB_SIGNATURE
    source = fb_source()
    source.verify(Webhook({"x-freshbooks-hmac-sha256": FB_SIGNATURE}, FB_BODY), 0.0)
    moved = FB_BODY.replace(b"2001", b"2002")
    assert refusal(source, {"x-freshbooks-hmac-sha256": FB_SIGNATURE}, moved).detail == (
        "header 'x-freshbooks-hmac-sha256' does not match the form fields"
    )
    assert refusal(source, {}, FB_BODY).reason == "bad_signature"
    forged = freshbooks_signature(b"another", fields)
    assert refusal(source, {"x-freshbooks-hmac-sha256": forged}, FB_BODY).reason == "bad_signature"
    # the registration request carries the verifier itself: taken without a signature, it names nothing
    verify = b"name=callback.verify&object_id=2001&verifier=abc&account_id=ACME01"
    source.verify(Webhook({}, verify), 0.0)
    assert source.invoice_ids(source.parse(verify)) == []


def test_freshbooks_invoice_ids_of_the_tenants_account():
    source = fb_source()
    assert source.invoice_ids({"name": "invoice.update", "object_id": "77", "account_id": "ACME01"}) == ["77"]
    assert source.invoice_ids({"name": "invoice.update", "object_id": "77", "account_id": "OTHER"}) == []
    assert source.invoice_ids({"name": "payment.create", "object_id": "9", "account_id": "ACME01"}) == []
    with pytest.raises(ValueError, match="object_id"):
        source.parse(b"name=invoice.update")


# --------------------------------------------------------------------------- polled, shared helpers
def test_payment_status_memo_and_cursors():
    assert payment_status(D("0"), D("10.00")) == "open"
    assert payment_status(D("4.00"), D("6.00")) == "partially_paid"
    assert payment_status(D("10.00"), D("0.00")) == "paid"
    assert payment_status(D("0"), D("0"), voided=True) == "voided"
    memo = ReadMemo()
    memo.start()
    memo.note("1", ("t", "v"))
    assert memo.fresh("1", ("t", "v"))  # not confirmed yet: a record may still fail
    memo.confirm()
    assert not memo.fresh("1", ("t", "v")) and memo.fresh("1", ("t", "w"))
    when = datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC)
    assert zoho_time(when) == "2026-03-02T10:00:05+0000"
    zoho_settings = {"organization_id": "1", "client_id": "c", "client_secret_env": "Z_S", "refresh_token_env": "Z_R"}
    zoho: PaymentSource = ZohoPayments(ZohoConnector(zoho_settings, tenant="acme"))
    assert (zoho.resume_cursor(when), zoho.resume_cursor(None)) == ("2026-03-02T10:00:05+0000", None)


def test_invoicexpress_states_of_settled_and_canceled_documents():
    connector = InvoiceXpressConnector(
        {"account_name": "acme-demo", "api_key_env": "I_K", "tax_exemption": "M07"}, tenant="acme"
    )
    source = InvoiceXpressPayments(connector)
    doc = {"id": 9001, "sequence_number": "FT 1/1", "total": "209.41", "observations": "x\nbroker:acme:wo:1:r1"}
    settled = InvoiceState("9001", "FT 1/1", "acme:wo:1:r1", "EUR", D("209.41"), D("209.41"), D("0.00"), "paid")
    assert source.state_of({**doc, "status": "settled"}) == settled
    canceled = source.state_of({**doc, "status": "canceled"})
    assert canceled is not None and (canceled.status, canceled.amount_paid) == ("voided", D("0.00"))
    assert source.state_of({**doc, "status": "final"}) is None

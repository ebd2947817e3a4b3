"""The PayPal emulator over raw HTTP: auth, scopes, validation, uniqueness, arithmetic, search, send, faults.

Responses are checked against the official spec's response schemas (read mode) where the spec has one.
"""

from __future__ import annotations

import json
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from connectors.paypal.emulator import SCOPE_READWRITE, PayPalEmulator
from connectors.paypal.spec import SpecValidationError, load_spec, make_request_validator, validate_document

SPEC = Path(__file__).resolve().parent / "specs" / "paypal" / "invoicing_v2.json"
ACCOUNT = "billing@demo-business.example"


@pytest.fixture
def emu():
    emulator = PayPalEmulator(today=lambda: date(2026, 3, 2)).start()
    yield emulator
    emulator.stop()
    assert emulator.server_errors == []


def token(emulator: PayPalEmulator, client=("demo-client", "demo-secret")) -> str:
    resp = httpx.post(f"{emulator.url}/v1/oauth2/token", auth=client, data={"grant_type": "client_credentials"})
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def client_for(emulator: PayPalEmulator, **kw) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, headers={"Authorization": f"Bearer {token(emulator, **kw)}"}, timeout=5)


def invoice_body(number: str | None = "N-1", **overrides) -> dict:
    body = {
        "detail": {"currency_code": "EUR", "invoice_date": "2026-03-02", "payment_term": {"term_type": "NET_30"}},
        "primary_recipients": [{"billing_info": {"business_name": "Hotel A", "email_address": "ap@hotel.example"}}],
        "items": [
            # 3.25 x 42.00 = 136.50, 23 % = 31.395 -> 31.40
            {
                "name": "Labour",
                "quantity": "3.25",
                "unit_amount": {"currency_code": "EUR", "value": "42.00"},
                "tax": {"name": "VAT 23%", "percent": "23"},
            },
            # 3 x 0.99 = 2.97, 23 % = 0.6831 -> 0.68
            {
                "name": "Washers",
                "quantity": "3",
                "unit_amount": {"currency_code": "EUR", "value": "0.99"},
                "tax": {"name": "VAT 23%", "percent": "23"},
            },
        ],
    }
    if number is not None:
        body["detail"]["invoice_number"] = number
    body.update(overrides)
    return body


def create(api: httpx.Client, body: dict, representation: bool = True) -> httpx.Response:
    headers = {"Prefer": "return=representation"} if representation else {}
    return api.post("/v2/invoicing/invoices", json=body, headers=headers)


def issues(resp: httpx.Response) -> list[tuple[str, str | None]]:
    return [(d["issue"], d.get("field")) for d in resp.json().get("details", [])]


# --------------------------------------------------------------------------- OAuth2
def test_token_endpoint(emu):
    ok = httpx.post(
        f"{emu.url}/v1/oauth2/token", auth=("demo-client", "demo-secret"), data={"grant_type": "client_credentials"}
    )
    body = ok.json()
    assert ok.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 32400
    assert "https://uri.paypal.com/services/invoicing" in body["scope"].split() and body["access_token"].startswith(
        "A21AA"
    )
    bad = httpx.post(
        f"{emu.url}/v1/oauth2/token", auth=("demo-client", "nope"), data={"grant_type": "client_credentials"}
    )
    assert bad.status_code == 401 and bad.json() == {
        "error": "invalid_client",
        "error_description": "Client Authentication failed",
    }
    no_grant = httpx.post(f"{emu.url}/v1/oauth2/token", auth=("demo-client", "demo-secret"), data={})
    assert no_grant.status_code == 400 and no_grant.json()["error"] == "unsupported_grant_type"
    refresh = httpx.post(
        f"{emu.url}/v1/oauth2/token", auth=("demo-client", "demo-secret"), data={"grant_type": "refresh_token"}
    )
    assert refresh.status_code == 400
    assert emu.token_requests == 4


def test_token_requests_are_rate_limited():
    emulator = PayPalEmulator(token_rate_limit_per_minute=2).start()
    try:
        token(emulator), token(emulator)
        resp = httpx.post(
            f"{emulator.url}/v1/oauth2/token",
            auth=("demo-client", "demo-secret"),
            data={"grant_type": "client_credentials"},
        )
        assert (
            resp.status_code == 429
            and resp.json()["name"] == "RATE_LIMIT_REACHED"
            and int(resp.headers["Retry-After"]) >= 1
        )
    finally:
        emulator.stop()


def test_bearer_token_required_and_expiry(emu):
    missing = httpx.get(f"{emu.url}/v2/invoicing/invoices")
    assert missing.status_code == 401 and missing.json()["name"] == "AUTHENTICATION_FAILURE"
    assert validate_document(SPEC, "error_401", missing.json(), mode="read") == []
    api = client_for(emu)
    assert api.get("/v2/invoicing/invoices").status_code == 200
    emu.expire_access_tokens()
    expired = api.get("/v2/invoicing/invoices")
    assert expired.status_code == 401 and issues(expired) == [("TOKEN_EXPIRED", None)]


def test_scopes(emu):
    emulator = PayPalEmulator(scopes=("https://uri.paypal.com/services/invoicing/invoices/read",)).start()
    try:
        api = client_for(emulator)
        assert api.get("/v2/invoicing/invoices").status_code == 200
        assert api.post("/v2/invoicing/search-invoices", json={}).status_code == 200
        denied = create(api, invoice_body())
        assert (
            denied.status_code == 403
            and denied.json()["name"] == "NOT_AUTHORIZED"
            and issues(denied) == [("PERMISSION_DENIED", None)]
        )
        assert validate_document(SPEC, "error_403", denied.json(), mode="read") == []
    finally:
        emulator.stop()
    emulator = PayPalEmulator(scopes=(SCOPE_READWRITE,)).start()
    try:
        assert create(client_for(emulator), invoice_body()).status_code == 201
    finally:
        emulator.stop()


# --------------------------------------------------------------------------- create
def test_create_minimal_and_representation(emu):
    api = client_for(emu)
    minimal = create(api, invoice_body("N-1"), representation=False)
    assert minimal.status_code == 201
    link = minimal.json()
    assert (
        link["rel"] == "self"
        and link["method"] == "GET"
        and link["href"].startswith(f"{emu.url}/v2/invoicing/invoices/INV2-")
    )
    assert validate_document(SPEC, "link_description", link, mode="read") == []
    got = api.get(link["href"].replace(emu.url, ""))
    assert got.status_code == 200 and got.json()["status"] == "DRAFT"
    full = create(api, invoice_body("N-2")).json()
    assert validate_document(SPEC, "invoice", full, mode="read") == []
    # 136.50 + 2.97 = 139.47; tax 31.40 + 0.68 = 32.08; total 171.55
    assert full["amount"]["value"] == "171.55"
    assert full["amount"]["breakdown"]["item_total"]["value"] == "139.47"
    assert full["amount"]["breakdown"]["tax_total"]["value"] == "32.08"
    assert [i["tax"]["amount"]["value"] for i in full["items"]] == ["31.40", "0.68"]
    assert full["due_amount"] == {"currency_code": "EUR", "value": "171.55"}
    assert full["detail"]["payment_term"] == {"term_type": "NET_30", "due_date": "2026-04-01"}
    assert full["invoicer"]["email_address"] == ACCOUNT
    assert {ln["rel"] for ln in full["links"]} >= {"self", "send", "delete"}


def test_auto_number_and_next_number(emu):
    api = client_for(emu)
    assert api.post("/v2/invoicing/generate-next-invoice-number").json() == {"invoice_number": "0001"}
    first = create(api, invoice_body(None)).json()
    assert first["detail"]["invoice_number"] == "0001"
    assert api.post("/v2/invoicing/generate-next-invoice-number").json() == {"invoice_number": "0002"}


def test_validation_errors_list_every_problem(emu):
    api = client_for(emu)
    body = invoice_body("N" * 26)
    body["detail"]["reference"] = "R" * 121
    body["items"][0]["name"] = "x" * 201
    body["items"][1]["quantity"] = "1.234567"
    del body["items"][1]["unit_amount"]
    resp = create(api, body)
    assert resp.status_code == 400
    doc = resp.json()
    assert (
        doc["name"] == "INVALID_REQUEST"
        and doc["message"] == "Request is not well-formed, syntactically incorrect, or violates schema."
    )
    assert doc["debug_id"] and doc["links"][0]["rel"] == "information_link"
    assert issues(resp) == [
        ("INVALID_STRING_MAX_LENGTH", "/detail/invoice_number"),
        ("INVALID_STRING_MAX_LENGTH", "/detail/reference"),
        ("INVALID_STRING_MAX_LENGTH", "/items/0/name"),
        ("INVALID_PARAMETER_SYNTAX", "/items/1/quantity"),
        ("MISSING_REQUIRED_PARAMETER", "/items/1/unit_amount"),
    ]
    first = doc["details"][0]
    assert (
        first["description"] == "Invoice number length should be less than 25 characters."
        and first["location"] == "body"
    )
    assert validate_document(SPEC, "error_400", doc, mode="read") == []
    no_items = create(api, {"detail": {"currency_code": "EUR"}})
    assert issues(no_items) == [("MISSING_REQUIRED_PARAMETER", "/items")]
    no_detail = create(api, {"items": []})
    assert issues(no_detail) == [("MISSING_REQUIRED_PARAMETER", "/detail")]
    not_json = api.post("/v2/invoicing/invoices", content=b"{nope", headers={"Content-Type": "application/json"})
    assert issues(not_json) == [("MALFORMED_REQUEST_JSON", None)]
    assert emu.invoices() == []


def test_currency_rules(emu):
    api = client_for(emu)
    jpy = invoice_body("J-1")
    jpy["detail"]["currency_code"] = "JPY"
    for item in jpy["items"]:
        item["unit_amount"]["currency_code"] = "JPY"
    jpy["items"][0]["unit_amount"]["value"] = "4800.50"
    resp = create(api, jpy)
    assert resp.status_code == 400 and ("DECIMAL_PRECISION", "/items/0/unit_amount/value") in issues(resp)
    jpy["items"][0]["unit_amount"]["value"] = "4800"
    jpy["items"][1]["unit_amount"]["value"] = "555"
    ok = create(api, jpy).json()
    # 3.25 x 4800 = 15600 (23 % = 3588); 3 x 555 = 1665 (23 % = 382.95 -> 383); total 21236
    assert ok["amount"]["value"] == "21236" and [i["tax"]["amount"]["value"] for i in ok["items"]] == ["3588", "383"]
    mismatch = invoice_body("M-1")
    mismatch["items"][0]["unit_amount"]["currency_code"] = "USD"
    resp = create(api, mismatch)
    assert resp.status_code == 422 and issues(resp) == [("CURRENCY_MISMATCH", "/items/0/unit_amount/currency_code")]
    unknown = invoice_body("X-1")
    unknown["detail"]["currency_code"] = "XXX"
    assert issues(create(api, unknown)) == [("CURRENCY_NOT_SUPPORTED", "/detail/currency_code")]


def test_business_rules(emu):
    api = client_for(emu)
    wrong_invoicer = invoice_body("B-1", invoicer={"email_address": "someone@else.example"})
    resp = create(api, wrong_invoicer)
    assert resp.status_code == 422 and issues(resp) == [("USER_NOT_FOUND", "/invoicer/email_address")]
    assert resp.json()["details"][0]["description"] == "User is not associated with paypal based on invoicer email."
    assert validate_document(SPEC, "error_422", resp.json(), mode="read") == []
    tax_clash = invoice_body("B-2")
    tax_clash["items"][1]["tax"] = {"name": "VAT 23%", "percent": "13"}
    assert issues(create(api, tax_clash)) == [("TAX_NAME_RATE_MISMATCH", "/items/1/tax/percent")]
    negative = invoice_body("B-3")
    negative["items"][0]["unit_amount"]["value"] = "-500.00"
    assert issues(create(api, negative)) == [("NEGATIVE_INVOICE_AMOUNT", "/amount/value")]
    wrong_total = invoice_body("B-4", amount={"currency_code": "EUR", "value": "171.56"})
    assert issues(create(api, wrong_total)) == [("INVALID_PARAMETER_VALUE", "/amount/value")]
    right_total = invoice_body("B-5", amount={"currency_code": "EUR", "value": "171.55"})
    assert create(api, right_total).status_code == 201
    early_due = invoice_body("B-6")
    early_due["detail"]["payment_term"] = {"due_date": "2026-03-01"}
    assert issues(create(api, early_due)) == [("DUE_DATE_BEFORE_INVOICE_DATE", "/detail/payment_term/due_date")]
    to_self = invoice_body("B-7", primary_recipients=[{"billing_info": {"email_address": ACCOUNT}}])
    assert issues(create(api, to_self)) == [("CANNOT_INVOICE_SELF", "/primary_recipients/0/billing_info/email_address")]


def test_invoice_number_uniqueness(emu):
    api = client_for(emu)
    first = create(api, invoice_body("ACME-1")).json()
    for number in ("ACME-1", "acme-1"):
        dup = create(api, invoice_body(number))
        assert dup.status_code == 422 and dup.json()["name"] == "UNPROCESSABLE_ENTITY"
        assert dup.json()["details"] == [
            {
                "field": "/detail/invoice_number",
                "value": number,
                "location": "body",
                "issue": "DUPLICATE_INVOICE_NUMBER",
                "description": "Invoice number already exists.",
            }
        ]
    # the idempotency header of other PayPal APIs is not honoured by Invoicing: still a duplicate
    again = api.post("/v2/invoicing/invoices", json=invoice_body("ACME-1"), headers={"PayPal-Request-Id": "same"})
    assert again.status_code == 422
    # a cancelled invoice keeps its number; a deleted draft frees it
    assert api.post(f"/v2/invoicing/invoices/{first['id']}/send", json={}).status_code == 200
    assert api.post(f"/v2/invoicing/invoices/{first['id']}/cancel", json={}).status_code == 204
    assert create(api, invoice_body("ACME-1")).status_code == 422
    draft = create(api, invoice_body("ACME-2")).json()
    assert api.delete(f"/v2/invoicing/invoices/{draft['id']}").status_code == 204
    assert api.get(f"/v2/invoicing/invoices/{draft['id']}").status_code == 404
    assert create(api, invoice_body("ACME-2")).status_code == 201


def test_no_idempotency_key_semantics(emu):
    api = client_for(emu)
    headers = {"PayPal-Request-Id": "key-1", "Prefer": "return=representation"}
    a = api.post("/v2/invoicing/invoices", json=invoice_body(None), headers=headers).json()
    b = api.post("/v2/invoicing/invoices", json=invoice_body(None), headers=headers).json()
    assert a["id"] != b["id"] and len(emu.invoices()) == 2  # the header is ignored


# --------------------------------------------------------------------------- send / cancel
def test_send_cancel_and_their_errors(emu):
    api = client_for(emu)
    inv = create(api, invoice_body("S-1")).json()
    cancel_draft = api.post(f"/v2/invoicing/invoices/{inv['id']}/cancel", json={})
    assert cancel_draft.status_code == 422 and issues(cancel_draft) == [("CANNOT_CANCEL_DRAFT_INVOICE", "invoice_id")]
    sent = api.post(
        f"/v2/invoicing/invoices/{inv['id']}/send", json={"send_to_recipient": True, "subject": "Invoice S-1"}
    )
    assert sent.status_code == 200 and sent.json()["rel"] == "payer-view"
    assert emu.emails == [
        {
            "invoice_id": inv["id"],
            "invoice_number": "S-1",
            "to": "ap@hotel.example",
            "subject": "Invoice S-1",
            "note": None,
        }
    ]
    again = api.post(f"/v2/invoicing/invoices/{inv['id']}/send", json={})
    assert again.status_code == 422 and issues(again) == [("INVOICE_ALREADY_SENT", "invoice_id")]
    shown = api.get(f"/v2/invoicing/invoices/{inv['id']}").json()
    assert shown["status"] == "SENT" and shown["detail"]["metadata"]["first_sent_time"].endswith("Z")
    assert api.post(f"/v2/invoicing/invoices/{inv['id']}/cancel", json={}).status_code == 204
    twice = api.post(f"/v2/invoicing/invoices/{inv['id']}/cancel", json={})
    assert issues(twice) == [("INVOICE_CANCELED_ALREADY", "invoice_id")]
    missing = api.post("/v2/invoicing/invoices/INV2-NOPE-NOPE-NOPE-NOPE/send", json={})
    assert missing.status_code == 404 and missing.json()["name"] == "RESOURCE_NOT_FOUND"
    assert validate_document(SPEC, "error_404", missing.json(), mode="read") == []


def test_send_without_recipient_email_and_scheduled(emu):
    api = client_for(emu)
    quiet = create(api, invoice_body("Q-1")).json()
    assert api.post(f"/v2/invoicing/invoices/{quiet['id']}/send", json={"send_to_recipient": False}).status_code == 200
    assert emu.emails == []
    future = invoice_body("F-1")
    future["detail"]["invoice_date"] = "2026-03-10"
    inv = create(api, future).json()
    resp = api.post(f"/v2/invoicing/invoices/{inv['id']}/send")
    assert resp.status_code == 202 and validate_document(SPEC, "202-response", resp.json(), mode="read") == []
    assert api.get(f"/v2/invoicing/invoices/{inv['id']}").json()["status"] == "SCHEDULED"


@pytest.mark.parametrize("notification", [{"send_to_recipient": True}, {}, None], ids=["true", "default", "no-body"])
def test_send_to_a_recipient_without_email_is_refused_and_the_draft_stays(emu, notification):
    with client_for(emu) as api:
        nameless = invoice_body("E-1", primary_recipients=[{"billing_info": {"business_name": "Hotel Sem Email"}}])
        inv = create(api, nameless).json()
        url = f"/v2/invoicing/invoices/{inv['id']}/send"
        refused = api.post(url) if notification is None else api.post(url, json=notification)
        body = refused.json()
        assert refused.status_code == 422
        assert body["name"] == "UNPROCESSABLE_ENTITY"
        assert body["message"] == (
            "The requested action could not be performed, semantically incorrect, or failed business validation."
        )
        assert body["details"] == [
            {
                "field": "/primary_recipients/0/billing_info/email_address",
                "location": "body",
                "issue": "MISSING_RECIPIENT_EMAIL",
                "description": "A recipient email address is required to send the invoice to the recipient; set "
                "send_to_recipient to false to share it by link.",
            }
        ]
        assert refused.headers["Paypal-Debug-Id"] == body["debug_id"]
        assert validate_document(SPEC, "error_422", body, mode="read") == []
        assert api.get(f"/v2/invoicing/invoices/{inv['id']}").json()["status"] == "DRAFT" and emu.emails == []
        # share-link sending is what PayPal accepts without an address: SENT, nobody e-mailed
        shared = api.post(url, json={"send_to_recipient": False})
        assert shared.status_code == 200 and shared.json()["rel"] == "payer-view"
        assert api.get(f"/v2/invoicing/invoices/{inv['id']}").json()["status"] == "SENT" and emu.emails == []


# --------------------------------------------------------------------------- search
def test_search_semantics(emu):
    api = client_for(emu)
    for number in ("WO-1-R1", "WO-1-R10", "WO-2-R1"):
        create(api, invoice_body(number))
    found = api.post("/v2/invoicing/search-invoices", json={"invoice_number": "wo-1-r1"}).json()
    # case-insensitive substring: WO-1-R1 and WO-1-R10, newest first; clients must filter exactly
    assert [i["detail"]["invoice_number"] for i in found["items"]] == ["WO-1-R10", "WO-1-R1"]
    assert "total_items" not in found and "items" not in found["items"][0]
    assert validate_document(SPEC, "invoices", found, mode="read") == []
    paged = api.post("/v2/invoicing/search-invoices?page=2&page_size=2&total_required=true", json={}).json()
    assert (paged["total_items"], paged["total_pages"], len(paged["items"])) == (3, 2, 1)
    assert api.post("/v2/invoicing/search-invoices", json={"status": ["SENT"]}).json()["items"] == []
    by_amount = {
        "total_amount_range": {
            "lower_amount": {"currency_code": "EUR", "value": "171.55"},
            "upper_amount": {"currency_code": "EUR", "value": "171.55"},
        }
    }
    assert len(api.post("/v2/invoicing/search-invoices", json=by_amount).json()["items"]) == 3
    assert (
        len(api.post("/v2/invoicing/search-invoices", json={"recipient_email": "AP@hotel.example"}).json()["items"])
        == 3
    )
    bad = api.post("/v2/invoicing/search-invoices?page_size=101", json={"invoice_number": "X" * 26})
    assert bad.status_code == 400 and issues(bad) == [
        ("INVALID_INTEGER_MAX_VALUE", "page_size"),
        ("INVALID_STRING_MAX_LENGTH", "/invoice_number"),
    ]


def test_search_lag_and_stale_search_fault():
    emulator = PayPalEmulator(search_lag_seconds=0.3).start()
    try:
        api = client_for(emulator)
        create(api, invoice_body("L-1"))
        assert api.post("/v2/invoicing/search-invoices", json={"invoice_number": "L-1"}).json()["items"] == []
        time.sleep(0.35)
        assert len(api.post("/v2/invoicing/search-invoices", json={"invoice_number": "L-1"}).json()["items"]) == 1
        emulator.inject_fault("stale_search")
        assert api.get("/v2/invoicing/invoices").json()["items"]  # not a search: unaffected
        assert api.post("/v2/invoicing/search-invoices", json={}).json()["items"] == []
        assert len(api.post("/v2/invoicing/search-invoices", json={}).json()["items"]) == 1
    finally:
        emulator.stop()


# --------------------------------------------------------------------------- limits, faults, control API
def test_rate_limit(emu):
    emulator = PayPalEmulator(rate_limit_per_minute=2).start()
    try:
        api = client_for(emulator)
        assert api.get("/v2/invoicing/invoices").status_code == 200
        assert api.get("/v2/invoicing/invoices").status_code == 200
        limited = api.get("/v2/invoicing/invoices")
        assert limited.status_code == 429 and limited.json()["name"] == "RATE_LIMIT_REACHED"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60 and emulator.count_429 == 1
    finally:
        emulator.stop()


def test_faults(emu):
    api = client_for(emu)
    emu.inject_fault("503")
    emu.inject_fault("500")
    assert api.get("/v2/invoicing/invoices").status_code == 503
    assert api.get("/v2/invoicing/invoices").json()["name"] == "INTERNAL_SERVER_ERROR"
    emu.inject_fault("drop_after_commit")
    with pytest.raises(httpx.RemoteProtocolError):
        create(api, invoice_body("D-1"))
    assert [i["detail"]["invoice_number"] for i in emu.invoices()] == ["D-1"]  # processed, answer dropped
    emu.inject_fault("reset")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        create(api, invoice_body("D-2"))
    assert len(emu.invoices()) == 1  # not processed
    with pytest.raises(ValueError):
        emu.inject_fault("meteor")


def test_control_api(emu):
    api = client_for(emu)
    create(api, invoice_body("C-1"))
    control = httpx.Client(base_url=emu.url)
    try:
        assert [i["detail"]["invoice_number"] for i in control.get("/_emulator/invoices").json()] == ["C-1"]
        stats = control.get("/_emulator/stats").json()
        assert (
            stats["invoice_count"] == 1
            and stats["token_requests"] == 1
            and stats["calls"][-1] == ["POST", "/v2/invoicing/invoices", 201]
        )
        assert control.post("/_emulator/faults", json={"kind": "503", "times": 2, "after": 1}).json()[
            "pending_faults"
        ] == [None, "503", "503"]
        assert control.post("/_emulator/faults", json={"kind": "meteor"}).status_code == 400
        assert control.post("/_emulator/expire-tokens").status_code == 200
        assert api.get("/v2/invoicing/invoices").status_code == 401
        assert control.get("/_emulator/emails").json() == []
        assert control.post("/_emulator/reset").status_code == 200
        assert emu.invoices() == [] and emu.stats()["pending_faults"] == []
    finally:
        control.close()


# --------------------------------------------------------------------------- spec validation hook
def test_request_validator_rejects_what_the_spec_does_not_allow():
    validate = make_request_validator(SPEC)
    good = json.dumps(invoice_body("V-1")).encode()
    headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}
    validate("POST", "/v2/invoicing/invoices", {}, headers, good)
    read_only = invoice_body("V-2")
    read_only["items"][0]["tax"]["amount"] = {"currency_code": "EUR", "value": "31.40"}
    with pytest.raises(SpecValidationError, match="read-only"):
        validate("POST", "/v2/invoicing/invoices", {}, headers, json.dumps(read_only).encode())
    typo = invoice_body("V-3")
    typo["detail"]["invoice_numbr"] = "V-3"
    with pytest.raises(SpecValidationError, match="/detail/invoice_numbr: property not defined"):
        validate("POST", "/v2/invoicing/invoices", {}, headers, json.dumps(typo).encode())
    number_not_string = invoice_body("V-4")
    number_not_string["items"][0]["quantity"] = 3.25
    with pytest.raises(SpecValidationError, match="is not of type 'string'"):
        validate("POST", "/v2/invoicing/invoices", {}, headers, json.dumps(number_not_string).encode())
    with pytest.raises(SpecValidationError, match="Bearer"):
        validate("POST", "/v2/invoicing/invoices", {}, {"Content-Type": "application/json"}, good)
    with pytest.raises(SpecValidationError, match="page_size"):
        validate("POST", "/v2/invoicing/search-invoices", {"page_size": "500"}, headers, b"{}")
    with pytest.raises(SpecValidationError, match="no such operation"):
        validate("PATCH", "/v2/invoicing/invoices/INV2-X", {}, headers, b"{}")
    with pytest.raises(SpecValidationError, match="grant_type"):
        validate(
            "POST",
            "/v1/oauth2/token",
            {},
            {"Authorization": "Basic eDp5", "Content-Type": "application/x-www-form-urlencoded"},
            b"grant_type=password",
        )
    # the emulator answers a non-conforming request 400 and records it
    emulator = PayPalEmulator(request_validator=validate).start()
    try:
        api = client_for(emulator)
        resp = create(api, typo)
        assert resp.status_code == 400 and issues(resp) == [("SPEC_VALIDATION", None)]
        assert len(emulator.validation_failures) == 1 and emulator.invoices() == []
    finally:
        emulator.stop()


def test_spec_copy_is_the_official_file():
    import hashlib

    digest = hashlib.sha256(SPEC.read_bytes()).hexdigest()
    assert digest == "0ce17c89b5a547152553e69567530f4001d6d6529abd11cf44a1fc6292af72b1"
    spec = load_spec(str(SPEC))
    assert spec["info"]["version"] == "2.3" and "/v2/invoicing/search-invoices" in spec["paths"]


# --------------------------------------------------------------------------- lifecycle
def sent(api: httpx.Client, number: str) -> str:
    """A sent invoice of 171.55 (136.50 + 31.40 + 2.97 + 0.68), its id."""
    inv = create(api, invoice_body(number)).json()
    assert api.post(f"/v2/invoicing/invoices/{inv['id']}/send", json={"send_to_recipient": False}).status_code == 200
    return inv["id"]


def test_payments_are_recorded_and_paid_invoices_are_immutable():
    emulator = PayPalEmulator(today=lambda: date(2026, 3, 2), request_validator=make_request_validator(SPEC)).start()
    try:
        api = client_for(emulator)
        draft = create(api, invoice_body("P-0")).json()["id"]
        refused = api.post(f"/v2/invoicing/invoices/{draft}/payments", json={"method": "CASH"})
        assert refused.status_code == 422 and issues(refused) == [("CANNOT_PROCESS_PAYMENTS", "invoice_id")]
        inv_id = sent(api, "P-1")
        no_method = api.post(f"/v2/invoicing/invoices/{inv_id}/payments", json={"payment_date": "2026-03-03"})
        assert no_method.status_code == 400 and issues(no_method) == [("SPEC_VALIDATION", None)]
        assert "method" in no_method.json()["details"][0]["description"]  # payment_detail requires it
        emulator.validation_failures.clear()
        too_much = api.post(
            f"/v2/invoicing/invoices/{inv_id}/payments",
            json={"method": "BANK_TRANSFER", "amount": {"currency_code": "EUR", "value": "171.56"}},
        )
        assert issues(too_much) == [("PAYMENT_AMOUNT_GREATER_THAN_AMOUNT_DUE", "/amount/value")]
        part = api.post(
            f"/v2/invoicing/invoices/{inv_id}/payments",
            json={"method": "BANK_TRANSFER", "amount": {"currency_code": "EUR", "value": "1.55"}},
        )
        assert part.status_code == 200 and part.json()["payment_id"].startswith("EXTR-")
        shown = api.get(f"/v2/invoicing/invoices/{inv_id}").json()
        assert (shown["status"], shown["due_amount"]["value"], shown["payments"]["paid_amount"]["value"]) == (
            "PARTIALLY_PAID",
            "170.00",
            "1.55",
        )
        assert validate_document(SPEC, "invoice", shown, mode="read") == []
        assert emulator.balance() == Decimal("170.00")  # the draft P-0 counts 0
        cancel = api.post(f"/v2/invoicing/invoices/{inv_id}/cancel", json={"send_to_recipient": False})
        assert issues(cancel) == [("CANNOT_CANCEL_PAID_INVOICE", "invoice_id")]
        delete = api.delete(f"/v2/invoicing/invoices/{inv_id}")
        assert delete.status_code == 422 and issues(delete) == [("CANNOT_DELETE_INVOICE", "invoice_id")]
        emulator.record_payment(inv_id)  # the rest: 170.00
        shown = api.get(f"/v2/invoicing/invoices/{inv_id}").json()
        assert (shown["status"], shown["due_amount"]["value"], shown["payments"]["paid_amount"]["value"]) == (
            "PAID",
            "0.00",
            "171.55",
        )
        with pytest.raises(ValueError, match="CANNOT_PROCESS_PAYMENTS"):
            emulator.record_payment(inv_id, Decimal("1.00"))
        assert emulator.balance() == Decimal("0.00") and emulator.validation_failures == []
    finally:
        emulator.stop()


def test_cancel_needs_a_notification_body_and_tells_the_payer():
    emulator = PayPalEmulator(today=lambda: date(2026, 3, 2), request_validator=make_request_validator(SPEC)).start()
    try:
        api = client_for(emulator)
        inv_id = sent(api, "C-1")
        assert emulator.balance() == Decimal("171.55")
        bodiless = api.post(f"/v2/invoicing/invoices/{inv_id}/cancel")
        assert bodiless.status_code == 400 and issues(bodiless) == [("SPEC_VALIDATION", None)]
        emulator.validation_failures.clear()
        note = {"send_to_recipient": True, "send_to_invoicer": False, "note": "Work order cancelled"}
        assert api.post(f"/v2/invoicing/invoices/{inv_id}/cancel", json=note).status_code == 204
        shown = api.get(f"/v2/invoicing/invoices/{inv_id}").json()
        assert (shown["status"], shown["due_amount"]["value"]) == ("CANCELLED", "0.00")
        assert emulator.emails == [
            {
                "invoice_id": inv_id,
                "invoice_number": "C-1",
                "to": "ap@hotel.example",
                "subject": "Invoice cancelled",
                "note": "Work order cancelled",
            }
        ]
        assert emulator.balance() == Decimal("0.00")
    finally:
        emulator.stop()


def test_planted_invoice(emu):
    inv_id = emu.plant_invoice("F-9", Decimal("999.00"), "EUR", "Someone")
    [inv] = emu.invoices()
    assert (inv["id"], inv["status"], inv["amount"]["value"], inv["detail"].get("memo")) == (
        inv_id,
        "SENT",
        "999.00",
        None,
    )
    assert emu.balance() == Decimal("999.00")


def test_payment_detail_checks_without_the_spec_validator(emu):
    api = client_for(emu)
    inv_id = sent(api, "P-2")
    no_method = api.post(f"/v2/invoicing/invoices/{inv_id}/payments", json={})
    assert issues(no_method) == [("MISSING_REQUIRED_PARAMETER", "/method")]
    zero = api.post(
        f"/v2/invoicing/invoices/{inv_id}/payments",
        json={"method": "CHEQUE", "amount": {"currency_code": "EUR", "value": "0.00"}},
    )
    assert issues(zero) == [("INVALID_PAYMENT_METHOD", "/method"), ("VALUE_CANNOT_BE_ZERO", "/amount/value")]
    assert api.get(f"/v2/invoicing/invoices/{inv_id}").json()["status"] == "SENT"

"""The Zoho Invoice emulator on its own (raw HTTP with httpx)."""

from __future__ import annotations

from decimal import Decimal as D

import httpx
import pytest

from connectors.sdk.money import dumps, loads
from connectors.zoho.emulator import DEFAULT_ORG, ZohoEmulator

ORG_HEADER = "X-com-zoho-invoice-organizationid"


@pytest.fixture
def emu():
    emulator = ZohoEmulator(
        client_id="1000.T",
        client_secret="s3cret",
        refresh_token="1000.r",
        contacts={"C1": {"contact_name": "A, Lda", "email": "a@example.com"}},
    ).start()
    yield emulator
    emulator.stop()
    assert emulator.server_errors == []


def token(emu, **form) -> httpx.Response:
    data = {
        "grant_type": "refresh_token",
        "client_id": "1000.T",
        "client_secret": "s3cret",
        "refresh_token": "1000.r",
        **form,
    }
    return httpx.post(f"{emu.url}/oauth/v2/token", data=data)


@pytest.fixture
def api(emu):
    access = token(emu).json()["access_token"]
    with httpx.Client(
        base_url=f"{emu.url}/invoice/v3",
        timeout=5,
        headers={"Authorization": f"Zoho-oauthtoken {access}", ORG_HEADER: DEFAULT_ORG},
    ) as client:
        yield client


def create(api, body, **params):
    return api.post(
        "/invoices",
        params={"ignore_auto_number_generation": "true", **params},
        content=dumps(body),
        headers={"Content-Type": "application/json"},
    )


def body(number="INV-T-1", lines=None, **extra):
    return {
        "customer_id": "C1",
        "invoice_number": number,
        "date": "2026-03-02",
        "line_items": lines or [{"name": "Labour", "rate": D("42.00"), "quantity": D("3.25"), "tax_id": "T23"}],
        **extra,
    }


def test_token_endpoint_quirks(emu):
    good = token(emu).json()
    assert good["expires_in"] == 3600 and "refresh_token" not in good and good["api_domain"] == emu.url
    assert token(emu, client_secret="wrong").json() == {"error": "invalid_client"}  # HTTP 200 with an error
    assert token(emu, refresh_token="1000.x").json() == {"error": "invalid_code"}
    emu.token_limit = 2
    assert token(emu).status_code == 200
    denied = token(emu)
    assert denied.status_code == 400 and denied.json()["error"] == "Access Denied"


def test_per_tax_rounding_uniqueness_and_envelope(emu, api):
    t23 = emu.tax_id("23")
    lines = [{"name": f"Part {n}", "rate": D("1.05"), "quantity": 1, "tax_id": t23} for n in range(5)]
    lines.append({"name": "Exempt fee", "rate": D("12.50"), "quantity": 1})
    resp = create(api, body(lines=lines, adjustment=D("-0.01")))
    assert resp.status_code == 201
    doc = loads(resp.content)
    assert (doc["code"], doc["message"]) == (0, "The invoice has been created.")
    inv = doc["invoice"]
    # item totals 5 x 1.05 + 12.50 = 17.75; one 23 % tax on 5.25 = 1.2075 -> 1.21 (not 5 x 0.24 = 1.20); -0.01 adjustment
    assert (inv["sub_total"], inv["tax_total"], inv["total"], inv["status"]) == (
        D("17.75"),
        D("1.21"),
        D("18.95"),
        "draft",
    )
    dup = create(api, body(lines=lines))
    assert dup.status_code == 400 and dup.json() == {"code": 1001, "message": "Invoice Number already exist"}
    listed = api.get("/invoices", params={"invoice_number": "INV-T-1"}).json()
    assert [i["invoice_id"] for i in listed["invoices"]] == [inv["invoice_id"]] and listed["page_context"][
        "has_more_page"
    ] is False
    assert api.get("/invoices", params={"invoice_number": "INV-T"}).json()["invoices"] == []  # exact match
    assert api.post(f"/invoices/{inv['invoice_id']}/status/sent").json()["code"] == 0
    assert api.post(f"/invoices/{inv['invoice_id']}/status/sent").status_code == 400


def test_rules_auto_numbering_rounding_of_lines_and_taxes(emu, api):
    t23 = emu.tax_id("23")
    # a custom number needs ignore_auto_number_generation=true while auto-numbering is on
    resp = api.post(
        "/invoices",
        content=dumps(body("X-1", [{"name": "a", "rate": 1, "quantity": 1}])),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400 and "ignore_auto_number_generation" in resp.json()["message"]
    # item_total rounds half up: 0.333 x 3 = 0.999 -> 1.00; inclusive 23 %: 1.00 x 23 / 123 = 0.187 -> 0.19
    inv = loads(
        create(
            api, body("X-2", [{"name": "a", "rate": D("0.333"), "quantity": 3, "tax_id": t23}], is_inclusive_tax=True)
        ).content
    )["invoice"]
    assert (inv["line_items"][0]["item_total"], inv["tax_total"], inv["total"], inv["sub_total"]) == (
        D("1.00"),
        D("0.19"),
        D("1.00"),
        D("0.81"),
    )
    assert (
        create(api, body("X-3", [{"name": "a", "rate": 1, "tax_id": "nope"}]))
        .json()["message"]
        .endswith("does not exist.")
    )
    assert create(api, dict(body("X-4"), customer_id="zzz")).json()["message"] == "Contact does not exist."
    assert create(api, body("X-5", [{"rate": 1}])).status_code == 400


def test_auth_org_rate_limit_and_faults(emu, api):
    assert httpx.get(f"{emu.url}/invoice/v3/invoices", headers={ORG_HEADER: DEFAULT_ORG}).json()["code"] == 14
    assert api.get("/invoices", headers={ORG_HEADER: "1"}).json()["code"] == 6041
    assert api.get("/invoices", headers={ORG_HEADER: ""}, params={"organization_id": DEFAULT_ORG}).status_code == 200
    emu.expire_access_tokens()
    assert api.get("/invoices").status_code == 401
    access = token(emu).json()["access_token"]
    api.headers["Authorization"] = f"Zoho-oauthtoken {access}"
    emu.rate_limit_per_minute = 2
    emu.reset_state()
    assert [api.get("/invoices").status_code for _ in range(3)] == [200, 200, 429]
    limited = api.get("/invoices")
    assert limited.headers["X-Rate-Limit-Limit"] == "2" and limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    emu.rate_limit_per_minute = 100
    emu.reset_state()
    emu.inject_fault("503", path="/contacts")
    assert api.get("/invoices").status_code == 200 and api.get("/contacts").status_code == 503
    emu.inject_fault("drop_after_commit", method="POST")
    with pytest.raises(httpx.RemoteProtocolError):
        create(api, body("D-1", [{"name": "a", "rate": 1, "quantity": 1}]))
    assert [i["invoice_number"] for i in emu.invoices()] == ["D-1"]  # processed before the connection was dropped
    control = httpx.Client(base_url=emu.url)
    try:
        assert control.get("/_emulator/stats").json()["invoice_count"] == 1
        assert control.post("/_emulator/faults", json={"kind": "nope"}).status_code == 400
        assert control.post("/_emulator/reset").json() == {"ok": True} and emu.invoices() == []
    finally:
        control.close()


# --------------------------------------------------------------------------- lifecycle
def post(api, path, doc=None, **params):
    return api.post(path, params=params, content=dumps(doc or {}), headers={"Content-Type": "application/json"})


def sent_invoice(emu, api, number, rate="100.00"):
    """A sent invoice of one 23 % line: ``rate`` + 23 % (100.00 -> 123.00)."""
    lines = [{"name": "Labour", "rate": D(rate), "quantity": 1, "tax_id": emu.tax_id("23")}]
    inv = loads(create(api, body(number, lines)).content)["invoice"]
    assert post(api, f"/invoices/{inv['invoice_id']}/status/sent").status_code == 200
    return inv["invoice_id"]


def test_void_and_delete_rules(emu, api):
    draft = loads(create(api, body("L-1", [{"name": "a", "rate": D("10.00"), "quantity": 1}])).content)["invoice"]
    refused = post(api, f"/invoices/{draft['invoice_id']}/status/void")
    assert refused.status_code == 400 and refused.json()["code"] == 1007  # a draft is deleted, not voided
    assert api.delete(f"/invoices/{draft['invoice_id']}").json() == {
        "code": 0,
        "message": "The invoice has been deleted.",
    }
    gone = api.get(f"/invoices/{draft['invoice_id']}")
    assert gone.status_code == 404 and gone.json()["code"] == 1002
    sent = sent_invoice(emu, api, "L-2")
    assert post(api, f"/invoices/{sent}/status/void").json()["code"] == 0
    voided = loads(api.get(f"/invoices/{sent}").content)["invoice"]
    assert (voided["status"], voided["balance"], voided["total"]) == ("void", D(0), D("123.00"))
    assert post(api, f"/invoices/{sent}/status/void").json()["code"] == 1007  # already void
    paid = sent_invoice(emu, api, "L-3")
    emu.record_payment(paid, D("23.00"))  # 123.00 - 23.00 = 100.00 due
    inv = loads(api.get(f"/invoices/{paid}").content)["invoice"]
    assert (inv["status"], inv["payment_made"], inv["balance"]) == ("partially_paid", D("23.00"), D("100.00"))
    for resp in (post(api, f"/invoices/{paid}/status/void"), api.delete(f"/invoices/{paid}")):
        assert resp.status_code == 400 and resp.json()["code"] == 1040
    assert loads(api.get(f"/invoices/{paid}").content)["invoice"]["status"] == "partially_paid"
    with pytest.raises(ValueError, match=r"balance 100\.00"):
        emu.record_payment(paid, D("100.01"))
    emu.record_payment(paid)
    assert loads(api.get(f"/invoices/{paid}").content)["invoice"]["status"] == "paid"
    # receivables: L-2 void (0), L-3 paid (0)
    assert emu.balance() == D("0.00")


def test_credit_notes_numbers_application_and_balance(emu, api):
    inv_id = sent_invoice(emu, api, "L-4")  # 123.00
    emu.record_payment(inv_id, D("23.00"))  # due 100.00
    cn_body = {
        "customer_id": "C1",
        "creditnote_number": "L-4-CN",
        "reference_number": "L-4",
        "date": "2026-03-05",
        "line_items": [{"name": "Labour", "rate": D("100.00"), "quantity": 1, "tax_id": emu.tax_id("23")}],
    }
    auto = post(api, "/creditnotes", cn_body)
    assert auto.status_code == 400 and auto.json()["code"] == 4  # own number needs ignore_auto_number_generation
    made = post(api, "/creditnotes", cn_body, ignore_auto_number_generation="true", invoice_id=inv_id)
    note = loads(made.content)["creditnote"]
    assert made.status_code == 201 and (note["total"], note["balance"], note["status"], note["invoice_id"]) == (
        D("123.00"),
        D("123.00"),
        "open",
        inv_id,
    )
    again = post(api, "/creditnotes", cn_body, ignore_auto_number_generation="true")
    assert again.json() == {"code": 12018, "message": "The specified Credit Note Number already exists"}
    listed = api.get("/creditnotes", params={"creditnote_number": "L-4-CN"}).json()["creditnotes"]
    assert [(c["creditnote_id"], c["reference_number"]) for c in listed] == [(note["creditnote_id"], "L-4")]
    # due 100.00 - unapplied credit 123.00
    assert emu.balance() == D("-23.00") and emu.balance("C1") == D("-23.00") and emu.balance("C2") == D("0.00")
    apply = f"/creditnotes/{note['creditnote_id']}/invoices"
    too_much = post(api, apply, {"invoices": [{"invoice_id": inv_id, "amount_applied": D("100.01")}]})
    assert too_much.json()["code"] == 12008
    assert post(api, apply, {"invoices": [{"invoice_id": inv_id, "amount_applied": D("100.00")}]}).json()["code"] == 0
    inv = loads(api.get(f"/invoices/{inv_id}").content)["invoice"]
    cn = loads(api.get(f"/creditnotes/{note['creditnote_id']}").content)["creditnote"]
    assert (inv["status"], inv["balance"], inv["credits_applied"]) == ("paid", D("0.00"), D("100.00"))
    assert (cn["status"], cn["balance"]) == ("open", D("23.00"))
    assert emu.balance() == D("-23.00")
    closed = post(api, apply, {"invoices": [{"invoice_id": inv_id, "amount_applied": D("1.00")}]})
    assert closed.json()["code"] == 12006  # the invoice is paid
    draft = loads(create(api, body("L-5", [{"name": "a", "rate": D("5.00"), "quantity": 1}])).content)["invoice"]
    on_draft = post(api, apply, {"invoices": [{"invoice_id": draft["invoice_id"], "amount_applied": D("1.00")}]})
    assert on_draft.json()["code"] == 12005


def test_planted_invoice_and_payments_over_the_control_api(emu):
    inv_id = emu.plant_invoice("F-1", "C1", D("999.00"))
    [inv] = emu.invoices()
    assert (inv["invoice_id"], inv["status"], inv["total"], inv["notes"]) == (
        inv_id,
        "sent",
        D("999.00"),
        "Thank you for your business.",
    )
    with httpx.Client(base_url=emu.url) as control:
        assert control.post("/_emulator/payments", json={"invoice_id": inv_id, "amount": "99.00"}).status_code == 200
        assert control.post("/_emulator/payments", json={"invoice_id": inv_id, "amount": "901"}).status_code == 400
        assert control.get("/_emulator/creditnotes").json() == []
    assert emu.balance() == D("900.00")

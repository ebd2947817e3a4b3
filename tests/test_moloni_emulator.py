"""The Moloni emulator over real loopback HTTP: grants, tokens, validation arrays, totals, closing, limits, faults.

Requests are made with plain httpx (no connector) so each Moloni behaviour is checked on the wire.
Expected amounts are computed by hand in the comments.
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest

from connectors.moloni.emulator import MoloniEmulator
from connectors.moloni.mapper import form_body, loads

GOLDEN = sorted((Path(__file__).resolve().parent / "golden" / "moloni").glob("*.json"))


@pytest.fixture
def emulators():
    started: list[MoloniEmulator] = []

    def make(**kwargs) -> MoloniEmulator:
        kwargs.setdefault("hang_seconds", 1.0)
        emu = MoloniEmulator(**kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
        assert emu.server_errors == []


class Api:
    def __init__(self, emu: MoloniEmulator):
        self.http = httpx.Client(base_url=emu.url, timeout=5)
        self.token = self.grant(grant_type="refresh_token", refresh_token=emu.initial_refresh_token).json()[
            "access_token"
        ]

    def grant(self, **params) -> httpx.Response:
        params = {"client_id": "demo-client", "client_secret": "demo-secret", **params}
        return self.http.get("/v1/grant/", params=params)

    def call(self, action: str, fields: dict, token: str | None = None) -> httpx.Response:
        return self.http.post(
            f"/v1/{action}/",
            params={"access_token": token or self.token},
            content=form_body(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    def ok(self, action: str, fields: dict):
        resp = self.call(action, fields)
        assert resp.status_code == 200, resp.text
        return loads(resp.content)

    def close(self):
        self.http.close()


@pytest.fixture
def api(emulators):
    a = Api(emulators())
    yield a
    a.close()


def draft(**overrides) -> dict:
    fields = {
        "company_id": 5,
        "date": "2026-03-03",
        "expiration_date": "2026-04-02",
        "document_set_id": 7,
        "customer_id": 201,
        "your_reference": "ACME-WO-1-R1",
        "our_reference": "WO 1",
        "status": 0,
        "products": [
            {
                "product_id": 101,
                "name": "Labour",
                "qty": D("3.25"),
                "price": D("42.00"),
                "discount": D("0"),
                "taxes": [{"tax_id": 1, "value": D("23"), "order": 0, "cumulative": 0}],
            }
        ],
    }
    fields.update(overrides)
    return fields


# --------------------------------------------------------------------------- auth
def test_grants_rotate_refresh_tokens_with_a_grace_period(emulators):
    emu = emulators(refresh_grace_seconds=0.2)
    api = Api(emu)  # first refresh done: the initial token is now in its grace period
    try:
        body = api.grant(grant_type="password", username="demo@acme.example", password="demo-password").json()
        assert (
            body["token_type"] == "bearer"
            and body["expires_in"] == 3600
            and body["refresh_token"].startswith("mol-rt-")
        )
        assert api.grant(grant_type="password", username="demo@acme.example", password="nope").json() == {
            "error": "invalid_grant",
            "error_description": "Invalid username and password combination",
        }
        bad_client = api.http.get(
            "/v1/grant/", params={"grant_type": "password", "client_id": "demo-client", "client_secret": "x"}
        )
        assert bad_client.status_code == 400 and bad_client.json()["error"] == "invalid_client"
        assert api.grant(grant_type="client_credentials").json()["error"] == "unsupported_grant_type"
        again = api.grant(grant_type="refresh_token", refresh_token=emu.initial_refresh_token)
        assert again.status_code == 200  # still inside the grace period
        import time

        time.sleep(0.25)
        late = api.grant(grant_type="refresh_token", refresh_token=emu.initial_refresh_token)
        assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
        assert emu.grants_served == 3
    finally:
        api.close()


def test_api_calls_need_a_live_access_token(api):
    missing = api.http.post("/v1/companies/getAll/")
    assert missing.status_code == 401 and missing.json()["error"] == "invalid_token"
    assert api.call("companies/getAll", {}).json()[0]["company_id"] == 5


def test_expired_token_is_401_invalid_token(emulators):
    emu = emulators()
    api = Api(emu)
    try:
        emu.expire_access_tokens()
        resp = api.call("companies/getAll", {})
        assert resp.status_code == 401
        assert resp.json() == {"error": "invalid_token", "error_description": "The access token provided has expired"}
    finally:
        api.close()


# --------------------------------------------------------------------------- insert and validation
def test_validation_errors_are_an_array_with_http_200_and_nothing_is_stored(api, emulators):
    bad = draft(
        customer_id=999,
        date="03/03/2026",
        products=[
            {"product_id": 101, "name": "Exempt without reason", "qty": D("1"), "price": D("5"), "discount": D("0")},
            {
                "product_id": 555,
                "name": "x",
                "qty": D("0"),
                "price": D("-1"),
                "discount": D("120"),
                "taxes": [{"tax_id": 77, "value": D("23")}],
            },
        ],
    )
    resp = api.call("invoices/insert", bad)
    assert resp.status_code == 200
    errors = resp.json()
    assert isinstance(errors, list) and all(set(e) == {"code", "field", "description"} for e in errors)
    fields = [e["field"] for e in errors]
    assert fields == [
        "date",
        "customer_id",
        "products[0][exemption_reason]",
        "products[1][product_id]",
        "products[1][qty]",
        "products[1][price]",
        "products[1][discount]",
        "products[1][taxes][0][tax_id]",
        "products[1][exemption_reason]",
    ]
    assert errors[2] == {
        "code": "1 products[0][exemption_reason]",
        "field": "products[0][exemption_reason]",
        "description": "Field 'exemption_reason' is required",
    }
    assert api.ok("invoices/getAll", {"company_id": 5}) == []


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_payloads_are_accepted_with_our_totals(api, path):
    golden = json.loads(path.read_text(encoding="utf-8"))
    answer = api.ok("invoices/insert", golden["payload"])
    assert answer["valid"] == 1
    doc = api.ok("invoices/getOne", {"company_id": 5, "document_id": answer["document_id"]})
    assert D(str(doc["net_value"])) == D(golden["invoice"]["total"])
    assert D(str(doc["taxes_value"])) == D(golden["invoice"]["tax_total"])
    assert doc["status"] == 0 and doc["number"] == 0 and doc["your_reference"] == golden["payload"]["your_reference"]


def test_totals_by_the_companys_rounding_method(emulators):
    three = draft(
        products=[
            {
                "product_id": 104,
                "name": f"Article {n}",
                "qty": D("1"),
                "price": D("2.37"),
                "discount": D("0"),
                "taxes": [{"tax_id": 1, "value": D("23")}],
            }
            for n in range(3)
        ]
    )
    totals = {}
    for method in ("line", "document"):
        api = Api(emulators(rounding_method=method))
        try:
            doc_id = api.ok("invoices/insert", three)["document_id"]
            doc = api.ok("invoices/getOne", {"company_id": 5, "document_id": doc_id})
            totals[method] = (doc["gross_value"], doc["taxes_value"], doc["net_value"])
        finally:
            api.close()
    # à linha: 0.5451 -> 0.55 x 3 = 1.65, total 8.76; ao documento: 7.11 x 0.23 = 1.6353 -> 1.64, total 8.75
    assert totals == {"line": (D("7.11"), D("1.65"), D("8.76")), "document": (D("7.11"), D("1.64"), D("8.75"))}


def test_discount_and_exemption(api):
    doc_id = api.ok(
        "invoices/insert",
        draft(
            products=[
                {
                    "product_id": 104,
                    "name": "Contactor",
                    "qty": D("2"),
                    "price": D("18.75"),
                    "discount": D("10"),
                    "taxes": [{"tax_id": 1, "value": D("23")}],
                },
                {
                    "product_id": 105,
                    "name": "Waste fee",
                    "qty": D("1"),
                    "price": D("12.50"),
                    "discount": D("0"),
                    "exemption_reason": "M07",
                },
            ]
        ),
    )["document_id"]
    doc = api.ok("invoices/getOne", {"company_id": 5, "document_id": doc_id})
    # 2 x 18.75 = 37.50 - 3.75 = 33.75 (VAT 7.7625 -> 7.76) + 12.50 exempt: gross 50.00, discount 3.75, VAT 7.76, total 54.01
    assert (doc["gross_value"], doc["comercial_discount_value"], doc["taxes_value"], doc["net_value"]) == (
        D("50.00"),
        D("3.75"),
        D("7.76"),
        D("54.01"),
    )
    assert doc["products"][0]["taxes"][0]["incidence_value"] == D("33.75")
    assert (
        api.call(
            "invoices/insert",
            draft(products=[{"product_id": 105, "name": "x", "qty": "1", "price": "1", "exemption_reason": "X99"}]),
        ).json()[0]["field"]
        == "products[0][exemption_reason]"
    )


# --------------------------------------------------------------------------- closing, lookups
def test_update_closes_numbers_and_emails_then_the_invoice_is_frozen(api):
    first = api.ok("invoices/insert", draft())["document_id"]
    second = api.ok("invoices/insert", draft(your_reference="ACME-WO-2-R1"))["document_id"]
    closed = api.ok(
        "invoices/update",
        {
            "company_id": 5,
            "document_id": second,
            "status": 1,
            "send_email": [{"email": "contas@example.pt", "name": "Hotel", "msg": "Obrigado"}],
        },
    )
    assert closed == {"valid": 1, "document_id": second}
    api.ok("invoices/update", {"company_id": 5, "document_id": first, "status": 1})
    docs = {d["document_id"]: d for d in api.ok("invoices/getAll", {"company_id": 5})}
    assert (docs[second]["number"], docs[first]["number"]) == (1, 2) and docs[first]["status"] == 1
    again = api.ok("invoices/update", {"company_id": 5, "document_id": second, "status": 1})
    assert again[0]["field"] == "document_id" and "closed" in again[0]["description"]
    assert (
        api.ok("invoices/delete", {"company_id": 5, "document_id": second})[0]["description"]
        == "Document is closed and can't be deleted"
    )
    third = api.ok("invoices/insert", draft(your_reference="ACME-WO-3-R1"))["document_id"]
    assert api.ok("invoices/delete", {"company_id": 5, "document_id": third}) == {"valid": 1}
    stats = httpx.get(str(api.http.base_url).rstrip("/") + "/_emulator/emails").json()
    assert stats == [{"document_id": second, "email": "contas@example.pt", "name": "Hotel", "msg": "Obrigado"}]


def test_get_all_filters_and_pages(api):
    for n in range(53):
        api.ok("invoices/insert", draft(your_reference=f"REF-{n % 2}"))
    page = api.ok("invoices/getAll", {"company_id": 5, "your_reference": "REF-0", "qty": 100})
    assert len(page) == 27  # 27 of the 53 are REF-0 (qty 100 is capped at 50)
    assert all(d["your_reference"] == "REF-0" for d in page) and "products" not in page[0]
    everything = api.ok("invoices/getAll", {"company_id": 5, "qty": 100})
    rest = api.ok("invoices/getAll", {"company_id": 5, "qty": 50, "offset": 50})
    assert len(everything) == 50 and len(rest) == 3
    assert everything[0]["document_id"] > everything[-1]["document_id"]  # newest first
    one = api.ok("invoices/getOne", {"company_id": 5, "your_reference": "REF-1"})
    assert one["your_reference"] == "REF-1" and one["products"]
    assert api.ok("invoices/getOne", {"company_id": 5, "document_id": 1}) == []


def test_customers(api):
    found = api.ok("customers/getByVat", {"company_id": 5, "vat": "500000000"})
    assert [c["customer_id"] for c in found] == [201]
    base = {
        "company_id": 5,
        "vat": "999999990",
        "number": "CLI-NEW",
        "name": "Novo Cliente",
        "language_id": 1,
        "address": "Rua A",
        "city": "Lisboa",
        "country_id": 1,
        "maturity_date_id": 11,
        "payment_method_id": 21,
    }
    bad = api.ok("customers/insert", {**base, "vat": "123456780", "zip_code": "1000", "number": "X" * 21})
    assert [e["field"] for e in bad] == ["number", "vat", "zip_code"]
    created = api.ok("customers/insert", base)
    assert created["valid"] == 1
    assert api.ok("customers/insert", base)[0]["description"] == "Field 'number' already exists"
    assert (
        api.ok("customers/getByNumber", {"company_id": 5, "number": "CLI-NEW"})[0]["customer_id"]
        == created["customer_id"]
    )


# --------------------------------------------------------------------------- limits and faults
def test_rate_limit_answers_429_with_or_without_retry_after(emulators):
    for send, header in ((True, "60"), (False, None)):
        emu = emulators(rate_limit_per_minute=2, send_retry_after=send)
        api = Api(emu)
        try:
            assert [api.call("companies/getAll", {}).status_code for _ in range(3)] == [200, 200, 429]
            limited = api.call("companies/getAll", {})
            assert limited.headers.get("Retry-After") in (header, "59") and emu.count_429 == 2
        finally:
            api.close()


def test_faults_and_control_api(api):
    base = str(api.http.base_url).rstrip("/")
    control = httpx.Client(base_url=base, timeout=5)
    try:
        assert control.post("/_emulator/faults", json={"kind": "503", "times": 1}).status_code == 200
        assert api.call("invoices/insert", draft()).status_code == 503
        assert api.ok("invoices/getAll", {"company_id": 5}) == []
        control.post("/_emulator/faults", json={"kind": "timeout_after_commit", "only": "invoices/insert"})
        assert api.call("companies/getAll", {}).status_code == 200  # not the targeted method
        with pytest.raises(httpx.ReadTimeout):
            api.http.post(
                "/v1/invoices/insert/",
                params={"access_token": api.token},
                content=form_body(draft()),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=0.3,
            )
        listing = control.get("/_emulator/invoices").json()
        assert len(listing) == 1 and listing[0]["company_id"] == 5  # stored before the answer was lost
        control.post("/_emulator/faults", json={"kind": "429", "times": 1})
        assert api.call("companies/getAll", {}).headers["Retry-After"] == "1"
        stats = control.get("/_emulator/stats").json()
        assert stats["invoice_count"] == 1 and ["POST", "/v1/invoices/insert/", 0] in stats["calls"]
        assert control.post("/_emulator/faults", json={"kind": "meteor"}).status_code == 400
        assert control.post("/_emulator/reset").json() == {"ok": True}
        assert control.get("/_emulator/invoices").json() == []
        assert api.call("companies/getAll", {}).status_code == 200  # tokens survive a reset
    finally:
        control.close()


# --------------------------------------------------------------------------- credit notes, receipts, balance
def closed_invoice(api) -> int:
    """A closed invoice of 3.25 h x 42.00 = 136.50 + VAT 31.395 -> 31.40 = 167.90."""
    document_id = api.ok("invoices/insert", draft())["document_id"]
    api.ok("invoices/update", {"company_id": 5, "document_id": document_id, "status": 1})
    return document_id


def credit(invoice_id, value, **overrides) -> dict:
    fields = {
        "company_id": 5,
        "date": "2026-03-05",
        "document_set_id": 7,
        "customer_id": 201,
        "your_reference": "ACME-WO-1-R1-CN",
        "associated_documents": [{"associated_id": invoice_id, "value": value}],
        "status": 1,
        "products": draft()["products"],
    }
    fields.update(overrides)
    return fields


def test_credit_notes_need_a_closed_invoice_of_the_customer_and_at_most_its_value(api):
    draft_id = api.ok("invoices/insert", draft())["document_id"]
    invoice_id = closed_invoice(api)
    refusals = {
        "no association": credit(invoice_id, D("167.90"), associated_documents=[]),
        "a draft": credit(draft_id, D("167.90")),
        "another customer": credit(invoice_id, D("167.90"), customer_id=202),
        "too much": credit(invoice_id, D("167.91")),
    }
    fields = {name: api.ok("creditNotes/insert", body)[0]["field"] for name, body in refusals.items()}
    assert fields == {
        "no association": "associated_documents",
        "a draft": "associated_documents[0][associated_id]",
        "another customer": "associated_documents[0][associated_id]",
        "too much": "associated_documents[0][value]",
    }
    assert api.ok("creditNotes/getAll", {"company_id": 5}) == []
    half = api.ok(
        "creditNotes/insert",
        credit(
            invoice_id,
            D("100.00"),
            products=[{"product_id": 101, "name": "Acerto", "qty": 1, "price": D("100.00"), "exemption_reason": "M07"}],
        ),
    )["document_id"]
    # 167.90 - 100.00 = 67.90 is all that is left to credit on the invoice
    assert api.ok("creditNotes/insert", credit(invoice_id, D("67.91")))[0]["field"] == "associated_documents[0][value]"
    note = api.ok("creditNotes/getOne", {"company_id": 5, "document_id": half})
    assert (note["status"], note["number"], note["reconciled_value"]) == (1, 1, D("100.00"))
    invoice = api.ok("invoices/getOne", {"company_id": 5, "document_id": invoice_id})
    assert invoice["reconciled_value"] == D("100.00")
    assert [(r["document_id"], r["value"]) for r in invoice["reverse_associated_documents"]] == [(half, D("100.00"))]


def test_closing_a_credit_note_reconciles_the_invoice_and_freezes_the_note(api):
    invoice_id = closed_invoice(api)
    note_id = api.ok("creditNotes/insert", credit(invoice_id, D("167.90"), status=0))["document_id"]
    assert api.ok("invoices/getOne", {"company_id": 5, "document_id": invoice_id})["reconciled_value"] == D("0.00")
    assert api.ok("creditNotes/update", {"company_id": 5, "document_id": note_id, "status": 1}) == {
        "valid": 1,
        "document_id": note_id,
    }
    assert api.ok("creditNotes/update", {"company_id": 5, "document_id": note_id, "status": 1})[0]["description"] == (
        "Document is closed and can't be updated"
    )
    assert api.ok("creditNotes/delete", {"company_id": 5, "document_id": note_id})[0]["description"] == (
        "Document is closed and can't be deleted"
    )
    rows = api.ok("creditNotes/getAll", {"company_id": 5, "your_reference": "ACME-WO-1-R1-CN"})
    assert [(r["document_id"], r["status"], r["net_value"]) for r in rows] == [(note_id, 1, D("167.90"))]
    assert "notes" not in rows[0]  # getAll rows carry no notes; getOne does
    assert "notes" in api.ok("creditNotes/getOne", {"company_id": 5, "document_id": note_id})
    invoice = api.ok("invoices/getOne", {"company_id": 5, "document_id": invoice_id})
    assert (invoice["status"], invoice["reconciled_value"]) == (1, D("167.90"))


def test_receipts_balance_and_the_control_api(emulators):
    emu = emulators()
    a = Api(emu)
    try:
        invoice_id = closed_invoice(a)
        draft_id = a.ok("invoices/insert", draft(your_reference="ACME-WO-2-R1"))["document_id"]
        with pytest.raises(ValueError, match="not a closed invoice"):
            emu.mark_paid(draft_id)
        with pytest.raises(ValueError, match=r"167\.90 is due"):
            emu.mark_paid(invoice_id, D("167.91"))
        control = httpx.Client(base_url=emu.url, timeout=5)
        try:
            paid = control.post("/_emulator/payments", json={"document_id": invoice_id, "value": "60.00"}).json()
            assert paid["ok"] is True and loads(control.get("/_emulator/balance").content) == {"balance": D("107.90")}
            # a credit note for the whole 167.90: 107.90 settles the invoice, 60.00 is owed to the customer
            note_id = a.ok("creditNotes/insert", credit(invoice_id, D("167.90")))["document_id"]
            assert emu.balance() == D("-60.00") and emu.balance(customer_id=202) == D("0.00")
            [listed] = loads(control.get("/_emulator/credit-notes").content)
            assert listed["document_id"] == note_id and listed["reconciled_value"] == D("107.90")
            foreign = control.post("/_emulator/foreign", json={"your_reference": "X-1", "total": "999.00"}).json()
            planted = a.ok("invoices/getOne", {"company_id": 5, "document_id": foreign["document_id"]})
            assert (planted["status"], planted["net_value"], planted["notes"]) == (1, D("999.00"), "")
            assert emu.balance() == D("939.00")
            assert control.post("/_emulator/payments", json={"document_id": draft_id}).status_code == 400
        finally:
            control.close()
    finally:
        a.close()

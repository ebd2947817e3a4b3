"""The InvoiceXpress emulator over real loopback HTTP: api_key, accounts, 422 errors, totals, states, limits, faults.

Plain httpx requests (no connector). Expected amounts are computed by hand in the comments.
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest

from connectors.invoicexpress.emulator import DEFAULT_API_KEY, InvoiceXpressEmulator
from connectors.invoicexpress.mapper import loads

GOLDEN = sorted((Path(__file__).resolve().parent / "golden" / "invoicexpress").glob("*.json"))


@pytest.fixture
def emulators():
    started: list[InvoiceXpressEmulator] = []

    def make(**kwargs) -> InvoiceXpressEmulator:
        kwargs.setdefault("hang_seconds", 1.0)
        emu = InvoiceXpressEmulator(**kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
        assert emu.server_errors == []


class Api:
    def __init__(self, emu: InvoiceXpressEmulator, account: str = "acme-demo", key: str = DEFAULT_API_KEY):
        self.http = httpx.Client(base_url=f"{emu.url}/{account}", timeout=5)
        self.key = key

    def req(self, method: str, path: str, body=None, **params) -> httpx.Response:
        kwargs = {"params": {"api_key": self.key, **params}}
        if body is not None:
            kwargs["json"] = body
        return self.http.request(method, path, **kwargs)

    def close(self):
        self.http.close()


@pytest.fixture
def emu(emulators):
    return emulators()


@pytest.fixture
def api(emu):
    a = Api(emu)
    yield a
    a.close()


def body(**overrides) -> dict:
    doc = {
        "date": "03/03/2026",
        "due_date": "02/04/2026",
        "reference": "ACME-WO-1-R1",
        "client": {"name": "Hotel Atlântico Lisboa, S.A.", "code": "CLI-HAL"},
        "items": [
            {
                "name": "Mão de obra",
                "description": "Labour",
                "unit_price": "42.00",
                "quantity": "3.25",
                "tax": {"name": "IVA23"},
            }
        ],
    }
    doc.update(overrides)
    return {"invoice": doc}


def created(resp: httpx.Response) -> dict:
    assert resp.status_code == 201, resp.text
    return loads(resp.content)["invoice"]


def test_api_key_and_account(emulators):
    emu = emulators()
    wrong = Api(emu, key="nope")
    unknown = Api(emu, account="other-account")
    try:
        resp = wrong.req("GET", "/sequences.json")
        assert resp.status_code == 401 and resp.json() == {"errors": [{"error": "Access denied: invalid API key"}]}
        assert unknown.req("GET", "/sequences.json").status_code == 404
    finally:
        wrong.close()
        unknown.close()


def test_validation_errors_are_422_with_the_errors_shape(api, emu):
    bad = body(
        date="2026-03-03",
        client={"name": ""},
        items=[{"name": "", "unit_price": "abc", "quantity": "0", "discount": "150", "tax": {"name": "IVA0"}}],
        reference="R" * 51,
    )
    resp = api.req("POST", "/invoices.json", bad)
    assert resp.status_code == 422
    assert resp.json() == {
        "errors": [
            {"error": m}
            for m in [
                "Date is invalid (dd/mm/yyyy)",
                "Client name can't be blank",
                "Reference is too long (maximum is 50 characters)",
                "Item 1: Name can't be blank",
                "Item 1: Unit price must be a number",
                "Item 1: Quantity must be a number greater than 0",
                "Item 1: Discount must be between 0 and 100",
                "Tax exemption can't be blank when an item is exempt from VAT",
            ]
        ]
    }
    assert api.req("POST", "/invoices.json", body(tax_exemption="isento")).json()["errors"] == [
        {"error": "Tax exemption is not valid"}
    ]
    assert emu.invoices() == []


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_bodies_are_accepted_as_drafts_with_our_totals(api, path):
    golden = json.loads(path.read_text(encoding="utf-8"))
    doc = created(api.req("POST", "/invoices.json", golden["body"]))
    assert doc["status"] == "draft" and doc["sequence_number"] == "draft"
    assert doc["total"] == D(golden["invoice"]["total"]) and doc["taxes"] == D(golden["invoice"]["tax_total"])


def test_items_clients_and_the_default_tax(api, emu):
    doc = created(
        api.req(
            "POST",
            "/invoices.json",
            body(
                client={"name": "Nova Oficina, Lda.", "code": "CLI-NEW"},
                items=[
                    {
                        "name": "Material",
                        "description": "Contactor",
                        "unit_price": "18.75",
                        "quantity": "2",
                        "discount": "10",
                        "tax": {"name": "IVA23"},
                    },
                    {
                        "name": "Material",
                        "description": "Unknown tax",
                        "unit_price": "10.00",
                        "quantity": "1",
                        "tax": {"name": "IVA99"},
                    },
                ],
            ),
        )
    )
    # 2 x 18.75 = 37.50, 10 % = 3.75 -> 33.75 (7.7625 -> 7.76); IVA99 unknown -> default IVA23: 10.00 (2.30)
    assert (doc["sum"], doc["discount"], doc["before_taxes"], doc["taxes"], doc["total"]) == (
        D("47.50"),
        D("3.75"),
        D("43.75"),
        D("10.06"),
        D("53.81"),
    )
    assert doc["items"][1]["tax"] == {"name": "IVA23", "value": D("23")}
    assert emu.items()["Material"]["unit_price"] == D("10.00")  # the item was updated by the last line sent
    assert [c["code"] for c in emu.clients()] == ["CLI-HAL", "CLI-NEW"]
    found = api.req("GET", "/clients/find-by-name.json", client_name="Nova Oficina, Lda.")
    assert found.json()["client"]["code"] == "CLI-NEW"
    assert api.req("GET", "/clients/find-by-code.json", client_code="NOPE").status_code == 404


def test_vat_per_item_or_per_document(emulators):
    three = body(
        items=[
            {
                "name": "Material",
                "description": f"A{n}",
                "unit_price": "2.37",
                "quantity": "1",
                "tax": {"name": "IVA23"},
            }
            for n in range(3)
        ]
    )
    totals = {}
    for method in ("line", "document"):
        api = Api(emulators(rounding_method=method))
        try:
            doc = created(api.req("POST", "/invoices.json", three))
            totals[method] = (doc["taxes"], doc["total"])
        finally:
            api.close()
    # per item 0.5451 -> 0.55 x 3 = 1.65 (8.76); per document 7.11 x 0.23 = 1.6353 -> 1.64 (8.75)
    assert totals == {"line": (D("1.65"), D("8.76")), "document": (D("1.64"), D("8.75"))}


def test_state_changes_and_email(api, emu):
    doc = created(api.req("POST", "/invoices.json", body()))
    path = f"/invoices/{doc['id']}"
    assert (
        api.req("PUT", f"{path}/email-document.json", {"message": {"client": {"email": "a@b.pt"}}}).status_code == 422
    )
    final = loads(api.req("PUT", f"{path}/change-state.json", {"invoice": {"state": "finalized"}}).content)["invoice"]
    assert final["status"] == "final" and final["sequence_number"] == "1/2026" and final["atcud"] == "JFK15355-1"
    again = api.req("PUT", f"{path}/change-state.json", {"invoice": {"state": "finalized"}})
    assert again.status_code == 422 and "is final" in again.json()["errors"][0]["error"]
    assert (
        api.req("PUT", f"{path}/change-state.json", {"invoice": {"state": "canceled"}}).status_code == 422
    )  # needs a message
    sent = api.req(
        "PUT",
        f"{path}/email-document.json",
        {"message": {"client": {"email": "contas@example.pt", "save": "0"}, "subject": "Fatura", "body": "Obrigado"}},
    )
    assert sent.status_code == 200 and emu.emails == [
        {"invoice_id": doc["id"], "email": "contas@example.pt", "subject": "Fatura", "body": "Obrigado"}
    ]
    api.req("PUT", f"{path}/change-state.json", {"invoice": {"state": "settled"}})
    settled = api.req("PUT", f"{path}/change-state.json", {"invoice": {"state": "finalized"}})
    assert settled.json()["errors"][0]["error"] == "Invoice has been settled so can't be changed anymore"
    draft = created(api.req("POST", "/invoices.json", body(reference="ACME-WO-2-R1")))
    api.req("PUT", f"/invoices/{draft['id']}/change-state.json", {"invoice": {"state": "deleted"}})
    assert api.req("GET", f"/invoices/{draft['id']}.json").status_code == 404
    assert [d["id"] for d in emu.invoices()] == [doc["id"]]


def test_listing_by_text_with_pages(api):
    for n in range(30):
        api.req("POST", "/invoices.json", body(reference=f"CF-{n}-R1"))
    hits = api.req("GET", "/invoices.json", text="cf-1", per_page=5).json()
    # CF-1-R1 and CF-10..CF-19: 11 matches, newest first, 5 per page
    assert hits["pagination"] == {"total_entries": 11, "current_page": 1, "total_pages": 3, "per_page": 5}
    assert [d["reference"] for d in hits["invoices"]] == ["CF-19-R1", "CF-18-R1", "CF-17-R1", "CF-16-R1", "CF-15-R1"]
    last = api.req("GET", "/invoices.json", text="CF-1-", page=3, per_page=5).json()
    assert [d["reference"] for d in last["invoices"]] == [] and last["pagination"]["total_entries"] == 1


def test_rate_limit_per_account(emulators):
    emu = emulators(rate_limit_per_minute=3)
    api = Api(emu)
    try:
        statuses = [api.req("GET", "/sequences.json").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = api.req("GET", "/sequences.json")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60 and limited.json() == {
            "errors": [{"error": "Too many requests"}]
        }
        assert emu.count_429 == 2
    finally:
        api.close()


def test_faults_and_control_api(api, emu):
    control = httpx.Client(base_url=emu.url, timeout=5)
    try:
        control.post("/_emulator/faults", json={"kind": "timeout_after_commit", "only": "create"})
        assert api.req("GET", "/sequences.json").status_code == 200  # another operation
        with pytest.raises(httpx.ReadTimeout):
            api.http.post("/invoices.json", params={"api_key": DEFAULT_API_KEY}, json=body(), timeout=0.3)
        assert len(control.get("/_emulator/invoices").json()) == 1  # stored before the answer was lost
        emu.inject_fault("503", 2)
        assert [api.req("GET", "/sequences.json").status_code for _ in range(3)] == [503, 503, 200]
        emu.inject_fault("429", retry_after=4)
        assert api.req("GET", "/sequences.json").headers["Retry-After"] == "4"
        stats = control.get("/_emulator/stats").json()
        assert stats["invoice_count"] == 1 and ["POST", "/acme-demo/invoices.json", 0] in stats["calls"]
        assert control.post("/_emulator/faults", json={"kind": "503", "only": "nothing"}).status_code == 400
        control.post("/_emulator/reset")
        assert control.get("/_emulator/invoices").json() == []
    finally:
        control.close()


# --------------------------------------------------------------------------- credit notes, payments, balance
def final_invoice(api, **overrides) -> dict:
    """A final invoice of 3.25 h x 42.00 = 136.50 + VAT 31.395 -> 31.40 = 167.90."""
    doc = created(api.req("POST", "/invoices.json", body(**overrides)))
    api.req("PUT", f"/invoices/{doc['id']}/change-state.json", {"invoice": {"state": "finalized"}})
    return doc


def credit_body(owner, **overrides) -> dict:
    doc = body(reference="ACME-WO-1-R1-CN", owner_invoice_id=owner)["invoice"]
    doc.update(overrides)
    return {"invoice": doc}


def errors_of(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 422, resp.text
    return [e["error"] for e in resp.json()["errors"]]


def test_credit_notes_need_a_final_owner_invoice_of_the_client_and_at_most_its_total(api, emu):
    draft = created(api.req("POST", "/invoices.json", body(reference="ACME-WO-2-R1")))
    owner = final_invoice(api)["id"]
    refusals = {
        "no owner": credit_body(None),
        "a draft owner": credit_body(draft["id"]),
        "another client": credit_body(owner, client={"name": "Outro, Lda", "code": "CLI-OTHER"}),
        "too much": credit_body(owner, items=[{**body()["invoice"]["items"][0], "unit_price": "42.01"}]),
    }
    got = {name: errors_of(api.req("POST", "/credit_notes.json", b)) for name, b in refusals.items()}
    assert got == {
        "no owner": ["Owner invoice can't be blank"],
        "a draft owner": ["Owner invoice must be a finalized invoice of this account"],
        "another client": ["Client must be the client of the owner invoice"],
        # 3.25 x 42.01 = 136.5325 -> 136.53, VAT 31.4019 -> 31.40: 167.93 > 167.90
        "too much": ["Total can't exceed what is left to credit on the owner invoice (167.90)"],
    }
    assert emu.credit_notes() == []
    resp = api.req("POST", "/credit_notes.json", credit_body(owner))
    assert resp.status_code == 201, resp.text
    note = loads(resp.content)["credit_note"]
    assert (note["status"], note["type"], note["total"], note["owner_invoice_id"]) == (
        "draft",
        "CreditNote",
        D("167.90"),
        owner,
    )
    path = f"/credit_notes/{note['id']}"
    final = loads(api.req("PUT", f"{path}/change-state.json", {"invoice": {"state": "finalized"}}).content)
    assert final["credit_note"]["status"] == "final" and final["credit_note"]["sequence_number"] == "1/2026"
    assert errors_of(api.req("PUT", f"{path}/change-state.json", {"invoice": {"state": "settled"}})) == [
        "Invalid state transition: the document is final and can't be changed to settled"
    ]
    # nothing is left to credit on the owner invoice now
    assert errors_of(api.req("POST", "/credit_notes.json", credit_body(owner))) == [
        "Total can't exceed what is left to credit on the owner invoice (0.00)"
    ]
    listed = api.req("GET", "/credit_notes.json", text="ACME-WO-1-R1-CN").json()
    assert [d["id"] for d in listed["credit_notes"]] == [note["id"]] and listed["pagination"]["total_entries"] == 1
    assert loads(api.req("GET", f"{path}.json").content)["credit_note"]["status"] == "final"
    related = loads(api.req("GET", f"/invoices/{owner}/related-documents.json").content)["documents"]
    assert [(d["id"], d["type"], d["status"]) for d in related] == [(note["id"], "CreditNote", "final")]


def test_paid_and_credited_invoices_are_never_canceled(api, emu):
    paid = final_invoice(api)["id"]
    receipt = emu.mark_paid(paid, D("67.90"))
    partly = errors_of(
        api.req("PUT", f"/invoices/{paid}/change-state.json", {"invoice": {"state": "canceled", "message": "x"}})
    )
    assert partly == ["Invoice has receipts or credit notes so can't be canceled"]
    emu.mark_paid(paid)  # the other 100.00: settled
    assert [d["status"] for d in emu.invoices()] == ["settled"]
    settled = api.req("PUT", f"/invoices/{paid}/change-state.json", {"invoice": {"state": "canceled", "message": "x"}})
    assert errors_of(settled) == ["Invoice has been settled so can't be changed anymore"]
    with pytest.raises(ValueError, match="not a final invoice"):
        emu.mark_paid(paid)
    related = loads(api.req("GET", f"/invoices/{paid}/related-documents.json").content)["documents"]
    assert [(d["id"], d["type"], d["total"]) for d in related] == [
        (receipt, "Receipt", D("67.90")),
        (receipt + 1, "Receipt", D("100.00")),
    ]
    credited = final_invoice(api, reference="ACME-WO-2-R1")["id"]
    note = loads(api.req("POST", "/credit_notes.json", credit_body(credited)).content)["credit_note"]
    api.req("PUT", f"/credit_notes/{note['id']}/change-state.json", {"invoice": {"state": "finalized"}})
    refused = api.req(
        "PUT", f"/invoices/{credited}/change-state.json", {"invoice": {"state": "canceled", "message": "x"}}
    )
    assert errors_of(refused) == ["Invoice has receipts or credit notes so can't be canceled"]
    # settled 0.00 + (167.90 - 167.90 credited) = 0.00; the payments stay as they were
    assert emu.balance() == D("0.00")


def test_balance_and_the_control_api(emu):
    base = emu.url
    api = Api(emu)
    control = httpx.Client(base_url=base, timeout=5)
    try:
        owner = final_invoice(api)["id"]
        created(api.req("POST", "/invoices.json", body(reference="DRAFT-R1")))  # drafts owe nothing
        paid = control.post("/_emulator/payments", json={"invoice_id": owner, "amount": "60.00"}).json()
        assert paid["ok"] is True and loads(control.get("/_emulator/balance").content) == {"balance": D("107.90")}
        assert control.post("/_emulator/payments", json={"invoice_id": owner, "amount": "107.91"}).status_code == 400
        note = loads(api.req("POST", "/credit_notes.json", credit_body(owner)).content)["credit_note"]
        assert emu.balance() == D("107.90")  # a draft credit note counts zero
        api.req("PUT", f"/credit_notes/{note['id']}/change-state.json", {"invoice": {"state": "finalized"}})
        assert emu.balance() == D("-60.00")
        [listed] = loads(control.get("/_emulator/credit-notes").content)
        assert (listed["id"], listed["account"], listed["total"]) == (note["id"], "acme-demo", D("167.90"))
        foreign = control.post("/_emulator/foreign", json={"reference": "X-1", "total": "999.00"}).json()
        planted = loads(api.req("GET", f"/invoices/{foreign['id']}.json").content)["invoice"]
        assert (planted["status"], planted["total"], planted["observations"]) == ("final", D("999.00"), "")
        assert emu.balance() == D("939.00")
    finally:
        control.close()
        api.close()

"""The FreshBooks emulator itself, over real HTTP: auth, error bodies, FreshBooks' arithmetic, uniqueness, lists, actions.

Values are computed by hand in comments.
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest

from connectors.freshbooks.emulator import DEFAULT_ACCOUNT_ID, FreshBooksEmulator
from connectors.freshbooks.spec import body_problems, make_request_validator
from connectors.sdk.money import dumps

SPEC = Path(__file__).resolve().parent / "specs" / "freshbooks" / "openapi.yaml"
ACCOUNT = DEFAULT_ACCOUNT_ID
INVOICES = f"/accounting/account/{ACCOUNT}/invoices/invoices"


def body(resp: httpx.Response):
    return json.loads(resp.content, parse_float=D)


def token(emu: FreshBooksEmulator, refresh: str = "demo-refresh-token", secret: str = "demo-secret") -> httpx.Response:
    return httpx.post(
        f"{emu.url}/auth/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": "demo-client",
            "client_secret": secret,
        },
        timeout=5,
    )


class Api:
    def __init__(self, emu: FreshBooksEmulator):
        resp = token(emu)
        assert resp.status_code == 200, resp.text
        self.token = resp.json()["access_token"]
        self.http = httpx.Client(base_url=emu.url, timeout=5, headers={"Authorization": f"Bearer {self.token}"})

    def create(self, invoice: dict, **params):
        return self.http.post(
            INVOICES, params=params, content=dumps({"invoice": invoice}), headers={"Content-Type": "application/json"}
        )

    def update(self, invoice_id, changes: dict):
        return self.http.put(
            f"{INVOICES}/{invoice_id}",
            content=dumps({"invoice": changes}),
            headers={"Content-Type": "application/json"},
        )

    def close(self):
        self.http.close()


@pytest.fixture
def emu():
    emulator = FreshBooksEmulator(request_validator=make_request_validator(SPEC)).start()
    yield emulator
    emulator.stop()
    assert emulator.server_errors == []


@pytest.fixture
def api(emu):
    a = Api(emu)
    yield a
    a.close()
    assert emu.validation_failures == []


def fb_line(qty, cost, tax=None, *, name="Labour", description="Work"):
    out = {
        "type": 0,
        "name": name,
        "description": description,
        "qty": D(qty),
        "unit_cost": {"amount": cost, "code": "EUR"},
    }
    if tax is not None:
        out.update(taxName1="IVA", taxAmount1=tax)
    return out


def fb_invoice(number="INV-T-1", lines=None, **extra):
    doc = {
        "customerid": 31007,
        "create_date": "2026-03-02",
        "due_offset_days": 30,
        "invoice_number": number,
        "currency_code": "EUR",
        "lines": lines if lines is not None else [fb_line("3.25", "42.00", "23")],
    }
    doc.update(extra)
    return doc


def errors(resp):
    return [(e["errno"], e["field"], e["message"]) for e in body(resp)["response"]["errors"]]


# --------------------------------------------------------------------------- OAuth2 and identity
def test_refresh_tokens_are_single_use(emu):
    first = token(emu)
    assert first.status_code == 200 and first.json()["token_type"] == "Bearer" and first.json()["expires_in"] == 43200
    spent = token(emu)  # the same refresh token again
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"
    assert token(emu, first.json()["refresh_token"]).status_code == 200
    bad = token(emu, "x", secret="nope")
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    assert emu.refresh_token_uses == ["demo-refresh-token", "demo-refresh-token", first.json()["refresh_token"]]


def test_identity_and_auth_errors(emu, api):
    me = body(api.http.get("/auth/api/v1/users/me"))["response"]
    assert [m["business"]["account_id"] for m in me["business_memberships"]] == [ACCOUNT]
    anonymous = httpx.get(f"{emu.url}{INVOICES}", timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthenticated"
    other = api.http.get("/accounting/account/Nope1/invoices/invoices")
    assert other.status_code == 403 and errors(other)[0][0] == 1003
    emu.expire_access_tokens()
    assert api.http.get(INVOICES).status_code == 401


# --------------------------------------------------------------------------- arithmetic and validation
def test_create_is_a_draft_with_freshbooks_totals(emu, api):
    lines = [
        fb_line("3.25", "42.00", "23"),
        *[fb_line("1", "0.99", "23", name="Parts") for _ in range(3)],
        fb_line("1", "12.50", name="Expenses"),
    ]
    created = body(api.create(fb_invoice(lines=lines), **{"include[]": "lines"}))["response"]["result"]["invoice"]
    # 136.50 + 3 × 0.99 + 12.50 = 151.97; tax per line: 31.395 -> 31.40, 3 × (0.2277 -> 0.23) = 0.69; total 184.06
    assert created["amount"] == {"amount": "184.06", "code": "EUR"} and created["outstanding"]["amount"] == "184.06"
    assert (created["status"], created["v3_status"], created["due_date"]) == (1, "draft", "2026-04-01")
    assert [ln["amount"]["amount"] for ln in created["lines"]] == ["136.50", "0.99", "0.99", "0.99", "12.50"]
    plain = body(api.http.get(f"{INVOICES}/{created['invoiceid']}"))["response"]["result"]["invoice"]
    assert "lines" not in plain  # lines only with include[]=lines


def test_unit_cost_keeps_two_decimals(emu, api):
    # 2 × 16.875: the unit cost becomes 16.88, the line 33.76 — one cent more than 33.75
    created = body(api.create(fb_invoice(lines=[fb_line("2", "16.875")]), **{"include[]": "lines"}))["response"][
        "result"
    ]["invoice"]
    assert created["lines"][0]["unit_cost"]["amount"] == "16.88" and created["amount"]["amount"] == "33.76"


def test_invoice_numbers_are_unique_even_against_deleted_invoices(emu, api):
    created = body(api.create(fb_invoice()))["response"]["result"]["invoice"]
    dup = api.create(fb_invoice())
    assert dup.status_code == 422 and errors(dup) == [(2004, "invoice_number", "Invoice number already exists.")]
    assert body(api.update(created["invoiceid"], {"vis_state": 1}))["response"]["result"]["invoice"]["vis_state"] == 1
    assert (
        body(api.http.get(INVOICES, params={"search[invoice_number]": "INV-T-1"}))["response"]["result"]["invoices"]
        == []
    )
    assert api.create(fb_invoice()).status_code == 422  # deleted, still taken


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (fb_invoice(customerid=None), (2001, "customerid")),
        (fb_invoice(customerid=4242), (1012, "customerid")),
        (fb_invoice(create_date=None), (2001, "create_date")),
        (fb_invoice(due_offset_days=-1), (2002, "due_offset_days")),
        (fb_invoice("N" * 101), (2003, "invoice_number")),
        (fb_invoice(lines=[fb_line("1", "1.00", "23.4567")]), (2002, "lines[0].taxAmount1")),
        (
            fb_invoice(lines=[{**fb_line("1", "1.00"), "unit_cost": {"amount": "1.00", "code": "USD"}}]),
            (2002, "lines[0].unit_cost.code"),
        ),
    ],
)
def test_validation_errors(emu, api, doc, expected):
    emu.request_validator = None  # the emulator's own checks
    resp = api.create({k: v for k, v in doc.items() if v is not None})
    assert resp.status_code == 422 and expected in [(n, f) for n, f, _ in errors(resp)], errors(resp)
    assert emu.invoices() == []


def test_spec_validator_refuses_unknown_and_mistyped_fields(emu, api):
    assert body_problems(
        SPEC, "InvoiceCreateObject", {"invoice": fb_invoice(lines=[{**fb_line("1", "1.00"), "taxamount1": "23"}])}
    )
    assert body_problems(
        SPEC, "InvoiceCreateObject", {"invoice": fb_invoice(customerid="31007")}
    )  # a string, not an integer
    assert (
        body_problems(SPEC, "InvoiceCreateObject", {"invoice": fb_invoice(lines=[fb_line("1.5", "1.00")])}) == []
    )  # fractional qty
    resp = api.create(fb_invoice(discount_valu="5"))
    assert resp.status_code == 400 and "discount_valu" in emu.validation_failures[0]
    emu.validation_failures.clear()


# --------------------------------------------------------------------------- lists and actions
def test_list_filters_pagination_and_actions(emu, api):
    ids = [body(api.create(fb_invoice(f"INV-{n}")))["response"]["result"]["invoice"]["invoiceid"] for n in range(3)]
    page = body(api.http.get(INVOICES, params={"per_page": "2", "page": "2"}))["response"]["result"]
    assert (page["page"], page["pages"], page["per_page"], page["total"]) == (2, 2, 2, 3)
    assert [i["invoiceid"] for i in page["invoices"]] == [ids[0]]  # newest first
    by_number = body(api.http.get(INVOICES, params={"search[invoice_number]": "INV-1"}))["response"]["result"][
        "invoices"
    ]
    assert [i["invoiceid"] for i in by_number] == [ids[1]]
    # an unknown filter is ignored, as list filters are: everything comes back
    assert body(api.http.get(INVOICES, params={"search[invoice_numbr]": "INV-1"}))["response"]["result"]["total"] == 3
    sent = body(api.update(ids[0], {"action_mark_as_sent": True}))["response"]["result"]["invoice"]
    assert (sent["status"], sent["v3_status"]) == (2, "sent") and emu.emails == []
    mailed = body(api.update(ids[1], {"action_email": True, "email_recipients": ["ops@example.com"]}))["response"][
        "result"
    ]["invoice"]
    assert mailed["v3_status"] == "sent" and emu.emails == [(ACCOUNT, ids[1], ["ops@example.com"])]
    no_mail = body(api.create(fb_invoice("INV-9", customerid=31008)))["response"]["result"]["invoice"]
    refused = api.update(no_mail["invoiceid"], {"action_email": True})
    assert refused.status_code == 422 and errors(refused)[0][1] == "email_recipients"
    assert api.http.get(f"{INVOICES}/12345").status_code == 404


def test_clients_search_and_create(emu, api):
    by_mail = body(
        api.http.get(
            f"/accounting/account/{ACCOUNT}/users/clients", params={"search[email]": "contas@hotel-atlantico.example"}
        )
    )["response"]["result"]["clients"]
    assert [c["userid"] for c in by_mail] == [31007]
    like = body(
        api.http.get(f"/accounting/account/{ACCOUNT}/users/clients", params={"search[organization_like]": "Parque"})
    )
    assert [c["userid"] for c in like["response"]["result"]["clients"]] == [31008]
    created = api.http.post(
        f"/accounting/account/{ACCOUNT}/users/clients",
        content=dumps({"client": {"organization": "Novo"}}),
        headers={"Content-Type": "application/json"},
    )
    assert body(created)["response"]["result"]["client"]["userid"] == 40001


# --------------------------------------------------------------------------- limits, faults, control API
def test_rate_limit_faults_and_control_api():
    emu = FreshBooksEmulator(rate_limit_per_minute=2).start()
    api = Api(emu)
    control = httpx.Client(base_url=emu.url, timeout=5)
    try:
        assert [api.http.get(INVOICES).status_code for _ in range(3)] == [200, 200, 429]
        assert 1 <= int(api.http.get(INVOICES).headers["Retry-After"]) <= 60 and emu.count_429 == 2
        emu.reset_state()
        emu.rate_limit_per_minute = None
        emu.inject_fault("timeout_after_commit")
        emu.hang_seconds = 0.2
        assert api.http.get(INVOICES).status_code == 200  # after-commit faults wait for a write
        with pytest.raises(httpx.TransportError):
            api.create(fb_invoice())
        assert len(emu.invoices()) == 1
        assert control.post("/_emulator/faults", json={"kind": "503"}).status_code == 200
        assert api.http.get(INVOICES).status_code == 503
        emu.fault_retry_after = 7
        emu.inject_fault("429")
        assert api.http.get(INVOICES).headers["Retry-After"] == "7"
        stats = control.get("/_emulator/stats").json()
        assert stats["invoice_count"] == 1 and ["POST", INVOICES, 0] in stats["calls"]
        assert control.get("/_emulator/invoices").json()[0]["account_id"] == ACCOUNT
        assert control.post("/_emulator/reset").status_code == 200 and emu.invoices() == []
    finally:
        control.close()
        api.close()
        emu.stop()


# --------------------------------------------------------------------------- lifecycle: delete, payments, credit notes
CREDITS = f"/accounting/account/{ACCOUNT}/credit_notes/credit_notes"


def credit(api: Api, note: dict):
    return api.http.post(CREDITS, content=dumps({"credit_note": note}), headers={"Content-Type": "application/json"})


def fb_credit(number="INV-T-1-CN", **extra):
    note = {
        "clientid": 31007,
        "create_date": "2026-03-09",
        "credit_number": number,
        "credit_type": "goodwill",
        "currency_code": "EUR",
        "notes": "Credit note for invoice INV-T-1",
        "lines": [{k: v for k, v in fb_line("3.25", "42.00", "23").items() if k != "type"}],
    }
    note.update(extra)
    return note


def test_payments_change_the_status_and_a_paid_invoice_cannot_be_deleted(emu, api):
    # 3.25 × 42.00 = 136.50; 23 % = 31.395 -> 31.40; amount 167.90
    created = body(api.create(fb_invoice(notes="broker:acme:wo:1:r1", terms="Net 30")))["response"]["result"]["invoice"]
    assert (created["notes"], created["terms"]) == ("broker:acme:wo:1:r1", "Net 30")
    ident = created["invoiceid"]
    with pytest.raises(ValueError, match=r"at most the outstanding 167\.90"):
        emu.pay(ACCOUNT, ident, D("167.91"))
    emu.pay(ACCOUNT, ident, D("100.00"))
    held = body(api.http.get(f"{INVOICES}/{ident}"))["response"]["result"]["invoice"]
    # 167.90 - 100.00 = 67.90 outstanding
    assert (held["paid"], held["outstanding"]) == (
        {"amount": "100.00", "code": "EUR"},
        {"amount": "67.90", "code": "EUR"},
    )
    assert (held["status"], held["v3_status"], held["payment_status"]) == (8, "partial", "partial")
    refused = api.update(ident, {"vis_state": 1})
    assert refused.status_code == 422 and errors(refused) == [
        (2010, "vis_state", "An invoice with payments cannot be deleted: delete its payments first.")
    ]
    payment = emu.pay(ACCOUNT, ident)  # the rest: 67.90
    assert payment["amount"] == {"amount": "67.90", "code": "EUR"}
    held = body(api.http.get(f"{INVOICES}/{ident}"))["response"]["result"]["invoice"]
    assert (held["status"], held["v3_status"], held["outstanding"]["amount"]) == (4, "paid", "0.00")
    assert [p["invoiceid"] for p in emu.payments(ACCOUNT)] == [ident, ident]


def test_a_deleted_invoice_is_kept_readable_by_id_and_leaves_the_balance(emu, api):
    ident = body(api.create(fb_invoice()))["response"]["result"]["invoice"]["invoiceid"]
    assert emu.balance(ACCOUNT) == D("0.00")  # a draft is not recognised by accounting reports
    api.update(ident, {"action_mark_as_sent": True})
    assert emu.balance(ACCOUNT) == D("167.90")
    api.update(ident, {"vis_state": 1})
    held = body(api.http.get(f"{INVOICES}/{ident}"))["response"]["result"]["invoice"]
    assert held["vis_state"] == 1 and emu.balance(ACCOUNT) == D("0.00")
    with pytest.raises(ValueError, match="deleted"):
        emu.pay(ACCOUNT, ident)


def test_credit_notes_are_computed_listed_unique_and_counted_in_the_balance(emu, api):
    ident = body(api.create(fb_invoice()))["response"]["result"]["invoice"]["invoiceid"]
    api.update(ident, {"action_mark_as_sent": True})
    created = credit(api, fb_credit())
    note = body(created)["response"]["result"]["credit_note"]
    assert created.status_code == 200
    assert (note["credit_number"], note["amount"], note["clientid"], note["display_status"]) == (
        "INV-T-1-CN",
        {"amount": "167.90", "code": "EUR"},
        31007,
        "created",
    )
    dup = credit(api, fb_credit())
    assert dup.status_code == 422 and errors(dup) == [(2004, "credit_number", "Credit number already exists.")]
    listed = body(api.http.get(CREDITS, params={"search[clientid]": "31007"}))["response"]["result"]
    assert [c["creditid"] for c in listed["credit_notes"]] == [note["creditid"]] and "lines" not in listed[
        "credit_notes"
    ][0]
    assert body(api.http.get(CREDITS, params={"search[clientid]": "31008"}))["response"]["result"]["credit_notes"] == []
    # 167.90 outstanding - 167.90 credit = 0.00
    assert emu.balance(ACCOUNT) == D("0.00")
    deleted = api.http.put(
        f"{CREDITS}/{note['creditid']}",
        content=dumps({"credit_note": {"vis_state": 1}}),
        headers={"Content-Type": "application/json"},
    )
    assert body(deleted)["response"]["result"]["credit_note"]["vis_state"] == 1
    assert emu.balance(ACCOUNT) == D("167.90") and emu.credit_notes(ACCOUNT, include_deleted=False) == []
    assert credit(api, fb_credit()).status_code == 422  # a deleted credit note keeps its number
    emu.request_validator = None  # the emulator's own checks
    unknown_client = credit(api, fb_credit("X-CN", clientid=4242))
    assert unknown_client.status_code == 422 and errors(unknown_client)[0][:2] == (1012, "clientid")
    no_lines = credit(api, fb_credit("Y-CN", lines=[]))
    assert no_lines.status_code == 422 and errors(no_lines)[0][:2] == (2001, "lines")


def test_credit_notes_need_their_scope():
    emulator = FreshBooksEmulator(scopes=("user:invoices:read", "user:invoices:write")).start()
    try:
        api = Api(emulator)
        refused = api.http.get(CREDITS)
        assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
        assert "user:credit_notes:read" in refused.json()["error_description"]
        api.close()
    finally:
        emulator.stop()


def test_lifecycle_control_api(emu, api):
    ident = body(api.create(fb_invoice()))["response"]["result"]["invoice"]["invoiceid"]
    api.update(ident, {"action_mark_as_sent": True})
    with httpx.Client(base_url=emu.url, timeout=5) as control:
        paid = control.post("/_emulator/payments", json={"account_id": ACCOUNT, "invoiceid": ident, "amount": "7.90"})
        assert paid.status_code == 200 and paid.json()["amount"] == {"amount": "7.90", "code": "EUR"}
        too_much = control.post(
            "/_emulator/payments", json={"account_id": ACCOUNT, "invoiceid": ident, "amount": "999"}
        )
        assert too_much.status_code == 400 and "ValueError" in too_much.json()["error"]
        planted = control.post(
            "/_emulator/plant",
            content=dumps({"account_id": ACCOUNT, "invoice": fb_invoice("HAND-1", customerid=4242)}),
        )
        assert planted.status_code == 400 and "Client not found" in planted.json()["error"]
        # 167.90 - 7.90 = 160.00
        assert control.post("/_emulator/balance", json={"account_id": ACCOUNT}).json() == {"balance": "160.00"}
        assert control.get("/_emulator/credit_notes").json() == []

"""The QuickBooks emulator itself, over real HTTP: auth, Fault bodies, QBO's arithmetic, requestid, query, batch, limits.

Values are computed by hand in comments.
"""

from __future__ import annotations

import base64
import json
import threading
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest

from connectors.quickbooks.emulator import QuickBooksEmulator
from connectors.quickbooks.spec import make_request_validator
from connectors.sdk.money import dumps

SPEC = Path(__file__).resolve().parent / "specs" / "quickbooks" / "openapi.yaml"
REALM = "9341452000000001"
BASE = f"/v3/company/{REALM}"


def body(resp: httpx.Response):
    return json.loads(resp.content, parse_float=D)


class Api:
    def __init__(self, emu: QuickBooksEmulator):
        self.emu = emu
        self.http = httpx.Client(base_url=emu.url, timeout=5)
        basic = base64.b64encode(b"demo-client:demo-secret").decode()
        resp = self.http.post(
            "/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": "demo-refresh-token"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert resp.status_code == 200, resp.text
        self.token = resp.json()["access_token"]

    def headers(self, **extra):
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **extra}

    def post(self, resource, doc, **params):
        return self.http.post(
            f"{BASE}/{resource}",
            params={"minorversion": "75", **params},
            content=dumps(doc),
            headers=self.headers(**{"Content-Type": "application/json"}),
        )

    def get(self, resource, **params):
        return self.http.get(f"{BASE}/{resource}", params={"minorversion": "75", **params}, headers=self.headers())

    def query(self, text):
        return self.get("query", query=text)

    def close(self):
        self.http.close()


@pytest.fixture
def emu():
    emulator = QuickBooksEmulator(realm_ids=(REALM,), request_validator=make_request_validator(SPEC)).start()
    yield emulator
    emulator.stop()
    assert emulator.server_errors == []


@pytest.fixture
def api(emu):
    a = Api(emu)
    yield a
    a.close()
    assert emu.validation_failures == []


def sales_line(amount, qty=None, price=None, *, item="1", tax_code="3", description="Line"):
    detail = {"ItemRef": {"value": item}, "TaxCodeRef": {"value": tax_code}}
    if qty is not None:
        detail["Qty"] = D(qty)
    if price is not None:
        detail["UnitPrice"] = D(price)
    return {
        "Description": description,
        "Amount": D(amount),
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": detail,
    }


def invoice(number="INV-T-1", lines=None, **extra):
    doc = {
        "DocNumber": number,
        "TxnDate": "2026-03-02",
        "DueDate": "2026-04-01",
        "CustomerRef": {"value": "58"},
        "Line": lines if lines is not None else [sales_line("136.50", "3.25", "42.00")],
    }
    doc.update(extra)
    return doc


def fault(resp):
    doc = body(resp)
    return doc["Fault"]["type"], [(e["code"], e["Message"]) for e in doc["Fault"]["Error"]]


# --------------------------------------------------------------------------- OAuth2
def test_token_endpoint_rotates_refresh_tokens_with_grace(emu):
    http = httpx.Client(base_url=emu.url)
    good = {"Authorization": "Basic " + base64.b64encode(b"demo-client:demo-secret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"demo-client:nope").decode()}
    try:
        assert http.post(
            "/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token", "refresh_token": "x"}, headers=bad
        ).json() == {"error": "invalid_client"}
        first = http.post(
            "/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": "demo-refresh-token"},
            headers=good,
        )
        doc = first.json()
        assert first.status_code == 200 and doc["token_type"] == "bearer" and doc["expires_in"] == 3600
        assert doc["refresh_token"] != "demo-refresh-token" and doc["x_refresh_token_expires_in"] == 8726400
        # the previous refresh token still works during the grace period; an unknown one does not
        again = http.post(
            "/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": "demo-refresh-token"},
            headers=good,
        )
        assert again.status_code == 200
        unknown = http.post(
            "/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token", "refresh_token": "forged"}, headers=good
        )
        assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"
    finally:
        http.close()


def test_auth_faults(emu, api):
    resp = api.http.get(f"{BASE}/companyinfo/{REALM}", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401 and fault(resp) == (
        "AuthenticationFault",
        [("3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401")],
    )
    emu.expire_access_tokens()
    assert api.get(f"companyinfo/{REALM}").status_code == 401
    api.__init__(emu)  # new token
    other = api.http.get("/v3/company/42/companyinfo/42", headers=api.headers())
    assert other.status_code == 403 and fault(other)[0] == "AuthorizationFault"
    info = body(api.get(f"companyinfo/{REALM}"))["CompanyInfo"]
    assert {"Name": "HomeCurrency", "Value": "EUR"} in info["NameValue"]


# --------------------------------------------------------------------------- invoices and QBO's arithmetic
def test_create_computes_totals_per_tax_rate_on_the_sum_of_lines(emu, api):
    lines = [sales_line("0.99", "1", "0.99") for _ in range(3)] + [sales_line("12.50", "1", "12.50", tax_code="6")]
    created = body(api.post("invoice", invoice(lines=lines)))["Invoice"]
    # QBO: round(3 × 0.99 × 23 %) = round(0.6831) = 0.68 (not 3 × 0.23 = 0.69); the 0 % line adds 0.00
    assert created["TxnTaxDetail"]["TotalTax"] == D("0.68")
    assert [
        (t["TaxLineDetail"]["TaxRateRef"]["value"], t["Amount"], t["TaxLineDetail"]["NetAmountTaxable"])
        for t in created["TxnTaxDetail"]["TaxLine"]
    ] == [("5", D("0.68"), D("2.97")), ("8", D("0.00"), D("12.50"))]
    assert created["TotalAmt"] == D("16.15") and created["Balance"] == D("16.15")  # 2.97 + 12.50 + 0.68
    assert created["Line"][-1]["Amount"] == D("15.47") and created["BillEmail"] == {
        "Address": "contas@hotel-atlantico.example"
    }


def test_supplied_tax_lines_override_the_computed_amount(emu, api):
    lines = [sales_line("0.99", "1", "0.99") for _ in range(3)]
    tax = {
        "TotalTax": D("0.69"),
        "TaxLine": [
            {
                "Amount": D("0.69"),
                "DetailType": "TaxLineDetail",
                "TaxLineDetail": {
                    "TaxRateRef": {"value": "5"},
                    "PercentBased": True,
                    "TaxPercent": D("23"),
                    "NetAmountTaxable": D("2.97"),
                },
            }
        ],
    }
    created = body(api.post("invoice", invoice(lines=lines, TxnTaxDetail=tax)))["Invoice"]
    assert created["TxnTaxDetail"]["TotalTax"] == D("0.69") and created["TotalAmt"] == D("3.66")
    unused = dict(tax, TaxLine=[dict(tax["TaxLine"][0], TaxLineDetail={"TaxRateRef": {"value": "6"}})])
    assert fault(api.post("invoice", invoice("INV-T-2", lines=lines, TxnTaxDetail=unused)))[1][0][0] == "6000"


@pytest.mark.parametrize(
    ("doc", "code", "words"),
    [
        (invoice(CustomerRef=None), "2020", "Required param missing"),
        (invoice(lines=[]), "2020", "Required param missing"),
        (invoice("X" * 22), "2050", "String length"),
        (invoice(lines=[sales_line("136.51", "3.25", "42.00")]), "6070", "Amount is not equal to UnitPrice * Qty"),
        (invoice(lines=[sales_line("1.00", "1", "1.00", item="77")]), "2500", "Invalid Reference Id"),
        (invoice(CustomerRef={"value": "404"}), "2500", "Invalid Reference Id"),
        (invoice(lines=[sales_line("1.00", "1", "1.00", tax_code="99")]), "2500", "Invalid Reference Id"),
        (invoice(CurrencyRef={"value": "USD"}), "6000", "business validation"),
        (invoice(lines=[sales_line("-5.00", "1", "-5.00")]), "6000", "business validation"),
    ],
)
def test_validation_faults(emu, api, doc, code, words):
    emu.request_validator = None  # the emulator's own checks (the field reference would refuse some first)
    doc = {k: v for k, v in doc.items() if v is not None}
    resp = api.post("invoice", doc)
    assert resp.status_code == 400
    fault_type, errors = fault(resp)
    assert fault_type == "ValidationFault" and any(c == code and words.lower() in m.lower() for c, m in errors), errors
    assert emu.invoices() == []


def test_amount_check_rounds_half_up_to_the_cent(emu, api):
    # 4.1667 × 94.998 = 395.82816 -> 395.83: accepted; 0.005 × 1 = 0.005 -> 0.01 (half up)
    assert api.post("invoice", invoice(lines=[sales_line("395.83", "4.1667", "94.998")])).status_code == 200
    assert api.post("invoice", invoice("INV-T-2", lines=[sales_line("0.01", "1", "0.005")])).status_code == 200


def test_duplicate_doc_number_and_allowduplicatedocnum(emu, api):
    first = body(api.post("invoice", invoice()))["Invoice"]
    dup = api.post("invoice", invoice())
    assert dup.status_code == 400
    [error] = body(dup)["Fault"]["Error"]
    assert (
        error["code"] == "6140"
        and error["Message"] == "Duplicate Document Number Error"
        and error["element"] == "DocNumber"
    )
    assert f"DocNumber=INV-T-1 is assigned to TxnType=Invoice with TxnId={first['Id']}" in error["Detail"]
    assert api.post("invoice", invoice(), include="allowduplicatedocnum").status_code == 200
    assert len(emu.invoices()) == 2


def test_missing_tax_code_and_unknown_properties(emu, api):
    no_code = sales_line("1.00", "1", "1.00")
    del no_code["SalesItemLineDetail"]["TaxCodeRef"]
    assert fault(api.post("invoice", invoice(lines=[no_code])))[1][0][0] == "6000"
    # the spec validator (field reference) refuses an unknown property before the emulator does
    resp = api.post("invoice", invoice(Totl=D("1")))
    assert resp.status_code == 400 and "Totl" in emu.validation_failures[0]
    emu.validation_failures.clear()


# --------------------------------------------------------------------------- requestid
def test_requestid_replays_the_original_response(emu, api):
    first = api.post("invoice", invoice(), requestid="rid-1")
    replay = api.post("invoice", invoice("INV-OTHER"), requestid="rid-1")  # QBO does not compare bodies
    assert first.status_code == replay.status_code == 200 and first.content == replay.content
    assert len(emu.invoices()) == 1
    emu.request_validator = None  # the field reference refuses it too; check the emulator's own answer
    too_long = api.post("invoice", invoice("INV-T-9"), requestid="r" * 51)
    assert too_long.status_code == 400 and fault(too_long)[1][0][0] == "2050"


# --------------------------------------------------------------------------- query
def test_query_language_subset(emu, api):
    for number in ("INV-1", "INV-2", "O'BRIEN-3"):
        api.post("invoice", invoice(number))
    one = body(api.query("select * from Invoice where DocNumber = 'INV-2'"))["QueryResponse"]
    assert (
        [i["DocNumber"] for i in one["Invoice"]] == ["INV-2"] and one["startPosition"] == 1 and one["maxResults"] == 1
    )
    quoted = body(api.query("select * from Invoice where DocNumber = 'O\\'BRIEN-3'"))["QueryResponse"]
    assert [i["DocNumber"] for i in quoted["Invoice"]] == ["O'BRIEN-3"]
    listed = body(api.query("SELECT * FROM Invoice WHERE DocNumber IN ('INV-1', 'O\\'BRIEN-3') MAXRESULTS 10"))[
        "QueryResponse"
    ]
    assert sorted(i["DocNumber"] for i in listed["Invoice"]) == ["INV-1", "O'BRIEN-3"]
    assert body(api.query("select * from Invoice where DocNumber = 'NOPE'"))["QueryResponse"] == {}
    assert body(api.query("select count(*) from Invoice"))["QueryResponse"] == {"totalCount": 3}
    customers = body(api.query("select * from Customer where DisplayName = 'Clínica do Parque, Lda.'"))["QueryResponse"]
    assert [c["Id"] for c in customers["Customer"]] == ["59"]
    bad = api.query("select * from Invoice where DocNumber = unquoted")
    assert bad.status_code == 400 and fault(bad)[1][0] == ("4000", "Error parsing query")


# --------------------------------------------------------------------------- batch
def test_batch_per_item_results(emu, api):
    api.post("invoice", invoice("INV-OLD"))
    resp = api.post(
        "batch",
        {
            "BatchItemRequest": [
                {"bId": "b0", "operation": "create", "Invoice": invoice("INV-NEW")},
                {"bId": "b1", "operation": "create", "Invoice": invoice("INV-OLD")},
                {"bId": "b2", "Query": "select * from Invoice where DocNumber = 'INV-OLD'"},
            ]
        },
        requestid="batch-1",
    )
    assert resp.status_code == 200
    answers = {a["bId"]: a for a in body(resp)["BatchItemResponse"]}
    assert answers["b0"]["Invoice"]["DocNumber"] == "INV-NEW"
    assert answers["b1"]["Fault"]["Error"][0]["code"] == "6140"
    assert answers["b2"]["QueryResponse"]["Invoice"][0]["DocNumber"] == "INV-OLD"
    too_many = api.post(
        "batch", {"BatchItemRequest": [{"bId": f"b{n}", "Query": "select * from Invoice"} for n in range(31)]}
    )
    assert too_many.status_code == 400
    assert sorted(i["DocNumber"] for i in emu.invoices()) == ["INV-NEW", "INV-OLD"]


# --------------------------------------------------------------------------- limits
def test_minute_second_and_concurrency_limits():
    emu = QuickBooksEmulator(realm_ids=(REALM,), rate_limit_per_minute=3).start()
    api = Api(emu)
    try:
        assert [api.get(f"companyinfo/{REALM}").status_code for _ in range(3)] == [200, 200, 200]
        limited = api.get(f"companyinfo/{REALM}")
        assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
        assert fault(limited) == (
            "ThrottlingFault",
            [("3001", "message=ThrottleExceeded; errorCode=003001; statusCode=429")],
        )
    finally:
        api.close()
        emu.stop()
    emu = QuickBooksEmulator(realm_ids=(REALM,), per_second_limit=2).start()
    api = Api(emu)
    try:
        assert [api.get(f"companyinfo/{REALM}").status_code for _ in range(3)] == [200, 200, 429]
    finally:
        api.close()
        emu.stop()
    emu = QuickBooksEmulator(realm_ids=(REALM,), max_concurrency=1, response_delay=0.3).start()
    api = Api(emu)
    statuses: list[int] = []
    try:
        threads = [
            threading.Thread(
                target=lambda: statuses.append(
                    httpx.get(f"{emu.url}{BASE}/companyinfo/{REALM}", headers=api.headers(), timeout=5).status_code
                )
            )
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        api.close()
        emu.stop()
    assert sorted(statuses) == [200, 429, 429]


# --------------------------------------------------------------------------- faults, e-mail and the control API
def test_faults_send_and_control_api(emu, api):
    control = httpx.Client(base_url=emu.url, timeout=5)
    try:
        assert control.post("/_emulator/faults", json={"kind": "503", "times": 1}).status_code == 200
        assert api.post("invoice", invoice()).status_code == 503
        emu.inject_fault("timeout_after_commit")
        assert api.get(f"companyinfo/{REALM}").status_code == 200  # after-commit faults wait for a write
        emu.hang_seconds = 0.2
        with pytest.raises(httpx.TransportError):
            api.post("invoice", invoice())
        [stored] = emu.invoices()
        sent = api.http.post(
            f"{BASE}/invoice/{stored['Id']}/send",
            params={"sendTo": "ops@example.com"},
            headers=api.headers(**{"Content-Type": "application/octet-stream"}),
        )
        assert body(sent)["Invoice"]["EmailStatus"] == "EmailSent" and body(sent)["Invoice"]["BillEmail"] == {
            "Address": "ops@example.com"
        }
        stats = control.get("/_emulator/stats").json()
        assert stats["invoice_count"] == 1 and stats["emails"] == [[REALM, stored["Id"], "ops@example.com"]]
        assert ["POST", f"{BASE}/invoice", 0] in stats["calls"]
        assert control.get("/_emulator/invoices").json()[0]["RealmId"] == REALM
        assert control.post("/_emulator/faults", json={"kind": "meteor"}).status_code == 400
        assert control.post("/_emulator/reset").status_code == 200 and emu.invoices() == []
        assert api.get(f"companyinfo/{REALM}").status_code == 200  # tokens survive a reset
    finally:
        control.close()


# --------------------------------------------------------------------------- lifecycle: void, payments, credit memos
def test_void_zeroes_the_invoice_keeps_it_and_checks_the_sync_token(emu, api):
    # 136.50 at 23 % = 31.395 -> 31.40; total 167.90
    created = body(api.post("invoice", invoice(PrivateNote="broker:acme:wo:1:r1")))["Invoice"]
    assert (created["TotalAmt"], created["SyncToken"]) == (D("167.90"), "0")
    stale = api.post("invoice", {"Id": created["Id"], "SyncToken": "7"}, operation="void")
    assert stale.status_code == 400 and fault(stale)[1] == [("5010", "Stale Object Error")]
    unknown = api.post("invoice", {"Id": "999", "SyncToken": "0"}, operation="void")
    assert unknown.status_code == 400 and fault(unknown)[1][0][0] == "610"
    voided = api.post("invoice", {"Id": created["Id"], "SyncToken": "0"}, operation="void")
    held = body(voided)["Invoice"]
    assert voided.status_code == 200
    assert (held["TotalAmt"], held["Balance"], held["SyncToken"]) == (D("0"), D("0"), "1")
    assert held["PrivateNote"] == "Voided - broker:acme:wo:1:r1"
    assert held["TxnTaxDetail"] == {"TotalTax": D("0")}
    assert held["Line"][0]["Amount"] == D("0") and held["Line"][0]["SalesItemLineDetail"] == {
        "ItemRef": {"value": "1", "name": "Services"},
        "TaxCodeRef": {"value": "3"},
    }
    again = api.post("invoice", {"Id": created["Id"], "SyncToken": "1"}, operation="void")
    assert again.status_code == 200 and body(again)["Invoice"]["SyncToken"] == "1"  # a voided invoice stays so
    assert emu.invoices()[0]["TotalAmt"] == D("0") and emu.balance(REALM) == D("0.00")
    deleting = api.post("invoice", {"Id": created["Id"], "SyncToken": "1"}, operation="delete")
    assert deleting.status_code == 400 and fault(deleting)[1][0][0] == "6000"
    # the field reference: a void body is {Id, SyncToken} only
    extra = api.post("invoice", {"Id": created["Id"], "SyncToken": "1", "Line": []}, operation="void")
    assert extra.status_code == 400
    assert "/Line: property not defined by the spec" in emu.validation_failures[0]
    emu.validation_failures.clear()


def test_payments_lower_the_balance_and_a_paid_invoice_cannot_be_voided(emu, api):
    first = body(api.post("invoice", invoice("INV-P-1")))["Invoice"]
    api.post("invoice", invoice("INV-P-2"))
    with pytest.raises(ValueError, match=r"at most the balance 167\.90"):
        emu.pay(REALM, first["Id"], D("167.91"))
    with pytest.raises(ValueError, match="more than 0"):
        emu.pay(REALM, first["Id"], D("0"))
    payment = emu.pay(REALM, first["Id"], D("100.00"))
    assert payment["Line"] == [{"Amount": D("100.00"), "LinkedTxn": [{"TxnId": first["Id"], "TxnType": "Invoice"}]}]
    held = body(api.get(f"invoice/{first['Id']}"))["Invoice"]
    # 167.90 - 100.00 = 67.90
    assert (held["Balance"], held["SyncToken"]) == (D("67.90"), "1")
    assert held["LinkedTxn"] == [{"TxnId": payment["Id"], "TxnType": "Payment"}]
    assert body(api.get(f"payment/{payment['Id']}"))["Payment"]["TotalAmt"] == D("100.00")
    refused = api.post("invoice", {"Id": first["Id"], "SyncToken": "1"}, operation="void")
    assert refused.status_code == 400 and fault(refused)[1][0][0] == "6000"
    assert "linked to a payment" in body(refused)["Fault"]["Error"][0]["Detail"]
    # 67.90 + 167.90 = 235.80
    assert emu.balance(REALM) == D("235.80") and emu.balance(REALM, "59") == D("0.00")


def test_credit_memos_are_computed_stored_unique_and_counted_in_the_balance(emu, api):
    api.post("invoice", invoice("INV-C-1"))
    memo = {
        "DocNumber": "INV-C-1-CN",
        "TxnDate": "2026-03-09",
        "CustomerRef": {"value": "58"},
        "CustomerMemo": {"value": "Credit note for invoice INV-C-1"},
        "Line": [sales_line("136.50", "3.25", "42.00")],
    }
    created = api.post("creditmemo", memo, requestid="cm-1")
    held = body(created)["CreditMemo"]
    assert created.status_code == 200
    assert (held["TotalAmt"], held["Balance"], held["RemainingCredit"]) == (D("167.90"), D("167.90"), D("167.90"))
    assert "DueDate" not in held and held["DocNumber"] == "INV-C-1-CN"
    dup = api.post("creditmemo", memo)
    assert dup.status_code == 400 and fault(dup)[1] == [("6140", "Duplicate Document Number Error")]
    assert "TxnType=CreditMemo" in body(dup)["Fault"]["Error"][0]["Detail"]
    found = body(api.query("select * from CreditMemo where DocNumber = 'INV-C-1-CN'"))["QueryResponse"]
    assert [m["Id"] for m in found["CreditMemo"]] == [held["Id"]]
    assert body(api.get(f"creditmemo/{held['Id']}"))["CreditMemo"]["TotalAmt"] == D("167.90")
    # 167.90 open - 167.90 unapplied credit = 0.00
    assert emu.balance(REALM) == D("0.00") and [m["Id"] for m in emu.credit_memos(REALM)] == [held["Id"]]


def test_lifecycle_control_api(emu, api):
    first = body(api.post("invoice", invoice("INV-A-1")))["Invoice"]
    with httpx.Client(base_url=emu.url, timeout=5) as control:
        paid = control.post("/_emulator/payments", json={"RealmId": REALM, "InvoiceId": first["Id"], "Amount": "7.90"})
        assert paid.status_code == 200 and body(paid)["TotalAmt"] == D("7.90")
        too_much = control.post(
            "/_emulator/payments", json={"RealmId": REALM, "InvoiceId": first["Id"], "Amount": "999"}
        )
        assert too_much.status_code == 400 and "ValueError" in too_much.json()["error"]
        planted = control.post(
            "/_emulator/plant",
            json={"RealmId": REALM, "Invoice": {"DocNumber": "HAND-1", "CustomerRef": {"value": "59"}, "Line": []}},
        )
        assert planted.status_code == 400 and "Line" in planted.json()["error"]
        # 167.90 - 7.90 = 160.00
        assert body(control.post("/_emulator/balance", json={"RealmId": REALM})) == {"Balance": "160.00"}
        assert [p["RealmId"] for p in control.get("/_emulator/payments").json()] == [REALM]
        assert control.get("/_emulator/creditmemos").json() == []

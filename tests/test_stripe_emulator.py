"""The Stripe emulator on its own (raw HTTP with httpx): Stripe's semantics the connector relies on."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from connectors.stripe.emulator import StripeEmulator
from connectors.stripe.mapper import form_pairs
from connectors.stripe.spec import make_request_validator

SPEC = Path(__file__).resolve().parent / "specs" / "stripe" / "spec3.yaml"
KEY = "sk_test_51EmulatorTests0000000000000000"


@pytest.fixture(scope="module")
def validator():
    return make_request_validator(SPEC)


@pytest.fixture
def emu(validator):
    emulator = StripeEmulator(
        api_keys=(KEY,),
        request_validator=validator,
        rate_limit_per_second=1000,
        customers={"cus_A": {"name": "A, Lda", "email": "a@example.com"}},
    ).start()
    yield emulator
    emulator.stop()
    assert emulator.server_errors == []


@pytest.fixture
def api(emu):
    with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5) as client:
        yield client


def post(api, path, params, key=None):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if key:
        headers["Idempotency-Key"] = key
    return api.post(path, content=urlencode(form_pairs(params)), headers=headers)


def rate(api, pct, inclusive):
    return post(api, "/v1/tax_rates", {"display_name": "VAT", "percentage": pct, "inclusive": inclusive}).json()["id"]


def test_tax_per_line_rounded_half_up_exclusive_and_inclusive(api):
    inv = post(api, "/v1/invoices", {"customer": "cus_A", "currency": "usd"}).json()
    excl, incl = rate(api, "15", False), rate(api, "23", True)
    for amount, txr in ((43, excl), (484, excl), (2250, incl)):
        assert (
            post(
                api,
                "/v1/invoiceitems",
                {"customer": "cus_A", "invoice": inv["id"], "currency": "usd", "amount": amount, "tax_rates": [txr]},
            ).status_code
            == 200
        )
    # unit_amount_decimal x quantity is rounded half up: 33.5 x 3 = 100.5 -> 101
    post(
        api,
        "/v1/invoiceitems",
        {"customer": "cus_A", "invoice": inv["id"], "currency": "usd", "unit_amount_decimal": "33.5", "quantity": 3},
    )
    got = api.get(f"/v1/invoices/{inv['id']}").json()
    # 43 x 15 % = 6.45 -> 6; 484 x 15 % = 72.6 -> 73 (Stripe's rounding table: per line, not 527 x 15 % = 79.05 -> 79);
    # inclusive 2250 x 23 / 123 = 420.73 -> 421 inside the amount
    assert [ln["tax_amounts"][0]["amount"] if ln["tax_amounts"] else None for ln in got["lines"]["data"]] == [
        6,
        73,
        421,
        None,
    ]
    assert got["subtotal"] == 43 + 484 + 2250 + 101 == 2878
    assert got["tax"] == 6 + 73 + 421 == 500
    assert got["total"] == 2878 + 6 + 73 == 2957  # inclusive tax is already in the subtotal
    assert got["total_excluding_tax"] == 2878 - 421 and got["amount_due"] == 2957
    assert {(t["tax_rate"], t["amount"]) for t in got["total_tax_amounts"]} == {(excl, 79), (incl, 421)}


def test_idempotency_replay_and_misuse(api, emu):
    params = {"customer": "cus_A", "currency": "eur", "metadata": {"k": "v"}}
    first = post(api, "/v1/invoices", params, key="key-1")
    again = post(api, "/v1/invoices", params, key="key-1")
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    other = post(api, "/v1/invoices", dict(params, metadata={"k": "w"}), key="key-1")
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    elsewhere = post(api, "/v1/customers", {"name": "x"}, key="key-1")
    assert elsewhere.status_code == 400 and "same endpoint" in elsewhere.json()["error"]["message"]
    assert len(emu.invoices()) == 1
    # a validation failure is not saved: fixing the request under the same key works
    assert post(api, "/v1/invoices", {"customer": "cus_nope"}, key="key-2").status_code == 400
    assert post(api, "/v1/invoices", {"customer": "cus_A"}, key="key-2").status_code == 200
    emu.forget_idempotency_keys()
    assert "Idempotent-Replayed" not in post(api, "/v1/invoices", params, key="key-1").headers
    assert len(emu.invoices()) == 3


def test_spec_validation_and_error_shape(api, emu):
    resp = post(api, "/v1/invoices", {"customer": "cus_A", "colour": "blue"})
    err = resp.json()["error"]
    assert resp.status_code == 400 and err["type"] == "invalid_request_error"
    assert err["message"].endswith("Received unknown parameter: colour") and err["param"] == "colour"
    resp = post(api, "/v1/invoiceitems", {"customer": "cus_A", "currency": "eur", "amount": "1.5"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "amount"
    assert len(emu.validation_failures) == 2
    emu.validation_failures.clear()
    missing = post(api, "/v1/invoices", {"customer": "cus_missing"})
    assert missing.status_code == 400 and missing.json()["error"] == {
        "message": "No such customer: 'cus_missing'",
        "type": "invalid_request_error",
        "code": "resource_missing",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        "param": "customer",
    }


def test_draft_rules_pending_items_and_item_limit(api, emu):
    pending = post(api, "/v1/invoiceitems", {"customer": "cus_A", "currency": "eur", "amount": 500}).json()
    excluded = post(
        api, "/v1/invoices", {"customer": "cus_A", "currency": "eur", "pending_invoice_items_behavior": "exclude"}
    ).json()
    assert excluded["lines"]["total_count"] == 0
    swept = post(
        api, "/v1/invoices", {"customer": "cus_A", "currency": "eur", "pending_invoice_items_behavior": "include"}
    ).json()
    assert swept["lines"]["total_count"] == 1 and swept["lines"]["data"][0]["invoice_item"] == pending["id"]
    wrong = post(
        api, "/v1/invoiceitems", {"customer": "cus_A", "invoice": excluded["id"], "currency": "usd", "amount": 1}
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "currency"
    for _ in range(250):
        post(api, "/v1/invoiceitems", {"customer": "cus_A", "invoice": excluded["id"], "currency": "eur", "amount": 1})
    over = post(
        api, "/v1/invoiceitems", {"customer": "cus_A", "invoice": excluded["id"], "currency": "eur", "amount": 1}
    )
    assert over.status_code == 400 and "250" in over.json()["error"]["message"]
    fin = post(api, f"/v1/invoices/{excluded['id']}/finalize", {"auto_advance": False}).json()
    assert fin["status"] == "open" and fin["number"].endswith("-0001") and fin["amount_due"] == 250
    late = post(
        api, "/v1/invoiceitems", {"customer": "cus_A", "invoice": excluded["id"], "currency": "eur", "amount": 1}
    )
    assert late.status_code == 400 and late.json()["error"]["code"] == "invoice_not_editable"
    again = post(api, f"/v1/invoices/{excluded['id']}/finalize", {})
    assert again.status_code == 400 and "already finalized" in again.json()["error"]["message"]
    send_draft = post(api, f"/v1/invoices/{swept['id']}/send", {})
    assert send_draft.status_code == 400  # charge_automatically invoices are not sent by hand
    zero = post(api, "/v1/invoices", {"customer": "cus_A", "currency": "eur"}).json()
    assert post(api, f"/v1/invoices/{zero['id']}/finalize", {}).json()["status"] == "paid"  # nothing due


def test_search_is_eventually_consistent_and_lists_are_not(validator):
    emu = StripeEmulator(api_keys=(KEY,), search_delay=30, customers={"cus_A": {"name": "A"}}).start()
    try:
        with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5) as api:
            inv = post(api, "/v1/invoices", {"customer": "cus_A", "metadata": {"broker_invoice_number": "N-1"}}).json()
            found = api.get("/v1/invoices/search", params={"query": "metadata['broker_invoice_number']:'N-1'"}).json()
            assert found["object"] == "search_result" and found["data"] == []
            assert [i["id"] for i in api.get("/v1/invoices", params={"customer": "cus_A"}).json()["data"]] == [
                inv["id"]
            ]
            emu.search_delay = 0
            found = api.get(
                "/v1/invoices/search", params={"query": "metadata['broker_invoice_number']:'N-1' AND customer:'cus_A'"}
            ).json()
            assert [i["id"] for i in found["data"]] == [inv["id"]]
            bad = api.get("/v1/invoices/search", params={"query": "metadata['x']:'1' AND y:'2' OR z:'3'"})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "query"
    finally:
        emu.stop()


def test_auth_rate_limit_faults_and_control_api(emu, api):
    assert httpx.get(f"{emu.url}/v1/balance").status_code == 401
    bad = httpx.get(f"{emu.url}/v1/balance", headers={"Authorization": "Bearer sk_test_51WrongWrongWrong0000"})
    assert bad.status_code == 401 and "sk_test_51WrongWrongWrong0000" not in bad.text
    assert (
        api.get("/v1/balance", headers={"Stripe-Account": "acct_1Unknown"}).json()["error"]["code"] == "account_invalid"
    )
    emu.rate_limit_per_second = 2
    statuses = [api.get("/v1/balance").status_code for _ in range(3)]
    assert statuses[:2] == [200, 200] and statuses[2] == 429
    limited = api.get("/v1/balance")
    assert limited.headers["Retry-After"] == "1" and limited.json()["error"]["code"] == "rate_limit"
    emu.rate_limit_per_second = 1000
    control = httpx.Client(base_url=emu.url, timeout=5)
    try:
        assert control.post("/_emulator/faults", json={"kind": "503", "path": "/v1/customers"}).status_code == 200
        assert api.get("/v1/balance").status_code == 200  # the fault waits for its path
        assert api.get("/v1/customers").status_code == 503
        assert control.post("/_emulator/faults", json={"kind": "meteor"}).status_code == 400
        stats = control.get("/_emulator/stats").json()
        assert stats["count_429"] >= 2 and ["GET", "/v1/customers", 503] in stats["calls"]
        assert [c["id"] for c in json.loads(control.get("/_emulator/customers").content)] == ["cus_A"]
        assert control.post("/_emulator/reset").status_code == 200 and emu.calls == [("POST", "/_emulator/reset", 200)]
    finally:
        control.close()


# --------------------------------------------------------------------------- lifecycle: void, pay, credit notes, balance
def _open_invoice(api, amount: int, customer: str = "cus_A") -> dict:
    """A finalised invoice of one untaxed item of ``amount`` (send_invoice, due in 30 days)."""
    inv = post(
        api,
        "/v1/invoices",
        {"customer": customer, "currency": "eur", "collection_method": "send_invoice", "days_until_due": 30},
    ).json()
    post(api, "/v1/invoiceitems", {"customer": customer, "invoice": inv["id"], "currency": "eur", "amount": amount})
    return post(api, f"/v1/invoices/{inv['id']}/finalize", {}).json()


def _error(resp: httpx.Response) -> tuple[int, str, str | None]:
    err = resp.json()["error"]
    return resp.status_code, err["message"], err.get("code")


def test_void_delete_and_pay_follow_the_status_rules(api, emu):
    draft = post(api, "/v1/invoices", {"customer": "cus_A", "currency": "eur"}).json()
    not_open = (400, "You can only pass in open invoices. This invoice isn't open.", None)  # Stripe's own words
    assert _error(post(api, f"/v1/invoices/{draft['id']}/void", {})) == not_open
    paid, unpaid = _open_invoice(api, 1000), _open_invoice(api, 2500)
    assert emu.balance_minor() == 3500
    assert post(api, f"/v1/invoices/{paid['id']}/pay", {"paid_out_of_band": True}).json()["status"] == "paid"
    assert _error(post(api, f"/v1/invoices/{paid['id']}/pay", {"paid_out_of_band": True})) == (
        400,
        "Invoice is already paid",
        "invoice_already_paid",
    )
    assert _error(post(api, f"/v1/invoices/{unpaid['id']}/pay", {})) == (
        400,
        "The emulator has no payment methods: pay with paid_out_of_band=true",
        None,
    )
    # a paid invoice can be neither voided nor deleted
    assert _error(post(api, f"/v1/invoices/{paid['id']}/void", {})) == not_open
    assert _error(api.delete(f"/v1/invoices/{paid['id']}")) == (
        400,
        "You can only delete draft invoices.",
        "invoice_not_editable",
    )
    got = api.get(f"/v1/invoices/{paid['id']}").json()
    assert (got["status"], got["amount_paid"], got["amount_remaining"], got["paid_out_of_band"]) == (
        "paid",
        1000,
        0,
        True,
    )
    voided = post(api, f"/v1/invoices/{unpaid['id']}/void", {}).json()
    assert (voided["status"], voided["status_transitions"]["voided_at"] is not None) == ("void", True)
    assert emu.balance_minor() == 0 and api.delete(f"/v1/invoices/{draft['id']}").json()["deleted"] is True
    assert emu.validation_failures == []


def test_void_gives_back_the_customer_credit_the_invoice_consumed(api, emu):
    emu.add_customer("B", customer_id="cus_B", balance=-700)  # 7.00 of credit
    inv = _open_invoice(api, 2000, "cus_B")
    assert (inv["starting_balance"], inv["amount_due"], inv["ending_balance"]) == (-700, 1300, 0)
    assert emu.balance_minor("cus_B") == 1300
    post(api, f"/v1/invoices/{inv['id']}/void", {})
    assert api.get("/v1/customers/cus_B").json()["balance"] == -700 and emu.balance_minor("cus_B") == -700


def test_credit_notes_pre_and_post_payment(api, emu):
    draft = post(api, "/v1/invoices", {"customer": "cus_A", "currency": "eur"}).json()
    assert _error(post(api, "/v1/credit_notes", {"invoice": draft["id"], "amount": 100}))[0] == 400
    unpaid, paid = _open_invoice(api, 5000), _open_invoice(api, 3000)
    emu.mark_paid(paid["id"])
    assert _error(post(api, "/v1/credit_notes", {"invoice": unpaid["id"]})) == (
        400,
        "One of amount, lines, or shipping_cost must be provided.",
        "parameter_missing",
    )
    # pre-payment: reduces what is due on the open invoice, nothing goes to the customer's balance
    pre = post(api, "/v1/credit_notes", {"invoice": unpaid["id"], "amount": 1500}).json()
    assert (pre["type"], pre["total"], pre["number"], pre["customer_balance_transaction"]) == (
        "pre_payment",
        1500,
        f"{unpaid['number']}-CN-01",
        None,
    )
    got = api.get(f"/v1/invoices/{unpaid['id']}").json()
    assert (got["amount_due"], got["amount_remaining"], got["pre_payment_credit_notes_amount"]) == (3500, 3500, 1500)
    # post-payment: must be split exactly into credit_amount + out_of_band_amount
    refused = post(api, "/v1/credit_notes", {"invoice": paid["id"], "amount": 3000, "credit_amount": 2000})
    assert _error(refused)[1] == (
        "The sum of credit_amount (2000), refund_amount (0) and out_of_band_amount (0) must equal the credit note's "
        "post-payment amount (3000)."
    )
    post_note = post(api, "/v1/credit_notes", {"invoice": paid["id"], "amount": 3000, "credit_amount": 3000}).json()
    assert post_note["type"] == "post_payment" and post_note["customer_balance_transaction"].startswith("cbtxn_")
    assert api.get("/v1/customers/cus_A").json()["balance"] == -3000
    too_much = post(api, "/v1/credit_notes", {"invoice": paid["id"], "amount": 1, "out_of_band_amount": 1})
    assert (
        _error(too_much)[1] == f"The credit note amount (1) exceeds what is left to credit on invoice {paid['id']} (0)."
    )
    # crediting the rest of the open invoice settles it
    post(api, "/v1/credit_notes", {"invoice": unpaid["id"], "amount": 3500})
    assert api.get(f"/v1/invoices/{unpaid['id']}").json()["status"] == "paid"
    listed = api.get("/v1/credit_notes", params={"invoice": unpaid["id"]}).json()["data"]
    assert [n["amount"] for n in listed] == [3500, 1500]  # newest first
    assert api.get(f"/v1/credit_notes/{pre['id']}").json()["id"] == pre["id"]
    assert emu.balance_minor() == -3000 and emu.validation_failures == []


def test_mark_paid_in_full_only_add_invoice_and_control_api(api, emu):
    ident = emu.add_invoice("cus_A", 4200, custom_fields=[{"name": "Invoice ref", "value": "X-1"}])
    inv = api.get(f"/v1/invoices/{ident}").json()
    assert (inv["status"], inv["total"], inv["custom_fields"], inv["metadata"]) == (
        "open",
        4200,
        [{"name": "Invoice ref", "value": "X-1"}],
        {},
    )
    with pytest.raises(ValueError, match="paid in full"):
        emu.mark_paid(ident, 100)
    with httpx.Client(base_url=emu.url, timeout=5) as control:
        assert control.get("/_emulator/balance").json() == {"balance": 4200}
        assert control.post("/_emulator/payments", json={"invoice": ident}).json()["status"] == "paid"
        assert control.get("/_emulator/balance", params={"customer": "cus_A"}).json() == {"balance": 0}
        refused = control.post("/_emulator/payments", json={"invoice": ident})
        assert refused.status_code == 400 and "already paid" in refused.json()["error"]
        assert control.get("/_emulator/credit_notes").json() == []

"""PayPal mapper: golden payloads (validated against the official spec), field limits, PayPal's arithmetic.

The golden files in tests/golden/paypal/ hold an Invoice, the settings and the recipient, and the exact
``POST /v2/invoicing/invoices`` body the mapper must produce. Money values in the comments are computed by hand.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.paypal.emulator import compute_amounts
from connectors.paypal.mapper import (
    Deduction,
    FieldLimitError,
    Recipient,
    cancel_notification,
    expected_totals,
    invoice_from_paypal,
    invoice_to_paypal,
    item_layout,
    payment_term,
    recipient_for,
    tax_name_for,
)
from connectors.paypal.settings import PayPalSettings
from connectors.paypal.spec import load_spec, validate_document
from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import Invoice, InvoiceLine

ROOT = Path(__file__).resolve().parent
SPEC = ROOT / "specs" / "paypal" / "invoicing_v2.json"
GOLDEN = sorted((ROOT / "golden" / "paypal").glob("*.json"))
SETTINGS = PayPalSettings(client_id="demo-client", client_secret_env="PAYPAL_CLIENT_SECRET")


def line(desc, qty, price, net, rate, tax, total, *, kind="labour", unit="un", discount="0") -> InvoiceLine:
    return InvoiceLine(
        kind=kind,
        description=desc,
        quantity=D(qty),
        unit=unit,
        unit_price=D(price),
        discount_percent=D(discount),
        net=D(net),
        tax_rate=D(rate),
        tax=D(tax),
        total=D(total),
        source="test",
        rule="test",
    )


def invoice(
    lines,
    *,
    number="ACME-WO-1-R1",
    currency="EUR",
    issue=date(2026, 3, 2),
    due=date(2026, 4, 1),
    inclusive=False,
    contact_id=None,
    reference=None,
) -> Invoice:
    return Invoice(
        invoice_key=f"acme:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme:wo:{number}",
        tenant="acme",
        billing_system="paypal",
        event_id="e1",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 2, tzinfo=UTC),
        document="wo",
        document_id="1",
        revision=1,
        client_id="CLI-HAL",
        client_name="Hotel Atlântico Lisboa, S.A.",
        contact_id=contact_id,
        site_id="S1",
        currency=currency,
        issue_date=issue,
        due_date=due,
        reference=reference if reference is not None else f"WO {number}",
        tax_inclusive=inclusive,
        lines=lines,
        net_total=sum((ln.net for ln in lines), D(0)),
        tax_total=sum((ln.tax for ln in lines), D(0)),
        total=sum((ln.total for ln in lines), D(0)),
        cost_total=D(0),
        margin=D(0),
    )


# --------------------------------------------------------------------------- golden files
def test_there_are_golden_files():
    assert {p.stem for p in GOLDEN} >= {
        "standard_eur",
        "mixed_layouts_eur",
        "jpy_zero_decimals",
        "tax_inclusive_eur",
        "long_description_eur",
    }


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_payload(path):
    case = json.loads(path.read_text(encoding="utf-8"))
    inv = Invoice.model_validate(case["invoice"])
    settings = PayPalSettings.model_validate(case["settings"])
    payload = invoice_to_paypal(inv, settings, Recipient(**case["recipient"]))
    assert payload == case["payload"]
    # the exact request body is valid against the official spec (write mode, unknown properties refused)
    assert validate_document(SPEC, "invoice", payload) == []
    # PayPal's arithmetic on the payload gives our totals to the cent (mapper model and emulator agree)
    totals = expected_totals(payload)
    amounts = compute_amounts(payload, inv.currency)
    assert totals.total == amounts.total == inv.total
    assert totals.tax_total == amounts.tax_total == inv.tax_total
    assert list(amounts.item_taxes) == [ln.tax for ln in inv.lines]


def test_golden_values_by_hand():
    by_name = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in GOLDEN}
    std = by_name["standard_eur"]
    # 3.25 h x 42.00 = 136.50 (tax 31.395 -> 31.40); 2 x 18.75 = 37.50 (tax 8.625 -> 8.63): 174.00 + 40.03 = 214.03
    assert std["invoice"]["total"] == "214.03"
    assert std["payload"]["detail"]["payment_term"] == {"term_type": "NET_30"}
    assert std["payload"]["primary_recipients"][0]["billing_info"]["additional_info"] == "VAT PT500000101"
    jpy = by_name["jpy_zero_decimals"]
    # 2.5 x 4800 = 12000 (1200); 3 x 1333 = 3999 (399.9 -> 400); 555 (55.5 -> 56): 16554 + 1656 = 18210
    assert jpy["invoice"]["total"] == "18210"
    assert [i["unit_amount"]["value"] for i in jpy["payload"]["items"]] == ["4800", "1333", "555"]
    assert jpy["payload"]["detail"]["payment_term"] == {"due_date": "2026-03-20"}
    mixed = by_name["mixed_layouts_eur"]
    labour, part = mixed["payload"]["items"][:2]
    # 20 min at 45.00/h = 15.00, but 0.3333 x 45.00 = 14.9985: sent as 1 x 15.00
    assert (labour["quantity"], labour["unit_amount"]["value"], labour["description"]) == (
        "1",
        "15.00",
        "0.3333 h × 45.00 EUR",
    )
    # 2 x 18.75 = 37.50 less 10 % = 33.75: explicit discount amount 3.75, tax 33.75 x 23 % = 7.7625 -> 7.76
    assert part["discount"] == {"amount": {"currency_code": "EUR", "value": "3.75"}}
    assert mixed["invoice"]["total"] == "66.31"
    long = by_name["long_description_eur"]["payload"]["items"][0]
    assert len(long["name"]) == 200 and long["name"].endswith("…")
    assert len(long["description"]) == 1000 and long["description"].endswith("…")


# --------------------------------------------------------------------------- field limits
def test_invoice_number_over_25_characters_is_permanent_and_names_the_field():
    inv = invoice(
        [line("Labour", "1", "10.00", "10.00", "23", "2.30", "12.30")], number="ACME-WO-123456789012-R123"
    )  # 25: ok
    invoice_to_paypal(inv, SETTINGS)
    too_long = invoice(
        [line("Labour", "1", "10.00", "10.00", "23", "2.30", "12.30")], number="ACME-WO-123456789012-R1234"
    )
    with pytest.raises(FieldLimitError) as info:
        invoice_to_paypal(too_long, SETTINGS)
    assert isinstance(info.value, PermanentError)
    assert info.value.field == "detail.invoice_number"
    assert "26 characters" in str(info.value) and "at most 25" in str(info.value)


def test_limits_are_counted_in_characters_not_bytes():
    number = "ÇÃÕ-ÉÀ-ÜÑ-ßØÅ-ÆŒ-ĦĿŁ-ŦŊ"  # 23 characters, 43 UTF-8 bytes
    assert len(number) == 23 and len(number.encode()) > 25
    payload = invoice_to_paypal(invoice([line("x", "1", "1.00", "1.00", "0", "0.00", "1.00")], number=number), SETTINGS)
    assert payload["detail"]["invoice_number"] == number


def test_reference_over_120_and_more_than_100_lines_are_refused():
    one = line("Bolt", "1", "1.05", "1.05", "23", "0.24", "1.29")
    with pytest.raises(FieldLimitError) as info:
        invoice_to_paypal(invoice([one], reference="R" * 121), SETTINGS)
    assert info.value.field == "detail.reference"
    invoice_to_paypal(invoice([one] * 100), SETTINGS)
    with pytest.raises(FieldLimitError) as info:
        invoice_to_paypal(invoice([one] * 101), SETTINGS)
    assert info.value.field == "items" and "101 lines" in str(info.value)


def test_long_text_rejected_when_configured():
    settings = PayPalSettings(client_id="c", client_secret_env="E", long_descriptions="reject")
    inv = invoice([line("x" * 1300, "1", "1.00", "1.00", "0", "0.00", "1.00")])
    with pytest.raises(FieldLimitError) as info:
        invoice_to_paypal(inv, settings)
    assert info.value.field == "items[0].description"
    # 1,000 characters fit entirely in the description (name cut at 200)
    payload = invoice_to_paypal(invoice([line("y" * 1000, "1", "1.00", "1.00", "0", "0.00", "1.00")]), settings)
    assert payload["items"][0]["description"] == "y" * 1000


def test_tax_rate_with_more_than_5_decimals_is_refused():
    with pytest.raises(FieldLimitError) as info:
        invoice_to_paypal(invoice([line("x", "1", "100.00", "100.00", "7.123456", "7.12", "107.12")]), SETTINGS)
    assert info.value.field == "items[0].tax.percent"


def test_a_line_whose_tax_does_not_follow_paypals_rule_is_refused_before_sending():
    # 10.00 x 23 % = 2.30, but the line says 2.31: PayPal would total 12.30, not 12.31
    with pytest.raises(FieldLimitError) as info:
        invoice_to_paypal(invoice([line("x", "1", "10.00", "10.00", "23", "2.31", "12.31")]), SETTINGS)
    assert info.value.field == "items[0]" and "2.30" in str(info.value) and "2.31" in str(info.value)


# --------------------------------------------------------------------------- layout and arithmetic
@pytest.mark.parametrize(
    ("qty", "price", "net", "discount", "expected"),
    [
        ("3.25", "42.00", "136.50", "0", ("3.25", "42.00", "0", False)),  # exact product
        ("0.3333", "45.00", "15.00", "0", ("1", "15.00", "0", True)),  # 14.9985: collapsed
        ("2", "18.75", "33.75", "10", ("2", "18.75", "3.75", False)),  # discount as an amount
        ("1.5", "0.125", "0.19", "0", ("1", "0.19", "0", True)),  # unit price with 3 decimals
        ("1", "-10.00", "-10.00", "0", ("1", "-10.00", "0", False)),  # negative line, exact
        ("0", "5.00", "0.00", "0", ("1", "0.00", "0", True)),  # zero quantity
        ("1.234567", "10.00", "12.35", "0", ("1", "12.35", "0", True)),  # 6 decimals in quantity
    ],
)
def test_item_layout(qty, price, net, discount, expected):
    ln = line("x", qty, price, net, "23", "0", net, discount=discount)
    layout = item_layout(ln, "EUR", False)
    quantity, unit_amount, disc, collapsed = expected
    assert (layout.quantity, layout.unit_amount, layout.discount, layout.collapsed) == (
        D(quantity),
        D(unit_amount),
        D(disc),
        collapsed,
    )


def test_jpy_layout_and_totals():
    # 1.5 x 1,999 = 2,998.5 is not a whole yen: collapsed to 1 x 2,999 (our net, rounded half-up)
    ln = line("Labour", "1.5", "1999", "2999", "10", "300", "3299")
    payload = invoice_to_paypal(invoice([ln], currency="JPY"), SETTINGS)
    item = payload["items"][0]
    assert (item["quantity"], item["unit_amount"]["value"]) == ("1", "2999")
    assert item["description"] == "1.5 un × 1999 JPY"
    # 2,999 x 10 % = 299.9 -> 300
    assert expected_totals(payload).total == D("3299")


def test_expected_totals_rounds_tax_per_item_half_up():
    # the community report: 44.28 and 42.75 at 19 %: 8.4132 -> 8.41 and 8.1225 -> 8.12 = 16.53 (not 16.54)
    payload = {
        "detail": {"currency_code": "EUR"},
        "items": [
            {
                "name": "a",
                "quantity": "1",
                "unit_amount": {"currency_code": "EUR", "value": "44.28"},
                "tax": {"name": "T", "percent": "19"},
            },
            {
                "name": "b",
                "quantity": "1",
                "unit_amount": {"currency_code": "EUR", "value": "42.75"},
                "tax": {"name": "T", "percent": "19"},
            },
        ],
    }
    totals = expected_totals(payload)
    assert (totals.tax_total, totals.total) == (D("16.53"), D("103.56"))
    assert compute_amounts(payload, "EUR").total == D("103.56")


def test_emulator_arithmetic_reproduces_the_spec_example():
    # invoice_draft example: items 50.00 (5 %) and 10.00 (-5.00), invoice discount 5 %, shipping 10.00 at 7.25 %,
    # custom 10.00: taxes 3.27 + 0.34 + 0.73 = 4.34, invoice discount 2.63, total 74.21
    example = load_spec(str(SPEC))["components"]["examples"]["invoice"]["value"]
    amounts = compute_amounts(example, "USD")
    assert amounts.item_taxes == [D("3.27"), D("0.34")] and amounts.shipping_tax == D("0.73")
    assert (amounts.item_discount_total, amounts.invoice_discount, amounts.tax_total, amounts.total) == (
        D("7.50"),
        D("2.63"),
        D("4.34"),
        D("74.21"),
    )
    draft = load_spec(str(SPEC))["components"]["examples"]["invoice_draft"]["value"]
    assert draft["amount"]["value"] == "74.21"
    assert draft["amount"]["breakdown"]["tax_total"]["value"] == "4.34"


# --------------------------------------------------------------------------- small pieces
def test_payment_terms():
    issue = date(2026, 3, 2)
    assert payment_term(issue, issue) == {"term_type": "DUE_ON_RECEIPT"}
    assert payment_term(issue, date(2026, 3, 12)) == {"term_type": "NET_10"}
    assert payment_term(issue, date(2026, 5, 31)) == {"term_type": "NET_90"}
    assert payment_term(issue, date(2026, 3, 16)) == {"due_date": "2026-03-16"}


def test_tax_names_and_recipient():
    settings = PayPalSettings(
        client_id="c", client_secret_env="E", tax_names={"23.0": "IVA normal"}, client_emails={"CLI-HAL": "a@b.example"}
    )
    assert tax_name_for(D("23.00"), settings) == "IVA normal"
    assert tax_name_for(D("6"), settings) == "VAT 6%"
    inv = invoice([line("x", "1", "1.00", "1.00", "0", "0.00", "1.00")], contact_id="other@c.example")
    assert recipient_for(inv, settings).email == "a@b.example"  # settings mapping wins

    class Client:
        name, email, tax_number = "Hotel A", "ap@hotel.example", "PT500000101"

    assert recipient_for(inv, SETTINGS, Client()) == Recipient("Hotel A", "ap@hotel.example", "PT500000101")
    assert recipient_for(inv, SETTINGS).email == "other@c.example"  # contact_id that is an e-mail
    assert (
        recipient_for(invoice([line("x", "1", "1.00", "1.00", "0", "0.00", "1.00")], contact_id="C-1"), SETTINGS).email
        is None
    )


def test_invoice_from_paypal():
    found = invoice_from_paypal(
        {
            "id": "INV2-AAAA-BBBB-CCCC-DDDD",
            "status": "SENT",
            "detail": {"invoice_number": "N-1"},
            "amount": {"currency_code": "EUR", "value": "214.03"},
        }
    )
    assert (found.external_id, found.number, found.total, found.status, found.marker, found.paid) == (
        "INV2-AAAA-BBBB-CCCC-DDDD",
        "N-1",
        D("214.03"),
        "SENT",
        None,
        D(0),
    )
    paid = invoice_from_paypal(
        {
            "id": "INV2-1",
            "status": "PARTIALLY_PAID",
            "detail": {"invoice_number": "N-1", "memo": "broker:acme:wo:1:r2"},
            "amount": {"currency_code": "EUR", "value": "214.03"},
            "payments": {"paid_amount": {"currency_code": "EUR", "value": "14.03"}},
        }
    )
    assert (paid.marker, paid.paid) == ("acme:wo:1:r2", D("14.03"))
    with pytest.raises(KeyError):
        invoice_from_paypal({"status": "DRAFT"})


STANDARD = [
    # 3.25 h x 42.00 = 136.50, 23 % = 31.395 -> 31.40
    line("HVAC labour", "3.25", "42.00", "136.50", "23", "31.40", "167.90", unit="h"),
]


def test_legal_notes_are_printed_in_the_note_and_the_marker_is_the_private_memo():
    inv = invoice(STANDARD).model_copy(update={"legal_notes": ["Reverse charge", "Isento (art. 9.º CIVA)"]})
    detail = invoice_to_paypal(inv, SETTINGS.model_copy(update={"note": "Obrigado"}))["detail"]
    assert (detail["note"], detail["memo"]) == (
        "Obrigado\nReverse charge\nIsento (art. 9.º CIVA)",
        "broker:acme:wo:ACME-WO-1-R1:r1",
    )
    assert "note" not in invoice_to_paypal(invoice(STANDARD), SETTINGS)["detail"]
    with pytest.raises(FieldLimitError) as info:  # 4000 characters at most
        invoice_to_paypal(inv.model_copy(update={"legal_notes": ["x" * 4001]}), SETTINGS)
    assert info.value.field == "detail.note"


def test_a_deduction_is_a_negative_untaxed_custom_amount_valid_per_spec():
    inv = invoice(STANDARD)  # 167.90
    deduction = Deduction(amount=D("100.00"), previous_number="ACME-WO-1-R1", paid=D("100.00"))
    payload = invoice_to_paypal(inv.model_copy(update={"invoice_number": "ACME-WO-1-R2"}), SETTINGS, None, deduction)
    assert payload["amount"] == {
        "breakdown": {
            "custom": {
                "label": "Already invoiced on ACME-WO-1-R1",
                "amount": {"currency_code": "EUR", "value": "-100.00"},
            }
        }
    }
    assert validate_document(SPEC, "invoice", payload) == []
    # 136.50 + 31.40 tax - 100.00 = 67.90, the tax unchanged
    totals, amounts = expected_totals(payload), compute_amounts(payload, "EUR")
    assert (totals.total, totals.tax_total, amounts.total, amounts.tax_total) == (
        D("67.90"),
        D("31.40"),
        D("67.90"),
        D("31.40"),
    )
    with pytest.raises(FieldLimitError) as info:
        invoice_to_paypal(inv, SETTINGS, None, Deduction(amount=D("0"), previous_number="X", paid=D("0")))
    assert info.value.field == "amount.breakdown.custom.amount"
    assert len(Deduction(amount=D(1), previous_number="N" * 25, paid=D(0)).label) == 45


def test_cancel_notification_is_a_spec_notification():
    body = cancel_notification(SETTINGS, "Work order WO-1 cancelled")
    assert body == {"send_to_recipient": True, "send_to_invoicer": False, "note": "Work order WO-1 cancelled"}
    assert validate_document(SPEC, "notification", body) == []
    quiet = cancel_notification(SETTINGS.model_copy(update={"email_to_recipient": False}), "x" * 5000)
    assert quiet["send_to_recipient"] is False and len(quiet["note"]) == 4000

"""QuickBooks mapper: golden payloads (checked against the field reference), line layout, tax lines, field limits.

Each file in tests/golden/quickbooks/ holds the settings, an Invoice (amounts computed by hand, see its
"description") and the exact ``POST /v3/company/{realmId}/invoice`` body the mapper must produce.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.quickbooks.mapper import (
    credit_memo_body,
    credit_memo_number,
    dumps,
    invoice_from_qbo,
    invoice_status,
    invoice_to_qbo,
    line_layout,
    loads,
    read_marker,
    tax_lines,
)
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.quickbooks.spec import invoice_problems, make_request_validator
from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine

ROOT = Path(__file__).resolve().parent
SPEC = ROOT / "specs" / "quickbooks" / "openapi.yaml"
GOLDEN = sorted((ROOT / "golden" / "quickbooks").glob("*.json"))
SETTINGS = QuickBooksSettings(
    realm_id="1",
    client_id="c",
    client_secret_env="S",
    refresh_token_env="R",
    tax_codes={"23": {"tax_code_id": "3", "tax_rate_id": "5"}, "0": {"tax_code_id": "6", "tax_rate_id": "8"}},
)


def line(desc, qty, price, net, rate, tax, *, kind="labour", discount="0") -> InvoiceLine:
    return InvoiceLine(
        kind=kind,
        description=desc,
        quantity=D(qty),
        unit_price=D(price),
        discount_percent=D(discount),
        net=D(net),
        tax_rate=D(rate),
        tax=D(tax),
        total=D(net) + D(tax),
        source="t",
        rule="t",
    )


def invoice(
    lines,
    *,
    number="ACME-WO-1-R1",
    inclusive=False,
    contact_id="58",
    reference="WO 1",
    currency="EUR",
    legal_notes=(),
) -> Invoice:
    return Invoice(
        invoice_key=f"acme:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme:wo:{number}",
        tenant="acme",
        billing_system="quickbooks",
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
        issue_date=date(2026, 3, 2),
        due_date=date(2026, 4, 1),
        reference=reference,
        tax_inclusive=inclusive,
        lines=lines,
        net_total=sum((ln.net for ln in lines), D(0)),
        tax_total=sum((ln.tax for ln in lines), D(0)),
        total=sum((ln.total for ln in lines), D(0)),
        cost_total=D(0),
        margin=D(0),
        legal_notes=list(legal_notes),
    )


def credit_memo_problems(document) -> list[str]:
    validator = make_request_validator(SPEC)
    return [str(p) for p in validator.schema_problems("CreditMemoCreateObject", loads(dumps(document)))]


# --------------------------------------------------------------------------- golden files
def test_golden_files_exist():
    assert {p.stem for p in GOLDEN} == {"standard", "per_line_rounding", "tax_inclusive_negative_zero"}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_payload(path: Path):
    doc = loads(path.read_bytes())
    inv = Invoice.model_validate(doc["invoice"])
    settings = QuickBooksSettings.model_validate(doc["settings"])
    payload = invoice_to_qbo(inv, settings)
    # exact JSON text, amounts included ("136.50", never 136.5 or a float)
    assert dumps(payload) == dumps(doc["payload"])
    assert invoice_problems(SPEC, loads(dumps(payload))) == []
    # what QBO will total: Σ line Amount + TotalTax = ours
    amounts = sum((ln["Amount"] for ln in payload["Line"]), D(0))
    assert amounts == inv.net_total and payload["TxnTaxDetail"]["TotalTax"] == inv.tax_total
    assert amounts + payload["TxnTaxDetail"]["TotalTax"] == inv.total
    for ln in payload["Line"]:  # QBO's rule: Amount == Qty × UnitPrice rounded half-up to the cent
        d = ln["SalesItemLineDetail"]
        assert (d["Qty"] * d["UnitPrice"]).quantize(D("0.01"), rounding="ROUND_HALF_UP") == ln["Amount"]


def test_golden_per_line_rounding_values_by_hand():
    doc = loads((ROOT / "golden" / "quickbooks" / "per_line_rounding.json").read_bytes())
    payload = doc["payload"]
    # 250 min at 95.00 = 395.8333 -> 395.83, but 4.1667 × 95.00 = 395.8365 -> 395.84: unit price 94.998
    # (4.1667 × 94.998 = 395.8282 -> 395.83)
    first = payload["Line"][0]["SalesItemLineDetail"]
    assert (first["Qty"], first["UnitPrice"], payload["Line"][0]["Amount"]) == (D("4.1667"), D("94.998"), D("395.83"))
    # per line: 91.04 + 3 × 0.23 = 91.73; QBO per rate would be (395.83 + 2.97) × 23 % = 91.724 -> 91.72
    [standard, exempt] = payload["TxnTaxDetail"]["TaxLine"]
    assert standard["Amount"] == D("91.73") and standard["TaxLineDetail"]["NetAmountTaxable"] == D("398.80")
    assert exempt["Amount"] == D("0.00") and exempt["TaxLineDetail"]["TaxRateRef"] == {"value": "8"}


# --------------------------------------------------------------------------- layout
def test_layout_keeps_our_quantity_and_price_when_they_multiply_to_the_net():
    inv = invoice([line("Labour", "3.25", "42.00", "136.50", "23", "31.40")])
    layout = line_layout(inv.lines[0], inv)
    assert (layout.qty, layout.unit_price, layout.amount, layout.exact) == (D("3.25"), D("42.00"), D("136.50"), True)


def test_layout_discount_uses_the_fewest_decimals_that_multiply_back():
    # 2 × 18.75 less 10 % = 33.75: 2 × 16.88 = 33.76 (2 dp fails), 2 × 16.875 = 33.75 (3 dp)
    inv = invoice([line("Part", "2", "18.75", "33.75", "23", "7.76", kind="part", discount="10")])
    layout = line_layout(inv.lines[0], inv)
    assert (layout.qty, layout.unit_price, layout.amount) == (D("2"), D("16.875"), D("33.75"))


def test_layout_falls_back_to_one_times_the_net():
    # a quantity of 0 cannot multiply to a net of 1.00: QBO gets 1 × 1.00
    inv = invoice([line("Adjustment", "0", "5.00", "1.00", "23", "0.23")])
    layout = line_layout(inv.lines[0], inv)
    assert (layout.qty, layout.unit_price, layout.amount) == (D("1"), D("1.00"), D("1.00"))


def test_tax_lines_group_by_rate_with_our_rounded_taxes():
    inv = invoice(
        [
            line("A", "1", "0.99", "0.99", "23", "0.23"),
            line("B", "1", "0.99", "0.99", "23", "0.23"),
            line("C", "1", "5.00", "5.00", "0", "0.00"),
        ]
    )
    assert [
        (t["Amount"], t["TaxLineDetail"]["TaxRateRef"]["value"], t["TaxLineDetail"]["NetAmountTaxable"])
        for t in tax_lines(inv, SETTINGS)
    ] == [(D("0.46"), "5", D("1.98")), (D("0.00"), "8", D("5.00"))]


# --------------------------------------------------------------------------- limits and errors
def test_doc_number_over_21_characters_is_permanent_and_named():
    inv = invoice([line("Labour", "1", "10.00", "10.00", "23", "2.30")], number="ACME-WO-123456789-R10")  # 21: fine
    assert invoice_to_qbo(inv, SETTINGS)["DocNumber"] == "ACME-WO-123456789-R10"
    too_long = invoice(inv.lines, number="ACME-WO-1234567890-R10")  # 22 characters
    with pytest.raises(PermanentError) as info:
        invoice_to_qbo(too_long, SETTINGS)
    assert "DocNumber" in str(info.value) and "22 characters" in str(info.value) and "allows 21" in str(info.value)


def test_limits_count_characters_not_bytes():
    ok = invoice([line("ç" * 4000, "1", "10.00", "10.00", "23", "2.30")])  # 8000 bytes in UTF-8, 4000 characters
    assert len(invoice_to_qbo(ok, SETTINGS)["Line"][0]["Description"]) == 4000
    with pytest.raises(PermanentError) as info:
        invoice_to_qbo(invoice([line("x" * 4001, "1", "10.00", "10.00", "23", "2.30")]), SETTINGS)
    assert "lines[0].description" in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_qbo(invoice(ok.lines, reference="r" * 1001), SETTINGS)
    assert "CustomerMemo" in str(info.value)


def test_unmapped_tax_rate_and_missing_customer_are_permanent():
    with pytest.raises(PermanentError) as info:
        invoice_to_qbo(invoice([line("Labour", "1", "10.00", "10.00", "13", "1.30")]), SETTINGS)
    assert 'tax_codes["13"]' in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_qbo(invoice([line("Labour", "1", "10.00", "10.00", "23", "2.30")], contact_id=None), SETTINGS)
    assert "clients.CLI-HAL.contact_id" in str(info.value)


def test_invoice_from_qbo():
    found = invoice_from_qbo(
        {
            "Id": "130",
            "DocNumber": "ACME-WO-1-R1",
            "TotalAmt": D("209.41"),
            "Balance": D("9.41"),
            "PrivateNote": "broker:acme:wo:ACME-WO-1-R1:r1",
            "EmailStatus": "EmailSent",
        }
    )
    # paid 209.41 - 9.41 = 200.00
    assert found == ExternalInvoice(
        "130", "ACME-WO-1-R1", D("209.41"), "Partial", "acme:wo:ACME-WO-1-R1:r1", D("200.00")
    )
    assert json.loads(dumps({"a": D("1.50")})) == {"a": 1.5}


@pytest.mark.parametrize(
    ("total", "balance", "note", "status"),
    [
        ("209.41", "209.41", "broker:k", "Open"),
        ("209.41", "0.01", "broker:k", "Partial"),
        ("209.41", "0", "broker:k", "Paid"),
        ("0", "0", "Voided - broker:k", "Voided"),
        ("0", "0", "broker:k", "Open"),  # a zero invoice QBO did not void
        ("0", "0", "Voided", "Voided"),
    ],
)
def test_invoice_status_is_derived_from_the_amounts(total, balance, note, status):
    assert invoice_status({"TotalAmt": D(total), "Balance": D(balance), "PrivateNote": note}) == status


def test_read_marker_reads_the_marker_the_older_text_and_survives_a_void():
    assert read_marker("broker:acme:wo:1:r2") == "acme:wo:1:r2"
    assert read_marker("Voided - broker:acme:wo:1:r2") == "acme:wo:1:r2"
    assert read_marker("broker invoice acme:wo:1:r1") == "acme:wo:1:r1"  # invoices made before the marker
    assert read_marker("Voided - broker invoice acme:wo:1:r1") == "acme:wo:1:r1"
    assert read_marker("typed by hand") is None and read_marker(None) is None


def test_legal_notes_follow_the_reference_in_the_printed_customer_memo():
    notes = ["Reverse charge: VAT to be accounted for by the recipient", "Isento de IVA (art. 9.º CIVA)"]
    inv = invoice([line("Labour", "1", "10.00", "10.00", "0", "0.00")], legal_notes=notes)
    payload = invoice_to_qbo(inv, SETTINGS)
    assert payload["CustomerMemo"] == {
        "value": "WO 1\nReverse charge: VAT to be accounted for by the recipient\nIsento de IVA (art. 9.º CIVA)"
    }
    assert payload["PrivateNote"] == "broker:acme:wo:ACME-WO-1-R1:r1"
    # reference (4) + 1 newline + 995 = 1000 characters: allowed; one more is not
    assert invoice_to_qbo(invoice(inv.lines, legal_notes=["n" * 995]), SETTINGS)
    with pytest.raises(PermanentError) as info:
        invoice_to_qbo(invoice(inv.lines, legal_notes=["n" * 996]), SETTINGS)
    assert "legal_notes (QuickBooks CustomerMemo) is 1001 characters, QuickBooks allows 1000" in str(info.value)


def test_credit_memo_number_fits_doc_number():
    assert credit_memo_number("CF-PAIDAM-1-R1") == "CF-PAIDAM-1-R1-CN"
    assert credit_memo_number("X" * 18) == "X" * 18 + "-CN"  # 21 characters: fits
    long_number = "ACME-WO-2026-000123-R2"  # 22 characters
    digest = hashlib.sha256(long_number.encode()).hexdigest()[:6].upper()
    assert credit_memo_number(long_number) == f"ACME-WO-202-{digest}-CN"
    assert len(credit_memo_number(long_number)) == 21
    assert credit_memo_number("X" * 19) != credit_memo_number("X" * 20)


def test_credit_memo_body_copies_the_invoice_as_qbo_holds_it():
    held = {
        "Id": "130",
        "SyncToken": "1",
        "DocNumber": "ACME-WO-1-R1",
        "CustomerRef": {"value": "58", "name": "Hotel"},
        "CurrencyRef": {"value": "EUR", "name": "Euro"},
        "PrivateNote": "broker:acme:wo:ACME-WO-1-R1:r1",
        "Line": [
            {
                "Id": "1",
                "LineNum": 1,
                "Description": "HVAC labour",
                "Amount": D("136.50"),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "2", "name": "Labour"},
                    "Qty": D("3.25"),
                    "UnitPrice": D("42.00"),
                    "TaxCodeRef": {"value": "3"},
                },
            },
            {"Amount": D("136.50"), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
        ],
        "TxnTaxDetail": {
            "TotalTax": D("31.40"),
            "TaxLine": [
                {
                    "Amount": D("31.40"),
                    "DetailType": "TaxLineDetail",
                    "TaxLineDetail": {
                        "TaxRateRef": {"value": "5", "name": "IVA 23%"},
                        "PercentBased": True,
                        "TaxPercent": D("23"),
                        "NetAmountTaxable": D("136.50"),
                    },
                }
            ],
        },
        "TotalAmt": D("167.90"),
        "Balance": D("0"),
    }
    body = credit_memo_body(held, issued=date(2026, 3, 9), reason="replaced by ACME-WO-1-R2")
    assert body == {
        "DocNumber": "ACME-WO-1-R1-CN",
        "TxnDate": "2026-03-09",
        "CustomerRef": {"value": "58"},
        "GlobalTaxCalculation": "TaxExcluded",
        "CustomerMemo": {"value": "Credit note for invoice ACME-WO-1-R1: replaced by ACME-WO-1-R2"},
        "PrivateNote": "Credits invoice ACME-WO-1-R1\nbroker:acme:wo:ACME-WO-1-R1:r1",
        "Line": [
            {
                "LineNum": 1,
                "Description": "HVAC labour",
                "Amount": D("136.50"),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "2"},
                    "Qty": D("3.25"),
                    "UnitPrice": D("42.00"),
                    "TaxCodeRef": {"value": "3"},
                },
            }
        ],
        "TxnTaxDetail": {
            "TotalTax": D("31.40"),
            "TaxLine": [
                {
                    "Amount": D("31.40"),
                    "DetailType": "TaxLineDetail",
                    "TaxLineDetail": {
                        "TaxRateRef": {"value": "5"},
                        "PercentBased": True,
                        "TaxPercent": D("23"),
                        "NetAmountTaxable": D("136.50"),
                    },
                }
            ],
        },
        "CurrencyRef": {"value": "EUR"},
    }
    assert credit_memo_problems(body) == []


def test_field_reference_is_the_recorded_copy():
    import hashlib

    # tests/specs/README.md: copied byte-for-byte from ballerina-platform/openapi-connectors
    assert (
        hashlib.sha256(SPEC.read_bytes()).hexdigest()
        == "b626c71778ffa456183a4290d9b0820136fcaf8746baaf7c88072c0edb768b26"
    )

"""Zoho mapper: golden bodies (an Invoice in, the exact ``POST /invoices`` JSON out), Zoho's per-tax
rounding and the adjustment that makes its total equal ours, field limits. Zoho publishes no spec we
keep, so the bodies are checked against the field rules of the API reference (see the mapper).
Regenerate the ``payload`` of the golden files with ``UPDATE_GOLDEN=1`` (and review the diff)."""

from __future__ import annotations

import json
import os
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.sdk.invoice import Invoice
from connectors.sdk.money import dumps, loads
from connectors.zoho.mapper import MappingError, credit_note_to_zoho, invoice_from_zoho, invoice_to_zoho, zoho_totals
from connectors.zoho.settings import ZohoSettings

GOLDEN = Path(__file__).resolve().parent / "golden" / "zoho"
SETTINGS = ZohoSettings(organization_id="10234695", client_id="1000.X", client_secret_env="A", refresh_token_env="B")
TAX_IDS = {"23": "460000000000023", "10": "460000000000010"}
ALLOWED = {
    "customer_id",
    "invoice_number",
    "reference_number",
    "date",
    "due_date",
    "is_inclusive_tax",
    "line_items",
    "adjustment",
    "adjustment_description",
    "notes",
}
LINE_ALLOWED = {"name", "description", "rate", "quantity", "unit", "item_order", "tax_id"}


def body_of(invoice: Invoice) -> dict:
    return invoice_to_zoho(invoice, SETTINGS, customer_id="460000000000001", tax_ids=TAX_IDS).body


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden_bodies(path: Path):
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    invoice = Invoice.model_validate(doc["invoice"])
    body = body_of(invoice)
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(
            '{\n  "invoice": '
            + json.dumps(doc["invoice"], indent=2, ensure_ascii=False).replace("\n", "\n  ")
            + ',\n  "payload": '
            + _pretty(body, "  ")
            + "\n}\n",
            encoding="utf-8",
        )
    expected = _payload(path)
    assert dumps(body) == dumps(expected)  # exact decimal text, key order included
    assert set(body) <= ALLOWED and all(set(li) <= LINE_ALLOWED for li in body["line_items"])
    assert all(len(li["name"]) <= 100 and len(li["description"]) <= 2000 for li in body["line_items"])


def _pretty(obj, pad: str) -> str:
    """Indented JSON with :class:`Decimal` written exactly (for writing golden files)."""
    inner = pad + "  "
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        return (
            "{\n"
            + ",\n".join(f"{inner}{json.dumps(k, ensure_ascii=False)}: {_pretty(v, inner)}" for k, v in obj.items())
            + f"\n{pad}}}"
        )
    if isinstance(obj, list):
        if not obj:
            return "[]"
        return "[\n" + ",\n".join(inner + _pretty(v, inner) for v in obj) + f"\n{pad}]"
    return dumps(obj).decode("utf-8")


def _payload(path: Path) -> dict:
    return loads(path.read_text(encoding="utf-8"))["payload"]


def golden(name: str) -> Invoice:
    return Invoice.model_validate(json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))["invoice"])


def test_per_tax_rounding_needs_an_adjustment():
    inv = golden("rounding")
    plan = invoice_to_zoho(inv, SETTINGS, customer_id="c", tax_ids=TAX_IDS)
    # ours: 5 lines x (1.05 x 23 % = 0.2415 -> 0.24) = 1.20 tax; total 5.25 + 12.50 + 1.20 = 18.95
    # Zoho: one 23 % tax on 5.25 = 1.2075 -> 1.21; total 18.96 -> adjustment -0.01
    assert (plan.zoho_sub_total, plan.zoho_tax_total) == (D("17.75"), D("1.21"))
    assert plan.adjustment == D("-0.01") and plan.body["adjustment"] == D("-0.01")
    assert plan.body["adjustment_description"] == "Rounding (tax per line)"
    assert "tax_id" not in plan.body["line_items"][-1]  # the 0 % line carries no tax


def test_standard_lines_by_hand():
    body = body_of(golden("standard"))
    labour, part, filt = body["line_items"]
    assert (labour["rate"], labour["quantity"]) == (D("42.00"), D("3.25"))  # 42.00 x 3.25 = 136.50 exactly
    assert (part["rate"], part["quantity"]) == (D("33.75"), D(1)) and part["description"].endswith(
        "(2 un x 18.75 less 10%)"
    )
    assert (filt["rate"], filt["quantity"]) == (D("10.00"), D("2"))
    # Zoho: 190.25 x 23 % = 43.7575 -> 43.76 = ours (31.40 + 7.76 + 4.60): no adjustment
    assert "adjustment" not in body and body["invoice_number"] == "ACME-WO-1001-R1"
    assert zoho_totals(
        [(D("42.00"), D("3.25"), D(23)), (D("33.75"), D(1), D(23)), (D("10.00"), D(2), D(23))], "EUR", False
    ) == (D("190.25"), D("43.76"), D("234.01"))


def test_inclusive_and_zero_decimal():
    body = body_of(golden("inclusive"))
    assert body["is_inclusive_tax"] is True and [li["rate"] for li in body["line_items"]] == [D("123.00"), D("45.00")]
    assert "adjustment" not in body  # Zoho's inclusive total is the sum of the gross lines = ours
    jpy = invoice_to_zoho(golden("jpy_discount"), SETTINGS, customer_id="c", tax_ids=TAX_IDS)
    # 12000 + (-1000) = 11000 at 10 % = 1100 in one tax: same as per line; total 12100 JPY
    assert (jpy.zoho_tax_total, jpy.total, jpy.adjustment) == (D("1100"), D("12100.00"), D("0.00"))


def test_limits_and_missing_tax_name_the_field():
    inv = golden("standard")
    with pytest.raises(MappingError) as info:
        invoice_to_zoho(
            inv.model_copy(update={"invoice_number": "N" * 101}), SETTINGS, customer_id="c", tax_ids=TAX_IDS
        )
    assert info.value.field == "invoice_number" and "101 characters" in str(info.value)
    with pytest.raises(MappingError) as info:
        invoice_to_zoho(inv.model_copy(update={"reference": "r" * 51}), SETTINGS, customer_id="c", tax_ids=TAX_IDS)
    assert info.value.field == "reference_number"
    long_line = inv.lines[2].model_copy(update={"description": "ç" * 2001})
    with pytest.raises(MappingError) as info:
        invoice_to_zoho(inv.model_copy(update={"lines": [long_line]}), SETTINGS, customer_id="c", tax_ids=TAX_IDS)
    assert info.value.field == "lines[1].description"
    with pytest.raises(MappingError) as info:
        invoice_to_zoho(inv, SETTINGS, customer_id="c", tax_ids={})
    assert info.value.field == "lines[1].tax_rate" and "23%" in str(info.value)


def test_notes_carry_legal_notes_then_the_marker_within_5000_characters():
    inv = golden("standard").model_copy(update={"legal_notes": ["Reverse charge", "Isento (art. 9.º CIVA)"]})
    assert body_of(inv)["notes"] == "Reverse charge\nIsento (art. 9.º CIVA)\nbroker:acme-fm:wo:1001:r1"
    # 4974 + newline + the 25-character marker = 5000: the limit itself is accepted, one more is not
    assert len(body_of(inv.model_copy(update={"legal_notes": ["x" * 4974]}))["notes"]) == 5000
    with pytest.raises(MappingError) as info:
        body_of(inv.model_copy(update={"legal_notes": ["x" * 4975]}))
    assert info.value.field == "notes" and "5001 characters" in str(info.value)


def test_credit_note_copies_the_invoice_as_zoho_holds_it():
    held = {
        "invoice_number": "ACME-WO-1003-R1",
        "customer_id": "460000000000001",
        "is_inclusive_tax": False,
        "adjustment": D("-0.01"),
        "adjustment_description": "Rounding (tax per line)",
        "line_items": [
            {
                "line_item_id": "L1",
                "name": "Washer",
                "description": "kit",
                "rate": D("1.05"),
                "quantity": D(1),
                "unit": "un",
                "item_order": 1,
                "tax_id": "T23",
                "item_total": D("1.05"),
            },
            {
                "line_item_id": "L2",
                "name": "Fee",
                "description": "",
                "rate": D("12.50"),
                "quantity": D(1),
                "unit": "",
                "item_order": 2,
                "tax_id": "",
                "item_total": D("12.50"),
            },
        ],
    }
    body = credit_note_to_zoho(held, "ACME-WO-1003-R1-CN", issued="2026-03-09", reason="cancelled")
    assert body == {
        "customer_id": "460000000000001",
        "creditnote_number": "ACME-WO-1003-R1-CN",
        "reference_number": "ACME-WO-1003-R1",
        "date": "2026-03-09",
        "is_inclusive_tax": False,
        "line_items": [
            {
                "name": "Washer",
                "description": "kit",
                "rate": D("1.05"),
                "quantity": D(1),
                "unit": "un",
                "item_order": 1,
                "tax_id": "T23",
            },
            {"name": "Fee", "description": "", "rate": D("12.50"), "quantity": D(1), "unit": "", "item_order": 2},
        ],
        "notes": "cancelled",
        "adjustment": D("-0.01"),
        "adjustment_description": "Rounding (tax per line)",
    }
    with pytest.raises(MappingError) as info:
        credit_note_to_zoho(held, "N" * 101, issued="2026-03-09", reason="x")
    assert info.value.field == "creditnote_number"


def test_invoice_from_zoho_reads_marker_and_payments():
    found = invoice_from_zoho(
        {
            "invoice_id": 7,
            "invoice_number": "A-1",
            "total": D("10.00"),
            "status": "partially_paid",
            "payment_made": D("4.00"),
            "notes": "Reverse charge\nbroker:acme:wo:A:r1",
        }
    )
    assert (found.external_id, found.marker, found.paid, found.total) == ("7", "acme:wo:A:r1", D("4.00"), D("10.00"))
    assert invoice_from_zoho({"invoice_id": "8", "notes": "Thanks"}).marker is None

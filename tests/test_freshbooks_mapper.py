"""FreshBooks mapper: golden payloads (checked against the field reference), line layout, field limits.

Each file in tests/golden/freshbooks/ holds the settings, an Invoice (amounts computed by hand, see its
"description") and the exact ``POST .../invoices/invoices`` body the mapper must produce.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.freshbooks.mapper import (
    credit_note_to_freshbooks,
    invoice_from_freshbooks,
    invoice_to_freshbooks,
    line_layout,
)
from connectors.freshbooks.settings import FreshBooksSettings
from connectors.freshbooks.spec import body_problems
from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.money import dumps, loads

ROOT = Path(__file__).resolve().parent
SPEC = ROOT / "specs" / "freshbooks" / "openapi.yaml"
GOLDEN = sorted((ROOT / "golden" / "freshbooks").glob("*.json"))
SETTINGS = FreshBooksSettings(
    account_id="ZkR9mQ", client_id="c", client_secret_env="S", refresh_token_env="R", tax_names={"23": "IVA"}
)


def q2(value: D) -> D:
    return value.quantize(D("0.01"), rounding=ROUND_HALF_UP)


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
    lines, *, number="ACME-WO-1-R1", contact_id="31007", due=date(2026, 4, 1), reference="WO 1", legal_notes=()
) -> Invoice:
    return Invoice(
        invoice_key=f"acme:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme:wo:{number}",
        tenant="acme",
        billing_system="freshbooks",
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
        currency="EUR",
        issue_date=date(2026, 3, 2),
        due_date=due,
        reference=reference,
        lines=lines,
        net_total=sum((ln.net for ln in lines), D(0)),
        tax_total=sum((ln.tax for ln in lines), D(0)),
        total=sum((ln.total for ln in lines), D(0)),
        cost_total=D(0),
        margin=D(0),
        legal_notes=list(legal_notes),
    )


def freshbooks_total(payload: dict) -> D:
    """FreshBooks' arithmetic: Σ round(qty × unit_cost) + Σ round(amount × taxAmount1 / 100), per line."""
    total = D(0)
    for ln in payload["invoice"]["lines"]:
        amount = q2(D(ln["qty"]) * D(ln["unit_cost"]["amount"]))
        total += amount + (q2(amount * D(ln["taxAmount1"]) / 100) if "taxAmount1" in ln else D(0))
    return total


# --------------------------------------------------------------------------- golden files
def test_golden_files_exist():
    assert {p.stem for p in GOLDEN} == {"standard", "per_line_rounding", "tax_inclusive_negative_zero"}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_payload(path: Path):
    doc = loads(path.read_bytes())
    inv = Invoice.model_validate(doc["invoice"])
    payload = invoice_to_freshbooks(inv, FreshBooksSettings.model_validate(doc["settings"]))
    assert dumps(payload) == dumps(doc["payload"])
    assert body_problems(SPEC, "InvoiceCreateObject", loads(dumps(payload))) == []
    assert freshbooks_total(payload) == inv.total


def test_golden_values_by_hand():
    standard = loads((ROOT / "golden" / "freshbooks" / "standard.json").read_bytes())["payload"]["invoice"]
    # 3.25 × 42.00 = 136.50 kept; 2 × 18.75 less 10 % = 33.75 has no 2-decimal unit cost (2 × 16.88 = 33.76): 1 × 33.75
    assert [(ln["qty"], ln["unit_cost"]["amount"]) for ln in standard["lines"]] == [(D("3.25"), "42.00"), (1, "33.75")]
    assert standard["due_offset_days"] == 30 and standard["invoice_number"] == "ACME-WO-1001-R1"
    rounding = loads((ROOT / "golden" / "freshbooks" / "per_line_rounding.json").read_bytes())["payload"]["invoice"]
    # 4.1667 h has more than 2 decimals: 1 × 395.83; the 0 % line carries no tax fields
    assert (rounding["lines"][0]["qty"], rounding["lines"][0]["unit_cost"]["amount"]) == (1, "395.83")
    assert "taxAmount1" not in rounding["lines"][-1] and rounding["lines"][1]["taxName1"] == "IVA"


# --------------------------------------------------------------------------- layout
def test_layout_keeps_quantity_when_a_two_decimal_unit_cost_works():
    # 2.5 kg at 28.80 = 72.00; with a 5 % discount 68.40 = 2.5 × 27.36 exactly
    inv = invoice([line("Refrigerant", "2.5", "28.80", "68.40", "23", "15.73", kind="part", discount="5")])
    layout = line_layout(inv.lines[0], inv)
    assert (layout.qty, layout.unit_price, layout.amount, layout.exact) == (D("2.5"), D("27.36"), D("68.40"), False)


def test_unit_prices_with_more_than_two_decimals_are_not_sent():
    # quote line 3 × 0.335 = 1.005 -> net 1.01; FreshBooks keeps unit costs to 2 decimals (0.34 × 3 = 1.02, 0.33 × 3 = 0.99)
    inv = invoice([line("Clips", "3", "0.335", "1.01", "23", "0.23", kind="quote")])
    layout = line_layout(inv.lines[0], inv)
    assert (layout.qty, layout.unit_price) == (D("1"), D("1.01"))


# --------------------------------------------------------------------------- limits and errors
def test_limits_and_unsendable_invoices_are_permanent_and_named():
    ok = [line("Labour", "1", "10.00", "10.00", "23", "2.30")]
    with pytest.raises(PermanentError) as info:
        invoice_to_freshbooks(invoice(ok, number="N" * 101), SETTINGS)
    assert "invoice_number" in str(info.value) and "101 characters" in str(info.value)
    assert (
        len(
            invoice_to_freshbooks(invoice([line("ç" * 4000, "1", "10.00", "10.00", "23", "2.30")]), SETTINGS)[
                "invoice"
            ]["lines"][0]["description"]
        )
        == 4000
    )
    with pytest.raises(PermanentError) as info:
        invoice_to_freshbooks(invoice([line("x" * 4001, "1", "10.00", "10.00", "23", "2.30")]), SETTINGS)
    assert "lines[0].description" in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_freshbooks(invoice(ok, contact_id="cus_123"), SETTINGS)
    assert "clients.CLI-HAL.contact_id" in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_freshbooks(invoice(ok, due=date(2026, 3, 1)), SETTINGS)
    assert "due_date" in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_freshbooks(invoice([line("Labour", "1", "10.00", "10.00", "6.5125", "0.65")]), SETTINGS)
    assert "more than 3 decimals" in str(info.value)


def test_invoice_from_freshbooks():
    found = invoice_from_freshbooks(
        {
            "invoiceid": 880001,
            "invoice_number": "ACME-WO-1-R1",
            "amount": {"amount": "209.41", "code": "EUR"},
            "paid": {"amount": "9.41", "code": "EUR"},
            "notes": "Isento de IVA\nbroker:acme:wo:ACME-WO-1-R1:r1",
            "v3_status": "partial",
        }
    )
    assert found == ExternalInvoice(
        "880001", "ACME-WO-1-R1", D("209.41"), "partial", "acme:wo:ACME-WO-1-R1:r1", D("9.41")
    )
    bare = invoice_from_freshbooks({"id": 7, "amount": {"amount": "1.00"}, "notes": "typed by hand"})
    assert (bare.marker, bare.paid, bare.status) == (None, D("0"), None)


def test_legal_notes_then_the_marker_go_in_the_printed_notes():
    notes = ["Reverse charge: VAT to be accounted for by the recipient", "Isento de IVA (art. 9.º CIVA)"]
    payload = invoice_to_freshbooks(
        invoice([line("Labour", "1", "10.00", "10.00", "0", "0.00")], legal_notes=notes), SETTINGS
    )
    assert payload["invoice"]["notes"] == (
        "Reverse charge: VAT to be accounted for by the recipient\nIsento de IVA (art. 9.º CIVA)\n"
        "broker:acme:wo:ACME-WO-1-R1:r1"
    )
    assert payload["invoice"]["po_number"] == "WO 1"  # the human reference stays where it was
    assert body_problems(SPEC, "InvoiceCreateObject", loads(dumps(payload))) == []
    # 3969 + newline + marker (30 characters) = 4000 characters: allowed; one more is not
    one = [line("L", "1", "1.00", "1.00", "0", "0.00")]
    assert len(invoice_to_freshbooks(invoice(one, legal_notes=["n" * 3969]), SETTINGS)["invoice"]["notes"]) == 4000
    with pytest.raises(PermanentError) as info:
        invoice_to_freshbooks(invoice(one, legal_notes=["n" * 3970]), SETTINGS)
    assert "legal_notes and marker (FreshBooks notes) is 4001 characters, FreshBooks allows 4000" in str(info.value)


def test_credit_note_copies_the_invoice_lines_as_freshbooks_holds_them():
    held = {
        "invoiceid": 880001,
        "invoice_number": "ACME-WO-1-R1",
        "customerid": 31007,
        "currency_code": "EUR",
        "language": "en",
        "notes": "broker:acme:wo:ACME-WO-1-R1:r1",
        "amount": {"amount": "167.90", "code": "EUR"},
        "lines": [
            {
                "lineid": 1,
                "type": 0,
                "name": "Labour",
                "description": "HVAC 3.25 h",
                "qty": D("3.25"),
                "unit_cost": {"amount": "42.00", "code": "EUR"},
                "amount": {"amount": "136.50", "code": "EUR"},
                "taxName1": "IVA",
                "taxAmount1": "23",
                "updated": "2026-03-02 05:00:00",
            },
            {
                "lineid": 2,
                "type": 0,
                "name": "Parts",
                "description": "",
                "qty": D("1"),
                "unit_cost": {"amount": "0.00", "code": "EUR"},
                "amount": {"amount": "0.00", "code": "EUR"},
            },
        ],
    }
    body = credit_note_to_freshbooks(held, issued="2026-03-09", reason="replaced by ACME-WO-1-R2")
    assert body == {
        "credit_note": {
            "clientid": 31007,
            "create_date": "2026-03-09",
            "credit_number": "ACME-WO-1-R1-CN",
            "credit_type": "goodwill",
            "currency_code": "EUR",
            "notes": "Credit note for invoice ACME-WO-1-R1: replaced by ACME-WO-1-R2\nbroker:acme:wo:ACME-WO-1-R1:r1",
            "lines": [
                {
                    "name": "Labour",
                    "description": "HVAC 3.25 h",
                    "qty": D("3.25"),
                    "unit_cost": {"amount": "42.00", "code": "EUR"},
                    "taxName1": "IVA",
                    "taxAmount1": "23",
                },
                {"name": "Parts", "qty": D("1"), "unit_cost": {"amount": "0.00", "code": "EUR"}},
            ],
            "language": "en",
        }
    }
    assert body_problems(SPEC, "CreditNoteCreateObject", loads(dumps(body))) == []


def test_field_reference_is_the_recorded_copy():
    import hashlib

    # tests/specs/README.md: copied byte-for-byte from ballerina-platform/openapi-connectors
    assert (
        hashlib.sha256(SPEC.read_bytes()).hexdigest()
        == "48af073b17d87b65eb846c0e6026e8fa85ff48f0f771797c2b6f13f72a5d351e"
    )

"""InvoiceXpress mapper: golden bodies, line layout, per-item vs per-document VAT, limits, exemption codes.

Golden files (tests/golden/invoicexpress/*.json) hold the settings, the client e-mail / fiscal id, an
Invoice and the exact ``POST /invoices.json`` body. InvoiceXpress's OpenAPI file was not available
(``../shared/specs/SOURCES.md``), so there is no schema to validate against; the emulator test checks
that each golden body is accepted by the emulator's documented validation. Regenerate after an
intended change with ``BROKER_UPDATE_GOLDEN=1 pytest tests/test_invoicexpress_mapper.py`` and review
the diff. Amounts in comments are computed by hand.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.invoicexpress.mapper import (
    credit_note_to_invoicexpress,
    dumps,
    expected_total,
    invoice_from_invoicexpress,
    invoice_to_invoicexpress,
    ix_date,
    ix_totals,
    line_layout,
    parse_ix_date,
)
from connectors.invoicexpress.settings import InvoiceXpressSettings
from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import Invoice, InvoiceLine

GOLDEN_DIR = Path(__file__).resolve().parent / "golden" / "invoicexpress"
BASE_SETTINGS = {"account_name": "acme-demo", "api_key_env": "INVOICEXPRESS_API_KEY", "tax_exemption": "M07"}
TAX_RATES = {"IVA23": D("23"), "IVA13": D("13"), "IVA6": D("6"), "IVA0": D("0")}


def line(desc, qty, price, net, rate, tax, total, *, kind="labour", unit="h", discount="0") -> InvoiceLine:
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
    number="ACME-WO-1001-R1",
    inclusive=False,
    currency="EUR",
    reference="WO 1001",
    contact_id=None,
    legal_notes=(),
) -> Invoice:
    return Invoice(
        invoice_key=f"acme-fm:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme-fm:wo:{number}",
        tenant="acme-fm",
        billing_system="invoicexpress",
        event_id="maintainx:wo:1001:r1",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 3, 11, 30, tzinfo=UTC),
        document="wo",
        document_id="1001",
        revision=1,
        client_id="CLI-HAL",
        client_name="Hotel Atlântico Lisboa, S.A.",
        contact_id=contact_id,
        site_id="LIS-HAL-ROOF",
        currency=currency,
        issue_date=date(2026, 3, 3),
        due_date=date(2026, 4, 2),
        reference=reference,
        tax_inclusive=inclusive,
        lines=lines,
        net_total=sum((ln.net for ln in lines), D("0.00")),
        tax_total=sum((ln.tax for ln in lines), D("0.00")),
        total=sum((ln.total for ln in lines), D("0.00")),
        cost_total=D("0.00"),
        margin=D("0.00"),
        legal_notes=list(legal_notes),
    )


def cases() -> dict[str, tuple[dict, dict, Invoice]]:
    """name -> (settings overrides, client info, invoice)."""
    return {
        # 3.25 h x 42.00 = 136.50 (31.395 -> 31.40); 2 x 18.75 = 37.50 less 10 % = 3.75 -> 33.75 (7.7625 -> 7.76);
        # net 170.25, VAT 39.16, total 209.41
        "standard_eur": (
            {},
            {"client_email": "contas@hotel-atlantico.example", "client_fiscal_id": "500000000"},
            invoice(
                [
                    line("HVAC corrective labour (Ana Costa)", "3.25", "42.00", "136.50", "23", "31.40", "167.90"),
                    line(
                        "Contactor 25A",
                        "2",
                        "18.75",
                        "33.75",
                        "23",
                        "7.76",
                        "41.51",
                        kind="part",
                        unit="un",
                        discount="10",
                    ),
                ],
                contact_id="C-0042",
            ),
        ),
        # 60.00 (13.80) + exempt 12.50 (M40) + 3 x 0.99 = 2.97 (0.68) + 0.75 h x 30.00 = 22.50 at 13 % (2.93);
        # net 97.97, VAT 17.41, total 115.38
        "mixed_rates_exempt": (
            {"tax_exemption": "M40", "sequence_id": "1115355", "item_names": {"expense": "Taxas"}},
            {},
            invoice(
                [
                    line("Preventive visit", "1.5", "40.00", "60.00", "23", "13.80", "73.80"),
                    line(
                        "Waste disposal fee (exempt)",
                        "1",
                        "12.50",
                        "12.50",
                        "0",
                        "0.00",
                        "12.50",
                        kind="expense",
                        unit="un",
                    ),
                    line("Washers M8", "3", "0.99", "2.97", "23", "0.68", "3.65", kind="part", unit="un"),
                    line("Travel", "0.75", "30.00", "22.50", "13", "2.93", "25.43", kind="travel"),
                ],
                number="ACME-WO-1002-R1",
                reference="WO 1002",
            ),
        ),
        # folded: 3.3333 x 42.00 = 139.9986 -> 140.00 (32.20); 2.5 x 24.0150 = 60.0375 -> 60.04 (13.81);
        # 7 x 1.125 = 7.875 (a price with 3 decimals) -> 7.88 (1.8124 -> 1.81); net 207.92, VAT 47.82, total 255.74
        "folded_lines": (
            {},
            {},
            invoice(
                [
                    line("Labour, night shift", "3.3333", "42.00", "140.00", "23", "32.20", "172.20"),
                    line(
                        "Refrigerant R410A", "2.5", "24.0150", "60.04", "23", "13.81", "73.85", kind="part", unit="kg"
                    ),
                    line("Cable ties", "7", "1.125", "7.88", "23", "1.81", "9.69", kind="part", unit="un"),
                ],
                number="ACME-WO-1003-R1",
                reference="WO 1003",
                legal_notes=["Trabalhos ao abrigo do contrato CT-2026-01"],
            ),
        ),
        # tax-inclusive, folded: 123.00 -> net 100.00 (23.00); 22.50 -> net 18.29 (4.21); net 118.29, VAT 27.21, total 145.50
        "tax_inclusive": (
            {},
            {},
            invoice(
                [
                    line("Boiler service (fixed price)", "1", "123.00", "100.00", "23", "23.00", "123.00"),
                    line("Travel", "0.5", "45.00", "18.29", "23", "4.21", "22.50", kind="travel"),
                ],
                number="ACME-SJ-77-R2",
                inclusive=True,
                reference="SJ 77",
            ),
        ),
    }


def build(name: str) -> dict:
    overrides, client, inv = cases()[name]
    settings = {**BASE_SETTINGS, **overrides}
    body = invoice_to_invoicexpress(inv, InvoiceXpressSettings.model_validate(settings), **client)
    return {"settings": settings, "client": client, "invoice": json.loads(inv.model_dump_json()), "body": body}


@pytest.mark.parametrize("name", sorted(cases()))
def test_golden_bodies(name):
    path = GOLDEN_DIR / f"{name}.json"
    got = build(name)
    if os.environ.get("BROKER_UPDATE_GOLDEN") == "1":
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    want = json.loads(path.read_text(encoding="utf-8"))
    inv = Invoice.model_validate(want["invoice"])
    body = invoice_to_invoicexpress(inv, InvoiceXpressSettings.model_validate(want["settings"]), **want["client"])
    assert body == want["body"]
    assert got["body"] == want["body"]
    json.loads(dumps(body))  # serialisable as sent


def test_golden_totals_equal_ours_with_vat_per_item():
    for name, (overrides, client, inv) in cases().items():
        body = invoice_to_invoicexpress(inv, InvoiceXpressSettings.model_validate(BASE_SETTINGS | overrides), **client)
        assert expected_total(body, TAX_RATES, "line") == inv.total, name


def test_standard_body_by_hand():
    body = build("standard_eur")["body"]["invoice"]
    assert body["date"] == "03/03/2026" and body["due_date"] == "02/04/2026"
    # the work-order reference, then our ownership marker on the last line
    assert body["reference"] == "ACME-WO-1001-R1"
    assert body["observations"] == "WO 1001\nbroker:acme-fm:wo:ACME-WO-1001-R1:r1"
    assert body["client"] == {
        "name": "Hotel Atlântico Lisboa, S.A.",
        "code": "C-0042",
        "email": "contas@hotel-atlantico.example",
        "fiscal_id": "500000000",
    }
    assert body["items"][1] == {
        "name": "Material",
        "description": "Contactor 25A",
        "unit_price": "18.75",
        "quantity": "2",
        "discount": "10",
        "tax": {"name": "IVA23"},
    }
    assert "tax_exemption" not in body and "sequence_id" not in body


def test_exempt_and_folded_items():
    mixed = build("mixed_rates_exempt")["body"]["invoice"]
    assert mixed["tax_exemption"] == "M40" and mixed["sequence_id"] == "1115355"
    assert mixed["items"][1] == {
        "name": "Taxas",
        "description": "Waste disposal fee (exempt)",
        "unit_price": "12.50",
        "quantity": "1",
        "tax": {"name": "IVA0"},
    }
    assert mixed["items"][3]["tax"] == {"name": "IVA13"} and mixed["client"] == {
        "name": "Hotel Atlântico Lisboa, S.A.",
        "code": "CLI-HAL",
    }
    folded = build("folded_lines")["body"]["invoice"]["items"]
    assert [(i["quantity"], i["unit_price"], i["description"]) for i in folded] == [
        ("1", "140.00", "Labour, night shift (3.3333 h × 42.00)"),
        ("1", "60.04", "Refrigerant R410A (2.5 kg × 24.0150)"),
        ("1", "7.88", "Cable ties (7 un × 1.125)"),
    ]
    assert build("folded_lines")["body"]["invoice"]["observations"] == (
        "WO 1003\nTrabalhos ao abrigo do contrato CT-2026-01\nbroker:acme-fm:wo:ACME-WO-1003-R1:r1"
    )
    inclusive = build("tax_inclusive")["body"]["invoice"]["items"]
    assert [i["unit_price"] for i in inclusive] == ["100.00", "18.29"] and inclusive[1][
        "description"
    ] == "Travel (0.5 h × 45.00 IVA incl.)"


def test_line_layout_requires_whole_cents_at_every_step():
    # 1.5 x 10.01 = 15.015 (not whole cents) with 20 % off = 12.012: folded to 1 x 12.01
    odd = line_layout(line("x", "1.5", "10.01", "12.01", "23", "2.76", "14.77", discount="20"), tax_inclusive=False)
    assert odd.folded and odd.unit_price == D("12.01")
    # 4 x 12.50 = 50.00, 15 % = 7.50 -> 42.50: kept as is
    kept = line_layout(line("x", "4", "12.50", "42.50", "23", "9.78", "52.28", discount="15"), tax_inclusive=False)
    assert not kept.folded and (kept.quantity, kept.unit_price, kept.discount) == (D("4"), D("12.50"), D("15"))
    with pytest.raises(PermanentError):
        line_layout(line("Refund", "1", "-5.00", "-5.00", "23", "-1.15", "-6.15"), tax_inclusive=False)


def test_vat_per_item_versus_per_document_by_hand():
    rows = [(D("1"), D("2.37"), D("0"), D("23"))] * 3
    # per item: 0.5451 -> 0.55, x3 = 1.65, total 8.76; per document: 7.11 x 0.23 = 1.6353 -> 1.64, total 8.75
    assert ix_totals(rows, "line").total == D("8.76") and ix_totals(rows, "document").total == D("8.75")
    # 2 x 18.75 = 37.50 (sum), 10 % = 3.75 (discount), before taxes 33.75, VAT 7.76, total 41.51
    t = ix_totals([(D("2"), D("18.75"), D("10"), D("23"))], "line")
    assert (t.sum, t.discount, t.before_taxes, t.taxes, t.total) == (
        D("37.50"),
        D("3.75"),
        D("33.75"),
        D("7.76"),
        D("41.51"),
    )


def test_refusals_name_the_field_or_line():
    settings = InvoiceXpressSettings.model_validate(BASE_SETTINGS)
    no_exemption = InvoiceXpressSettings.model_validate(
        {k: v for k, v in BASE_SETTINGS.items() if k != "tax_exemption"}
    )
    exempt = invoice(
        [
            line("Paid 20", "1", "20.00", "20.00", "23", "4.60", "24.60"),
            line("Waste fee", "1", "12.50", "12.50", "0", "0.00", "12.50", kind="expense"),
        ]
    )
    with pytest.raises(PermanentError) as info:
        invoice_to_invoicexpress(exempt, no_exemption)
    assert "line 2 ('Waste fee')" in str(info.value) and "tax_exemption" in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_invoicexpress(invoice([line("ç" * 201, "1", "1.00", "1.00", "23", "0.23", "1.23")]), settings)
    assert "items[].description is 201 characters, 200 max" in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_invoicexpress(
            invoice([line("x", "1", "1.00", "1.00", "23", "0.23", "1.23")], number="R" * 51), settings
        )
    assert "reference is 51 characters, 50 max" in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_invoicexpress(invoice([line("x", "1", "1.00", "1.00", "21", "0.21", "1.21")]), settings)
    assert "VAT 21%" in str(info.value) and "tax_names" in str(info.value)
    long_client = invoice([line("x", "1", "1.00", "1.00", "23", "0.23", "1.23")]).model_copy(
        update={"client_name": "N" * 101}
    )
    with pytest.raises(PermanentError) as info:
        invoice_to_invoicexpress(long_client, settings)
    assert "client.name is 101 characters, 100 max" in str(info.value)


def test_dates_and_reading_back():
    assert ix_date(date(2026, 3, 3)) == "03/03/2026" and parse_ix_date("02/04/2026") == date(2026, 4, 2)
    final = invoice_from_invoicexpress(
        {"id": 9001, "status": "final", "sequence_number": "1/2026", "total": D("209.41")}
    )
    assert (final.external_id, final.number, final.total, final.status) == ("9001", "1/2026", D("209.41"), "final")
    assert (
        invoice_from_invoicexpress({"id": 9002, "status": "draft", "sequence_number": "draft", "total": 1}).number == ""
    )


def test_reading_the_marker_back():
    doc = {"id": 9001, "status": "final", "total": D("209.41"), "observations": "WO 1\nbroker:acme-fm:wo:1:r2"}
    found = invoice_from_invoicexpress(doc, paid=D("9.41"))
    assert (found.marker, found.paid) == ("acme-fm:wo:1:r2", D("9.41"))
    assert invoice_from_invoicexpress({**doc, "observations": "WO 1"}).marker is None


def test_credit_note_copies_the_invoice_items_and_names_its_owner():
    invoice_doc = {
        "id": 9001,
        "date": "03/03/2026",
        "sequence_id": "1115355",
        "tax_exemption": "M40",
        "client": {"id": 5001, "name": "Hotel Atlântico Lisboa, S.A.", "code": "CLI-HAL", "email": "a@b.pt"},
        "items": [
            {
                "name": "Mão de obra",
                "description": "HVAC labour",
                "unit_price": D("42.00"),
                "quantity": D("3.25"),
                "discount": D("0"),
                "tax": {"name": "IVA23", "value": D("23")},
                "subtotal": D("136.50"),
            },
            {
                "name": "Material",
                "description": "Contactor",
                "unit_price": "18.75",
                "quantity": "2",
                "discount": "10",
                "tax": {"name": "IVA0", "value": "0"},
            },
        ],
    }
    got = credit_note_to_invoicexpress(invoice_doc, reference="R1-CN", issued=date(2026, 3, 1), observations="x")
    assert got == {
        "invoice": {
            "date": "03/03/2026",  # never before the invoice it credits
            "due_date": "03/03/2026",
            "reference": "R1-CN",
            "observations": "x",
            "client": {"name": "Hotel Atlântico Lisboa, S.A.", "code": "CLI-HAL"},
            "items": [
                {
                    "name": "Mão de obra",
                    "description": "HVAC labour",
                    "unit_price": "42.00",
                    "quantity": "3.25",
                    "tax": {"name": "IVA23"},
                },
                {
                    "name": "Material",
                    "description": "Contactor",
                    "unit_price": "18.75",
                    "quantity": "2",
                    "discount": "10",
                    "tax": {"name": "IVA0"},
                },
            ],
            "owner_invoice_id": 9001,
            "tax_exemption": "M40",
            "sequence_id": "1115355",
        }
    }
    later = credit_note_to_invoicexpress(invoice_doc, reference="R", issued=date(2026, 3, 9), observations="")
    assert (later["invoice"]["date"], later["invoice"]["due_date"]) == ("09/03/2026", "09/03/2026")

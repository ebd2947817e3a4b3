"""Moloni mapper: golden payloads, PHP-style form encoding, line layout, Moloni's two rounding methods, limits.

Golden files (tests/golden/moloni/*.json) hold the settings, the customer id, an Invoice and the exact
``invoices/insert`` fields (nested, amounts as decimal strings) and form body the mapper must produce.
Moloni publishes no OpenAPI spec, so there is no schema to validate against; the emulator test checks
that each golden payload is accepted by the emulator's documented validation. Regenerate after an
intended change with ``BROKER_UPDATE_GOLDEN=1 pytest tests/test_moloni_mapper.py`` and review the diff.
Amounts in comments are computed by hand.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.moloni.mapper import (
    credit_note_to_moloni,
    document_label,
    form_body,
    form_fields,
    invoice_from_moloni,
    invoice_to_moloni,
    line_layout,
    moloni_totals,
    parse_form,
    predicted_totals,
    reverse_links,
)
from connectors.moloni.settings import MoloniSettings
from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import Invoice, InvoiceLine

GOLDEN_DIR = Path(__file__).resolve().parent / "golden" / "moloni"
BASE_SETTINGS = {
    "client_id": "demo-client",
    "client_secret_env": "MOLONI_CLIENT_SECRET",
    "refresh_token_env": "MOLONI_REFRESH_TOKEN",
    "company_id": 5,
    "document_set_id": 7,
    "product_ids": {"labour": 101, "travel": 102, "call_out": 103, "part": 104, "expense": 105},
    "tax_ids": {"23": 1, "13": 2, "6": 3},
    "exemption_reason": "M07",
}


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
    lines, *, number="ACME-WO-1001-R1", inclusive=False, currency="EUR", reference="WO 1001", legal_notes=()
) -> Invoice:
    return Invoice(
        invoice_key=f"acme-fm:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme-fm:wo:{number}",
        tenant="acme-fm",
        billing_system="moloni",
        event_id="maintainx:wo:1001:r1",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 3, 11, 30, tzinfo=UTC),
        document="wo",
        document_id="1001",
        revision=1,
        client_id="CLI-HAL",
        client_name="Hotel Atlântico Lisboa, S.A.",
        contact_id="201",
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


def cases() -> dict[str, tuple[dict, int, Invoice]]:
    """Golden cases: name -> (settings overrides, customer_id, invoice)."""
    return {
        # 3.25 h x 42.00 = 136.50, VAT 23 % 31.395 -> 31.40; 2 x 18.75 = 37.50 less 10 % = 33.75, VAT 7.7625 -> 7.76;
        # net 170.25, VAT 39.16, total 209.41
        "standard_eur": (
            {},
            201,
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
                ]
            ),
        ),
        # 1.5 x 40.00 = 60.00 (13.80); exempt fee 12.50 (0, M07); 3 x 0.99 = 2.97 (0.6831 -> 0.68);
        # travel 0.75 h x 30.00 = 22.50 at 13 % (2.925 -> 2.93); net 97.97, VAT 17.41, total 115.38
        "mixed_rates_exempt": (
            {"exemption_reason": "M40"},
            202,
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
        # folded: 3.3333 h x 42.00 = 139.9986 -> net 140.00 (VAT 32.20) sent as 1 x 140.00;
        # 2.5 kg x 24.0150 = 60.0375 -> 60.04 (VAT 13.8092 -> 13.81) sent as 1 x 60.04; net 200.04, VAT 46.01, total 246.05
        "folded_lines": (
            {"maturity_date_id": 11, "eac_id": 3},
            201,
            invoice(
                [
                    line("Labour, night shift", "3.3333", "42.00", "140.00", "23", "32.20", "172.20"),
                    line(
                        "Refrigerant R410A", "2.5", "24.0150", "60.04", "23", "13.81", "73.85", kind="part", unit="kg"
                    ),
                ],
                number="ACME-WO-1003-R1",
                reference="WO 1003",
                legal_notes=["Trabalhos ao abrigo do contrato CT-2026-01"],
            ),
        ),
        # tax-inclusive: gross 123.00 -> VAT 23.00, net 100.00; gross 0.5 x 45.00 = 22.50 -> VAT 4.2073 -> 4.21, net 18.29;
        # both folded (Moloni prices are net): net 118.29, VAT 27.21, total 145.50
        "tax_inclusive": (
            {},
            201,
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


def jsonable(value):
    if isinstance(value, D):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def build(name: str) -> dict:
    overrides, customer_id, inv = cases()[name]
    settings = {**BASE_SETTINGS, **overrides}
    payload = invoice_to_moloni(inv, MoloniSettings.model_validate(settings), customer_id=customer_id)
    return {
        "settings": settings,
        "customer_id": customer_id,
        "invoice": json.loads(inv.model_dump_json()),
        "payload": jsonable(payload),
        "form_body": form_body(payload),
    }


@pytest.mark.parametrize("name", sorted(cases()))
def test_golden_payloads(name):
    path = GOLDEN_DIR / f"{name}.json"
    got = build(name)
    if os.environ.get("BROKER_UPDATE_GOLDEN") == "1":
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    want = json.loads(path.read_text(encoding="utf-8"))
    # the golden invoice is the input: re-mapping it must give the stored payload exactly
    inv = Invoice.model_validate(want["invoice"])
    payload = invoice_to_moloni(inv, MoloniSettings.model_validate(want["settings"]), customer_id=want["customer_id"])
    assert jsonable(payload) == want["payload"]
    assert form_body(payload) == want["form_body"]
    assert got["payload"] == want["payload"]


def test_golden_totals_match_ours_by_moloni_line_method():
    for name, (_, _, inv) in cases().items():
        payload = invoice_to_moloni(
            inv, MoloniSettings.model_validate(BASE_SETTINGS | cases()[name][0]), customer_id=201
        )
        totals = predicted_totals(payload, {1: D("23"), 2: D("13"), 3: D("6")}, "line")
        assert totals.net_value == inv.total, name
        assert totals.taxes_value == inv.tax_total, name


def test_standard_payload_by_hand():
    got = build("standard_eur")["payload"]
    assert got["your_reference"] == "ACME-WO-1001-R1" and got["our_reference"] == "WO 1001"
    assert got["status"] == 0 and got["date"] == "2026-03-03" and got["expiration_date"] == "2026-04-02"
    assert got["products"][1] == {
        "product_id": 104,
        "name": "Contactor 25A",
        "summary": "",
        "qty": "2",
        "price": "18.75",
        "discount": "10",
        "order": 1,
        "taxes": [{"tax_id": 1, "value": "23", "order": 0, "cumulative": 0}],
    }
    fields = dict(
        form_fields(
            invoice_to_moloni(cases()["standard_eur"][2], MoloniSettings.model_validate(BASE_SETTINGS), customer_id=201)
        )
    )
    assert fields["products[1][taxes][0][tax_id]"] == "1" and fields["products[0][qty]"] == "3.25"


def test_exempt_line_carries_the_reason_and_no_taxes():
    got = build("mixed_rates_exempt")["payload"]["products"][1]
    assert got["exemption_reason"] == "M40" and "taxes" not in got


def test_folded_lines_keep_quantity_and_price_in_the_summary():
    products = build("folded_lines")["payload"]["products"]
    assert (products[0]["qty"], products[0]["price"], products[0]["summary"]) == ("1", "140.00", "3.3333 h × 42.00")
    assert (products[1]["qty"], products[1]["price"], products[1]["summary"]) == ("1", "60.04", "2.5 kg × 24.0150")
    # the legal notes, then our ownership marker on the last line (read back by invoice_from_moloni)
    assert build("folded_lines")["payload"]["notes"] == (
        "Trabalhos ao abrigo do contrato CT-2026-01\nbroker:acme-fm:wo:ACME-WO-1003-R1:r1"
    )
    inclusive = build("tax_inclusive")["payload"]["products"]
    assert [p["price"] for p in inclusive] == ["100.00", "18.29"]
    assert inclusive[1]["summary"] == "0.5 h × 45.00 (IVA incl.)"


def test_line_layout_rules():
    exact = line_layout(line("x", "2", "18.75", "33.75", "23", "7.76", "41.51", discount="10"), tax_inclusive=False)
    assert (exact.qty, exact.price, exact.discount, exact.folded) == (D("2"), D("18.75"), D("10"), False)
    zero_qty = line_layout(line("x", "0", "10.00", "0.00", "23", "0.00", "0.00"), tax_inclusive=False)
    assert zero_qty.folded and zero_qty.qty == 1 and zero_qty.price == D("0.00")
    with pytest.raises(PermanentError) as info:
        line_layout(
            line("Loyalty discount", "1", "-10.00", "-10.00", "23", "-2.30", "-12.30", kind="discount"),
            tax_inclusive=False,
        )
    assert "Loyalty discount" in str(info.value) and "negative" in str(info.value)


def test_moloni_rounding_methods_by_hand():
    # Moloni's own example (support page): three articles of 2.37 at 23 %.
    rows = [(D("1"), D("2.37"), D("0"), D("23"))] * 3
    # à linha: 2.37 x 0.23 = 0.5451 -> 0.55 per line, x3 = 1.65; total 7.11 + 1.65 = 8.76
    line_totals = moloni_totals(rows, "line")
    assert (line_totals.gross_value, line_totals.taxes_value, line_totals.net_value) == (
        D("7.11"),
        D("1.65"),
        D("8.76"),
    )
    # ao documento: 7.11 x 0.23 = 1.6353 -> 1.64; total 8.75
    doc_totals = moloni_totals(rows, "document")
    assert (doc_totals.taxes_value, doc_totals.net_value) == (D("1.64"), D("8.75"))
    # a discount: 2 x 18.75 = 37.50, less 10 % = 3.75 -> net 33.75
    assert moloni_totals([(D("2"), D("18.75"), D("10"), D("23"))], "line").comercial_discount_value == D("3.75")


def test_refusals_name_the_field_or_line():
    settings = MoloniSettings.model_validate(BASE_SETTINGS)
    exempt = invoice([line("Waste fee", "1", "12.50", "12.50", "0", "0.00", "12.50", kind="expense")])
    no_reason = MoloniSettings.model_validate({k: v for k, v in BASE_SETTINGS.items() if k != "exemption_reason"})
    with pytest.raises(PermanentError) as info:
        invoice_to_moloni(exempt, no_reason, customer_id=201)
    assert "line 1 ('Waste fee')" in str(info.value) and "exemption_reason" in str(info.value)

    long_number = invoice([line("x", "1", "10.00", "10.00", "23", "2.30", "12.30")], number="N" * 51)
    with pytest.raises(PermanentError) as info:
        invoice_to_moloni(long_number, settings, customer_id=201)
    assert "your_reference is 51 characters, 50 max" in str(info.value)

    long_name = invoice([line("é" * 201, "1", "10.00", "10.00", "23", "2.30", "12.30")])
    with pytest.raises(PermanentError) as info:
        invoice_to_moloni(long_name, settings, customer_id=201)
    assert "products[].name is 201 characters, 200 max" in str(info.value)  # characters, not UTF-8 bytes

    ok_name = invoice([line("é" * 200, "1", "10.00", "10.00", "23", "2.30", "12.30")])
    assert invoice_to_moloni(ok_name, settings, customer_id=201)["products"][0]["name"] == "é" * 200

    with pytest.raises(PermanentError) as info:
        invoice_to_moloni(invoice([line("x", "1", "10.00", "10.00", "21", "2.10", "12.10")]), settings, customer_id=201)
    assert "VAT 21%" in str(info.value) and "tax_ids" in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_moloni(
            invoice([line("x", "1", "10.00", "10.00", "23", "2.30", "12.30", kind="quote")]), settings, customer_id=201
        )
    assert "'quote'" in str(info.value) and "product_ids" in str(info.value)
    with pytest.raises(PermanentError) as info:
        invoice_to_moloni(
            invoice([line("x", "1", "10.00", "10.00", "23", "2.30", "12.30")], currency="USD"),
            settings,
            customer_id=201,
        )
    assert "currency USD" in str(info.value)


def test_form_encoding_round_trip():
    payload = {
        "company_id": 5,
        "products": [
            {"name": 'Peça nº 7 & ½"', "qty": D("2.50"), "taxes": [{"tax_id": 1}]},
            {"name": "b", "qty": D("1"), "taxes": []},
        ],
        "send_email": [{"email": "a+b@example.pt", "msg": ""}],
        "skip": None,
        "flag": True,
    }
    body = form_body(payload)
    assert "products[0][qty]=2.50" in body and "skip" not in body and "flag=1" in body
    parsed = parse_form(body)
    assert parsed["products"][0] == {"name": 'Peça nº 7 & ½"', "qty": "2.50", "taxes": [{"tax_id": "1"}]}
    assert parsed["send_email"][0]["email"] == "a+b@example.pt" and parsed["company_id"] == "5"
    with pytest.raises(TypeError):
        form_fields({"price": 1.5})


def test_reading_documents_back():
    closed = {"document_id": 1001, "number": 12, "document_set_name": "2026", "status": 1, "net_value": D("209.41")}
    assert document_label(closed) == "FT 2026/12"
    found = invoice_from_moloni(closed)
    assert (found.external_id, found.number, found.total, found.status) == ("1001", "FT 2026/12", D("209.41"), "closed")
    assert invoice_from_moloni({**closed, "number": 0, "status": 0}).number == ""
    assert invoice_from_moloni({**closed, "number": 0, "status": 0}).status == "draft"


def test_reading_the_marker_and_the_reconciliations_back():
    doc = {
        "document_id": 1001,
        "status": 1,
        "net_value": D("209.41"),
        "notes": "Isento de IVA nos termos do artigo 9.º do CIVA\nbroker:acme-fm:wo:1001:r2",
        "reverse_associated_documents": [
            {"document_id": 1002, "value": D("100.00"), "reverse_associated_document": {"document_id": 1002}},
            {"document_id": 1003, "value": "9.41"},
            {"value": D("1.00")},  # no id: ignored
        ],
    }
    found = invoice_from_moloni(doc, paid=D("100.00"))
    assert (found.marker, found.paid) == ("acme-fm:wo:1001:r2", D("100.00"))
    assert invoice_from_moloni({**doc, "notes": "Obra 12"}).marker is None
    assert reverse_links(doc) == [(1002, D("100.00")), (1003, D("9.41"))]


def test_credit_note_copies_the_invoice_products_and_names_it():
    invoice_doc = {
        "document_id": 1001,
        "document_set_id": 7,
        "customer_id": 201,
        "date": "2026-03-03",
        "net_value": D("209.41"),
        "products": [
            {
                "product_id": 101,
                "name": "HVAC labour",
                "summary": "",
                "qty": D("3.25"),
                "price": D("42.00"),
                "discount": D("0"),
                "order": 0,
                "exemption_reason": "",
                "taxes": [{"tax_id": 1, "value": D("23"), "order": 0, "cumulative": 0, "total_value": D("31.40")}],
            },
            {"product_id": 104, "name": "Waste fee", "qty": "1", "price": "12.50", "exemption_reason": "M07"},
        ],
    }
    fields = credit_note_to_moloni(
        invoice_doc, company_id=5, your_reference="ACME-WO-1001-R1-CN", issued=date(2026, 3, 1), notes="cancelled"
    )
    assert fields == {
        "company_id": 5,
        "date": "2026-03-03",  # never before the invoice it credits
        "document_set_id": 7,
        "customer_id": 201,
        "your_reference": "ACME-WO-1001-R1-CN",
        "notes": "cancelled",
        "associated_documents": [{"associated_id": 1001, "value": D("209.41")}],
        "status": 1,
        "products": [
            {
                "product_id": 101,
                "name": "HVAC labour",
                "summary": "",
                "qty": D("3.25"),
                "price": D("42.00"),
                "discount": D("0"),
                "order": 0,
                "taxes": [{"tax_id": 1, "value": D("23"), "order": 0, "cumulative": 0}],
            },
            {
                "product_id": 104,
                "name": "Waste fee",
                "summary": "",
                "qty": D("1"),
                "price": D("12.50"),
                "discount": D("0"),
                "order": 1,
                "exemption_reason": "M07",
            },
        ],
    }
    assert dict(form_fields(fields))["associated_documents[0][value]"] == "209.41"
    later = credit_note_to_moloni(invoice_doc, company_id=5, your_reference="R-CN", issued=date(2026, 3, 9), notes="")
    assert later["date"] == "2026-03-09"

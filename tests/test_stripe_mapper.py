"""Stripe mapper: golden payloads (an Invoice in, the exact form-encoded requests out), validated
against the official spec, plus the rounding and field-limit rules. Regenerate the ``payload`` of the
golden files with ``UPDATE_GOLDEN=1`` after an intended change (and review the diff)."""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.sdk.invoice import Invoice, InvoiceLine
from connectors.stripe.mapper import (
    MappingError,
    carries_number,
    choose_layout,
    credit_note_params,
    decode_form,
    form_pairs,
    idempotency_key,
    invoice_to_stripe,
    resolve,
    stripe_line_tax,
    to_minor,
)
from connectors.stripe.settings import StripeSettings
from connectors.stripe.spec import validate_form

GOLDEN = Path(__file__).resolve().parent / "golden" / "stripe"
SPEC = Path(__file__).resolve().parent / "specs" / "stripe" / "spec3.yaml"
SETTINGS = StripeSettings(secret_key_env="STRIPE_SECRET_KEY")
DUMMY = {"customer": "cus_Golden", "invoice": "in_Golden"}


def payload(invoice: Invoice) -> dict:
    plan = invoice_to_stripe(invoice, SETTINGS)
    return {
        "tax_rates": [form_pairs(spec.params(invoice.tenant)) for spec in plan.tax_rates],
        "invoice": form_pairs(plan.invoice),
        "invoiceitems": [form_pairs(item) for item in plan.items],
        "total_minor": plan.total_minor,
        "tax_minor": plan.tax_minor,
        "inclusive_layout": plan.inclusive_layout,
    }


def dummy_ids(plan) -> dict:
    ids = dict(DUMMY)
    for n, spec in enumerate(plan.tax_rates):
        ids[spec.ref.name] = f"txr_Golden{n}"
    return ids


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden_payloads(path: Path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    invoice = Invoice.model_validate(doc["invoice"])
    got = json.loads(json.dumps(payload(invoice)))  # tuples -> lists, as stored
    if os.environ.get("UPDATE_GOLDEN"):
        doc["payload"] = got
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert got == doc["payload"]
    # every request conforms to the official spec once the run-time ids are filled in
    plan = invoice_to_stripe(invoice, SETTINGS)
    ids = dummy_ids(plan)
    assert validate_form(SPEC, "POST", "/v1/invoices", form_pairs(resolve(plan.invoice, ids))) == []
    for item in plan.items:
        assert validate_form(SPEC, "POST", "/v1/invoiceitems", form_pairs(resolve(item, ids))) == []
    for spec in plan.tax_rates:
        assert validate_form(SPEC, "POST", "/v1/tax_rates", form_pairs(spec.params(invoice.tenant))) == []


def golden(name: str) -> Invoice:
    return Invoice.model_validate(json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))["invoice"])


def test_standard_layout_by_hand():
    plan = invoice_to_stripe(golden("standard"), SETTINGS)
    first, second, third = plan.items
    # 3.25 h: not an integral quantity -> amount 136.50 EUR = 13650 cents, quantity folded into the description
    assert first["amount"] == 13650 and "quantity" not in first
    assert first["description"] == "HVAC corrective labour (Ana Costa) (3.25 h x 42.00)"
    # 2 x 18.75 less 10 % = 33.75 -> 3375, discount folded in
    assert second["amount"] == 3375 and second["description"].endswith("(2 un x 18.75 less 10%)")
    # 2 x 10.00 exactly: unit_amount_decimal 1000 cents x quantity 2
    assert third["unit_amount_decimal"] == "1000" and third["quantity"] == 2 and "amount" not in third
    # Stripe's per-line tax: 13650 x 23 % = 3139.5 -> 3140; 3375 -> 776.25 -> 776; 2000 -> 460
    assert [stripe_line_tax(a, D("23"), False) for a in (13650, 3375, 2000)] == [3140, 776, 460]
    assert plan.total_minor == 13650 + 3375 + 2000 + 3140 + 776 + 460 == 23401
    assert plan.invoice["pending_invoice_items_behavior"] == "exclude"
    assert plan.invoice["days_until_due"] == 30 and plan.invoice["collection_method"] == "send_invoice"
    assert plan.invoice["metadata"]["broker_invoice_key"] == "acme-fm:wo:1001:r1"
    assert plan.invoice["custom_fields"] == [{"name": "Invoice ref", "value": "ACME-WO-1001-R1"}]


def test_inclusive_layout_and_fallback():
    plan = invoice_to_stripe(golden("inclusive"), SETTINGS)
    assert plan.inclusive_layout is True
    # gross 12300 with an inclusive 23 % rate: 12300 x 23 / 123 = 2300; gross 2250: 2250 x 23 / 123 = 420.73 -> 421
    assert [i.get("amount") or int(i["unit_amount_decimal"]) * i["quantity"] for i in plan.items] == [12300, 2250]
    assert stripe_line_tax(2250, D("23"), True) == 421
    assert plan.total_minor == 14550
    # a line whose tax only the exclusive flavour reproduces flips the whole invoice to net + exclusive rates
    odd = golden("inclusive").model_copy(
        update={
            "lines": [
                InvoiceLine(
                    kind="labour",
                    description="x",
                    quantity=D(1),
                    unit_price=D("0.49"),
                    net=D("0.43"),
                    tax_rate=D("15"),
                    tax=D("0.06"),
                    total=D("0.49"),
                    source="t",
                    rule="t",
                ),
            ],
            "net_total": D("0.43"),
            "tax_total": D("0.06"),
            "total": D("0.49"),
        }
    )
    # inclusive: 49 x 15 / 115 = 6.39 -> 6 = ours as well, so inclusive holds here
    assert choose_layout(odd) is True
    # tax 0.08 on net 0.43 / gross 0.51: Stripe gives 43 x 15 % = 6.45 -> 6 or 51 x 15 / 115 = 6.65 -> 7, never 8
    bad = odd.model_copy(
        update={
            "lines": [odd.lines[0].model_copy(update={"tax": D("0.08"), "total": D("0.51")})],
            "tax_total": D("0.08"),
            "total": D("0.51"),
        }
    )
    with pytest.raises(MappingError) as info:
        choose_layout(bad)
    assert info.value.field == "lines[1].tax"


def test_zero_decimal_currency_and_negative_line():
    plan = invoice_to_stripe(golden("jpy_discount"), SETTINGS)
    assert plan.currency == "jpy" and plan.exponent == 0
    # 1.5 x 8000 = 12000 JPY (amount 12000, not 1200000); the discount line -1000 x 1 exactly -> unit_amount_decimal -1000
    assert plan.items[0]["amount"] == 12000
    assert plan.items[1]["unit_amount_decimal"] == "-1000" and plan.items[1]["quantity"] == 1
    assert plan.total_minor == 12100 and plan.tax_minor == 1100


def test_money_units():
    assert to_minor(D("136.50"), "EUR", "x") == 13650
    assert to_minor(D("1200"), "JPY", "x") == 1200
    assert to_minor(D("1.230"), "KWD", "x") == 1230
    with pytest.raises(MappingError):
        to_minor(D("1.234"), "KWD", "x")  # three-decimal amounts must end in 0
    with pytest.raises(MappingError):
        to_minor(D("0.5"), "JPY", "x")


def test_field_limits_name_the_field():
    inv = golden("standard")
    with pytest.raises(MappingError) as info:
        invoice_to_stripe(inv.model_copy(update={"invoice_number": "N" * 31}), SETTINGS)
    assert "custom_fields[0][value]" in str(info.value) and "31 characters" in str(info.value)
    line = inv.lines[2]
    many = inv.model_copy(
        update={"lines": [line] * 251, "net_total": D("5020.00"), "tax_total": D("1154.60"), "total": D("6174.60")}
    )
    with pytest.raises(MappingError) as info:
        invoice_to_stripe(many, SETTINGS)
    assert info.value.field == "lines" and "250" in str(info.value)
    long_line = line.model_copy(update={"description": "é" * 5001})
    with pytest.raises(MappingError) as info:
        invoice_to_stripe(inv.model_copy(update={"lines": [long_line]}), SETTINGS)
    assert info.value.field == "lines[1].description"
    with pytest.raises(MappingError) as info:
        invoice_to_stripe(inv.model_copy(update={"invoice_key": "k" * 501}), SETTINGS)
    assert "metadata[broker_invoice_key]" in str(info.value)


def test_form_encoding_round_trip():
    params = {
        "metadata": {"a b": "ç/&="},
        "tax_rates": ["txr_1", "txr_2"],
        "custom_fields": [{"name": "n", "value": "v"}],
        "auto_advance": False,
        "amount": -5,
        "unit_amount_decimal": D("1234.5"),
    }
    pairs = form_pairs(params)
    assert pairs[:3] == [("metadata[a b]", "ç/&="), ("tax_rates[0]", "txr_1"), ("tax_rates[1]", "txr_2")]
    assert ("auto_advance", "false") in pairs and ("unit_amount_decimal", "1234.5") in pairs
    from urllib.parse import urlencode

    assert decode_form(urlencode(pairs)) == {
        "metadata": {"a b": "ç/&="},
        "tax_rates": ["txr_1", "txr_2"],
        "custom_fields": [{"name": "n", "value": "v"}],
        "auto_advance": "false",
        "amount": "-5",
        "unit_amount_decimal": "1234.5",
    }
    assert decode_form("expand[]=a&expand[]=b") == {"expand": ["a", "b"]}
    with pytest.raises(ValueError):
        decode_form("a[b=1")


def test_idempotency_keys_per_step_and_bounded():
    inv = golden("standard")
    assert idempotency_key(inv, "invoice") == "acme-fm:stripe:acme-fm:wo:1001:r1:invoice"
    assert len({idempotency_key(inv, s) for s in ("invoice", "item-1", "item-2", "finalize", "send")}) == 5
    odd = inv.model_copy(update={"invoice_key": "acme-fm:wo:Ç/1 " + "x" * 300 + ":r1"})
    key = idempotency_key(odd, "invoice")
    assert len(key) <= 255 and key == idempotency_key(odd, "invoice")
    assert all(c.isascii() and (c.isalnum() or c in ":._-") for c in key)
    assert key != idempotency_key(
        odd.model_copy(update={"invoice_key": odd.invoice_key.replace(":r1", ":r2")}), "invoice"
    )


def test_legal_notes_go_in_the_footer_and_the_reference_stays_the_memo():
    inv = golden("standard").model_copy(
        update={"legal_notes": ["Autoliquidação: IVA devido pelo adquirente", "", "Art. 196 Directive 2006/112/EC"]}
    )
    plan = invoice_to_stripe(inv, SETTINGS)
    assert plan.invoice["footer"] == "Autoliquidação: IVA devido pelo adquirente\nArt. 196 Directive 2006/112/EC"
    assert plan.invoice["description"] == inv.reference
    assert validate_form(SPEC, "POST", "/v1/invoices", form_pairs(resolve(plan.invoice, dummy_ids(plan)))) == []
    assert "footer" not in invoice_to_stripe(golden("standard"), SETTINGS).invoice
    with pytest.raises(MappingError) as info:
        invoice_to_stripe(inv.model_copy(update={"legal_notes": ["x" * 5001]}), SETTINGS)
    assert info.value.field == "legal_notes (invoice footer)"


def test_credit_note_params_credit_the_paid_part_to_the_customer_balance():
    paid = {
        "id": "in_1",
        "number": "ABCD-0001",
        "status": "paid",
        "total": 23401,
        "amount_remaining": 0,
        "metadata": {"broker_invoice_number": "ACME-WO-1-R1", "broker_invoice_key": "acme:wo:1:r1"},
    }
    params = credit_note_params(
        paid, reason="replaced by ACME-WO-1-R2", issued=date(2026, 3, 9), key="acme:wo:1:r2", tenant="acme"
    )
    assert params == {
        "invoice": "in_1",
        "amount": 23401,
        "reason": "order_change",
        "effective_at": 1773014400,  # 2026-03-09 00:00 UTC
        "memo": "Credit for ACME-WO-1-R1: replaced by ACME-WO-1-R2",
        "metadata": {
            "broker_credit_note_number": "ACME-WO-1-R1-CN",
            "broker_invoice_key": "acme:wo:1:r1",
            "broker_tenant": "acme",
            "broker_requested_by": "acme:wo:1:r2",
        },
        "credit_amount": 23401,
    }
    assert validate_form(SPEC, "POST", "/v1/credit_notes", form_pairs(params)) == []
    # an open invoice: what is still due is reduced (pre-payment), nothing goes to the balance
    unpaid = dict(paid, status="open", amount_remaining=23401)
    assert "credit_amount" not in credit_note_params(
        unpaid, reason="r", issued=date(2026, 3, 9), key="k", tenant="acme"
    )
    with pytest.raises(MappingError):
        credit_note_params(dict(paid, total=0), reason="r", issued=date(2026, 3, 9), key="k", tenant="acme")


def test_an_invoice_carries_our_number_in_metadata_or_in_the_number_custom_field():
    inv = {"metadata": {}, "custom_fields": [{"name": "Invoice ref", "value": "N-1"}]}
    assert carries_number(inv, "N-1", "Invoice ref") is True
    assert carries_number(inv, "N-1", "Other field") is False
    assert carries_number(inv, "N-1", None) is False
    assert carries_number({"metadata": {"broker_invoice_number": "N-1"}}, "N-1", None) is True
    assert carries_number({"metadata": {"broker_invoice_number": "N-2"}}, "N-1", "Invoice ref") is False

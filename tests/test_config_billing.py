"""The configuration is checked against each tenant's billing system when it loads: tax codes for every
VAT rate, invoice numbers that fit the system (``broker.config.billing_problems``)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from broker.cli import main
from broker.config import ConfigError, parse_config
from broker.events import MAX_ID_CHARS, MAX_REVISION, parse_event
from broker.pricing import price_event
from broker.pricing.numbers import INVOICE_NUMBER_MAX, invoice_number, shortest_invoice_number
from connectors import registry
from connectors.invoicexpress.mapper import invoice_to_invoicexpress
from connectors.invoicexpress.settings import InvoiceXpressSettings
from connectors.moloni.mapper import invoice_to_moloni
from connectors.moloni.settings import MoloniSettings
from connectors.quickbooks.mapper import credit_memo_number
from connectors.sdk.errors import PermanentError
from connectors.sdk.interface import Capabilities, VatRate
from connectors.sdk.lifecycle import credit_note_number
from connectors.testing.invoices import make_invoice, make_line, mixed_rate_lines
from connectors.xero.mapper import invoice_to_xero
from connectors.xero.settings import XeroSettings
from tests.conftest import EXAMPLES

EXAMPLE = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
LONG_ID = "maintainx-organisation-321-work-order-5550123"
PAYPAL_SETTINGS = {"client_id": "pp-app", "client_secret_env": "PAYPAL_CLIENT_SECRET"}
QBO_SETTINGS = {
    "realm_id": "9130350",
    "client_id": "qbo-app",
    "client_secret_env": "QBO_CLIENT_SECRET",
    "refresh_token_env": "QBO_REFRESH_TOKEN",
    "tax_codes": {"23": {"tax_code_id": "3", "tax_rate_id": "5"}, "0": {"tax_code_id": "9", "tax_rate_id": "11"}},
}
EXEMPT_CLIENT = {"name": "Junta de Freguesia", "tax_exempt": True, "tax_exemption_note": "Isento artigo 9.º CIVA"}


def _config(tmp_path: Path, mutate) -> Path:
    raw = copy.deepcopy(EXAMPLE)
    mutate(raw["tenants"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _refused(tmp_path: Path, mutate) -> str:
    """``broker run`` on the example config changed by ``mutate``: it must exit 2 (before any Kafka).
    Returns its output on one line."""
    result = CliRunner().invoke(main, ["run", "--config", str(_config(tmp_path, mutate))])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


def _sha8(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8].upper()


# --------------------------------------------------------------------------- tax codes
def test_example_config_maps_every_rate_of_every_tenant():
    config = parse_config(copy.deepcopy(EXAMPLE))
    acme = config.tenant("acme-fm")
    assert acme.vat_rates() == [
        VatRate(D("23"), "standard", None, ("vat_percent",)),
        VatRate(D("0"), "reverse_charge", "ECZROUTPUTSERVICES", ("clients.CLI-EBV.reverse_charge",)),
    ]


def test_a_6_percent_rate_without_a_xero_tax_type_is_refused_with_exit_2(tmp_path):
    def reduced_parts(tenants):
        tenants["nordic-hvac"]["tax"] = {"rates": {"part": "6", "expense": "6"}}

    out = _refused(tmp_path, reduced_parts)
    assert (
        "tenants.nordic-hvac.billing (xero): VAT 6% (tax.rates.part, tax.rates.expense) has no Xero TaxType: "
        'add billing.settings.tax_types["6"] (a TaxType of the organisation, GET /TaxRates)'
    ) in out
    assert "tenants.acme-fm" not in out  # the other tenants are fine

    def mapped(tenants):
        reduced_parts(tenants)
        tenants["nordic-hvac"]["billing"]["settings"]["tax_types"]["6.0"] = "RROUTPUT"  # "6.0" names 6 % too

    config = parse_config(yaml.safe_load(_config(tmp_path, mapped).read_text(encoding="utf-8")))
    assert [r.key for r in config.tenant("nordic-hvac").vat_rates()] == ["20", "6"]


def test_the_xero_mapper_no_longer_defaults_a_rate_to_output2():
    settings = XeroSettings(
        xero_tenant_id="org", client_id="x", client_secret_env="A", refresh_token_env="B", tax_types={"23": "OUTPUT2"}
    )
    six = make_invoice("ACME-WO-7-R1", [make_line("Reduced-rate part", "1", "10.00", "6", kind="part")])
    with pytest.raises(PermanentError) as info:
        invoice_to_xero(six, settings)
    assert str(info.value) == (
        "line 'Reduced-rate part': VAT 6% has no Xero TaxType: add billing.settings.tax_types[\"6\"] "
        "(a TaxType of the organisation, GET /TaxRates)"
    )
    # a zero rate has no silent "NONE" either; the tenant's own code on the line wins over the mapping
    zero = make_invoice("ACME-WO-8-R1", [make_line("Exempt fee", "1", "5.00", "0", kind="expense")])
    with pytest.raises(PermanentError, match=r"VAT 0% has no Xero TaxType"):
        invoice_to_xero(zero, settings)
    coded = zero.model_copy(update={"lines": [zero.lines[0].model_copy(update={"tax_type": "EXEMPTOUTPUT"})]})
    assert [li["TaxType"] for li in invoice_to_xero(coded, settings)["LineItems"]] == ["EXEMPTOUTPUT"]


def _drop_moloni_reason(tenants):
    del tenants["sotavento-tec"]["billing"]["settings"]["exemption_reason"]


@pytest.mark.parametrize(
    ("tenant_id", "client_id", "drop_mapping", "expected", "tenant_code"),
    [
        (
            "nordic-hvac",
            "CLI-CHR",
            lambda tenants: None,  # nordic-hvac maps only 20 % to a TaxType
            (
                "tenants.nordic-hvac.billing (xero): VAT 0% of exempt clients (clients.CLI-CHR.tax_exempt) has no Xero "
                'TaxType: add billing.settings.tax_types["0"] (a TaxType of the organisation, GET /TaxRates) '
                "or set tax.exempt_tax_type"
            ),
            "EXEMPTOUTPUT",
        ),
        (
            "sotavento-tec",
            "CLI-JFA",
            _drop_moloni_reason,
            (
                "tenants.sotavento-tec.billing (moloni): VAT 0% of exempt clients (clients.CLI-JFA.tax_exempt) needs an "
                "AT exemption reason (M01-M99, e.g. M07): set billing.settings.exemption_reason or tax.exempt_tax_type"
            ),
            "M07",
        ),
    ],
    ids=["xero-exempt-client", "moloni-0-percent-without-exemption-reason"],
)
def test_an_exempt_client_needs_a_code_for_0_percent(
    tmp_path, tenant_id, client_id, drop_mapping, expected, tenant_code
):
    def exempt_client(tenants):
        drop_mapping(tenants)
        tenants[tenant_id]["clients"][client_id] = dict(EXEMPT_CLIENT)

    out = _refused(tmp_path, exempt_client)
    assert expected in out

    def with_tenant_code(tenants):
        exempt_client(tenants)
        tenants[tenant_id]["tax"] = {"exempt_tax_type": tenant_code}

    config = parse_config(yaml.safe_load(_config(tmp_path, with_tenant_code).read_text(encoding="utf-8")))
    assert [(r.treatment, r.tax_type) for r in config.tenant(tenant_id).vat_rates()][-1] == ("exempt", tenant_code)


def test_moloni_and_invoicexpress_an_unmapped_non_zero_rate_is_refused(tmp_path):
    def reduced(tenants):
        for tid in ("sotavento-tec", "mondego-clima"):
            tenants[tid]["tax"] = {"rates": {"part": "22"}}  # Madeira's standard rate: mapped in neither

    out = _refused(tmp_path, reduced)
    assert (
        "tenants.sotavento-tec.billing (moloni): VAT 22% (tax.rates.part) has no Moloni tax: add "
        'billing.settings.tax_ids["22"] (a tax_id of taxes/getAll)'
    ) in out
    assert (
        "tenants.mondego-clima.billing (invoicexpress): VAT 22% (tax.rates.part) has no InvoiceXpress tax: add "
        'billing.settings.tax_names["22"]'
    ) in out


def test_an_at_code_on_the_tenant_is_the_exemption_reason_of_its_lines():
    base = {"client_id": "c", "client_secret_env": "S", "refresh_token_env": "R", "company_id": 5}
    moloni = MoloniSettings.model_validate(
        {**base, "document_set_id": 7, "default_product_id": 101, "tax_ids": {"23": 1}, "exemption_reason": "M07"}
    )
    lines = mixed_rate_lines(D("23"))
    reverse = [line.model_copy(update={"tax_type": "M40"}) if line.tax_rate == 0 else line for line in lines]
    assert [
        p.get("exemption_reason")
        for p in invoice_to_moloni(make_invoice("M-1", lines), moloni, customer_id=1)["products"]
    ] == [None, "M07", None]
    assert [
        p.get("exemption_reason")
        for p in invoice_to_moloni(make_invoice("M-2", reverse), moloni, customer_id=1)["products"]
    ] == [None, "M40", None]

    ix = InvoiceXpressSettings(account_name="acme", api_key_env="IX_KEY", tax_exemption="M07")
    body = invoice_to_invoicexpress(make_invoice("IX-1", reverse), ix)["invoice"]
    assert body["tax_exemption"] == "M40"
    assert [item["tax"]["name"] for item in body["items"]] == ["IVA23", "IVA0", "IVA23"]  # M40 is no tax name


# --------------------------------------------------------------------------- invoice numbers
def test_capabilities_limit_accounts_for_the_credit_note_suffix():
    assert len(credit_note_number("")) == 3
    assert Capabilities(invoice_number_max=50, credit_note_number_max=50).invoice_number_limit == 47
    assert Capabilities(invoice_number_max=25).invoice_number_limit == 25
    assert Capabilities().invoice_number_limit is None
    limits = {name: registry.load(name).capabilities.invoice_number_limit for name in ("paypal", "quickbooks")}
    assert limits == {"paypal": 25, "quickbooks": 21}


@pytest.mark.parametrize("limit", [25, 21])
def test_a_long_document_id_gives_a_number_of_exactly_the_limit(limit):
    number = invoice_number("ACME", "wo", LONG_ID, 1, limit)
    head, tail = "ACME-WO-", "-R1"
    room = limit - len(head) - len(tail) - 8 - 1
    assert number == f"{head}{LONG_ID.upper()[:room]}-{_sha8(LONG_ID)}{tail}"
    assert len(number) == limit
    assert invoice_number("ACME", "wo", LONG_ID, 1, limit) == number  # deterministic
    assert invoice_number("ACME", "wo", LONG_ID + "4", 1, limit) != number
    # short ids are unchanged by a lower limit
    assert invoice_number("ACME", "wo", "1001", 1, limit) == "ACME-WO-1001-R1"


def test_a_revision_too_long_to_show_goes_into_the_hash():
    number = invoice_number("ACME", "wo", "1001", MAX_REVISION, 21)
    whole = f"1001\x00{MAX_REVISION}".encode()
    assert number == "ACME-WO-" + hashlib.sha256(whole).hexdigest()[:13].upper()
    assert len(number) == 21
    # the house limit (32) keeps the revision readable for the same document
    assert invoice_number("ACME", "wo", "1001", MAX_REVISION, INVOICE_NUMBER_MAX) == "ACME-WO-1001-R2147483647"


def test_every_number_of_the_longest_prefix_fits_paypal():
    prefix = "ABCDEFGHIJKL"  # 12 characters: the longest invoice_prefix
    assert shortest_invoice_number(prefix) == 24
    for doc_id, revision in (("x" * MAX_ID_CHARS, 1), ("x" * MAX_ID_CHARS, MAX_REVISION), ("A/B", 9)):
        assert len(invoice_number(prefix, "qt", doc_id, revision, 25)) <= 25
    with pytest.raises(ValueError, match=r"no invoice number fits 21 characters"):
        invoice_number(prefix, "wo", "1", 1, 21)


def test_a_prefix_too_long_for_quickbooks_is_refused_with_exit_2(tmp_path):
    def long_prefix(tenants):
        tenants["invicta-mt"]["invoice_prefix"] = "INVICTAMT12"

    out = _refused(tmp_path, long_prefix)
    assert (
        "tenants.invicta-mt.invoice_prefix: 'INVICTAMT12' is too long for quickbooks, whose invoice numbers hold 21 "
        "characters at most: the shortest number of this prefix ('<prefix>-WO-' and 8 hash digits) has 23; "
        "use at most 9 characters"
    ) in out


def _tenant_on(system: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The example's acme-fm billed in ``system`` (same clients, rates and prices)."""
    tenant = copy.deepcopy(EXAMPLE["tenants"]["acme-fm"])
    tenant["billing"] = {"system": system, "settings": settings}
    tenant["tax"].pop("reverse_charge_tax_type")
    return tenant


def _priced_number(tenant_id: str, config, work_order_id: str) -> str:
    for line in (EXAMPLES / "events.ndjson").read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        if raw["id"] == "maintainx:wo:1001:r1":
            raw["tenant"], raw["data"]["work_order_id"] = tenant_id, work_order_id
            invoice = price_event(parse_event(raw), tenant_id, config.tenant(tenant_id), priced_at=datetime.now(UTC))
            return invoice.invoice_number
    raise AssertionError("maintainx:wo:1001:r1 not in the example events")


def test_the_pricing_gives_each_system_numbers_that_fit():
    config = parse_config(
        {"tenants": {"pp": _tenant_on("paypal", PAYPAL_SETTINGS), "qb": _tenant_on("quickbooks", QBO_SETTINGS)}}
    )
    assert (config.tenant("pp").invoice_number_max, config.tenant("qb").invoice_number_max) == (25, 21)
    paypal, quickbooks = _priced_number("pp", config, LONG_ID), _priced_number("qb", config, LONG_ID)
    assert paypal == invoice_number("ACME", "wo", LONG_ID, 1, 25) and len(paypal) == 25
    assert quickbooks == invoice_number("ACME", "wo", LONG_ID, 1, 21) and len(quickbooks) == 21
    assert (
        credit_memo_number(quickbooks)
        == f"{quickbooks[:11]}-{hashlib.sha256(quickbooks.encode()).hexdigest()[:6].upper()}-CN"
    )
    # an id that fits keeps its plain number on every system
    assert _priced_number("qb", config, "1001") == "ACME-WO-1001-R1"


def test_unknown_system_and_invalid_settings_are_refused_at_load():
    raw = {"tenants": {"pp": _tenant_on("paypal", {"client_id": "pp-app"}), "zz": _tenant_on("nope", {})}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="t.yaml")
    message = str(info.value)
    assert message.startswith("t.yaml: invalid configuration:\n")
    assert "tenants.pp.billing.settings.client_secret_env: field required" in message
    assert "tenants.zz.billing.system: billing system 'nope': no connector installed" in message


def test_the_demo_workers_configuration_loads():
    """``broker demo`` runs its worker on the example config merged with each emulator's settings
    (``broker.demo._demo_config``): it must pass the same checks (nothing delivered here)."""
    from broker.demo import _demo_config
    from broker.sandboxes import start_sandbox

    raw = copy.deepcopy(EXAMPLE)
    sandboxes: dict[str, Any] = {}
    try:
        for tenant in raw["tenants"].values():
            system = tenant["billing"]["system"]
            if system != "xero" and system not in sandboxes:
                sandboxes[system] = start_sandbox(system, tenant["billing"].get("settings"))
        config = parse_config(_demo_config(raw, "http://127.0.0.1:9", sandboxes), source="<demo>")
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()
    limits = {tid: tenant.invoice_number_max for tid, tenant in config.tenants.items()}
    assert limits == {
        "acme-fm": 32,
        "nordic-hvac": 32,
        "liffey-fs": 30,
        "invicta-mt": 21,
        "mondego-clima": 32,
        "sotavento-tec": 32,
    }

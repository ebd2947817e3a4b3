"""Invoice texts in the customer's language (issue 14, item 4): catalogues, choice per client,
numbers in the language's notation, tenant templates, and a Portuguese invoice in the InvoiceXpress
emulator. Every expected text is written out by hand."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from babel.messages.pofile import read_po

from broker.config import ConfigError, Tenant, parse_config
from broker.events import parse_event
from broker.pricing import price_event
from broker.texts import LANGUAGES, MESSAGES, InvoiceTexts, check_language, placeholders
from connectors.invoicexpress import InvoiceXpressConnector
from connectors.invoicexpress.emulator import InvoiceXpressEmulator, default_accounts
from tests.golden.pricing_cases import BASE_TENANT, dur, tenant, wo

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
PRICED_AT = datetime(2026, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_every_message_is_translated_with_the_same_placeholders(language):
    path = ROOT / "broker" / "locales" / language / "LC_MESSAGES" / "invoice.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    found = {m.id: m for m in catalog if m.id}
    assert set(found) == set(MESSAGES.values())
    for msgid, message in found.items():
        assert message.string and not message.fuzzy, (language, msgid)
        assert placeholders(str(message.string)) == placeholders(msgid), (language, msgid)


def test_language_names_and_unknown_locales():
    assert [check_language(v) for v in ("pt", "pt_PT", "pt-BR", "es_ES", "fr", "en_GB")] == [
        "pt",
        "pt",
        "pt",
        "es",
        "fr",
        "en",
    ]
    with pytest.raises(ValueError, match=r"unknown locale 'xx_YY' \(invoice texts exist in en, es, fr, pt\)"):
        check_language("xx_YY")
    with pytest.raises(ValueError, match=r"no invoice texts in 'de' \(invoice texts exist in en, es, fr, pt\)"):
        check_language("de")


def test_numbers_keep_their_digits_and_take_the_languages_decimal_sign():
    assert InvoiceTexts("en").hours(Decimal("2.25")) == "2.25 h"
    assert InvoiceTexts("pt").hours(Decimal("2.25")) == "2,25 h"
    assert InvoiceTexts("fr").km(Decimal("37.50")) == "37,50 km"
    assert InvoiceTexts("es").hours(Decimal("1")) == "1 h"


def _config(raw_tenant: dict) -> dict:
    return {"tenants": {"acme": raw_tenant}}


def _error(raw_tenant: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(_config(raw_tenant))
    return str(info.value)


def test_an_unknown_locale_is_a_configuration_error_naming_the_client():
    message = _error(tenant(client={"language": "xx"}))
    assert "tenants.acme.clients.CLI-1.language: Value error, unknown locale 'xx'" in message
    assert "tenants.acme.language: Value error, no invoice texts in 'de'" in _error(tenant(language="de"))


def test_tenant_templates_are_checked():
    message = _error(tenant(texts={"pt": {"labour": "MO {technician} {rate}"}}))
    assert "texts.pt.labour: 'MO {technician} {rate}' uses {rate}" in message
    assert "(placeholders of this text: {band}, {skill}, {technician}, {time}, {visit})" in message
    assert "texts.*.labor: no such text" in _error(tenant(texts={"*": {"labor": "x"}}))


def _price(raw_tenant: dict, event: dict):
    return price_event(parse_event(event), "acme", Tenant.model_validate(raw_tenant), priced_at=PRICED_AT)


PT_EVENT = wo(
    entries=[
        dur("TE-1", "T31", 127),
        dur("TE-2", "T32", 40, visit_id="V2"),
        dur("TE-3", "T31", 25, kind="travel", distance_km="37.5"),
    ],
    parts=[{"id": "P-1", "sku": "CT-25", "description": "Contactor 25A", "quantity": "1", "unit_price": "18.75"}],
)
PT_TENANT = tenant(
    client={"language": "pt_PT"},
    rate_card={"travel_billing": "both", "mileage_rate_per_km": "0.40"},
)


def test_a_portuguese_clients_lines_are_in_portuguese():
    invoice = _price(PT_TENANT, PT_EVENT)
    assert [line.description for line in invoice.lines] == [
        "Taxa de deslocação",
        "Taxa de deslocação",
        "Mão de obra – Ana Costa (hvac): 2,25 h",
        "Mão de obra – Bruno Reis (electrical), visita V2: 1 h",
        "Tempo de deslocação – Ana Costa: 0,5 h",
        "Tempo de deslocação – Ana Costa: 37,5 km",
        "Contactor 25A (CT-25)",
    ]
    # the same event for an English client: the texts the broker always wrote
    english = _price(tenant(rate_card={"travel_billing": "both", "mileage_rate_per_km": "0.40"}), PT_EVENT)
    assert [line.description for line in english.lines][2:6] == [
        "Labour – Ana Costa (hvac): 2.25 h",
        "Labour – Bruno Reis (electrical), visit V2: 1 h",
        "Travel – Ana Costa: 0.5 h",
        "Travel – Ana Costa: 37.5 km",
    ]
    assert [line.net for line in invoice.lines] == [line.net for line in english.lines]


def test_the_tenant_language_applies_to_clients_without_one_and_templates_replace_texts():
    raw = tenant(language="es", texts={"es": {"labour": "Horas {technician}: {time}"}, "*": {"call_out": "Salida"}})
    invoice = _price(raw, wo(entries=[dur("TE-1", "T31", 127)]))
    assert [line.description for line in invoice.lines] == ["Salida", "Horas Ana Costa: 2,25 h"]


def test_portuguese_legal_wording_for_reverse_charge_and_exemption():
    reverse = tenant(client={"language": "pt", "reverse_charge": True, "tax_number": "ESB12345678"})
    invoice = _price(reverse, wo(kind="preventive", entries=[dur("TE-1", "T31", 60)]))
    assert invoice.legal_notes == [
        "Autoliquidação: IVA devido pelo adquirente (artigo 196.º da Diretiva 2006/112/CE do Conselho).",
        "NIF do adquirente: ESB12345678",
    ]
    reverse["clients"]["CLI-1"]["language"] = "fr"
    invoice = _price(reverse, wo(kind="preventive", entries=[dur("TE-1", "T31", 60)]))
    assert invoice.legal_notes == [
        "Autoliquidation : TVA due par le preneur (article 196 de la directive 2006/112/CE du Conseil).",
        "N° de TVA du client : ESB12345678",
    ]
    # a tenant's own reverse-charge note is printed as written, whatever the language
    own = tenant(
        client={"language": "pt", "reverse_charge": True, "tax_number": "ESB12345678"},
        tax={"reverse_charge_note": "Reverse charge - Article 196 Directive 2006/112/EC"},
    )
    invoice = _price(own, wo(kind="preventive", entries=[dur("TE-1", "T31", 60)]))
    assert invoice.legal_notes == [
        "Reverse charge - Article 196 Directive 2006/112/EC",
        "NIF do adquirente: ESB12345678",
    ]


def test_a_portuguese_invoice_in_the_invoicexpress_emulator_carries_portuguese_texts(monkeypatch):
    key = "ix-api-KEY-0123456789abcdef"
    monkeypatch.setenv("INVOICEXPRESS_API_KEY", key)
    raw = copy.deepcopy(BASE_TENANT)
    raw["clients"]["CLI-1"].update(language="pt", reverse_charge=True, tax_number="ESB12345678")
    invoice = _price(raw, wo(kind="preventive", entries=[dur("TE-1", "T31", 127)]))
    accounts = default_accounts()
    accounts["acme-demo"]["api_key"] = key
    emu = InvoiceXpressEmulator(accounts=accounts).start()
    try:
        settings = {
            "api_url": emu.api_url,
            "account_name": "acme-demo",
            "api_key_env": "INVOICEXPRESS_API_KEY",
            "tax_exemption": "M40",
        }

        async def go():
            connector = InvoiceXpressConnector(settings, tenant="acme")
            try:
                return await connector.deliver(invoice)
            finally:
                await connector.aclose()

        result = asyncio.run(go())
        assert result.created
        [doc] = emu.invoices()
        assert [item["description"] for item in doc["items"]] == ["Mão de obra – Ana Costa (hvac): 2,25 h"]
        assert (
            "Autoliquidação: IVA devido pelo adquirente (artigo 196.º da Diretiva 2006/112/CE do Conselho)."
            in (doc["observations"])
        )
        assert "NIF do adquirente: ESB12345678" in doc["observations"]
    finally:
        emu.stop()

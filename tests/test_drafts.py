"""``approval: draft`` (issue 12 item 4, the draft half): pricing marks the client's invoices
``Invoice.draft``, each connector with ``Capabilities.drafts`` posts them in its system's draft form,
and a tenant on a system without drafts (QuickBooks Online) is refused when the configuration loads.

The emulator side (held as a draft, not duplicated, deleted when cancelled or amended, payments refused)
is the conformance kit's ``draft`` scenario, run for every connector by ``tests/test_<system>_conformance.py``.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from broker.cli import main
from broker.config import ConfigError, Tenant, parse_config
from broker.events import parse_event
from broker.pricing import price_event
from broker.pricing.fingerprint import content_fingerprint
from broker.pricing.periodic import accumulate, close_period
from connectors import registry
from connectors.sdk.invoice import Invoice
from connectors.stripe.mapper import is_complete
from connectors.stripe.settings import StripeSettings
from connectors.testing.invoices import make_invoice, standard_lines
from connectors.xero.mapper import invoice_to_xero
from connectors.xero.settings import XeroSettings
from tests.golden.periodic_cases import CONTRACT
from tests.golden.periodic_cases import MARCH as MARCH_RAW
from tests.golden.pricing_cases import BASE_TENANT, dur, tenant, wo
from tests.test_config_billing import QBO_SETTINGS, _config

NOW = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
DRAFT_SYSTEMS = ("xero", "stripe", "zoho", "freshbooks", "moloni", "invoicexpress", "paypal")


# --------------------------------------------------------------------------- capabilities
@pytest.mark.parametrize("system", [*DRAFT_SYSTEMS, "quickbooks"])
def test_each_system_declares_whether_it_has_drafts(system):
    assert registry.load(system).capabilities.drafts is (system != "quickbooks")
    assert "drafts" in registry.load(system).capabilities.as_dict()


# --------------------------------------------------------------------------- pricing
def test_pricing_marks_drafts_by_the_clients_approval_else_the_tenants():
    raw = tenant(clients={"CLI-2": {**copy.deepcopy(BASE_TENANT["clients"]["CLI-1"]), "approval": "none"}})
    raw["approval"] = "draft"
    t = Tenant.model_validate(raw)
    entries = [dur("TE-1", "T31", 90)]
    one = price_event(parse_event(wo(entries=entries)), "acme", t, priced_at=NOW)
    two = price_event(parse_event(wo(entries=entries, wo_id="1002", client="CLI-2")), "acme", t, priced_at=NOW)
    assert isinstance(one, Invoice) and isinstance(two, Invoice)
    assert (one.draft, two.draft) == (True, False)  # CLI-1 follows the tenant, CLI-2 overrides it
    # not part of the content: the same work posted final has the same fingerprint
    final = price_event(parse_event(wo(entries=entries)), "acme", Tenant.model_validate(tenant()), priced_at=NOW)
    assert isinstance(final, Invoice) and not final.draft
    assert final.fingerprint == one.fingerprint == content_fingerprint(one)
    assert Invoice.model_validate_json(one.model_dump_json()).draft is True


def test_a_periodic_invoice_is_a_draft_when_its_client_approves_drafts():
    t = Tenant.model_validate(tenant(client={"invoicing": "monthly", "contracts": [CONTRACT], "approval": "draft"}))
    table: dict = {}
    for raw in MARCH_RAW:
        result = accumulate(price_event(parse_event(raw), "acme", t, priced_at=NOW), "acme", t, table, now=NOW)
        table.update({key: value for _, key, value in result.writes})
    [invoice] = close_period("acme:CLI-1:2026-03", t, table, now=NOW).publish
    assert isinstance(invoice, Invoice) and invoice.draft and invoice.document == "per"


# --------------------------------------------------------------------------- connectors (mapping)
def test_xero_posts_a_draft_with_status_draft_whatever_invoice_status_says():
    settings = XeroSettings(
        client_id="app", client_secret_env="S", refresh_token_env="R", xero_tenant_id="org", tax_types={"23": "OUTPUT2"}
    )
    invoice = make_invoice("CF-D-1-R1", standard_lines(23), contact_id="c1", billing_system="xero")
    assert invoice_to_xero(invoice, settings)["Status"] == "AUTHORISED"
    assert invoice_to_xero(invoice.model_copy(update={"draft": True}), settings)["Status"] == "DRAFT"


def test_a_stripe_draft_is_complete_only_for_an_invoice_posted_as_one():
    draft = {"status": "draft", "total": 100, "lines": {"total_count": 2}, "metadata": {}}
    draft["metadata"] = {"broker_lines": "2", "broker_total": "100"}
    settings = StripeSettings(secret_key_env="STRIPE_SECRET_KEY")
    assert not is_complete(draft, settings)  # the tenant finalises: resume and finalise it
    assert is_complete(draft, settings, draft=True)
    assert not is_complete({**draft, "total": 99}, settings, draft=True)  # not all our lines yet


# --------------------------------------------------------------------------- configuration
def _qbo_tenant(**top) -> dict:
    raw = tenant(**top)
    raw["billing"] = {"system": "quickbooks", "settings": QBO_SETTINGS}
    raw["tax"] = {}
    return raw


def test_approval_draft_on_quickbooks_is_refused_naming_each_field_and_the_system():
    raw = _qbo_tenant(approval="draft")
    raw["clients"]["CLI-1"]["approval"] = "draft"
    with pytest.raises(ConfigError) as err:
        parse_config({"tenants": {"qb": raw}})
    text = str(err.value)
    for field in ("tenants.qb.approval", "tenants.qb.clients.CLI-1.approval"):
        assert (
            f"{field}: 'draft' posts invoices as drafts, but the billing system quickbooks (QuickBooks) has no "
            "draft invoices (an invoice is issued when it is created); use 'none' or 'required'"
        ) in text
    # 'none' and 'required' are fine on QuickBooks; 'draft' is fine where the system has drafts
    parse_config({"tenants": {"qb": _qbo_tenant(approval="required")}})
    parse_config({"tenants": {"xero": tenant(approval="draft")}})


def test_config_check_and_run_refuse_a_quickbooks_client_with_approval_draft(tmp_path):
    def draft_client(tenants):
        [client] = list(tenants["invicta-mt"]["clients"])[:1]
        tenants["invicta-mt"]["clients"][client]["approval"] = "draft"

    path = str(_config(tmp_path, draft_client))
    expected = "'draft' posts invoices as drafts, but the billing system quickbooks (QuickBooks) has no draft invoices"
    for args in (["config", "check", "--config", path], ["run", "--config", path]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        out = " ".join(result.output.split())
        assert "tenants.invicta-mt.clients." in out and expected in out

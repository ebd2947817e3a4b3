"""Conformance harness of the InvoiceXpress connector (see :mod:`connectors.testing`).

``tests/test_invoicexpress_conformance.py`` is one line:
``TestInvoiceXpressConformance = make_conformance_tests(InvoiceXpressHarness)``.

InvoiceXpress publishes an OpenAPI file on its documentation site but no copy was available (see
``../shared/specs/SOURCES.md``), so the emulator validates requests the way the documentation
describes (required fields, formats, exemption codes, limits). The "timeout after commit" fault hits
``change-state`` (finalising), the commit that makes the invoice legally exist; a lost create
(a draft left behind, resumed by the next delivery) is covered by ``tests/test_invoicexpress_connector.py``.
API-key auth has no tokens, so the kit skips its token-refresh scenarios by capability.

Lifecycle hooks: ``mark_paid`` records a receipt (settled when paid in full), ``balance`` is the
emulator's (final invoices due less final credit notes), ``credit_notes`` lists credit notes by
``reference``, ``plant_foreign`` creates a final invoice without our marker. ``HeldInvoice.printed``
is ``observations``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar

from connectors.invoicexpress.connector import InvoiceXpressConnector
from connectors.invoicexpress.emulator import DEFAULT_ACCOUNT, InvoiceXpressEmulator, default_accounts
from connectors.sdk.invoice import Invoice
from connectors.testing import HeldInvoice
from connectors.testing.emulated import EmulatorHarness
from connectors.testing.harness import HostileExpectation

CLIENT_CODE = "CLI-CONF-EXISTING"
CLIENT_NAME = "Conformance Client, Lda"


class InvoiceXpressHarness(EmulatorHarness[InvoiceXpressEmulator]):
    connector_cls = InvoiceXpressConnector
    fast_timeout = 0.5
    hostile: ClassVar[Mapping[str, HostileExpectation]] = {
        "non_ascii": "deliver",
        "many_lines": "deliver",
        # item descriptions are limited to 200 characters (SAF-T Line/Description)
        "long_description": "reject",
        "zero_amount_line": "deliver",
        # PT invoices reduce with discounts or credit notes, not negative items
        "negative_line": "reject",
        "odd_number": "deliver",
    }

    def __init__(self) -> None:
        self.api_key = "conf-ix-key-" + secrets.token_hex(12)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        accounts = default_accounts()
        accounts[DEFAULT_ACCOUNT]["api_key"] = self.api_key
        accounts[DEFAULT_ACCOUNT]["clients"].append(
            {"name": CLIENT_NAME, "code": CLIENT_CODE, "email": "conf@example.pt", "fiscal_id": "500000000"}
        )
        self.emu = InvoiceXpressEmulator(accounts=accounts, hang_seconds=2.0, rate_limit_per_minute=10_000).start()

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        return {
            "api_url": self.emulator.api_url,
            "account_name": DEFAULT_ACCOUNT,
            "api_key_env": "INVOICEXPRESS_API_KEY",
            "tax_exemption": "M07",
        }

    def env(self) -> dict[str, str]:
        return {"INVOICEXPRESS_API_KEY": self.api_key}

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        """Every invoice of the account (drafts too, not deleted ones); ``number`` is ``reference`` (our number),
        ``printed`` its ``observations``."""
        return [_held(d) for d in self.emulator.invoices(DEFAULT_ACCOUNT)]

    # ------------------------------------------------------------------ lifecycle
    def mark_paid(self, external_id: str, amount: Decimal | None = None) -> None:
        """A receipt on the invoice (settled once paid in full)."""
        self.emulator.mark_paid(int(external_id), amount)

    def balance(self) -> Decimal:
        """Final invoices' amount due less final credit notes (all clients of the account)."""
        return self.emulator.balance(DEFAULT_ACCOUNT)

    def credit_notes(self) -> list[HeldInvoice]:
        """Every credit note of the account (drafts too); ``number`` is its ``reference`` (``<our number>-CN``)."""
        return [_held(d) for d in self.emulator.credit_notes(DEFAULT_ACCOUNT)]

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """A final invoice of ``total`` for the invoice's client under its number, without observations (no marker)."""
        client = {"name": invoice.client_name, "code": invoice.contact_id or invoice.client_id}
        return str(self.emulator.plant_foreign(invoice.invoice_number, total, client=client))

    # ------------------------------------------------------------------ faults
    def inject_timeout_after_commit(self) -> None:
        """Hits ``change-state``: finalising is the commit that makes the invoice legally exist."""
        self.emulator.inject_fault("timeout_after_commit", only="change_state")

    def inject_rate_limit(self, retry_after: int = 1) -> None:
        self.emulator.inject_fault("429", retry_after=retry_after)

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """Due date before the invoice date: InvoiceXpress answers 422."""
        return invoice.model_copy(update={"due_date": invoice.issue_date - timedelta(days=1)})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"account_name": "no-such-account"}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_clients": allow}

    def contact(self) -> tuple[str | None, str]:
        return CLIENT_CODE, CLIENT_NAME

    # ------------------------------------------------------------------ checks
    def assert_healthy(self) -> None:
        failures = self.emulator.server_errors
        assert not failures, f"InvoiceXpress emulator errors: {failures[:1]}"


def _held(doc: dict[str, Any]) -> HeldInvoice:
    code = doc["client"].get("code") or None
    return HeldInvoice(
        str(doc["id"]),
        doc["reference"],
        Decimal(doc["total"]),
        "EUR",
        len(doc["items"]),
        code,
        doc,
        status=doc["status"],
        printed=doc["observations"],
    )


__all__ = ["InvoiceXpressHarness"]

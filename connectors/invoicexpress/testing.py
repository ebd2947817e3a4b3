"""Conformance harness of the InvoiceXpress connector (see :mod:`connectors.testing`).

``tests/test_invoicexpress_conformance.py`` is one line:
``TestInvoiceXpressConformance = make_conformance_tests(InvoiceXpressHarness)``.

InvoiceXpress publishes an OpenAPI file on its documentation site but no copy was available (see
``../shared/specs/SOURCES.md``), so the emulator validates requests the way the documentation
describes (required fields, formats, exemption codes, limits). The "timeout after commit" fault hits
``change-state`` (finalising), the commit that makes the invoice legally exist; a lost create
(a draft left behind, resumed by the next delivery) is covered by ``tests/test_invoicexpress_connector.py``.
API-key auth has no tokens, so the kit skips its token-refresh scenarios by capability.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal
from typing import Any

from connectors.invoicexpress.connector import InvoiceXpressConnector
from connectors.invoicexpress.emulator import DEFAULT_ACCOUNT, InvoiceXpressEmulator, default_accounts
from connectors.sdk.invoice import Invoice
from connectors.testing import ConnectorHarness, HeldInvoice

CLIENT_CODE = "CLI-CONF-EXISTING"
CLIENT_NAME = "Conformance Client, Lda"


class InvoiceXpressHarness(ConnectorHarness):
    connector_cls = InvoiceXpressConnector
    skip: dict[str, str] = {}
    hostile = {
        "long_description": "reject",  # item descriptions are limited to 200 characters (SAF-T Line/Description)
        "non_ascii": "deliver",
        "many_lines": "deliver",
        "zero_amount_line": "deliver",
        "negative_line": "reject",  # PT invoices reduce with discounts or credit notes, not negative items
        "odd_number": "deliver",
    }
    fast_timeout = 0.5

    def __init__(self) -> None:
        self.api_key = "conf-ix-key-" + secrets.token_hex(12)
        self.emu: InvoiceXpressEmulator | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        accounts = default_accounts()
        accounts[DEFAULT_ACCOUNT]["api_key"] = self.api_key
        accounts[DEFAULT_ACCOUNT]["clients"].append(
            {"name": CLIENT_NAME, "code": CLIENT_CODE, "email": "conf@example.pt", "fiscal_id": "500000000"}
        )
        self.emu = InvoiceXpressEmulator(accounts=accounts, hang_seconds=2.0, rate_limit_per_minute=10_000).start()

    def stop(self) -> None:
        if self.emu is not None:
            self.emu.stop()

    def reset(self) -> None:
        assert self.emu is not None
        self.emu.reset_state()

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        assert self.emu is not None
        return {
            "api_url": self.emu.api_url,
            "account_name": DEFAULT_ACCOUNT,
            "api_key_env": "INVOICEXPRESS_API_KEY",
            "tax_exemption": "M07",
        }

    def env(self) -> dict[str, str]:
        return {"INVOICEXPRESS_API_KEY": self.api_key}

    def contact(self) -> tuple[str | None, str]:
        return CLIENT_CODE, CLIENT_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        """Every invoice of the account (drafts too, not deleted ones); ``number`` is ``reference`` (our number)."""
        assert self.emu is not None
        return [
            HeldInvoice(
                external_id=str(d["id"]),
                number=d["reference"],
                total=Decimal(d["total"]),
                currency="EUR",
                line_count=len(d["items"]),
                contact=d["client"].get("code") or None,
                raw=d,
            )
            for d in self.emu.invoices(DEFAULT_ACCOUNT)
        ]

    # ------------------------------------------------------------------ faults
    def inject_rate_limit(self, retry_after: int = 1) -> None:
        assert self.emu is not None
        self.emu.inject_fault("429", retry_after=retry_after)

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        assert self.emu is not None
        self.emu.inject_fault(str(status), times)

    def inject_timeout_after_commit(self) -> None:
        assert self.emu is not None
        self.emu.inject_fault("timeout_after_commit", only="change_state")

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """Due date before the invoice date: InvoiceXpress answers 422."""
        return invoice.model_copy(update={"due_date": invoice.issue_date - timedelta(days=1)})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"account_name": "no-such-account"}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_clients": allow}

    # ------------------------------------------------------------------ checks
    def assert_healthy(self) -> None:
        assert self.emu is not None
        assert not self.emu.server_errors, f"emulator errors: {self.emu.server_errors[:1]}"


__all__ = ["InvoiceXpressHarness"]

"""Conformance harness of the Ledgerly connector: how the broker's kit drives it and its emulator."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from broker_connector_example.connector import LedgerlyConnector
from broker_connector_example.emulator import LedgerlyEmulator
from connectors.sdk.invoice import Invoice
from connectors.testing import ConnectorHarness, HeldInvoice, HostileExpectation

CUSTOMER_ID = "cus_conformance"
CUSTOMER_NAME = "Conformance Client, Lda"


class LedgerlyHarness(ConnectorHarness):
    connector_cls = LedgerlyConnector
    # Ledgerly caps descriptions at 5000 characters and 1000 lines: the kit's 4000 / 500 fit.
    hostile: ClassVar[Mapping[str, HostileExpectation]] = {
        "long_description": "deliver",
        "non_ascii": "deliver",
        "many_lines": "deliver",
        "zero_amount_line": "deliver",
        "negative_line": "deliver",
        "odd_number": "deliver",
    }
    # No OAuth2 (an API key): the kit skips the token scenarios by itself, stating why.
    skip: ClassVar[Mapping[str, str]] = dict.fromkeys(
        ("amend", "amend_resumed", "cancel", "amend_paid", "cancel_paid"),
        "the example shows a create-only connector (amendments=False); connectors/xero/connector.py retire() "
        "shows the lifecycle",
    )

    def __init__(self) -> None:
        self.api_key = "ldg_test_" + secrets.token_hex(12)
        self.emu: LedgerlyEmulator | None = None

    def start(self) -> None:
        self.emu = LedgerlyEmulator(
            api_key=self.api_key,
            account_id="acc-conformance",
            rate_limit_per_minute=10_000,
            customers={CUSTOMER_ID: CUSTOMER_NAME},
        ).start()

    def stop(self) -> None:
        if self.emu is not None:
            self.emu.stop()

    def reset(self) -> None:
        assert self.emu is not None
        self.emu.reset()

    def settings(self) -> dict[str, Any]:
        assert self.emu is not None
        return {"api_url": self.emu.url, "account_id": self.emu.account_id, "api_key_env": "LEDGERLY_API_KEY"}

    def env(self) -> dict[str, str]:
        return {"LEDGERLY_API_KEY": self.api_key}

    def contact(self) -> tuple[str | None, str]:
        return CUSTOMER_ID, CUSTOMER_NAME

    def invoices(self) -> list[HeldInvoice]:
        assert self.emu is not None
        return [
            HeldInvoice(
                inv["id"],
                inv["number"],
                Decimal(inv["total"]),
                inv["currency"],
                inv["lines"],
                inv["customer_id"],
                inv,
                status=inv.get("status"),
                printed=inv.get("notes", ""),
            )
            for inv in self.emu.invoices.values()
        ]

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """An invoice typed into Ledgerly by hand under ``invoice``'s number (no marker)."""
        assert self.emu is not None
        inv_id = "inv_manual"
        self.emu.invoices[inv_id] = {
            "id": inv_id,
            "number": invoice.invoice_number,
            "customer_id": CUSTOMER_ID,
            "currency": invoice.currency,
            "net_total": str(total),
            "tax_total": "0.00",
            "total": str(total),
            "lines": 1,
            "status": "issued",
            "memo": "",
            "notes": "",
        }
        return inv_id

    def inject_rate_limit(self, retry_after: int = 1) -> None:
        assert self.emu is not None
        self.emu.retry_after = retry_after
        self.emu.inject_fault("429")

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        assert self.emu is not None
        self.emu.inject_fault(str(status), times)

    def inject_timeout_after_commit(self) -> None:
        assert self.emu is not None
        self.emu.inject_fault("timeout_after_commit")

    def expire_idempotency_keys(self) -> None:
        assert self.emu is not None
        self.emu.idempotency_ttl = 0

    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """A customer id Ledgerly does not know: 422 validation."""
        return invoice.model_copy(update={"contact_id": "cus_does_not_exist"})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"account_id": "acc-nobody"}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_customers": allow}

    def assert_healthy(self) -> None:
        assert self.emu is not None and not self.emu.errors, self.emu.errors if self.emu else None

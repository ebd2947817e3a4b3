"""Conformance-kit harness for the Zoho Invoice connector (:mod:`connectors.testing`)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from connectors.sdk.invoice import Invoice
from connectors.testing.emulated import EmulatorHarness
from connectors.testing.harness import HeldInvoice, HostileExpectation
from connectors.zoho.connector import ZohoConnector
from connectors.zoho.emulator import DEFAULT_ORG, ZohoEmulator

CLIENT_ID = "1000.CONFORMANCEAPP"
CLIENT_SECRET = "zoho-conformance-secret-4f1d"
REFRESH_TOKEN = "1000.conformance0refresh.token77"
CONTACT_ID = "460000099000001"
CONTACT_NAME = "Conformance Client, Lda"


def _held(doc: dict[str, Any], kind: str) -> HeldInvoice:
    """An emulator invoice or credit note (``kind``: the ``<kind>_id`` / ``<kind>_number`` keys) as the kit sees it;
    ``printed`` is ``notes`` and ``terms`` (printed on Zoho's PDF)."""
    return HeldInvoice(
        external_id=doc[f"{kind}_id"],
        number=doc[f"{kind}_number"],
        total=Decimal(doc["total"]),
        currency=doc["currency_code"],
        line_count=len(doc["line_items"]),
        contact=doc["customer_id"],
        raw=doc,
        status=doc["status"],
        printed="\n".join(t for t in (doc.get("notes"), doc.get("terms")) if t),
    )


class ZohoHarness(EmulatorHarness[ZohoEmulator]):
    """Zoho Invoice: our number is Zoho's ``invoice_number`` (unique per organisation)."""

    connector_cls = ZohoConnector
    hostile: ClassVar[Mapping[str, HostileExpectation]] = {
        "long_description": "reject",  # line description > 2000 characters (Zoho's limit), refused before sending
        "non_ascii": "deliver",
        "many_lines": "deliver",  # no documented line limit
        "zero_amount_line": "deliver",
        "negative_line": "deliver",
        "odd_number": "deliver",
    }

    def start(self) -> None:
        self.emu = ZohoEmulator(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=REFRESH_TOKEN,
            hang_seconds=1,
            rate_limit_per_minute=1000,
            contacts={CONTACT_ID: {"contact_name": CONTACT_NAME, "email": "billing@conformance.example"}},
        ).start()

    def settings(self) -> dict[str, Any]:
        return {
            "data_center": "eu",
            "api_url": self.emulator.url,
            "accounts_url": self.emulator.url,
            "organization_id": DEFAULT_ORG,
            "client_id": CLIENT_ID,
            "client_secret_env": "CONFORMANCE_ZOHO_CLIENT_SECRET",
            "refresh_token_env": "CONFORMANCE_ZOHO_REFRESH_TOKEN",
            "max_requests_per_minute": 1000,
        }

    def env(self) -> dict[str, str]:
        return {"CONFORMANCE_ZOHO_CLIENT_SECRET": CLIENT_SECRET, "CONFORMANCE_ZOHO_REFRESH_TOKEN": REFRESH_TOKEN}

    def contact(self) -> tuple[str | None, str]:
        return CONTACT_ID, CONTACT_NAME

    def invoices(self) -> list[HeldInvoice]:
        """Every invoice; ``printed`` is ``notes`` and ``terms`` (both printed on Zoho's invoice PDF)."""
        return [_held(i, "invoice") for i in self.emulator.invoices()]

    def credit_notes(self) -> list[HeldInvoice]:
        """Every credit note (``number`` = ``creditnote_number``, ``<invoice number>-CN`` for ours)."""
        return [_held(c, "creditnote") for c in self.emulator.creditnotes()]

    def mark_paid(self, external_id: str, amount: Decimal | None = None) -> None:
        """The customer pays ``amount`` (``None``: the balance) on the invoice (:meth:`ZohoEmulator.record_payment`)."""
        self.emulator.record_payment(external_id, amount)

    def balance(self) -> Decimal:
        """Receivables of non-draft, non-void invoices minus unapplied credit (:meth:`ZohoEmulator.balance`)."""
        return self.emulator.balance()

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """A sent invoice under ``invoice``'s number for its customer, without our marker."""
        return self.emulator.plant_invoice(invoice.invoice_number, invoice.contact_id or CONTACT_ID, total)

    def inject_rate_limit(self, retry_after: int = 1) -> None:
        del retry_after  # the emulator's injected 429 always says Retry-After: 1 (what the kit asks for)
        self.emulator.inject_fault("429")

    def inject_timeout_after_commit(self) -> None:
        # The invoice becomes what the tenant configured (sent) with the mark-as-sent call; a lost
        # answer to the create itself is covered by tests/test_zoho_connector.py.
        self.emulator.inject_fault("timeout_after_commit", method="POST", path="/invoices/*/status/sent")

    def expire_tokens(self) -> None:
        self.emulator.expire_access_tokens()

    def refresh_count(self) -> int:
        return self.emulator.refresh_count

    def invalid_invoice(self, invoice: Any) -> Any:
        return invoice.model_copy(update={"contact_id": "460000000000404"})  # Zoho: "Contact does not exist." (400)

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"organization_id": "99999999"}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_contacts": allow}

    def issued_secrets(self) -> list[str]:
        return self.emulator.issued_tokens()

    def assert_healthy(self) -> None:
        assert self.emulator.server_errors == [], self.emulator.server_errors


__all__ = ["CLIENT_ID", "CLIENT_SECRET", "CONTACT_ID", "CONTACT_NAME", "REFRESH_TOKEN", "ZohoHarness"]

"""Conformance harness of the QuickBooks Online connector (see :mod:`connectors.testing`).

``tests/test_quickbooks_conformance.py`` is one call: ``make_conformance_tests(QuickBooksHarness)``.
The emulator checks every request against the field reference ``tests/specs/quickbooks/openapi.yaml``
(community file, see :mod:`connectors.quickbooks.spec`) when it is present, and the harness
fails a test that sent a non-conforming request or crashed the emulator.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.quickbooks.connector import QuickBooksConnector
from connectors.quickbooks.emulator import DEMO_TAX_CODES, QuickBooksEmulator
from connectors.sdk.invoice import Invoice
from connectors.testing.emulated import OAuthEmulatorHarness
from connectors.testing.harness import HOSTILE_CASES, HeldInvoice

REALM = "9341452000000777"
UNKNOWN_REALM = "9341452000000999"
CONTACT_ID = "58"
CONTACT_NAME = "Conformance Client, Lda"
#: A customer id the company does not have: QBO answers Fault 2500 "Invalid Reference Id".
UNKNOWN_CUSTOMER_ID = "999999"
SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "quickbooks" / "openapi.yaml"


class QuickBooksHarness(OAuthEmulatorHarness[QuickBooksEmulator]):
    connector_cls = QuickBooksConnector
    hostile = dict.fromkeys(HOSTILE_CASES, "deliver")
    secret_prefix = "qbo"
    client_secret_env = "QBO_CLIENT_SECRET"
    refresh_token_env = "QBO_REFRESH_TOKEN"
    invalid_requests = "requests not matching the QuickBooks field reference"
    spec_module = "connectors.quickbooks.spec"

    # ------------------------------------------------------------------ lifecycle
    def spec_file(self) -> Path:
        return SPEC

    def new_emulator(self) -> QuickBooksEmulator:
        return QuickBooksEmulator(
            realm_ids=(REALM,),
            customers={CONTACT_ID: {"DisplayName": CONTACT_NAME, "PrimaryEmailAddr": "ap@conformance.example"}},
            rate_limit_per_minute=10_000,
            batch_limit_per_minute=1_000,
            **self.emulator_options(),
        )

    def reset(self) -> None:
        super().reset()
        self.emulator.requestid_ttl = None

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        emulator = self.emulator
        return {
            "api_url": emulator.url,
            "token_url": emulator.token_url,
            "authorize_url": f"{emulator.url}/connect/oauth2",
            "realm_id": REALM,
            **self.oauth_settings(),
            "tax_codes": DEMO_TAX_CODES,
        }

    def contact(self) -> tuple[str | None, str]:
        return CONTACT_ID, CONTACT_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        return [
            HeldInvoice(
                external_id=inv["Id"],
                number=inv["DocNumber"],
                total=Decimal(inv["TotalAmt"]),
                currency=(inv.get("CurrencyRef") or {}).get("value"),
                line_count=sum(1 for ln in inv["Line"] if ln.get("DetailType") == "SalesItemLineDetail"),
                contact=(inv.get("CustomerRef") or {}).get("value"),
                raw=inv,
            )
            for inv in self.emulator.invoices(REALM)
        ]

    # ------------------------------------------------------------------ faults (the rest: OAuthEmulatorHarness)
    def expire_idempotency_keys(self) -> None:
        self.emulator.requestid_ttl = 0  # every remembered requestid is past its window (until reset)

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """A customer id the company does not have: QBO's ValidationFault 2500 "Invalid Reference Id"."""
        return invoice.model_copy(update={"contact_id": UNKNOWN_CUSTOMER_ID})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"realm_id": UNKNOWN_REALM}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_contacts": allow}


__all__ = ["QuickBooksHarness"]

"""Conformance harness of the Xero connector (see :mod:`connectors.testing`).

``tests/test_xero_conformance.py`` is one line: ``TestXeroConformance = make_conformance_tests(XeroHarness)``.
The emulator validates every request against the official OpenAPI spec when
``tests/specs/xero/xero_accounting.yaml`` (or ``$XERO_SPEC``) is present, and the harness fails a
test that sent a non-conforming request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from connectors.sdk.invoice import Invoice
from connectors.testing.emulated import OAuthEmulatorHarness
from connectors.testing.harness import HOSTILE_CASES, HeldInvoice
from connectors.xero.connector import XeroConnector
from connectors.xero.emulator import XeroEmulator

ORG = "00000000-0000-0000-0000-0000000000c1"
UNKNOWN_ORG = "99999999-0000-0000-0000-0000000000c9"
CONTACT_ID = "3f1c2a10-5b1e-4c7a-9d01-0000000c0c01"
CONTACT_NAME = "Conformance Client, Lda"
SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "xero" / "xero_accounting.yaml"


class XeroHarness(OAuthEmulatorHarness[XeroEmulator]):
    connector_cls = XeroConnector
    hostile = dict.fromkeys(HOSTILE_CASES, "deliver")
    secret_prefix = "xero"
    client_secret_env = "XERO_CLIENT_SECRET"
    refresh_token_env = "XERO_REFRESH_TOKEN"
    invalid_requests = "requests not conforming to the Xero OpenAPI spec"
    spec_module = "connectors.xero.spec"

    # ------------------------------------------------------------------ lifecycle
    def spec_file(self) -> Path:
        """``$XERO_SPEC``, else :data:`SPEC`."""
        return Path(os.environ.get("XERO_SPEC") or SPEC)

    def new_emulator(self) -> XeroEmulator:
        return XeroEmulator(
            tenant_ids=(ORG,),
            contacts={ORG: {CONTACT_ID: CONTACT_NAME}},
            rate_limit_per_minute=10_000,
            daily_limit=100_000,
            **self.emulator_options(),
        )

    def reset(self) -> None:
        super().reset()
        self.emulator.idempotency_ttl = 360

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        url = self.emulator.url
        return {
            "api_url": url,
            "identity_url": url,
            "authorize_url": f"{url}/identity/connect/authorize",
            "xero_tenant_id": ORG,
            **self.oauth_settings(),
        }

    def contact(self) -> tuple[str | None, str]:
        return CONTACT_ID, CONTACT_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        return [
            HeldInvoice(
                external_id=inv["InvoiceID"],
                number=inv["InvoiceNumber"],
                total=inv["Total"],
                currency=inv.get("CurrencyCode"),
                line_count=len(inv.get("LineItems") or []),
                contact=(inv.get("Contact") or {}).get("ContactID"),
                raw=inv,
            )
            for inv in self.emulator.invoices(ORG)
        ]

    # ------------------------------------------------------------------ faults (the rest: OAuthEmulatorHarness)
    def expire_idempotency_keys(self) -> None:
        self.emulator.idempotency_ttl = 0  # every cached key is past its window (until reset)

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """Account code 999 does not exist in the organisation: Xero's validation error."""
        lines = [invoice.lines[0].model_copy(update={"account_code": "999"}), *invoice.lines[1:]]
        return invoice.model_copy(update={"lines": lines})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"xero_tenant_id": UNKNOWN_ORG}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_contacts": allow}


__all__ = ["XeroHarness"]

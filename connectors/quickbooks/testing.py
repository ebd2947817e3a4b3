"""Conformance harness of the QuickBooks Online connector (see :mod:`connectors.testing`).

``tests/test_quickbooks_conformance.py`` is one call: ``make_conformance_tests(QuickBooksHarness)``.
The emulator checks every request against the field reference ``tests/specs/quickbooks/openapi.yaml``
(community file, see :mod:`connectors.quickbooks.spec_check`) when it is present, and the harness
fails a test that sent a non-conforming request or crashed the emulator.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.quickbooks.connector import QuickBooksConnector
from connectors.quickbooks.emulator import DEMO_TAX_CODES, QuickBooksEmulator
from connectors.sdk.invoice import Invoice
from connectors.testing import ConnectorHarness, HeldInvoice

REALM = "9341452000000777"
UNKNOWN_REALM = "9341452000000999"
CONTACT_ID = "58"
CONTACT_NAME = "Conformance Client, Lda"
#: A customer id the company does not have: QBO answers Fault 2500 "Invalid Reference Id".
UNKNOWN_CUSTOMER_ID = "999999"
SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "quickbooks" / "openapi.yaml"


class QuickBooksHarness(ConnectorHarness):
    connector_cls = QuickBooksConnector
    hostile = dict.fromkeys(
        ("long_description", "non_ascii", "many_lines", "zero_amount_line", "negative_line", "odd_number"), "deliver"
    )
    fast_timeout = 0.5

    def __init__(self) -> None:
        self.client_secret = "conf-qbo-secret-" + secrets.token_hex(8)
        self.refresh_token = "conf-qbo-refresh-" + secrets.token_hex(8)
        self.emu: QuickBooksEmulator | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        validator = None
        if SPEC.exists():
            from connectors.quickbooks.spec_check import make_request_validator

            validator = make_request_validator(SPEC)
        self.emu = QuickBooksEmulator(
            client_secret=self.client_secret,
            refresh_token=self.refresh_token,
            realm_ids=(REALM,),
            customers={CONTACT_ID: {"DisplayName": CONTACT_NAME, "PrimaryEmailAddr": "ap@conformance.example"}},
            rate_limit_per_minute=10_000,
            batch_limit_per_minute=1_000,
            hang_seconds=2.0,
            request_validator=validator,
        ).start()

    def stop(self) -> None:
        if self.emu is not None:
            self.emu.stop()

    def reset(self) -> None:
        assert self.emu is not None
        self.emu.reset_state()
        self.emu.requestid_ttl = None
        self.emu.fault_retry_after = 1

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        assert self.emu is not None
        return {
            "api_url": self.emu.url,
            "token_url": self.emu.token_url,
            "authorize_url": f"{self.emu.url}/connect/oauth2",
            "realm_id": REALM,
            "client_id": self.emu.client_id,
            "client_secret_env": "QBO_CLIENT_SECRET",
            "refresh_token_env": "QBO_REFRESH_TOKEN",
            "tax_codes": DEMO_TAX_CODES,
        }

    def env(self) -> dict[str, str]:
        return {"QBO_CLIENT_SECRET": self.client_secret, "QBO_REFRESH_TOKEN": self.refresh_token}

    def contact(self) -> tuple[str | None, str]:
        return CONTACT_ID, CONTACT_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        assert self.emu is not None
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
            for inv in self.emu.invoices(REALM)
        ]

    # ------------------------------------------------------------------ faults
    def inject_rate_limit(self, retry_after: int = 1) -> None:
        assert self.emu is not None
        self.emu.fault_retry_after = retry_after
        self.emu.inject_fault("429")

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        assert self.emu is not None
        self.emu.inject_fault(str(status), times)

    def inject_timeout_after_commit(self) -> None:
        assert self.emu is not None
        self.emu.inject_fault("timeout_after_commit")

    def expire_tokens(self) -> None:
        assert self.emu is not None
        self.emu.expire_access_tokens()

    def refresh_count(self) -> int:
        assert self.emu is not None
        return len(self.emu.refresh_token_uses)

    def expire_idempotency_keys(self) -> None:
        assert self.emu is not None
        self.emu.requestid_ttl = 0  # every remembered requestid is past its window (until reset)

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """A customer id the company does not have: QBO's ValidationFault 2500 "Invalid Reference Id"."""
        return invoice.model_copy(update={"contact_id": UNKNOWN_CUSTOMER_ID})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"realm_id": UNKNOWN_REALM}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_contacts": allow}

    # ------------------------------------------------------------------ checks
    def issued_secrets(self) -> list[str]:
        assert self.emu is not None
        with self.emu._lock:
            return [*self.emu._access_tokens, *self.emu._refresh_tokens]

    def assert_healthy(self) -> None:
        assert self.emu is not None
        failures, errors = list(self.emu.validation_failures), list(self.emu.server_errors)
        assert not failures, f"requests not matching the QuickBooks field reference: {failures[:3]}"
        assert not errors, f"emulator errors: {errors[:1]}"


__all__ = ["QuickBooksHarness"]

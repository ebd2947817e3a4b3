"""Conformance harness of the Xero connector (see :mod:`connectors.testing`).

``tests/test_xero_conformance.py`` is one line: ``TestXeroConformance = make_conformance_tests(XeroHarness)``.
The emulator validates every request against the official OpenAPI spec when
``tests/specs/xero/xero_accounting.yaml`` (or ``$XERO_SPEC``) is present, and the harness fails a
test that sent a non-conforming request.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from connectors.sdk.invoice import Invoice
from connectors.testing import ConnectorHarness, HeldInvoice
from connectors.xero.connector import XeroConnector
from connectors.xero.emulator import XeroEmulator

ORG = "00000000-0000-0000-0000-0000000000c1"
UNKNOWN_ORG = "99999999-0000-0000-0000-0000000000c9"
CONTACT_ID = "3f1c2a10-5b1e-4c7a-9d01-0000000c0c01"
CONTACT_NAME = "Conformance Client, Lda"
SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "xero" / "xero_accounting.yaml"


class XeroHarness(ConnectorHarness):
    connector_cls = XeroConnector
    hostile = dict.fromkeys(
        ("long_description", "non_ascii", "many_lines", "zero_amount_line", "negative_line", "odd_number"), "deliver"
    )
    fast_timeout = 0.5

    def __init__(self) -> None:
        self.client_secret = "conf-xero-secret-" + secrets.token_hex(8)
        self.refresh_token = "conf-xero-refresh-" + secrets.token_hex(8)
        self.emu: XeroEmulator | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        validator = None
        spec = Path(os.environ.get("XERO_SPEC") or SPEC)
        if spec.exists():
            from connectors.xero.spec_check import make_request_validator

            validator = make_request_validator(spec)
        self.emu = XeroEmulator(
            client_secret=self.client_secret,
            refresh_token=self.refresh_token,
            tenant_ids=(ORG,),
            contacts={ORG: {CONTACT_ID: CONTACT_NAME}},
            rate_limit_per_minute=10_000,
            daily_limit=100_000,
            hang_seconds=2.0,
            request_validator=validator,
        ).start()

    def stop(self) -> None:
        if self.emu is not None:
            self.emu.stop()

    def reset(self) -> None:
        assert self.emu is not None
        self.emu.reset_state()
        self.emu.idempotency_ttl = 360
        self.emu.fault_retry_after = 1

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        assert self.emu is not None
        return {
            "api_url": self.emu.url,
            "identity_url": self.emu.url,
            "authorize_url": f"{self.emu.url}/identity/connect/authorize",
            "xero_tenant_id": ORG,
            "client_id": self.emu.client_id,
            "client_secret_env": "XERO_CLIENT_SECRET",
            "refresh_token_env": "XERO_REFRESH_TOKEN",
        }

    def env(self) -> dict[str, str]:
        return {"XERO_CLIENT_SECRET": self.client_secret, "XERO_REFRESH_TOKEN": self.refresh_token}

    def contact(self) -> tuple[str | None, str]:
        return CONTACT_ID, CONTACT_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        assert self.emu is not None
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
            for inv in self.emu.invoices(ORG)
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
        self.emu.idempotency_ttl = 0  # every cached key is past its window (until reset)

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """Account code 999 does not exist in the organisation: Xero's validation error."""
        lines = [invoice.lines[0].model_copy(update={"account_code": "999"}), *invoice.lines[1:]]
        return invoice.model_copy(update={"lines": lines})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"xero_tenant_id": UNKNOWN_ORG}

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
        assert not failures, f"requests not conforming to the Xero OpenAPI spec: {failures[:3]}"
        assert not errors, f"emulator errors: {errors[:1]}"


__all__ = ["XeroHarness"]

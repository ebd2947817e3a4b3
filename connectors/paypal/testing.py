"""Conformance harness of the PayPal Invoicing v2 connector (see :mod:`connectors.testing`).

``tests/test_paypal_conformance.py`` is one call: ``TestPayPalConformance = make_conformance_tests(PayPalHarness)``.
The emulator validates every request against the official spec when
``tests/specs/paypal/invoicing_v2.json`` (or ``$PAYPAL_SPEC``) is present, and the harness fails a
test that sent a non-conforming request.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.paypal.connector import PayPalConnector
from connectors.paypal.emulator import PayPalEmulator
from connectors.sdk.invoice import Invoice
from connectors.testing import ConnectorHarness, HeldInvoice

SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "paypal" / "invoicing_v2.json"
CLIENT_NAME = "Conformance Client, Lda"
#: A currency PayPal does not accept (Angolan kwanza, 2 decimals): the connector maps it, PayPal refuses it.
UNSUPPORTED_CURRENCY = "AOA"


class PayPalHarness(ConnectorHarness):
    connector_cls = PayPalConnector
    skip = {
        "check_unknown_account": (
            "PayPal REST credentials (client id + secret) belong to exactly one PayPal business account; the settings "
            "name no organisation/company that could be unreachable"
        ),
        "contacts": (
            "PayPal Invoicing v2 has no customer/contact objects: the recipient (business name, e-mail) travels inline "
            "in primary_recipients[].billing_info, so there is nothing to look up or create"
        ),
    }
    hostile = {
        "long_description": "deliver",  # name cut to 200, description to 1,000 characters (long_descriptions: truncate)
        "non_ascii": "deliver",
        "many_lines": "reject",  # PayPal allows at most 100 items per invoice
        "zero_amount_line": "deliver",
        "negative_line": "deliver",
        "odd_number": "deliver",
    }
    fast_timeout = 0.5

    def __init__(self) -> None:
        self.client_secret = "conf-paypal-secret-" + secrets.token_hex(8)
        self.emu: PayPalEmulator | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        validator = None
        spec = Path(os.environ.get("PAYPAL_SPEC") or SPEC)
        if spec.exists():
            from connectors.paypal.spec_check import make_request_validator

            validator = make_request_validator(spec)
        self.emu = PayPalEmulator(
            client_secret=self.client_secret,
            rate_limit_per_minute=100_000,
            token_rate_limit_per_minute=10_000,
            hang_seconds=2.0,
            request_validator=validator,
        ).start()

    def stop(self) -> None:
        if self.emu is not None:
            self.emu.stop()

    def reset(self) -> None:
        assert self.emu is not None
        self.emu.reset_state()
        self.emu.retry_after = 1

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        assert self.emu is not None
        return {"api_url": self.emu.url, "client_id": self.emu.client_id, "client_secret_env": "PAYPAL_CLIENT_SECRET"}

    def env(self) -> dict[str, str]:
        return {"PAYPAL_CLIENT_SECRET": self.client_secret}

    def contact(self) -> tuple[str | None, str]:
        return None, CLIENT_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        assert self.emu is not None
        held = []
        for inv in self.emu.invoices():
            billing = ((inv.get("primary_recipients") or [{}])[0] or {}).get("billing_info") or {}
            held.append(
                HeldInvoice(
                    external_id=inv["id"],
                    number=inv["detail"]["invoice_number"],
                    total=Decimal(inv["amount"]["value"]),
                    currency=inv["amount"]["currency_code"],
                    line_count=len(inv.get("items") or []),
                    contact=billing.get("email_address") or billing.get("business_name"),
                    raw=inv,
                )
            )
        return held

    # ------------------------------------------------------------------ faults
    def inject_rate_limit(self, retry_after: int = 1) -> None:
        assert self.emu is not None
        self.emu.retry_after = retry_after
        self.emu.inject_fault("429")

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        assert self.emu is not None
        self.emu.inject_fault(str(status), times)

    def inject_timeout_after_commit(self) -> None:
        assert self.emu is not None
        self.emu.inject_fault("timeout_after_commit", on="create")

    def expire_tokens(self) -> None:
        assert self.emu is not None
        self.emu.expire_access_tokens()

    def refresh_count(self) -> int:
        assert self.emu is not None
        return self.emu.token_requests

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """The same invoice in a currency PayPal does not support: 422 ``CURRENCY_NOT_SUPPORTED``."""
        return invoice.model_copy(update={"currency": UNSUPPORTED_CURRENCY})

    # ------------------------------------------------------------------ checks
    def issued_secrets(self) -> list[str]:
        assert self.emu is not None
        with self.emu._lock:
            return list(self.emu._tokens)

    def assert_healthy(self) -> None:
        assert self.emu is not None
        failures, errors = list(self.emu.validation_failures), list(self.emu.server_errors)
        assert not failures, f"requests not conforming to the PayPal Invoicing v2 spec: {failures[:3]}"
        assert not errors, f"emulator errors: {errors[:1]}"


__all__ = ["PayPalHarness"]

"""Conformance-kit harness for the Stripe connector (:mod:`connectors.testing`).

Starts a :class:`~connectors.stripe.emulator.StripeEmulator` that validates every request against
the official spec (``tests/specs/stripe/spec3.yaml`` when the repository is there), seeded with one
customer, and tells the kit how to read invoices back and inject faults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.stripe.connector import StripeConnector
from connectors.stripe.emulator import StripeEmulator
from connectors.stripe.mapper import from_minor
from connectors.testing.harness import ConnectorHarness, HeldInvoice

SECRET_KEY = "sk_test_51ConformanceKeyDoNotUse0000000000"
CUSTOMER_ID = "cus_ConformanceClnt"
CUSTOMER_NAME = "Conformance Client, Lda"
SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "stripe" / "spec3.yaml"


class StripeHarness(ConnectorHarness):
    """Stripe: draft -> items -> verify -> finalize; our number lives in ``metadata['broker_invoice_number']``."""

    connector_cls = StripeConnector
    skip: dict[str, str] = {}
    hostile = {
        "long_description": "deliver",
        "non_ascii": "deliver",
        "many_lines": "reject",  # Stripe: at most 250 invoice items per invoice (refused before sending)
        "zero_amount_line": "deliver",
        "negative_line": "deliver",  # negative invoice items reduce amount_due
        "odd_number": "deliver",
    }

    def __init__(self) -> None:
        self.emulator: StripeEmulator | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        validator = None
        if SPEC.exists():
            from connectors.stripe.spec_check import make_request_validator

            validator = make_request_validator(SPEC)
        self.emulator = StripeEmulator(
            api_keys=(SECRET_KEY,),
            request_validator=validator,
            hang_seconds=1,
            rate_limit_per_second=1000,
            customers={CUSTOMER_ID: {"name": CUSTOMER_NAME, "email": "billing@conformance.example"}},
        ).start()

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()

    def reset(self) -> None:
        assert self.emulator is not None
        self.emulator.reset_state()

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        assert self.emulator is not None
        return {
            "api_url": self.emulator.url,
            "secret_key_env": "CONFORMANCE_STRIPE_SECRET_KEY",
            "max_requests_per_second": 25,
        }

    def env(self) -> dict[str, str]:
        return {"CONFORMANCE_STRIPE_SECRET_KEY": SECRET_KEY}

    def contact(self) -> tuple[str | None, str]:
        return CUSTOMER_ID, CUSTOMER_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        assert self.emulator is not None
        held = []
        for inv in self.emulator.invoices():
            meta = inv.get("metadata") or {}
            held.append(
                HeldInvoice(
                    external_id=inv["id"],
                    number=meta.get("broker_invoice_number", inv.get("number") or ""),
                    total=from_minor(int(inv["total"]), inv["currency"]),
                    currency=inv["currency"].upper(),
                    line_count=inv["lines"]["total_count"],
                    contact=inv["customer"],
                    raw=inv,
                )
            )
        return held

    # ------------------------------------------------------------------ faults
    def inject_rate_limit(self, retry_after: int = 1) -> None:
        assert self.emulator is not None
        self.emulator.inject_fault("429")

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        assert self.emulator is not None
        self.emulator.inject_fault(str(status), times)

    def inject_timeout_after_commit(self) -> None:
        # The commit that makes a Stripe invoice exist as issued is the finalize call (the draft and
        # its items are resumable steps, covered by tests/test_stripe_connector.py).
        assert self.emulator is not None
        self.emulator.inject_fault("timeout_after_commit", method="POST", path="/v1/invoices/*/finalize")

    def expire_idempotency_keys(self) -> None:
        assert self.emulator is not None
        self.emulator.forget_idempotency_keys()

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Any) -> Any:
        # passes our checks; Stripe answers 400 resource_missing "No such customer"
        return invoice.model_copy(update={"contact_id": "cus_DoesNotExist404"})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"stripe_account": "acct_1NotConnected0000"}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_customers": allow}

    def assert_healthy(self) -> None:
        assert self.emulator is not None
        assert self.emulator.validation_failures == [], self.emulator.validation_failures
        assert self.emulator.server_errors == [], self.emulator.server_errors


__all__ = ["CUSTOMER_ID", "CUSTOMER_NAME", "SECRET_KEY", "StripeHarness"]

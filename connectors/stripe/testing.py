"""Conformance-kit harness for the Stripe connector (:mod:`connectors.testing`).

Starts a :class:`~connectors.stripe.emulator.StripeEmulator` that validates every request against
the official spec (``tests/specs/stripe/spec3.yaml`` when the repository is there), seeded with one
customer, and tells the kit how to read invoices back and inject faults.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from connectors.sdk.invoice import Invoice
from connectors.stripe.connector import StripeConnector
from connectors.stripe.emulator import StripeEmulator
from connectors.stripe.mapper import from_minor, to_minor
from connectors.testing.harness import ConnectorHarness, HeldInvoice, HostileExpectation

#: The official OpenAPI spec (stripe/openapi ``spec3.yaml``) the emulator validates requests against, when present.
SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "stripe" / "spec3.yaml"
SECRET_KEY = "sk_test_51ConformanceKeyDoNotUse0000000000"
CUSTOMER_ID = "cus_ConformanceClnt"
CUSTOMER_NAME = "Conformance Client, Lda"
#: The custom field our invoices print their number in (``StripeSettings.number_field_name``'s default).
NUMBER_FIELD = "Invoice ref"


class StripeHarness(ConnectorHarness):
    """Stripe: draft -> items -> verify -> finalize; our number lives in ``metadata['broker_invoice_number']``."""

    hostile: ClassVar[Mapping[str, HostileExpectation]] = MappingProxyType(
        {
            "long_description": "deliver",
            "non_ascii": "deliver",
            "many_lines": "reject",  # Stripe: at most 250 invoice items per invoice (refused before sending)
            "zero_amount_line": "deliver",
            "negative_line": "deliver",  # negative invoice items reduce amount_due
            "odd_number": "deliver",
        }
    )
    connector_cls = StripeConnector

    def __init__(self) -> None:
        """The emulator (not started yet), seeded with one customer."""
        customers = {CUSTOMER_ID: {"name": CUSTOMER_NAME, "email": "billing@conformance.example"}}
        self.emulator = StripeEmulator(
            api_keys=(SECRET_KEY,), hang_seconds=1, rate_limit_per_second=1000, customers=customers
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Serve on a free loopback port, validating requests against the official spec when the file is there.

        Raises ``ModuleNotFoundError`` when the validator's libraries (dev extras) are missing.
        """
        if SPEC.exists():
            from connectors.stripe.spec import make_request_validator  # jsonschema: a dev extra

            self.emulator.request_validator = make_request_validator(SPEC)
        self.emulator.start()

    def reset(self) -> None:
        """Forget invoices, customers, faults, rate windows and idempotency keys."""
        self.emulator.reset_state()

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        self.emulator.stop()

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        """Raw ``billing.settings`` pointing at the emulator (the key by variable name)."""
        return {
            "api_url": self.emulator.url,
            "secret_key_env": "CONFORMANCE_STRIPE_SECRET_KEY",
            "max_requests_per_second": 25,
        }

    def env(self) -> dict[str, str]:
        """The variable holding the emulator's secret key."""
        return {"CONFORMANCE_STRIPE_SECRET_KEY": SECRET_KEY}

    def contact(self) -> tuple[str | None, str]:
        """The seeded customer (id, name)."""
        return CUSTOMER_ID, CUSTOMER_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        """Every invoice the emulator holds; ``number`` is ``metadata['broker_invoice_number']`` (else the number
        custom field, else Stripe's number); ``printed`` = the memo (``description``) and the ``footer``."""
        return [
            HeldInvoice(
                external_id=inv["id"],
                number=(inv.get("metadata") or {}).get("broker_invoice_number")
                or next((f["value"] for f in inv.get("custom_fields") or [] if f.get("name") == NUMBER_FIELD), None)
                or inv.get("number")
                or "",
                total=from_minor(int(inv["total"]), inv["currency"]),
                currency=inv["currency"].upper(),
                line_count=inv["lines"]["total_count"],
                contact=inv["customer"],
                raw=inv,
                status=inv["status"],
                printed="\n".join(t for t in (inv.get("description"), inv.get("footer")) if t),
            )
            for inv in self.emulator.invoices()
        ]

    def credit_notes(self) -> list[HeldInvoice]:
        """Every credit note; ``number`` is ours (``metadata['broker_credit_note_number']``) else Stripe's."""
        return [
            HeldInvoice(
                external_id=note["id"],
                number=(note.get("metadata") or {}).get("broker_credit_note_number") or note["number"],
                total=from_minor(int(note["total"]), note["currency"]),
                currency=note["currency"].upper(),
                contact=note["customer"],
                raw=note,
                status=note["status"],
                printed=note.get("memo"),
            )
            for note in self.emulator.credit_notes()
        ]

    # ------------------------------------------------------------------ lifecycle
    def mark_paid(self, external_id: str, amount: Decimal | None = None) -> None:
        """Paid out of band, in full (Stripe's API 2023-08-16 has no partial invoice payments: a partial
        ``amount`` raises ``ValueError``)."""
        minor = None if amount is None else to_minor(amount, self.currency, "amount")
        self.emulator.mark_paid(external_id, minor)

    def balance(self) -> Decimal:
        """``amount_remaining`` of open invoices plus the customers' balances (negative = credit), in EUR."""
        return from_minor(self.emulator.balance_minor(), self.currency)

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """A finalised invoice made in the Dashboard for the seeded customer, labelled with ``invoice``'s number in
        the number custom field (as our invoices print it), one untaxed item of ``total``, no metadata."""
        return self.emulator.add_invoice(
            invoice.contact_id or CUSTOMER_ID,
            to_minor(total, invoice.currency, "total"),
            currency=invoice.currency.lower(),
            description=invoice.reference,
            custom_fields=[{"name": NUMBER_FIELD, "value": invoice.invoice_number}],
        )

    # ------------------------------------------------------------------ faults
    def inject_rate_limit(self, retry_after: int = 1) -> None:
        """The next call answered 429 (the emulator's injected 429 always says ``Retry-After: 1``)."""
        del retry_after
        self.emulator.inject_fault("429")

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        """The next ``times`` calls answered ``status`` without being processed."""
        self.emulator.inject_fault(str(status), times)

    def inject_timeout_after_commit(self) -> None:
        """The next finalize stored, its answer lost.

        The commit that makes a Stripe invoice exist as issued is the finalize call (the draft and its
        items are resumable steps, covered by tests/test_stripe_connector.py).
        """
        self.emulator.inject_fault("timeout_after_commit", method="POST", path="/v1/invoices/*/finalize")

    def expire_idempotency_keys(self) -> None:
        """Forget every idempotency key (as Stripe does after 24 hours)."""
        self.emulator.forget_idempotency_keys()

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """Passes our checks; Stripe answers 400 ``resource_missing`` "No such customer"."""
        return invoice.model_copy(update={"contact_id": "cus_DoesNotExist404"})

    def unknown_account_settings(self) -> dict[str, Any]:
        """A Connect account the key cannot reach."""
        return {"stripe_account": "acct_1NotConnected0000"}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        """``create_customers`` on or off."""
        return {"create_customers": allow}

    def assert_healthy(self) -> None:
        """No spec-invalid request and no emulator crash."""
        assert self.emulator.validation_failures == [], self.emulator.validation_failures
        assert self.emulator.server_errors == [], self.emulator.server_errors


__all__ = ["CUSTOMER_ID", "CUSTOMER_NAME", "SECRET_KEY", "StripeHarness"]

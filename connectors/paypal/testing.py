"""Conformance harness of the PayPal Invoicing v2 connector (see :mod:`connectors.testing`).

``tests/test_paypal_conformance.py`` is one call: ``TestPayPalConformance = make_conformance_tests(PayPalHarness)``.
The emulator validates every request against the official spec when
``tests/specs/paypal/invoicing_v2.json`` (or ``$PAYPAL_SPEC``) is present, and the harness fails a
test that sent a non-conforming request.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from connectors.paypal.connector import PayPalConnector
from connectors.paypal.emulator import PayPalEmulator
from connectors.sdk.invoice import Invoice
from connectors.testing import ConnectorHarness, HeldInvoice
from connectors.testing.harness import HostileExpectation

SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "paypal" / "invoicing_v2.json"
CLIENT_NAME = "Conformance Client, Lda"
#: A currency PayPal does not accept (Angolan kwanza, 2 decimals): the connector maps it, PayPal refuses it.
UNSUPPORTED_CURRENCY = "AOA"


class PayPalHarness(ConnectorHarness):
    """PayPal: draft, then send; our number is ``detail.invoice_number``; client-credentials tokens."""

    connector_cls = PayPalConnector
    skip: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "check_unknown_account": (
                "PayPal REST credentials (client id + secret) belong to exactly one PayPal business account; the "
                "settings name no organisation/company that could be unreachable"
            ),
            "contacts": (
                "PayPal Invoicing v2 has no customer/contact objects: the recipient (business name, e-mail) travels "
                "inline in primary_recipients[].billing_info, so there is nothing to look up or create"
            ),
            "amend_paid": (
                "PayPal Invoicing v2 has no credit notes (no such object or endpoint in invoicing_v2.json) and cannot "
                "cancel a paid invoice (CANNOT_CANCEL_PAID_INVOICE): the paid invoice stays PAID and the revision is "
                "created with the previous total deducted as a negative amount.breakdown.custom ('Already invoiced "
                "on <number>'), so PayPal's total of the revision is new total - paid, not ours, and there is no "
                "credit note to list; the balance new total - paid is asserted in tests/test_paypal_connector.py"
            ),
            "cancel_paid": (
                "PayPal Invoicing v2 has no credit notes and refuses to cancel a paid invoice "
                "(CANNOT_CANCEL_PAID_INVOICE); the broker moves no money, so cancelling a paid invoice is a "
                "PermanentError telling the operator to refund it in PayPal (a REFUNDED invoice then counts as "
                "retired), asserted in tests/test_paypal_connector.py"
            ),
        }
    )
    hostile: ClassVar[Mapping[str, HostileExpectation]] = MappingProxyType(
        {
            "long_description": "deliver",  # name cut to 200, description to 1,000 characters (truncate)
            "non_ascii": "deliver",
            "many_lines": "reject",  # PayPal allows at most 100 items per invoice
            "zero_amount_line": "deliver",
            "negative_line": "deliver",
            "odd_number": "deliver",
        }
    )
    fast_timeout = 0.5

    def __init__(self) -> None:
        """The emulator (not started yet) with a fresh client secret and generous rate limits."""
        self.client_secret = "conf-paypal-secret-" + secrets.token_hex(8)
        self.emu = PayPalEmulator(
            client_secret=self.client_secret,
            rate_limit_per_minute=100_000,
            token_rate_limit_per_minute=10_000,
            hang_seconds=2.0,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Serve on a free loopback port, validating requests against the official spec when the file
        (``SPEC``, or ``$PAYPAL_SPEC``) is there; ``ModuleNotFoundError`` without the validator's libraries."""
        spec = Path(os.environ.get("PAYPAL_SPEC") or SPEC)
        if spec.exists():
            from connectors.paypal.spec import make_request_validator  # jsonschema: a dev extra

            self.emu.request_validator = make_request_validator(spec)
        self.emu.start()

    def reset(self) -> None:
        """Forget invoices, tokens and faults; an injected 429 says ``Retry-After: 1`` again."""
        self.emu.reset_state()
        self.emu.retry_after = 1

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        self.emu.stop()

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        """Raw ``billing.settings`` pointing at the emulator (the secret by variable name)."""
        return {"api_url": self.emu.url, "client_id": self.emu.client_id, "client_secret_env": "PAYPAL_CLIENT_SECRET"}

    def env(self) -> dict[str, str]:
        """The variable holding the REST app's client secret."""
        return {"PAYPAL_CLIENT_SECRET": self.client_secret}

    def contact(self) -> tuple[str | None, str]:
        """No customer objects in PayPal: no id, only the name."""
        return None, CLIENT_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        """Every invoice the emulator holds; ``contact`` is the first recipient's e-mail or business name,
        ``printed`` the printed ``detail.note`` and ``detail.terms_and_conditions`` (not the private memo)."""
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
                    status=inv["status"],
                    printed="\n".join(
                        t for t in (inv["detail"].get("note"), inv["detail"].get("terms_and_conditions")) if t
                    ),
                )
            )
        return held

    # ------------------------------------------------------------------ lifecycle
    def mark_paid(self, external_id: str, amount: Decimal | None = None) -> None:
        """An external payment of ``amount`` (``None``: all that is due), as ``POST .../payments`` records it."""
        self.emu.record_payment(external_id, amount)

    def balance(self) -> Decimal:
        """The ``due_amount`` of ``SENT`` / ``UNPAID`` / ``PARTIALLY_PAID`` invoices (no credit notes in PayPal)."""
        return self.emu.balance()

    def credit_notes(self) -> list[HeldInvoice]:
        """None: PayPal Invoicing has no credit notes."""
        return []

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """A ``SENT`` invoice under ``invoice``'s number, ``total`` in one untaxed item, no memo (no marker)."""
        return self.emu.plant_invoice(invoice.invoice_number, total, invoice.currency, invoice.client_name)

    # ------------------------------------------------------------------ faults
    def inject_rate_limit(self, retry_after: int = 1) -> None:
        """The next call answered 429 ``RATE_LIMIT_REACHED`` with ``Retry-After: retry_after``."""
        self.emu.retry_after = retry_after
        self.emu.inject_fault("429")

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        """The next ``times`` calls answered ``status`` without being processed."""
        self.emu.inject_fault(str(status), times)

    def inject_timeout_after_commit(self) -> None:
        """The next create stored, its answer lost."""
        self.emu.inject_fault("timeout_after_commit", on="create")

    def expire_tokens(self) -> None:
        """Every issued access token expires."""
        self.emu.expire_access_tokens()

    def refresh_count(self) -> int:
        """Token requests served so far."""
        return self.emu.token_requests

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """The same invoice in a currency PayPal does not support: 422 ``CURRENCY_NOT_SUPPORTED``."""
        return invoice.model_copy(update={"currency": UNSUPPORTED_CURRENCY})

    # ------------------------------------------------------------------ checks
    def issued_secrets(self) -> list[str]:
        """Every access token the emulator issued (none may leak)."""
        with self.emu._lock:  # the emulator has no public accessor for its issued tokens
            return list(self.emu._tokens)

    def assert_healthy(self) -> None:
        """No request outside the PayPal Invoicing v2 spec and no emulator crash."""
        failures, errors = list(self.emu.validation_failures), list(self.emu.server_errors)
        assert not failures, f"requests not conforming to the PayPal Invoicing v2 spec: {failures[:3]}"
        assert not errors, f"emulator errors: {errors[:1]}"


__all__ = ["PayPalHarness"]

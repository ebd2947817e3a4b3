"""Conformance harness of the Moloni connector (see :mod:`connectors.testing`).

``tests/test_moloni_conformance.py`` is one line: ``TestMoloniConformance = make_conformance_tests(MoloniHarness)``.

Moloni has no official OpenAPI spec; the emulator itself validates requests the way the
documentation describes (required fields, existing ids, exemption reasons, limits) and answers
Moloni's error arrays. The "timeout after commit" fault hits ``invoices/update`` — the call that
closes the draft, i.e. the commit that makes the invoice legally exist; a lost ``invoices/insert``
(a draft left behind, resumed by the next delivery) is covered by ``tests/test_moloni_connector.py``.

Lifecycle hooks: ``mark_paid`` records a receipt, ``balance`` is the emulator's (closed invoices due
less unreconciled credit), ``credit_notes`` lists ``creditNotes`` by ``your_reference``,
``plant_foreign`` inserts a closed invoice without our marker. ``HeldInvoice.printed`` is ``notes``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar

from connectors.moloni.connector import MoloniConnector
from connectors.moloni.emulator import DEFAULT_COMPANY_ID, MoloniEmulator, default_companies
from connectors.sdk.invoice import Invoice
from connectors.testing import HeldInvoice
from connectors.testing.emulated import EmulatorHarness
from connectors.testing.harness import HostileExpectation

CUSTOMER_ID = "201"
CUSTOMER_NAME = "Conformance Client, Lda"
UNKNOWN_COMPANY = 999


class MoloniHarness(EmulatorHarness[MoloniEmulator]):
    connector_cls = MoloniConnector
    hostile: ClassVar[Mapping[str, HostileExpectation]] = {
        "long_description": "reject",  # product names are limited to 200 characters (SAF-T Line/Description)
        "non_ascii": "deliver",
        "many_lines": "deliver",
        "zero_amount_line": "deliver",
        "negative_line": "reject",  # Moloni prices are >= 0; PT invoices reduce with discounts or credit notes
        "odd_number": "deliver",
    }
    fast_timeout = 0.5

    def __init__(self) -> None:
        self.client_secret, self.refresh_token = (
            f"conf-moloni-{kind}-{secrets.token_hex(8)}" for kind in ("secret", "refresh")
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        companies = default_companies()
        companies[DEFAULT_COMPANY_ID]["customers"][int(CUSTOMER_ID)]["name"] = CUSTOMER_NAME
        self.emu = MoloniEmulator(
            client_secret=self.client_secret, refresh_token=self.refresh_token, companies=companies, hang_seconds=2.0
        ).start()

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        url = self.emulator.url
        return {
            "api_url": url,
            "authorize_url": f"{url}/v1/authorize/",
            "client_id": self.emulator.client_id,
            "client_secret_env": "MOLONI_CLIENT_SECRET",
            "refresh_token_env": "MOLONI_REFRESH_TOKEN",
            "company_id": DEFAULT_COMPANY_ID,
            "document_set_id": 7,
            "product_ids": {
                "labour": 101,
                "travel": 102,
                "call_out": 103,
                "part": 104,
                "expense": 105,
                "quote": 106,
                "discount": 107,
            },
            "tax_ids": {"23": 1, "13": 2, "6": 3},
            "exemption_reason": "M07",
        }

    def env(self) -> dict[str, str]:
        return {"MOLONI_CLIENT_SECRET": self.client_secret, "MOLONI_REFRESH_TOKEN": self.refresh_token}

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        """Every Moloni invoice of the company (drafts too); ``number`` is ``your_reference`` (our number),
        ``printed`` its ``notes`` (printed as "Observações")."""
        return [_held(doc) for doc in self.emulator.invoices(DEFAULT_COMPANY_ID)]

    # ------------------------------------------------------------------ lifecycle
    def mark_paid(self, external_id: str, amount: Decimal | None = None) -> None:
        """A receipt reconciled against the invoice (Moloni records payments as receipts)."""
        self.emulator.mark_paid(int(external_id), amount)

    def balance(self) -> Decimal:
        """Closed invoices' amount due less unreconciled credit of closed credit notes (all customers)."""
        return self.emulator.balance(DEFAULT_COMPANY_ID)

    def credit_notes(self) -> list[HeldInvoice]:
        """Every credit note of the company; ``number`` is its ``your_reference`` (``<our number>-CN``)."""
        return [_held(doc) for doc in self.emulator.credit_notes(DEFAULT_COMPANY_ID)]

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """A closed invoice of ``total`` for the invoice's customer under its number, without notes (no marker)."""
        customer = int(invoice.contact_id or CUSTOMER_ID)
        return str(self.emulator.plant_foreign(invoice.invoice_number, total, customer_id=customer))

    # ------------------------------------------------------------------ tokens and faults
    def expire_tokens(self) -> None:
        self.emulator.expire_access_tokens()

    def refresh_count(self) -> int:
        return self.emulator.grants_served

    def inject_rate_limit(self, retry_after: int = 1) -> None:
        self.emulator.inject_fault("429", retry_after=retry_after)

    def inject_timeout_after_commit(self) -> None:
        """Hits ``invoices/update``: closing is the commit that makes the invoice legally exist."""
        self.emulator.inject_fault("timeout_after_commit", only="invoices/update")

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """Due date before the invoice date: Moloni's ``expiration_date`` validation error."""
        return invoice.model_copy(update={"due_date": invoice.issue_date - timedelta(days=1)})

    def contact(self) -> tuple[str | None, str]:
        """The seeded customer the kit's invoices are addressed to."""
        return CUSTOMER_ID, CUSTOMER_NAME

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"company_id": UNKNOWN_COMPANY}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        if not allow:
            return {"create_customers": False}
        return {
            "create_customers": True,
            "customer_defaults": {
                "maturity_date_id": 11,
                "payment_method_id": 21,
                "address": "Morada por indicar",
                "city": "Lisboa",
            },
        }

    # ------------------------------------------------------------------ checks
    def issued_secrets(self) -> list[str]:
        emu = self.emulator
        with emu._lock:
            return list(emu.issued_tokens)

    def assert_healthy(self) -> None:
        errors = self.emulator.server_errors
        assert not errors, f"Moloni emulator errors: {errors[:1]}"


def _held(doc: dict[str, Any]) -> HeldInvoice:
    status = {0: "draft", 1: "closed"}.get(doc["status"], str(doc["status"]))
    return HeldInvoice(
        str(doc["document_id"]),
        doc["your_reference"],
        Decimal(doc["net_value"]),
        "EUR",
        len(doc["products"]),
        str(doc["customer_id"]),
        doc,
        status=status,
        printed=doc["notes"],
    )


__all__ = ["MoloniHarness"]

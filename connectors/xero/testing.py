"""Conformance harness of the Xero connector (see :mod:`connectors.testing`).

``tests/test_xero_conformance.py`` is one line: ``TestXeroConformance = make_conformance_tests(XeroHarness)``.
The emulator validates every request against the official OpenAPI spec when
``tests/specs/xero/xero_accounting.yaml`` (or ``$XERO_SPEC``) is present, and the harness fails a
test that sent a non-conforming request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
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
            # Xero's real 30-minute grace: the kit hands connectors fresh token stores seeded from the same
            # configured refresh token (single-flight within one store is still checked by refresh counts)
            refresh_grace_seconds=1800,
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
            # every rate the kit bills (the harness's 23 % and 0 %), as codes of the emulator's TaxRates table
            "tax_types": {"23": "OUTPUT2", "0": "EXEMPTOUTPUT"},
            **self.oauth_settings(),
        }

    def contact(self) -> tuple[str | None, str]:
        return CONTACT_ID, CONTACT_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        """Every invoice of the organisation; ``line_count`` counts priced lines (description-only lines, the
        legal notes, are text), ``printed`` is the ``Reference`` and the description-only lines, one a line."""
        return [_held(inv, inv["InvoiceID"], inv["InvoiceNumber"]) for inv in self.emulator.invoices(ORG)]

    def credit_notes(self) -> list[HeldInvoice]:
        """Every credit note of the organisation (``number`` = ``CreditNoteNumber``, ``total`` positive)."""
        return [_held(cn, cn["CreditNoteID"], cn["CreditNoteNumber"]) for cn in self.emulator.credit_notes(ORG)]

    # ------------------------------------------------------------------ lifecycle
    def mark_paid(self, external_id: str, amount: Decimal | None = None) -> None:
        """A payment recorded in Xero (what ``PUT /Payments`` does to the invoice)."""
        self.emulator.mark_paid(external_id, amount, ORG)

    def balance(self) -> Decimal:
        """``AmountDue`` of approved invoices minus unallocated credit (``RemainingCredit``) of credit notes."""
        return self.emulator.balance(ORG)

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """An approved invoice under ``invoice``'s number for its contact, one untaxed line of ``total``, made in
        Xero by hand: its ``Reference`` is the human reference alone (no marker)."""
        return self.emulator.add_invoice(
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": invoice.contact_id} if invoice.contact_id else {"Name": invoice.client_name},
                "Date": invoice.issue_date.isoformat(),
                "DueDate": invoice.due_date.isoformat(),
                "InvoiceNumber": invoice.invoice_number,
                "Reference": invoice.reference,
                "Status": "AUTHORISED",
                "LineItems": [{"Description": "Manual invoice", "Quantity": 1, "UnitAmount": total, "TaxType": "NONE"}],
            },
            ORG,
        )

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


def _held(doc: Mapping[str, Any], ident: str, number: str) -> HeldInvoice:
    """A stored invoice or credit note as the kit reads it."""
    lines = doc.get("LineItems") or []
    notes = [str(line.get("Description") or "") for line in lines if "Quantity" not in line]
    return HeldInvoice(
        external_id=ident,
        number=number,
        total=doc["Total"],
        currency=doc.get("CurrencyCode"),
        line_count=len(lines) - len(notes),
        contact=(doc.get("Contact") or {}).get("ContactID"),
        raw=doc,
        status=doc.get("Status"),
        printed="\n".join([str(doc.get("Reference") or ""), *notes]),
    )


__all__ = ["XeroHarness"]

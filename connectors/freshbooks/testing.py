"""Conformance harness of the FreshBooks connector (see :mod:`connectors.testing`).

``tests/test_freshbooks_conformance.py`` is one call: ``make_conformance_tests(FreshBooksHarness)``.
The emulator checks every request against the field reference ``tests/specs/freshbooks/openapi.yaml``
(community file, see :mod:`connectors.freshbooks.spec`) when it is present.

FreshBooks refresh tokens are single-use. The kit gives every connector it builds its own
in-memory token store, all seeded from the same environment variable — in production one tenant's
connectors share one token store, so the seed is spent once. The harness therefore lets a spent
refresh token live on for an hour (``refresh_grace_seconds``); single-flight refreshing is still
measured exactly (the kit counts refreshes), and ``tests/test_freshbooks_connector.py`` covers the
strict single-use behaviour.

Lifecycle hooks: :meth:`FreshBooksHarness.mark_paid` records a payment (the emulator's admin action),
:meth:`~FreshBooksHarness.balance` is the emulator's balance (outstanding of sent, active invoices minus
active credit notes), :meth:`~FreshBooksHarness.credit_notes` lists the active credit notes and
:meth:`~FreshBooksHarness.plant_foreign` stores a sent invoice without our marker in ``notes``.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.freshbooks.connector import FreshBooksConnector
from connectors.freshbooks.emulator import FreshBooksEmulator
from connectors.sdk.invoice import Invoice
from connectors.testing.emulated import OAuthEmulatorHarness
from connectors.testing.harness import HOSTILE_CASES, HeldInvoice

ACCOUNT = "CfAcct7"
UNKNOWN_ACCOUNT = "NoSuchAcct9"
CONTACT_ID = 31007
CONTACT_NAME = "Conformance Client, Lda"
#: A client id the account does not have: FreshBooks answers errno 1012 "Client not found.".
UNKNOWN_CLIENT_ID = "999999"
SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "freshbooks" / "openapi.yaml"


class FreshBooksHarness(OAuthEmulatorHarness[FreshBooksEmulator]):
    connector_cls = FreshBooksConnector
    hostile = dict.fromkeys(HOSTILE_CASES, "deliver")
    # FreshBooks records a payment on any invoice and marks it paid (support.freshbooks.com "How do I add, edit
    # or delete a payment?"); no refusal for drafts is documented, and the emulator records it too
    draft_payments_refused = False
    secret_prefix = "fb"
    client_secret_env = "FRESHBOOKS_CLIENT_SECRET"
    refresh_token_env = "FRESHBOOKS_REFRESH_TOKEN"
    invalid_requests = "requests not matching the FreshBooks field reference"
    spec_module = "connectors.freshbooks.spec"

    # ------------------------------------------------------------------ lifecycle
    def spec_file(self) -> Path:
        return SPEC

    def new_emulator(self) -> FreshBooksEmulator:
        return FreshBooksEmulator(
            account_ids=(ACCOUNT,),
            clients={CONTACT_ID: {"organization": CONTACT_NAME, "email": "ap@conformance.example"}},
            refresh_grace_seconds=3600,
            **self.emulator_options(),
        )

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        return {
            "api_url": self.emulator.url,
            "authorize_url": f"{self.emulator.url}/oauth/authorize",
            "account_id": ACCOUNT,
            **self.oauth_settings(),
            "tax_names": {"23": "IVA"},
        }

    def contact(self) -> tuple[str | None, str]:
        return str(CONTACT_ID), CONTACT_NAME

    # ------------------------------------------------------------------ read back
    @staticmethod
    def _printed(entity: dict[str, Any]) -> str:
        """``notes`` then ``terms``: the free texts FreshBooks prints on the document."""
        return "\n".join(text for text in (entity.get("notes"), entity.get("terms")) if text)

    def invoices(self) -> list[HeldInvoice]:
        """The active invoices (deleted ones left out, as FreshBooks lists them); ``status`` is ``v3_status``."""
        return [
            HeldInvoice(
                external_id=str(inv["invoiceid"]),
                number=inv["invoice_number"],
                total=Decimal(inv["amount"]["amount"]),
                currency=inv.get("currency_code"),
                line_count=len(inv.get("lines") or []),
                contact=str(inv["customerid"]),
                raw=inv,
                status=inv["v3_status"],
                printed=self._printed(inv),
            )
            for inv in self.emulator.invoices(ACCOUNT, include_deleted=False)
        ]

    # ------------------------------------------------------------------ lifecycle
    def mark_paid(self, external_id: str, amount: Decimal | None = None) -> None:
        """A payment of ``amount`` (``None``: all that is outstanding) on invoice ``external_id``."""
        self.emulator.pay(ACCOUNT, external_id, amount)

    def balance(self) -> Decimal:
        """Σ ``outstanding`` of the account's sent, active invoices − Σ ``amount`` of its active credit notes."""
        return self.emulator.balance(ACCOUNT)

    def credit_notes(self) -> list[HeldInvoice]:
        """The account's active credit notes (``number``: ``credit_number``, ``total``: ``amount``)."""
        return [
            HeldInvoice(
                external_id=str(note["creditid"]),
                number=note["credit_number"],
                total=Decimal(note["amount"]["amount"]),
                currency=note.get("currency_code"),
                line_count=len(note.get("lines") or []),
                contact=str(note["clientid"]),
                raw=note,
                status=note["display_status"],
                printed=self._printed(note),
            )
            for note in self.emulator.credit_notes(ACCOUNT, include_deleted=False)
        ]

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """A sent invoice under ``invoice``'s number for its client: one untaxed line of ``total``, ``notes``
        without our marker (as typed in FreshBooks' UI)."""
        line = {"name": "Service", "qty": 1, "unit_cost": {"amount": format(total, "f"), "code": invoice.currency}}
        doc = {
            "customerid": int(invoice.contact_id or CONTACT_ID),
            "create_date": invoice.issue_date.isoformat(),
            "invoice_number": invoice.invoice_number,
            "currency_code": invoice.currency,
            "notes": "typed by hand",
            "lines": [line],
        }
        return str(self.emulator.plant_invoice(ACCOUNT, doc)["invoiceid"])

    # ------------------------------------------------------------------ data (faults: OAuthEmulatorHarness)
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """A client id the account does not have: FreshBooks' errno 1012 "Client not found."."""
        return invoice.model_copy(update={"contact_id": UNKNOWN_CLIENT_ID})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"account_id": UNKNOWN_ACCOUNT}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_contacts": allow}


__all__ = ["FreshBooksHarness"]

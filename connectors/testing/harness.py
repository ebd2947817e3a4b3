"""The harness a plugin author writes so the conformance kit can drive a connector and its emulator.

Subclass :class:`ConnectorHarness`, set ``connector_cls``, implement the methods marked
*required*, and the fault hooks your emulator supports. A hook left unimplemented raises
``NotImplementedError``; the scenarios that need it then fail unless ``skip`` gives a reason.
See ``docs/connectors.md`` and ``tests/plugins/example_connector`` for a complete example; a harness of an
emulator built on the sandbox kit starts from :mod:`connectors.testing.emulated` (``connectors/xero/testing.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal

from connectors.sdk.interface import Connector
from connectors.sdk.invoice import Invoice

HostileExpectation = Literal["deliver", "reject", "either"]
#: The hostile invoices the kit sends, the keys of ``ConnectorHarness.hostile``; a system that takes every
#: one of them declares ``hostile = dict.fromkeys(HOSTILE_CASES, "deliver")``.
HOSTILE_CASES: tuple[str, ...] = (
    "long_description",
    "non_ascii",
    "many_lines",
    "zero_amount_line",
    "negative_line",
    "odd_number",
)


@dataclass(frozen=True)
class HeldInvoice:
    """An invoice as the emulator holds it.

    ``number`` is **our** invoice number as the billing system keeps it: its number field, or the
    reference field where the system numbers documents itself (Moloni, InvoiceXpress, Stripe).
    For a credit note (:meth:`ConnectorHarness.credit_notes`) ``total`` is positive.
    ``total`` is the system's own total as :class:`Decimal` (not ours echoed back).
    """

    external_id: str
    number: str
    total: Decimal
    currency: str | None = None
    line_count: int | None = None
    contact: str | None = None
    raw: Any = None
    #: The system's own status word (``AUTHORISED``, ``void``, ``closed``...), for messages and docs.
    status: str | None = None
    #: The free text the system prints on the document (notes, terms, footer, memo, observations),
    #: joined; the kit looks for the invoice's legal notes there (``None``: not read back).
    printed: str | None = None


class ConnectorHarness:
    """How the kit starts an emulator, configures the connector, reads invoices back and injects faults.

    Class attributes:

    * ``connector_cls`` (required) — the :class:`~connectors.sdk.interface.Connector` subclass under test.
    * ``skip`` — ``{scenario: reason}`` for scenarios the system cannot support (see
      :data:`connectors.testing.SCENARIOS`); an empty reason or an unknown scenario is an error.
    * ``hostile`` — per hostile case (``long_description``, ``non_ascii``, ``many_lines``,
      ``zero_amount_line``, ``negative_line``, ``odd_number``): ``"deliver"`` (must be created
      with the exact total), ``"reject"`` (must raise :class:`~connectors.sdk.errors.PermanentError`
      before or at the billing system) or ``"either"`` (default).
    * ``draft_payments_refused`` — the system refuses a payment on a draft (default ``True``).
    * ``tenant``, ``currency`` (2-decimal currencies only), ``tax_rate`` (a non-zero rate the
      emulator knows; 0 % must be known too), ``fast_timeout`` (``timeout_seconds`` for the
      timeout scenarios; the emulator must hold a timed-out response longer than that).

    The kit calls ``start()`` once per test class, ``reset()`` before every test and ``stop()`` at
    the end; environment variables from ``env()`` are set for each test.
    """

    connector_cls: ClassVar[type[Connector]]
    skip: ClassVar[Mapping[str, str]] = {}
    hostile: ClassVar[Mapping[str, HostileExpectation]] = {}
    tenant: ClassVar[str] = "conformance"
    currency: ClassVar[str] = "EUR"
    tax_rate: ClassVar[Decimal] = Decimal("23")
    fast_timeout: ClassVar[float] = 0.5
    #: The system refuses a payment on a draft invoice (Xero: "Payments can only be made against Authorised
    #: documents"); the kit's ``draft`` scenario then checks that :meth:`mark_paid` of a draft raises and
    #: changes nothing. ``False`` for a system that records it (FreshBooks marks the draft paid).
    draft_payments_refused: ClassVar[bool] = True

    # ------------------------------------------------------------------ lifecycle (required)
    def start(self) -> None:
        """Start the emulator on loopback (``127.0.0.1``, a free port)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the emulator and release its port."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget invoices, contacts created by tests, pending faults, rate windows and idempotency
        keys; restore seeded data. Issued tokens may survive."""
        raise NotImplementedError

    # ------------------------------------------------------------------ configuration (required)
    def settings(self) -> dict[str, Any]:
        """Raw ``billing.settings`` pointing at the emulator — names of secret variables, never secrets."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment variables holding the secrets those settings name (every value is a secret)."""
        raise NotImplementedError

    def contact(self) -> tuple[str | None, str]:
        """``(contact_id, client_name)`` of a customer that exists in the emulator (seeded).

        ``contact_id`` may be ``None`` when the system addresses customers by name only.
        """
        return None, "Conformance Client, Lda"

    # ------------------------------------------------------------------ read back (required)
    def invoices(self) -> list[HeldInvoice]:
        """Every invoice the emulator holds for the tenant's account."""
        raise NotImplementedError

    # ------------------------------------------------------------------ faults (optional; else skip with a reason)
    def inject_rate_limit(self, retry_after: int = 1) -> None:
        """The next API call is answered 429 with ``Retry-After: retry_after``."""
        raise NotImplementedError

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        """The next ``times`` API calls are answered ``status`` without being processed."""
        raise NotImplementedError

    def inject_timeout_after_commit(self) -> None:
        """The next create call is processed (the invoice is stored) but its response never arrives
        within ``fast_timeout`` (held open, then closed)."""
        raise NotImplementedError

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired now (OAuth2 connectors)."""
        raise NotImplementedError

    def refresh_count(self) -> int:
        """Token refreshes the emulator has served so far (cumulative; the kit uses differences)."""
        raise NotImplementedError

    def expire_idempotency_keys(self) -> None:
        """Forget the native idempotency keys (as after the system's window), so a repeat reaches the
        uniqueness check (connectors with ``native_idempotency``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ data (optional; else skip with a reason)
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """A variant of ``invoice`` that passes the connector's own checks but that the billing system
        rejects with a validation error (unknown account code, unknown item, unknown customer...)."""
        raise NotImplementedError

    def unknown_account_settings(self) -> dict[str, Any]:
        """Settings overrides naming an organisation/company the credentials cannot reach."""
        raise NotImplementedError

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        """Settings overrides that allow or forbid creating a missing contact/customer."""
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle (optional; else skip with a reason)
    def mark_paid(self, external_id: str, amount: Decimal | None = None) -> None:
        """Record a payment of ``amount`` (``None``: everything due) on invoice ``external_id``, as the
        system does when the customer pays (an admin action of the emulator). Raises ``ValueError`` when the
        system refuses the payment (a draft, a void invoice, more than is due)."""
        raise NotImplementedError

    def balance(self) -> Decimal:
        """What the tenant's customers owe, as the billing system computes it: the amounts due on open
        invoices minus credit not yet used (unapplied credit notes, customer credit balance). Voided,
        deleted and cancelled documents count zero; a payment reduces what is due."""
        raise NotImplementedError

    def credit_notes(self) -> list[HeldInvoice]:
        """Every credit note the emulator holds for the tenant (``number``: its number or reference)."""
        raise NotImplementedError

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """Create, as someone outside the broker would, a document for ``invoice``'s customer under
        ``invoice``'s number (its reference, where the system numbers documents itself) with ``total``
        and without our marker, finished as far as the connector would finish ours; its id."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checks (optional)
    def issued_secrets(self) -> list[str]:
        """Secrets the emulator issued (access/refresh tokens), checked for leaks with ``env()`` values."""
        return []

    def assert_healthy(self) -> None:
        """Called after every test: fail when the emulator saw something wrong (spec-invalid request,
        emulator crash). Default: nothing to check."""


__all__ = ["HOSTILE_CASES", "ConnectorHarness", "HeldInvoice", "HostileExpectation"]

"""What every billing system's payment source provides, and the state it reports.

A :class:`PaymentSource` wraps one tenant's connector (its HTTP client, auth and error taxonomy are
reused as they are) and adds what payments need:

* **webhook systems** (``webhooks = True``): :meth:`PaymentSource.verify` checks a webhook over its raw
  body exactly as the system signs it (raises :class:`WebhookRefused`: 401, nothing else happens), and
  :meth:`PaymentSource.invoice_ids` reads which invoices it is about. Webhooks are only ever taken as
  "something changed": the state is always read back with :meth:`PaymentSource.fetch`, so a webhook
  that carries only ids (Xero), one that arrives late or out of order (Stripe) and a redelivery all
  end in the same read of the current state;
* **polled systems** (``webhooks = False``): :meth:`PaymentSource.poll` returns the invoices changed
  since a cursor, and the next cursor.

Both give :class:`InvoiceState` values; :mod:`broker.payments.recorder` turns a state that differs from
the last one published into one CloudEvent on ``billing.payments``.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from connectors.sdk.interface import Connector

__all__ = [
    "InvoiceState",
    "PaymentSource",
    "PaymentStatus",
    "Webhook",
    "WebhookRefused",
    "hmac_sha256",
    "same_signature",
]

#: What the billing system says of an invoice: ``open`` (nothing paid), ``partially_paid``, ``paid``,
#: ``voided``. Only the last three become records.
PaymentStatus = Literal["open", "partially_paid", "paid", "voided"]


@dataclass(frozen=True)
class Webhook:
    """One received webhook: ``headers`` (names lower-cased) and the ``body`` bytes exactly as received."""

    headers: Mapping[str, str]
    body: bytes


class WebhookRefused(Exception):  # noqa: N818 - the name says what happens to the webhook
    """A webhook that does not prove it comes from the billing system: answered 401, nothing published.

    ``reason``: the metrics label (``bad_signature``: missing, malformed or wrong signature; ``stale``:
    a signed timestamp outside the tolerance); the message says what was wrong, never the secret.
    """

    def __init__(self, reason: Literal["bad_signature", "stale"], detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class InvoiceState:
    """An invoice as the billing system holds it now, in the broker's terms.

    ``external_id``: its id there; ``invoice_number``: our number as the document carries it (``None``:
    unknown); ``invoice_key``: the broker's invoice key from our ownership marker
    (:func:`connectors.sdk.lifecycle.read_marker`; ``None``: not a document the broker created, ignored);
    amounts as :class:`~decimal.Decimal` in ``currency`` (ISO 4217, upper case): ``total``,
    ``amount_paid`` (paid so far), ``amount_due`` (still due); ``status``; ``changed_at``: when the
    system says it last changed (timezone-aware; ``None``: it does not say, the record then carries now).
    """

    external_id: str
    invoice_number: str | None
    invoice_key: str | None
    currency: str
    total: Decimal
    amount_paid: Decimal
    amount_due: Decimal
    status: PaymentStatus
    changed_at: datetime | None = None


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of ``message`` under ``secret`` (the digest bytes; every scheme here is built on it)."""
    return hmac.new(secret, message, hashlib.sha256).digest()


def same_signature(expected: str, given: str) -> bool:
    """Whether ``given`` equals ``expected``, compared in constant time."""
    return hmac.compare_digest(expected.encode(), given.encode())


class PaymentSource(abc.ABC):
    """One tenant's payment source on one billing system (module docstring).

    ``PaymentSource(connector, *, secret=None, tolerance=300.0)``: ``connector`` is the tenant's
    connector (its client and auth are used for every read); ``secret``: what signs the system's
    webhooks (bytes; required when ``webhooks``); ``tolerance``: seconds a signed timestamp may be from
    now. Subclasses set ``system`` (the connector's name), ``webhooks`` and, for the webhook answer,
    ``empty_ack`` (Xero wants an empty 200 body). ``requests_per_minute``: the pace of this source's
    API reads (``None``: the connector's declared ``rate_limit_per_minute``).
    """

    system: ClassVar[str]
    webhooks: ClassVar[bool]
    empty_ack: ClassVar[bool] = False

    def __init__(self, connector: Connector, *, secret: bytes | None = None, tolerance: float = 300.0):
        if self.webhooks and not secret:
            raise ValueError(f"{self.system}: webhooks need the signing secret")
        self.connector = connector
        self.secret = secret or b""
        self.tolerance = tolerance

    @property
    def tenant(self) -> str:
        """The broker tenant this source serves."""
        return self.connector.tenant

    @property
    def requests_per_minute(self) -> int | None:
        """API reads per minute this source keeps to (the connector's declared per-tenant limit)."""
        return self.connector.capabilities.rate_limit_per_minute

    def verify(self, hook: Webhook, now: float) -> None:  # noqa: ARG002 - the signature every source keeps
        """Raise :class:`WebhookRefused` unless ``hook`` is signed by the system (``now``: unix seconds).
        Default: the system has no webhooks, every one is refused."""
        raise WebhookRefused("bad_signature", f"{self.system} sends no webhooks")

    def invoice_ids(self, payload: Any) -> list[str]:  # noqa: ARG002 - the signature every source keeps
        """The ids (in the billing system) of the invoices a verified webhook's JSON ``payload`` is about,
        in order, without repeats; ``[]`` when it is about none (another kind of event, an intent-to-receive
        check). Raises ``ValueError`` naming what is unreadable."""
        return []

    @abc.abstractmethod
    async def fetch(self, external_id: str) -> InvoiceState | None:
        """The invoice ``external_id`` as the system holds it now (``None``: absent, or not a sales invoice).
        Raises the connector's :class:`~connectors.sdk.errors.ConnectorError` s."""

    async def poll(self, cursor: str | None) -> tuple[list[InvoiceState], str | None]:
        """The invoices changed since ``cursor`` (``None``: since ever) and the next cursor. Only for
        systems without webhooks; the default has nothing to poll."""
        return [], cursor

    def resume_cursor(self, last_change: datetime | None) -> str | None:  # noqa: ARG002 - the signature every source keeps
        """The cursor a first :meth:`poll` starts from when ``last_change`` is the ``time`` of the latest record
        already published for this tenant and system (``None``: none). Default: ``None``, from the start."""
        return None

    async def aclose(self) -> None:
        """Close the connector's HTTP client."""
        await self.connector.aclose()

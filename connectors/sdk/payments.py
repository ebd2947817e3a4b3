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

Hooks for schemes that need more than a local check: :meth:`PaymentSource.authenticate` (async; PayPal
asks PayPal's verify API), :meth:`PaymentSource.parse` (FreshBooks posts form fields, not JSON) and
:meth:`PaymentSource.invoices_of` (async; QuickBooks and FreshBooks name payments, whose invoices are read
first). Every API read of a source waits for :meth:`PaymentSource.paced` (the tenant's requests per minute).

Where a connector has one, its source lives beside it in ``connectors/<system>/payments.py`` with
``PAYMENT_SOURCE = <the class>``; the broker finds it through the registry
(:func:`connectors.registry.payment_source_class`), like the connector itself.

Both give :class:`InvoiceState` values; :mod:`broker.payments.recorder` turns a state that differs from
the last one published into one CloudEvent on ``billing.payments``.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from connectors.sdk.http import Pacer
from connectors.sdk.interface import Connector

__all__ = [
    "InvoiceState",
    "PaymentSource",
    "PaymentStatus",
    "ReadMemo",
    "Webhook",
    "WebhookRefused",
    "base64_hmac",
    "hmac_sha256",
    "iso_time",
    "payment_status",
    "require_signature",
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

    @classmethod
    def read(
        cls,
        ids: tuple[str, str | None, str | None],
        currency: str,
        total: Decimal,
        paid: Decimal,
        due: Decimal | None = None,
        *,
        voided: bool = False,
        changed_at: datetime | None = None,
    ) -> InvoiceState:
        """The state of an invoice read from a system: ``ids`` = ``(external id, invoice number, invoice
        key)``, ``currency`` (upper-cased here), ``total`` and ``paid`` (Decimals), ``due`` (``None``: ``total
        − paid``), ``voided`` as the system says; the status follows (:func:`payment_status`)."""
        owed = total - paid if due is None else due
        status = payment_status(paid, owed, voided=voided)
        return cls(*ids, currency.upper(), total, paid, owed, status, changed_at)


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of ``message`` under ``secret`` (the digest bytes; every scheme here is built on it)."""
    return hmac.new(secret, message, hashlib.sha256).digest()


def same_signature(expected: str, given: str) -> bool:
    """Whether ``given`` equals ``expected``, compared in constant time."""
    return hmac.compare_digest(expected.encode(), given.encode())


def base64_hmac(secret: bytes, message: bytes) -> str:
    """Base64 of HMAC-SHA256(``secret``, ``message``): Xero's, QuickBooks' and FreshBooks' signature form."""
    return base64.b64encode(hmac_sha256(secret, message)).decode()


def require_signature(hook: Webhook, header: str, expected: str, what: str = "the body") -> None:
    """Raise :class:`WebhookRefused` (``bad_signature``) unless header ``header`` (lower case) of ``hook`` is
    ``expected`` (surrounding blanks ignored, compared in constant time); ``what``: what it signs, for the
    message."""
    given = hook.headers.get(header)
    if not given:
        raise WebhookRefused("bad_signature", f"header '{header}' is missing")
    if not same_signature(expected, given.strip()):
        raise WebhookRefused("bad_signature", f"header '{header}' does not match {what}")


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time with an offset (``2026-03-02T10:00:00Z``, ``…+00:00``, ``…-0800``, milliseconds
    allowed) as an aware datetime; ``None`` when absent, unreadable or without an offset."""
    try:
        found = datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None
    return found if found is not None and found.tzinfo is not None else None


def payment_status(paid: Decimal, due: Decimal, *, voided: bool = False) -> PaymentStatus:
    """The broker's status of an invoice with ``paid`` received and ``due`` still owed (both
    :class:`~decimal.Decimal` in the invoice's currency): ``voided`` when the system says so, ``paid``
    when something was received and nothing is due, ``partially_paid`` when both, else ``open``."""
    if voided:
        return "voided"
    if paid > 0:
        return "paid" if due <= 0 else "partially_paid"
    return "open"


class ReadMemo:
    """What a polled source already read, so that a poll re-reading unchanged rows costs no further call.

    ``version`` is whatever shows a row changed (a modification time, a status, a balance). A version
    noted during a poll (:meth:`note`) only counts once the service confirmed that every state of that
    poll was recorded (:meth:`confirm`): a record Kafka refused is read and offered again."""

    def __init__(self) -> None:
        self._read: dict[str, Any] = {}
        self._unconfirmed: dict[str, Any] = {}

    def start(self) -> None:
        """A new poll: what the previous one noted and was not confirmed is forgotten."""
        self._unconfirmed = {}

    def fresh(self, ident: str, version: Any) -> bool:
        """Whether row ``ident`` at ``version`` was not read and recorded yet."""
        return bool(self._read.get(ident) != version)

    def note(self, ident: str, version: Any) -> None:
        """Row ``ident`` was read at ``version`` during this poll."""
        self._unconfirmed[ident] = version

    def confirm(self) -> None:
        """Every state of this poll was recorded: its rows count as read."""
        self._read.update(self._unconfirmed)
        self._unconfirmed = {}


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
        #: The pace of this tenant's reads (``None``: unlimited); :meth:`paced` waits for it.
        self.pace: Pacer | None = Pacer(self.requests_per_minute, 60.0) if self.requests_per_minute else None
        #: Polled sources: the rows already read (:class:`ReadMemo`).
        self.memo = ReadMemo()

    @property
    def tenant(self) -> str:
        """The broker tenant this source serves."""
        return self.connector.tenant

    @property
    def requests_per_minute(self) -> int | None:
        """API reads per minute this source keeps to (the connector's declared per-tenant limit)."""
        return self.connector.capabilities.rate_limit_per_minute

    async def paced(self) -> None:
        """Return when one more API read keeps within :attr:`pace` (at once when unlimited), counting it."""
        if self.pace is not None:
            await self.pace.wait()

    def verify(self, hook: Webhook, now: float) -> None:  # noqa: ARG002 - the signature every source keeps
        """Raise :class:`WebhookRefused` unless ``hook`` is signed by the system (``now``: unix seconds).
        Default: the system has no webhooks, every one is refused."""
        raise WebhookRefused("bad_signature", f"{self.system} sends no webhooks")

    async def authenticate(self, hook: Webhook, now: float) -> None:
        """What the service calls: :meth:`verify` (a local check of the signature). Sources whose scheme
        needs the billing system's word (PayPal) override it; they raise :class:`WebhookRefused` as
        :meth:`verify` does, and the connector's :class:`~connectors.sdk.errors.ConnectorError` s when the
        system could not answer (the service answers 503: the webhook is delivered again)."""
        self.verify(hook, now)

    def parse(self, body: bytes) -> Any:
        """A verified body as the system sends it: JSON (fractions as :class:`~decimal.Decimal`) by default.
        Raises ``ValueError`` naming what is unreadable (the service answers 422)."""
        try:
            return json.loads(body.decode("utf-8").removeprefix("\ufeff"), parse_float=Decimal)
        except UnicodeDecodeError as exc:
            raise ValueError(f"the body is not JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"the body is not JSON: {str(exc)[:200]}") from None

    async def invoices_of(self, payload: Any) -> list[str]:
        """The invoices a parsed webhook is about: :meth:`invoice_ids` by default. Sources whose webhooks
        name other objects (payments) read them here (after :meth:`paced`). Raises ``ValueError`` (422) and
        the connector's errors (503)."""
        return self.invoice_ids(payload)

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

    def confirm(self) -> None:
        """Called by the service once every state of the last :meth:`poll` was recorded (Kafka acknowledged):
        :meth:`ReadMemo.confirm` of :attr:`memo`."""
        self.memo.confirm()

    def resume_cursor(self, last_change: datetime | None) -> str | None:  # noqa: ARG002 - the signature every source keeps
        """The cursor a first :meth:`poll` starts from when ``last_change`` is the ``time`` of the latest record
        already published for this tenant and system (``None``: none). Default: ``None``, from the start."""
        return None

    async def aclose(self) -> None:
        """Close the connector's HTTP client."""
        await self.connector.aclose()

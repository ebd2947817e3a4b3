"""The interface every billing-system connector implements, and its results.

A connector turns a :class:`connectors.sdk.invoice.Invoice` into an invoice in one billing system.
It is constructed from the tenant's settings (a pydantic model the connector declares, see
:class:`ConnectorSettings`) and must be safe to call again with the same invoice: a second
:meth:`Connector.deliver` of an invoice that already exists returns the existing id instead of
creating a duplicate (``created=False`` when the connector can tell; a native idempotency replay
may still say ``created=True`` — callers never rely on the flag for correctness).

Errors a connector raises are subclasses of :class:`ConnectorError`; the ``deliver`` agent
decides what to do by class (retry, wait, dead-letter), never by parsing messages.

The whole contract for plugin authors (interface, settings, errors, emulator, conformance kit,
entry point) is walked through in ``docs/connectors.md``.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, SecretStr

from connectors.sdk.errors import AuthError, ConfigError, ConnectorError, PermanentError, RateLimitedError
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import Retirement, credit_note_number
from connectors.sdk.settings import (
    ConnectorSettings,
    resolve_secret,
    secret_env_fields,
    secret_str_fields,
    validate_settings,
)
from connectors.sdk.tax import VatRate, VatTreatment, unmapped_rates

if TYPE_CHECKING:
    from connectors.sdk.oauth2 import OAuth2Config, TokenStore


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class DeliveryResult:
    """Result of delivering one invoice: ``created`` is False when it already existed."""

    invoice_key: str
    external_id: str
    external_number: str
    created: bool
    attempts: int = 1
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchItem:
    """Outcome of one invoice of :meth:`Connector.deliver_many`: exactly one of ``result`` / ``error``."""

    invoice_key: str
    result: DeliveryResult | None = None
    error: ConnectorError | None = None

    def __post_init__(self) -> None:
        if (self.result is None) == (self.error is None):
            raise ValueError("BatchItem needs exactly one of result and error")

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do, declared by the class.

    ``native_idempotency``: the API honours an idempotency key; ``lookup_by_reference``: we can
    find an invoice by our number/reference; ``batch_size``: invoices per create call (1 = no
    batch endpoint; :meth:`Connector.deliver_many` then loops); ``amendments``: :meth:`Connector.retire`
    is implemented, so delivered invoices can be replaced (:meth:`Connector.amend`) and cancelled
    (:meth:`Connector.cancel`); ``oauth2``: the connector authenticates with OAuth2 refresh tokens (it supports
    ``broker connectors authorize`` and the kit's token-refresh scenario); ``rate_limit_per_minute`` /
    ``max_concurrency`` / ``daily_limit``: the billing system's documented limits per tenant.

    ``invoice_number_max``: the most characters the field that carries our invoice number holds
    (``None``: no limit known); ``credit_note_number_max``: the same for the field that carries a
    credit note's number :func:`~connectors.sdk.lifecycle.credit_note_number` (``<number>-CN``) as it
    is (``None``: the system issues no credit notes under our number, or the connector shortens that
    number itself). The broker keeps its invoice numbers within :attr:`invoice_number_limit`; cite the
    source of each limit where the connector declares it.

    ``drafts``: the system has draft invoices (not yet issued, no receivable, deleted rather than voided)
    and the connector posts an :class:`~connectors.sdk.invoice.Invoice` with ``draft=True`` as one,
    leaving it for a person to finalise there; its :meth:`Connector.retire` deletes a document that is
    still a draft. ``False`` (QuickBooks Online: an invoice is an open receivable once created) makes a
    tenant or client with ``approval: draft`` a configuration error. Cite the system's draft status
    where the connector declares it (``docs/connectors.md``, "Drafts").
    """

    native_idempotency: bool = False
    lookup_by_reference: bool = True
    batch_size: int = 1
    amendments: bool = False
    oauth2: bool = False
    rate_limit_per_minute: int | None = None
    max_concurrency: int | None = None
    daily_limit: int | None = None
    invoice_number_max: int | None = None
    credit_note_number_max: int | None = None
    drafts: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def invoice_number_limit(self) -> int | None:
        """Longest invoice number the system takes, credit notes included (characters; ``None``: no limit).

        ``invoice_number_max``, lowered so that ``<number>-CN`` fits ``credit_note_number_max``:
        ``Capabilities(invoice_number_max=255, credit_note_number_max=50).invoice_number_limit == 47``.
        """
        limits = [self.invoice_number_max]
        if self.credit_note_number_max is not None:
            limits.append(self.credit_note_number_max - len(credit_note_number("")))
        known = [limit for limit in limits if limit is not None]
        return min(known) if known else None

    @property
    def idempotency(self) -> str:
        """``native key + lookup``, ``native key``, ``lookup`` or ``none`` (for listings)."""
        parts = [p for p, on in (("native key", self.native_idempotency), ("lookup", self.lookup_by_reference)) if on]
        return " + ".join(parts) or "none"


def settings_json_schema(connector_cls: type[Connector]) -> dict[str, Any]:
    """JSON Schema of ``connector_cls.Settings`` for docs (``broker connectors schema NAME``).

    ``*_env`` fields are marked ``"x-secret-env": true`` (the value is an environment variable
    name, never the secret); :class:`SecretStr` fields carry pydantic's ``writeOnly``/``password``.
    """
    schema = connector_cls.Settings.model_json_schema()
    schema["$id"] = f"broker.connectors/{connector_cls.name}/settings"
    schema.setdefault("title", f"{connector_cls.__name__} settings")
    schema["x-connector"] = {
        "name": connector_cls.name,
        "version": connector_cls.version,
        "capabilities": connector_cls.capabilities.as_dict(),
    }
    props = schema.get("properties", {})
    for name in secret_env_fields(connector_cls.Settings):
        if name in props:
            props[name]["x-secret-env"] = True
            props[name].setdefault("description", "Name of the environment variable holding the secret.")
    return schema


class Connector(abc.ABC):
    """A billing-system client. Subclasses set ``name``, ``version``, ``capabilities`` and ``Settings``.

    Lifecycle: ``Connector(settings, tenant=..., token_store=None)`` -> ``await check()`` (optional)
    -> ``await deliver(invoice)`` / ``await deliver_many(invoices)`` many times -> ``await aclose()``.
    One instance serves one tenant and may be used from successive event loops.

    Must implement: :meth:`check`, :meth:`deliver`, :meth:`find`. May override:
    :meth:`deliver_many` (real batch endpoint), :meth:`retire` (``capabilities.amendments``;
    :meth:`amend` and :meth:`cancel` build on it),
    :meth:`oauth2_config` (``capabilities.oauth2``), :meth:`aclose`.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[Capabilities] = Capabilities()
    Settings: ClassVar[type[BaseModel]]

    def __init__(self, settings: BaseModel | Mapping[str, Any], *, tenant: str, token_store: TokenStore | None = None):
        """``settings``: a ``Settings`` instance or a raw mapping (validated; :class:`ConfigError`
        naming ``billing.settings.<field>`` when invalid). ``token_store``: where OAuth2 tokens are
        kept (``None`` = :func:`connectors.sdk.oauth2.default_token_store`, used lazily)."""
        self.settings = self.validate_settings(settings)
        self.tenant = tenant
        self.token_store = token_store
        #: The tenant's ``clients`` (our client id -> ``broker.config.Client``) for contact lookups by
        #: tax number / e-mail (:mod:`connectors.sdk.contacts`); the host sets it, empty by default.
        self.clients: dict[str, Any] = {}

    # ------------------------------------------------------------------ settings
    @classmethod
    def validate_settings(cls, raw: BaseModel | Mapping[str, Any], *, prefix: str = "billing.settings") -> BaseModel:
        """``raw`` as a ``cls.Settings`` instance; :class:`ConfigError` naming each bad field path and value."""
        return validate_settings(cls.Settings, raw, label=cls.name, prefix=prefix)

    @classmethod
    def required_tax_mapping(cls, settings: BaseModel | Mapping[str, Any], rates: Sequence[VatRate]) -> list[str]:
        """What ``settings`` lack to bill ``rates`` in this system: one message per unmapped rate, naming
        the rate (:attr:`VatRate.label`) and the settings field to fill; empty when every rate maps.

        The broker calls it for each tenant when it loads its configuration and refuses the
        configuration (exit status 2) on any message, so a rate never falls back to a wrong code. The
        mapper still refuses an unmapped line (a rate only an event carries). Default: the settings'
        :meth:`ConnectorSettings.tax_mapping_problems <connectors.sdk.settings.ConnectorSettings.tax_mapping_problems>`
        (``[]`` there: the system takes our rate and tax amount as they are, no code needed).
        Raises :class:`ConfigError` when ``settings`` are invalid.
        """
        validated = cls.validate_settings(settings)
        return validated.tax_mapping_problems(rates) if isinstance(validated, ConnectorSettings) else []

    @classmethod
    def settings_schema(cls) -> dict[str, Any]:
        """JSON Schema of the settings (see :func:`settings_json_schema`)."""
        return settings_json_schema(cls)

    def secret(self, field_name: str) -> SecretStr:
        """The secret held in the environment variable named by settings field ``field_name`` (``*_env``).

        Raises :class:`ConfigError` naming the variable and ``billing.settings.<field_name>`` when it is
        unset or empty. Call it when the secret is first needed, not in ``__init__``.
        """
        return resolve_secret(str(getattr(self.settings, field_name)), field=f"billing.settings.{field_name}")

    def secret_values(self) -> list[str]:
        """Every secret value this connector may hold (for scrubbing messages).

        Default: the values of the environment variables named by ``*_env`` settings and of
        ``SecretStr`` settings. Connectors holding tokens add them (see ``XeroConnector``).
        """
        values: list[str] = []
        for name in secret_env_fields(type(self.settings)):
            env_name = getattr(self.settings, name, None)
            value = os.environ.get(env_name) if isinstance(env_name, str) else None
            if value:
                values.append(value)
        for name in secret_str_fields(type(self.settings)):
            secret = getattr(self.settings, name, None)
            if isinstance(secret, SecretStr) and secret.get_secret_value():
                values.append(secret.get_secret_value())
        return values

    def scrub(self, text: str) -> str:
        """``text`` with every value of :meth:`secret_values` replaced by ``***``."""
        for value in sorted(self.secret_values(), key=len, reverse=True):
            if value and len(value) >= 4 and value in text:
                text = text.replace(value, "***")
        return text

    # ------------------------------------------------------------------ the interface
    @abc.abstractmethod
    async def check(self) -> None:
        """Call the cheapest authenticated endpoint; raise what is wrong.

        :class:`AuthError` (bad credentials), :class:`MissingScopeError` (missing permission),
        :class:`UnknownAccountError` (organisation/company not reachable), :class:`ConfigError`
        (settings / missing secret variable), :class:`RetryableError` (unreachable).
        """

    @abc.abstractmethod
    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` unless it exists; return its id. Raises :class:`ConnectorError`."""

    async def deliver_many(self, invoices: Sequence[Invoice]) -> list[BatchItem]:
        """Deliver several invoices; one :class:`BatchItem` per invoice, in input order. Never raises
        :class:`ConnectorError` for an item: its error is in the item.

        Default: one :meth:`deliver` per invoice. After a :class:`RateLimitedError`,
        :class:`AuthError` or :class:`ConfigError` the remaining invoices are not attempted and get
        the same error. Connectors with a batch endpoint (``capabilities.batch_size > 1``)
        override it, sending at most ``batch_size`` invoices per call.
        """
        items: list[BatchItem] = []
        stop: ConnectorError | None = None
        for invoice in invoices:
            if stop is not None:
                items.append(BatchItem(invoice.invoice_key, error=stop))
                continue
            try:
                items.append(BatchItem(invoice.invoice_key, result=await self.deliver(invoice)))
            except (RateLimitedError, AuthError, ConfigError) as exc:
                stop = exc
                items.append(BatchItem(invoice.invoice_key, error=exc))
            except ConnectorError as exc:
                items.append(BatchItem(invoice.invoice_key, error=exc))
        return items

    @abc.abstractmethod
    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """Look up an invoice by our invoice number / reference; ``None`` when absent."""

    async def retire(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:  # noqa: ARG002
        """Take ``previous`` (a document we delivered) out of the customer's balance, by the system's rules.

        The lifecycle primitive behind :meth:`amend` and :meth:`cancel` (:mod:`connectors.sdk.lifecycle`,
        table in ``docs/connectors.md``): re-read the document; a draft is deleted, an unpaid
        document voided where the system allows it, otherwise (finalised documents that cannot be
        voided, any document with a payment) a credit note for its whole total is issued, numbered
        :func:`~connectors.sdk.lifecycle.credit_note_number` and looked up before it is created. A
        document already retired, or absent, gives ``action="none"``. Must be idempotent: calling it
        again after any crash changes nothing more.

        ``key``: the invoice key of the record that asks (the new revision's, or the cancellation's),
        for idempotency keys; ``reason``: text for the credit note or the void reason; ``issued``:
        the credit note's date. Only when ``capabilities.amendments``; the default raises
        :class:`PermanentError`.
        """
        raise PermanentError(f"{self.name} connector cannot retire invoices (invoice {previous.number})")

    async def amend(self, invoice: Invoice, previous: ExternalInvoice) -> DeliveryResult:
        """Replace ``previous`` (an earlier version of the same document, already delivered) by ``invoice``.

        Default: :meth:`retire` ``previous``, then :meth:`deliver` ``invoice``; the result's
        ``details`` carry :meth:`Retirement.as_details` (``amendment``, ``credit_note_number``...).
        Both steps are idempotent, so repeating the call after a crash between them completes it
        exactly once. Override only when the system can replace in one step.
        """
        retired = await self.retire(
            previous,
            key=invoice.invoice_key,
            reason=f"replaced by {invoice.invoice_number}",
            issued=invoice.issue_date,
        )
        result = await self.deliver(invoice)
        return replace(result, details={**result.details, **retired.as_details()})

    async def cancel(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:
        """Cancel ``previous`` (the work order or quote was cancelled): :meth:`retire` by default."""
        return await self.retire(previous, key=key, reason=reason, issued=issued)

    def oauth2_config(self) -> OAuth2Config | None:
        """Authorization-code flow parameters for ``broker connectors authorize`` (``None``: not OAuth2)."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release HTTP connections (idempotent)."""

    async def __aenter__(self) -> Connector:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


__all__ = [
    "BatchItem",
    "Capabilities",
    "Connector",
    "DeliveryResult",
    "ExternalInvoice",
    "VatRate",
    "VatTreatment",
    "settings_json_schema",
    "unmapped_rates",
]

"""The connector interface and the error taxonomy shared by all billing-system connectors.

A connector turns a :class:`broker.invoice.Invoice` into an invoice in one billing system.
It is constructed from the tenant's settings (a pydantic model the connector declares) and
must be safe to call again with the same invoice: a second :meth:`Connector.deliver` of an
invoice that already exists returns ``created=False`` with the existing id instead of creating
a duplicate.

Errors a connector raises are subclasses of :class:`ConnectorError`; the ``deliver`` agent
decides what to do by class (retry, wait, dead-letter), never by parsing messages.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from broker.invoice import Invoice


# --------------------------------------------------------------------------- error taxonomy
class ConnectorError(Exception):
    """Base of every connector error.

    ``error_class`` is the taxonomy name used in metrics and DLQ headers; ``http_status`` the
    billing system's status code when there was a response.
    """

    error_class: ClassVar[str] = "connector_error"

    def __init__(self, message: str, *, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


class RetryableError(ConnectorError):
    """Transient: 5xx, timeout before the request was sent, connection refused. Retry with backoff."""

    error_class = "retryable"


class RateLimitedError(RetryableError):
    """429: wait ``retry_after`` seconds (from the ``Retry-After`` header) before the next call."""

    error_class = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, http_status: int | None = 429):
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after


class UncertainOutcomeError(RetryableError):
    """The request may have landed (read timeout, connection dropped after sending).

    Reconcile by lookup (:meth:`Connector.find`) before any retry.
    """

    error_class = "uncertain"


class AuthError(ConnectorError):
    """Credentials rejected even after one token refresh: fatal for this tenant until fixed."""

    error_class = "auth"


class PermanentError(ConnectorError):
    """The billing system rejected the data (4xx validation). Do not retry; dead-letter it."""

    error_class = "permanent"


class ConfigError(ConnectorError):
    """The connector's settings are wrong or a secret's environment variable is missing."""

    error_class = "config"


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ExternalInvoice:
    """An invoice as it exists in the billing system."""

    external_id: str
    number: str
    total: Any = None
    status: str | None = None


@dataclass(frozen=True)
class DeliveryResult:
    """Result of delivering one invoice: ``created`` is False when it already existed."""

    invoice_key: str
    external_id: str
    external_number: str
    created: bool
    attempts: int = 1
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do, declared by the class.

    ``native_idempotency``: the API honours an idempotency key; ``lookup_by_reference``: we can
    find an invoice by our number/reference; ``rate_limit_per_minute`` / ``max_concurrency`` /
    ``daily_limit``: the billing system's documented limits per tenant.
    """

    native_idempotency: bool = False
    lookup_by_reference: bool = True
    batch_size: int = 1
    amendments: bool = False
    rate_limit_per_minute: int | None = None
    max_concurrency: int | None = None
    daily_limit: int | None = None


# --------------------------------------------------------------------------- interface
class Connector(abc.ABC):
    """A billing-system client. Subclasses set ``name``, ``capabilities`` and ``Settings``.

    Lifecycle: ``Connector(settings, tenant=...)`` -> ``await check()`` (optional) ->
    ``await deliver(invoice)`` many times -> ``await aclose()``.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[Capabilities] = Capabilities()
    Settings: ClassVar[type[BaseModel]]

    def __init__(self, settings: BaseModel, *, tenant: str):
        self.settings = settings
        self.tenant = tenant

    @abc.abstractmethod
    async def check(self) -> None:
        """Call the cheapest authenticated endpoint; raise :class:`ConnectorError` naming the problem."""

    @abc.abstractmethod
    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` unless it exists; return its id. Raises :class:`ConnectorError`."""

    @abc.abstractmethod
    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """Look up an invoice by our invoice number / reference; ``None`` when absent."""

    async def aclose(self) -> None:
        """Release HTTP connections."""

"""The connector SDK: everything a billing-system connector depends on, and nothing else.

* :mod:`connectors.sdk.invoice` — the invoice model (:class:`Invoice`, :class:`InvoiceLine`) and
  :class:`ExternalInvoice` (an invoice as the billing system holds it);
* :mod:`connectors.sdk.money` — ISO 4217 minor units, the one rounding rule, JSON with exact decimals,
  and what every mapper reads and lays out the same way (amounts, tax-rate keys, line layouts);
* :mod:`connectors.sdk.errors` — the error taxonomy, the shared status table, ``Retry-After``, quotas;
* :mod:`connectors.sdk.settings` — :class:`ConnectorSettings` (and its OAuth 2.0 client bases), secret
  resolution, readable validation errors;
* :mod:`connectors.sdk.interface` — the :class:`Connector` interface and its results;
* :mod:`connectors.sdk.http` — :class:`HttpConnector`: the pooled client, auth with one retry after a
  401, status mapping, scrubbing, log redaction;
* :mod:`connectors.sdk.oauth2`, :mod:`connectors.sdk.contacts`, :mod:`connectors.sdk.idempotency` —
  token store and single-flight refresh, contact resolution, idempotency keys.

The SDK imports nothing from ``broker`` and no connector; ``docs/connectors.md`` walks through a
connector built on it.
"""

from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    DuplicateError,
    MissingScopeError,
    NumberConflictError,
    PermanentError,
    Quota,
    RateLimitedError,
    ReauthRequiredError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.http import ApiKeyAuth, Auth, BasicAuth, HttpConnector, OAuth2Auth
from connectors.sdk.interface import BatchItem, Capabilities, Connector, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.settings import ConnectorSettings, resolve_secret

__all__ = [
    "ApiKeyAuth",
    "Auth",
    "AuthError",
    "BasicAuth",
    "BatchItem",
    "Capabilities",
    "ConfigError",
    "Connector",
    "ConnectorError",
    "ConnectorSettings",
    "DeliveryResult",
    "DuplicateError",
    "ExternalInvoice",
    "HttpConnector",
    "Invoice",
    "InvoiceLine",
    "MissingScopeError",
    "NumberConflictError",
    "OAuth2Auth",
    "PermanentError",
    "Quota",
    "RateLimitedError",
    "ReauthRequiredError",
    "RetryableError",
    "UncertainOutcomeError",
    "UnknownAccountError",
    "resolve_secret",
]

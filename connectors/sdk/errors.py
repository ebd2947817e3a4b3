"""From a billing system's HTTP answer to the shared error taxonomy (:mod:`connectors.sdk.interface`).

Every connector maps what its API answers onto the same classes, so the ``deliver`` stage can
decide by class alone:

=================  ==========================================  =================================================
class              when                                         what the ``deliver`` stage does
=================  ==========================================  =================================================
``retryable``      5xx, connection refused, timeout before       retry with exponential backoff + jitter, then park
                   the request was sent
``rate_limited``   429 (``Retry-After``)                         wait ``Retry-After`` (short) or park the tenant
``uncertain``      the request may have landed (read timeout,    look the invoice up by our reference before any
                   connection dropped after sending)             retry; found = success
``auth``           credentials refused after one token refresh   dead-letter; fatal for that tenant until fixed
``needs_reauth``   the refresh token itself is refused           park the tenant's invoices without calling until
                   (``invalid_grant``)                           new tokens are stored (re-authorisation)
``permanent``      4xx validation: the data is wrong             dead-letter at once, no retry
``duplicate``      the billing system already has it (409)       success with the existing id, once it is proven
                                                                 ours (marker and total); else ``number_conflict``
``number_conflict`` a document under our number is not ours     dead-letter with both totals; nothing recorded
``config``         settings / missing secret                     dead-letter; fatal for that tenant
=================  ==========================================  =================================================

:data:`DEFAULT_STATUS_ERRORS` is the default status-code table (after Airbyte's
``default_error_mapping`` and the Singer SDK's ``validate_response``); :func:`error_for_status`
applies it with per-connector overrides, :func:`retry_after_seconds` parses ``Retry-After``
(seconds or an HTTP date) and :class:`Quota` carries the remaining-quota headers a connector
reports to the broker's rate limiter (``connector.on_quota``, see ``docs/delivery.md``).

Example (a connector's ``_raise_for_status``)::

    exc = error_for_status(resp.status_code, f"Acme PUT /invoices: {detail}", method="PUT",
                           retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
                           overrides={422: PermanentError})
    if exc is not None:
        raise exc
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import ClassVar

from connectors.sdk.invoice import ExternalInvoice


class ConnectorError(Exception):
    """Base of every connector error.

    ``error_class`` is the taxonomy name used in metrics and DLQ headers; ``http_status`` the
    billing system's status code when there was a response. Messages must never contain a
    secret (client secret, API key, access or refresh token): the conformance kit checks it.
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


class DuplicateError(ConnectorError):
    """The billing system already has this invoice (e.g. HTTP 409, "number already exists").

    Not a failure: the ``deliver`` stage records success with ``existing`` (or, when ``None``,
    with what :meth:`Connector.find` returns). Connectors that resolve duplicates themselves
    simply return ``created=False`` instead of raising this.
    """

    error_class = "duplicate"

    def __init__(self, message: str, *, existing: ExternalInvoice | None = None, http_status: int | None = None):
        super().__init__(message, http_status=http_status)
        self.existing = existing


class AuthError(ConnectorError):
    """Credentials rejected even after one token refresh: fatal for this tenant until fixed."""

    error_class = "auth"


class ReauthRequiredError(AuthError):
    """The identity provider refused the refresh token itself (OAuth2 ``invalid_grant``: expired,
    revoked, consent withdrawn, already spent): no retry can succeed until someone re-authorises
    (``broker connectors authorize``) or puts a new refresh token in the environment.

    The deliver stage parks the tenant's invoices (``needs_reauth``) instead of dead-lettering them,
    and asks the token store, not the provider, whether new tokens have arrived.
    """

    error_class = "needs_reauth"


class MissingScopeError(AuthError):
    """The credentials work but lack a permission (OAuth2 scope) the connector needs.

    ``missing`` names the scopes; the fix is to re-authorise (``broker connectors authorize``).
    """

    def __init__(self, message: str, *, missing: Sequence[str] = (), http_status: int | None = None):
        super().__init__(message, http_status=http_status)
        self.missing = tuple(missing)


class PermanentError(ConnectorError):
    """The billing system rejected the data (4xx validation). Do not retry; dead-letter it."""

    error_class = "permanent"


class NumberConflictError(PermanentError):
    """A document under our number exists in the billing system but is not ours.

    It lacks our ownership marker, or its total differs from ours (a manual invoice that took our
    number, another integration's document). Nothing is recorded as delivered: the invoice is
    dead-lettered as ``number_conflict`` with both totals, for a person to resolve.
    ``ours`` / ``theirs``: the two totals (``theirs`` ``None`` when the system did not say).
    """

    error_class = "number_conflict"

    def __init__(
        self,
        message: str,
        *,
        number: str,
        ours: Decimal,
        theirs: Decimal | None,
        external_id: str | None = None,
        http_status: int | None = None,
    ):
        super().__init__(message, http_status=http_status)
        self.number = number
        self.ours = ours
        self.theirs = theirs
        self.external_id = external_id


class ConfigError(ConnectorError):
    """The connector's settings are wrong or a secret's environment variable is missing."""

    error_class = "config"


class UnknownAccountError(ConfigError):
    """The organisation / company / account named in the settings is not reachable with these credentials."""


#: Default ``Retry-After`` (seconds) for a 429 that does not say.
DEFAULT_RETRY_AFTER = 60.0

#: Status code -> error class. Codes not listed: other 4xx are permanent, other 5xx retryable.
DEFAULT_STATUS_ERRORS: dict[int, type[ConnectorError]] = {
    400: PermanentError,
    401: AuthError,  # the connector has already refreshed its token once
    402: PermanentError,
    403: AuthError,
    404: PermanentError,
    405: PermanentError,
    408: UncertainOutcomeError,  # the server gave up reading/processing: the request may have landed
    409: DuplicateError,
    410: PermanentError,
    412: PermanentError,
    413: PermanentError,
    415: PermanentError,
    422: PermanentError,
    425: RetryableError,
    429: RateLimitedError,
    500: RetryableError,  # UncertainOutcomeError for writes, see error_for_status
    502: RetryableError,
    503: RetryableError,
    504: UncertainOutcomeError,  # a gateway timed out waiting for the origin, which may have processed it
}

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def retry_after_seconds(value: str | None, default: float = DEFAULT_RETRY_AFTER, *, now: float | None = None) -> float:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (``"30"``) or an HTTP date.

    ``None``/unparseable -> ``default``; a date in the past -> ``0``; never negative.
    """
    if value is None:
        return default
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    return max(0.0, (when - current).total_seconds())


def error_for_status(
    status: int,
    message: str,
    *,
    method: str = "GET",
    retry_after: float | None = None,
    overrides: Mapping[int, type[ConnectorError] | None] | None = None,
) -> ConnectorError | None:
    """The :class:`ConnectorError` for an HTTP ``status`` (``None`` for 1xx-3xx).

    ``overrides`` win over :data:`DEFAULT_STATUS_ERRORS` (map a code to ``None`` to treat it as
    success). A 500 answering a write (``POST``/``PUT``/``PATCH``/``DELETE``) is
    :class:`UncertainOutcomeError`: the server may have stored it before failing. A 429 gets
    ``retry_after`` (default :data:`DEFAULT_RETRY_AFTER`). ``message`` must not contain secrets.
    """
    if status < 400:
        return None
    table: dict[int, type[ConnectorError] | None] = dict(DEFAULT_STATUS_ERRORS)
    if overrides:
        table.update(overrides)
    if status in table:
        cls = table[status]
        if cls is None:
            return None
    else:
        cls = RetryableError if status >= 500 else PermanentError
    if (
        status == 500
        and cls is RetryableError
        and method.upper() in _WRITE_METHODS
        and not (overrides and 500 in overrides)
    ):
        cls = UncertainOutcomeError
    if issubclass(cls, RateLimitedError):
        return cls(message, retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after, http_status=status)
    return cls(message, http_status=status)


@dataclass(frozen=True)
class Quota:
    """Remaining calls the billing system reported with a response (``None`` = not reported).

    Xero: ``X-MinLimit-Remaining``, ``X-DayLimit-Remaining``. A connector that sees such headers
    calls ``self.on_quota(Quota(...))`` when the attribute is set; the broker's per-tenant rate
    limiter uses it to count calls it did not make itself (another worker, another app).
    """

    minute_remaining: int | None = None
    day_remaining: int | None = None

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], *, minute: str = "X-MinLimit-Remaining", day: str = "X-DayLimit-Remaining"
    ) -> Quota | None:
        """Parse the two headers (a case-insensitive mapping such as ``httpx.Headers``); ``None``: neither there."""

        def _int(name: str) -> int | None:
            raw = headers.get(name)
            try:
                return int(str(raw).strip()) if raw is not None else None
            except ValueError:
                return None

        quota = cls(_int(minute), _int(day))
        return None if quota.minute_remaining is None and quota.day_remaining is None else quota


__all__ = [
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_STATUS_ERRORS",
    "AuthError",
    "ConfigError",
    "ConnectorError",
    "DuplicateError",
    "MissingScopeError",
    "NumberConflictError",
    "PermanentError",
    "Quota",
    "RateLimitedError",
    "ReauthRequiredError",
    "RetryableError",
    "UncertainOutcomeError",
    "UnknownAccountError",
    "error_for_status",
    "retry_after_seconds",
]

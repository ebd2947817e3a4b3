"""What every platform adapter shares: the webhook as received, refusals, and canonical events.

An adapter (one module per platform in :mod:`broker.platforms`) does three things with a webhook
``POST /webhooks/{platform}/{tenant}`` (:mod:`broker.intake`):

1. :meth:`Adapter.verify` checks the request exactly as the platform signs it, over the raw body
   bytes, in constant time (:func:`equal`); a missing header fails closed. It raises
   :class:`Rejected` (401 ``bad_signature`` or ``stale``).
2. :meth:`Adapter.events` reads the payload, fetches what a thin webhook leaves out through the
   platform's API (:class:`broker.platforms.client.PlatformClient`), and returns the canonical
   CloudEvents (JSON objects that :func:`broker.events.parse_event` validates), or
   :class:`Ignored` for a webhook that bills nothing (another status, another event type).
3. The pure ``map_*`` functions of each module turn platform records into those events: money to
   decimal strings (cents divided by 100 exactly), durations to seconds, naive local times to UTC
   in the tenant's time zone, the platform's client, site and technician references to the
   tenant's ids (:class:`Context`).

This module does no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from broker.events import MAX_ID_CHARS, MAX_LIST_ITEMS, SCHEDULED_JOB_CLOSED, WORK_ORDER_COMPLETED, show_value

__all__ = [
    "SOURCE_PREFIX",
    "Adapter",
    "Context",
    "Ignored",
    "Rejected",
    "Webhook",
    "asset_ids",
    "canonical_event",
    "decimal_text",
    "equal",
    "hmac_sha256",
    "job_event",
    "local_to_utc",
    "money_from_cents",
    "money_text",
    "utc_text",
]

#: CloudEvents ``source`` of the events an adapter makes: ``/platforms/<platform>``.
SOURCE_PREFIX = "/platforms/"
_SIX_PLACES = Decimal("0.000001")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Webhook:
    """One request as received: ``headers`` with lower-case names, the raw ``body`` bytes, the full
    request ``url`` (MaintainX signs it too) and the ``query`` parameters."""

    headers: Mapping[str, str]
    body: bytes
    url: str = ""
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        return self.headers.get(name.lower())


class Rejected(Exception):  # noqa: N818 - the request is refused, with a reason
    """A refused webhook: ``status`` (HTTP), ``result`` (the metrics label: ``bad_signature``,
    ``stale``, ``invalid``, ``unavailable``) and a ``detail`` that names the header or field and
    the value. ``retry_after``: seconds, for 503."""

    def __init__(self, status: int, result: str, detail: str, *, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.result, self.detail, self.retry_after = status, result, detail, retry_after


def bad_signature(detail: str) -> Rejected:
    """401 ``bad_signature``."""
    return Rejected(401, "bad_signature", detail)


def invalid(detail: str) -> Rejected:
    """422 ``invalid``: the payload lacks what the mapping needs (``detail`` names field and value)."""
    return Rejected(422, "invalid", detail)


@dataclass(frozen=True)
class Ignored:
    """A verified webhook that bills nothing (answered 200 and counted as ``ignored``): ``reason``."""

    reason: str


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 digest of ``message`` under ``key`` (RFC 2104)."""
    return hmac.new(key, message, hashlib.sha256).digest()


def equal(expected: bytes | str, given: bytes | str) -> bool:
    """Constant-time comparison of two signatures (text compared as UTF-8)."""
    a = expected.encode() if isinstance(expected, str) else expected
    b = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(a, b)


def hex_signature(key: bytes, message: bytes) -> str:
    """Lower-case hex HMAC-SHA256."""
    return hmac_sha256(key, message).hex()


def base64_signature(key: bytes, message: bytes) -> str:
    """Standard base64 HMAC-SHA256."""
    return base64.b64encode(hmac_sha256(key, message)).decode()


def required_header(hook: Webhook, name: str) -> str:
    """The value of header ``name``; a missing or empty one fails closed (401 ``bad_signature``)."""
    value = hook.header(name)
    if not value:
        raise bad_signature(f"header {name!r} is missing: the request is not signed")
    return value


def check_fresh(timestamp: float, now: float, tolerance: float, where: str) -> None:
    """Raise 401 ``stale`` when ``timestamp`` (unix seconds) is more than ``tolerance`` seconds from
    ``now``; ``where`` names the header."""
    skew = abs(now - timestamp)
    if skew > tolerance:
        raise Rejected(
            401,
            "stale",
            f"{where}: timestamp {timestamp:.0f} is {skew:.0f} s from now; the tolerance is {tolerance:.0f} s",
        )


# --------------------------------------------------------------------------- values
def decimal_text(value: Any, where: str) -> str:
    """A JSON number or numeric string as a plain decimal string (``38.5`` -> ``"38.5"``): read from
    the number's text, never through binary floating point. Raises 422 naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise invalid(f"field {where!r}: expected a number, got {show_value(value)}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise invalid(f"field {where!r}: expected a number, got {show_value(value)}") from None
    if not number.is_finite():
        raise invalid(f"field {where!r}: expected a finite number, got {show_value(value)}")
    return format(number.normalize(), "f") if number == number.to_integral_value() else format(number, "f")


def money_from_cents(value: Any, where: str) -> str:
    """Integer cents (MaintainX) as a decimal string with two places (``3850`` -> ``"38.50"``; exact)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"field {where!r}: expected integer cents, got {show_value(value)}")
    return format((Decimal(value) / 100).quantize(Decimal("0.01")), "f")


def money_text(value: Any, where: str) -> str:
    """A JSON number (a platform's double) as a money string with at least two decimals (``38.5`` ->
    ``"38.50"``), exact up to six decimals; more (floating-point noise) is rounded half to even.
    Raises 422 naming ``where`` for a negative or non-numeric value."""
    amount = Decimal(decimal_text(value, where))
    if amount < 0:
        raise invalid(f"field {where!r}: expected an amount of 0 or more, got {show_value(value)}")
    amount = amount.quantize(_SIX_PLACES, rounding=ROUND_HALF_EVEN).normalize()
    exponent = amount.as_tuple().exponent  # an int: decimal_text refuses NaN and infinities
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(_CENT)
    return format(amount, "f")


def utc_text(moment: datetime) -> str:
    """RFC 3339 text in UTC (``2025-03-15T12:40:07+00:00``)."""
    return moment.astimezone(UTC).isoformat()


def parse_instant(value: Any, where: str, zone: str = "UTC") -> datetime:
    """An ISO-8601 date-time (``2025-03-15T12:40:07.000Z``, ``…+00:00``, or naive ``2025-03-15
    09:05:00``, read in ``zone``, an IANA name) as an aware datetime. Raises 422 naming ``where``."""
    if not isinstance(value, str):
        raise invalid(f"field {where!r}: expected a date-time, got {show_value(value)}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"field {where!r}: expected an ISO-8601 date-time, got {show_value(value)}") from None
    return local_to_utc(moment, zone) if moment.tzinfo is None else moment


def local_to_utc(moment: datetime, zone: str) -> datetime:
    """A naive local ``moment`` in time zone ``zone`` (IANA) as UTC (``fold=0``: the first of two
    ambiguous instants at a clock change)."""
    return moment.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def from_unix(value: Any, where: str, *, millis: bool = False) -> datetime:
    """Unix seconds (or milliseconds) as a UTC datetime; raises 422 naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise invalid(f"field {where!r}: expected a unix time, got {show_value(value)}")
    return datetime.fromtimestamp(value / 1000 if millis else value, UTC)


def text_id(value: Any, where: str) -> str:
    """A platform id (string or integer) as text; raises 422 naming ``where`` when missing."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise invalid(f"field {where!r}: expected an id, got {show_value(value)}")
    return str(value)


def asset_ids(*values: Any) -> list[str]:
    """The platform's asset (equipment) ids among ``values`` as text, for the events' optional
    ``data.asset_ids`` (the economic report counts distinct assets): strings and integers, first
    occurrence kept; ``None``, empty, ``0`` (a platform's "no asset"), longer than an id may be
    (:data:`broker.events.MAX_ID_CHARS`) or unprintable values are left out rather than refused, since
    an asset never changes what is billed."""
    out: list[str] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            continue
        text = str(value).strip()
        if text in ("", "0") or len(text) > MAX_ID_CHARS or not text.isprintable() or text in out:
            continue
        out.append(text)
    return out[:MAX_LIST_ITEMS]


def obj(value: Any, where: str) -> dict[str, Any]:
    """``value`` when it is a JSON object; else 422 naming ``where``."""
    if not isinstance(value, dict):
        raise invalid(f"field {where!r}: expected an object, got {show_value(value)}")
    return value


def items(value: Any, where: str) -> list[dict[str, Any]]:
    """``value`` when it is a list of JSON objects (``None`` -> empty); else 422 naming ``where``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"field {where!r}: expected a list, got {show_value(value)}")
    return [obj(item, f"{where}[{index}]") for index, item in enumerate(value)]


# --------------------------------------------------------------------------- tenant context
@dataclass(frozen=True)
class Context:
    """What the mapping needs of the tenant: its id, its time zone (naive platform times are read in
    ``timezone``), and the maps from the platform's references to the tenant's ids (``clients``,
    ``sites``, ``technicians``; a reference not in a map is used as it is). ``default_site``: the
    site of documents where the platform gives none (quotes)."""

    tenant: str
    platform: str
    timezone: str = "UTC"
    clients: Mapping[str, str] = field(default_factory=dict)
    sites: Mapping[str, str] = field(default_factory=dict)
    technicians: Mapping[str, str] = field(default_factory=dict)
    default_site: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def client(self, ref: str) -> str:
        """The tenant's client id for the platform's client reference ``ref``."""
        return self.clients.get(ref, ref)

    def site(self, ref: str | None, where: str) -> str:
        """The tenant's site id for ``ref`` (``None``: :attr:`default_site`); 422 when neither."""
        if ref is None or ref == "":
            if self.default_site is None:
                raise invalid(f"field {where!r}: no site given and webhooks.{self.platform}.default_site is not set")
            return self.default_site
        return self.sites.get(ref, ref)

    def technician(self, ref: str) -> str:
        """The tenant's technician id for the platform's user reference ``ref``."""
        return self.technicians.get(ref, ref)


def canonical_event(
    ctx: Context, *, type_: str, event_id: str, time: datetime, subject: str, data: dict[str, Any]
) -> dict[str, Any]:
    """A structured CloudEvent of the broker's schema (``schemas/maintenance-event.schema.json``):
    ``source`` ``/platforms/<platform>``, the tenant from ``ctx``."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE_PREFIX + ctx.platform,
        "type": type_,
        "time": utc_text(time),
        "subject": subject,
        "datacontenttype": "application/json",
        "tenant": ctx.tenant,
        "data": data,
    }


def job_event(
    ctx: Context,
    *,
    preventive: bool,
    job_id: str,
    event_id: str,
    time: datetime,
    subject: str,
    data: dict[str, Any],
) -> dict[str, Any]:
    """A completed job as a canonical event: preventive work as ``maintenance.scheduled_job.closed``
    (``scheduled_job_id``), anything else as ``maintenance.work_order.completed`` (``work_order_id``,
    ``kind: corrective``); ``data`` holds the rest (client, site, time entries, parts, ...)."""
    ids = {"scheduled_job_id": job_id} if preventive else {"work_order_id": job_id, "kind": "corrective"}
    return canonical_event(
        ctx,
        type_=SCHEDULED_JOB_CLOSED if preventive else WORK_ORDER_COMPLETED,
        event_id=event_id,
        time=time,
        subject=subject,
        data={**data, **ids},
    )


class Adapter:
    """One platform's webhook adapter (subclasses: one per module of :mod:`broker.platforms`).

    ``name``: the ``{platform}`` of the route. Whether a platform signs a timestamp and whether it
    reads the platform's API is each adapter's own business (:meth:`verify`, :meth:`events`)."""

    name: ClassVar[str]
    #: The platform API's published request limit (per minute), kept by the hydration client.
    requests_per_minute: ClassVar[int | None] = None

    def api_headers(self, username: str | None, token: str) -> dict[str, str]:  # noqa: ARG002 - for Basic schemes
        """The authentication headers of the platform's API (default: ``Authorization: Bearer``)."""
        return {"Authorization": f"Bearer {token}"}

    def verify(self, hook: Webhook, secret: bytes, now: float, tolerance: float) -> None:
        """Check the request's signature (or URL secret) with the tenant's ``secret``; ``now``: unix
        seconds; ``tolerance``: seconds. Raises :class:`Rejected` 401."""
        raise NotImplementedError

    def known_id(self, payload: Any) -> str | None:  # noqa: ARG002 - most webhooks need their API first
        """The id of the event a webhook will map to when its payload alone names it (no API call),
        else None. The intake answers a retry of an accepted webhook with it before hydrating, so a
        platform retrying does not spend the tenant's API quota."""
        return None

    async def events(self, payload: Any, hook: Webhook, ctx: Context, api: Any) -> list[dict[str, Any]] | Ignored:
        """The canonical events of a verified webhook (``payload``: its decoded JSON body), or
        :class:`Ignored`. ``api``: the platform's :class:`~broker.platforms.client.PlatformClient`
        (None when the tenant configured none). Raises :class:`Rejected` (422 for a payload the
        mapping cannot read, 503 when the platform's API cannot be reached)."""
        raise NotImplementedError

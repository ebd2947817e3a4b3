"""Canonical maintenance events: CloudEvents 1.0, structured JSON mode, validated strictly.

A maintenance platform (or its adapter) publishes one of these on the ``maintenance.events``
topic. The envelope follows the CloudEvents 1.0 spec (https://github.com/cloudevents/spec,
``spec.md`` and ``formats/json-format.md``): ``specversion``, ``id``, ``source``, ``type``,
``time``, ``subject``, ``datacontenttype``, ``dataschema`` and ``data``, plus the extension attribute
``tenant`` (the maintenance company whose billing system receives the invoice). Any other
CloudEvents extension attribute (``traceparent``, ``sequence``, ...) is accepted and kept
(``model_extra``) when its name and value follow the spec's rules (:data:`EXTENSION_NAME`);
``datacontenttype`` is ``application/json`` with optional parameters (``; charset=utf-8``).
Binary content mode (attributes in ``ce-``/``ce_`` headers) is turned into this structured form by
:mod:`broker.cloudevents` before it is parsed.

Types:

* ``maintenance.work_order.completed`` – a work order's completion was confirmed (data:
  :class:`WorkOrderCompletedData`).
* ``maintenance.scheduled_job.closed`` – a scheduled (preventive) job was closed
  (data: :class:`ScheduledJobClosedData`).
* ``maintenance.quote.approved`` – a quote was approved by the client (data: :class:`QuoteApprovedData`).

Lifecycle changes of a document already completed or approved (data: :class:`DocumentChangeData`: the
document id, the ``revision`` concerned, ``client_id``, an optional ``reason``; the CloudEvent
``time`` is when it happened). Pricing turns them into a
:class:`~connectors.sdk.invoice.DocumentChange` on ``billing.invoices`` (``docs/delivery.md``):

* ``maintenance.work_order.reopened`` – the work order was reopened at ``revision``: its invoice
  is held as it is until a later revision completes (:class:`WorkOrderReopened`).
* ``maintenance.work_order.cancelled`` – the work order was cancelled: its invoice is retired
  (:class:`WorkOrderCancelled`).
* ``maintenance.quote.cancelled`` – the approved quote was cancelled: its invoice is retired
  (:class:`QuoteCancelled`).

Validation rules (:func:`parse_event`; every failure is an :class:`EventDecodeError`):

* **Size first.** A record above :data:`MAX_EVENT_BYTES` (512 KiB) is refused unread
  (``too_large``). The bytes must be UTF-8 JSON (a leading UTF-8 BOM is ignored); ``NaN`` and
  ``Infinity`` are not JSON; nesting deeper than :data:`MAX_JSON_DEPTH` (32) levels is refused
  (``not_json``); a key given twice in one JSON object is refused, naming the key (``invalid``).
* **No coercion.** Integers (``revision``, ``duration_seconds``, ``break_minutes``) must be JSON
  integers (not ``true``, ``"2"`` or ``1.0``); booleans only ``true``/``false``; strings only
  strings. Unknown fields are refused (inside ``data``; at the top level an unknown name is an
  extension attribute, checked as above).
* **Money and quantities are decimal strings** (``"24.00"``): digits, an optional ``.`` and
  1–6 decimals; no JSON numbers, exponents (``1e400``), signs other than a leading ``-`` (then
  refused as negative), spaces, ``NaN`` or ``Infinity``. At most :data:`MONEY_INTEGER_DIGITS` (12)
  integer digits for money (``unit_cost``, ``unit_price``, ``amount``) and
  :data:`QUANTITY_INTEGER_DIGITS` (6) for ``quantity`` and ``distance_km``; ``tax_rate`` is a
  percentage from 0 to 100. So every amount pricing computes stays below 10^22 and exact in
  :mod:`decimal`'s default 28-digit context.
* **Times** (``time``, ``start``, ``end``) are RFC 3339 strings with a UTC offset
  (``2026-03-03T11:30:00+00:00`` or ``...Z``; up to 9 fractional digits, cut to microseconds);
  no numbers, no naive times, no dates alone; the instant must lie in years 2000–2100 (UTC). A
  clocked time entry lasts at most 7 days (``end - start``, or ``duration_seconds`` ≤ 604800);
  ``break_minutes`` ≤ 10080; ``revision`` from 1 to 2^31 − 1.
* **Characters.** Identifiers (``id``, ``tenant``, ``work_order_id``, ``scheduled_job_id``,
  ``quote_id``, ``client_id``, ``site_id``, ``technician_id``, ``visit_id``, ``sku``,
  ``contract_ref``, entry/line ids), labels (``skill``, ``unit``, ``category``) and
  ``source``/``subject`` refuse control characters (Unicode Cc), format characters (Cf: bidi
  overrides and isolates, zero-width characters, ...), lone surrogates and line/paragraph
  separators. Free text (``description``, ``summary``) allows tab, CR and LF but refuses the
  other control characters, lone surrogates and the bidi controls U+202A–U+202E, U+2066–U+2069.
  ``reason`` (change events) is free text too.
* **Lengths.** Identifiers 1–128 characters, labels 1–64, ``source``/``subject`` 1–1024,
  ``description`` and ``reason`` 1–500, ``summary`` 0–500, ``tenant`` 1–64 (``[A-Za-z0-9][A-Za-z0-9_.-]*``).
  Lists: ``time_entries``, ``parts``, ``expenses`` and quote ``lines`` at most
  :data:`MAX_LIST_ITEMS` (500) each.
* **Consistency.** Ids are unique within each list; clocked time entries of one technician in
  one visit (``visit_id``, default the document's own visit) must not overlap (entries given
  only as ``duration_seconds`` are not checked).

Errors name the field path and the offending value; values are cut to about 80 characters
(``…``) and the whole message to at most :data:`MAX_MESSAGE_CHARS` (1000) characters (the first
errors, then ``and N more``).

Parse once: ``enrich`` forwards a valid event to the pricing stage with its validated form
(:func:`validated_form`, header :data:`VALIDATED_HEADER`) next to the original bytes; ``price`` loads
that form without validating again (:func:`parse_forwarded`, :func:`load_validated`). A record without
it, or written by a worker whose event models differ (the form carries a digest of their JSON
Schema), is parsed in full.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import reprlib
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, Protocol, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

WORK_ORDER_COMPLETED = "maintenance.work_order.completed"
SCHEDULED_JOB_CLOSED = "maintenance.scheduled_job.closed"
QUOTE_APPROVED = "maintenance.quote.approved"
WORK_ORDER_REOPENED = "maintenance.work_order.reopened"
WORK_ORDER_CANCELLED = "maintenance.work_order.cancelled"
QUOTE_CANCELLED = "maintenance.quote.cancelled"
#: Event types that are priced into an invoice.
BILLABLE_EVENT_TYPES = (WORK_ORDER_COMPLETED, SCHEDULED_JOB_CLOSED, QUOTE_APPROVED)
#: Event types that change what happens to a document's invoice (hold it, retire it).
CHANGE_EVENT_TYPES = (WORK_ORDER_REOPENED, WORK_ORDER_CANCELLED, QUOTE_CANCELLED)
#: Every event type :func:`parse_event` accepts.
EVENT_TYPES = BILLABLE_EVENT_TYPES + CHANGE_EVENT_TYPES

# --------------------------------------------------------------------------- bounds
#: Largest raw record (bytes of UTF-8 JSON) :func:`parse_event` reads; larger ones are ``too_large``.
MAX_EVENT_BYTES = 512 * 1024
#: Deepest JSON nesting accepted (objects and arrays; a valid event needs 4).
MAX_JSON_DEPTH = 32
#: Longest identifier / label / source-subject / free text (characters).
MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 64
MAX_URI_CHARS = 1024
MAX_TEXT_CHARS = 500
#: Most items in each of ``time_entries``, ``parts``, ``expenses`` and quote ``lines``.
MAX_LIST_ITEMS = 500
#: Integer digits allowed in money strings and in quantities; decimals allowed in both.
MONEY_INTEGER_DIGITS = 12
QUANTITY_INTEGER_DIGITS = 6
DECIMAL_PLACES = 6
#: Instants accepted for ``time``, ``start`` and ``end``: years 2000–2100 (UTC).
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2101, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
#: Longest clocked time entry (``end - start`` or ``duration_seconds``).
MAX_ENTRY_SECONDS = 7 * 24 * 3600
MAX_BREAK_MINUTES = MAX_ENTRY_SECONDS // 60
MAX_REVISION = 2**31 - 1
#: Longest :class:`EventDecodeError` message; offending values are cut to :data:`VALUE_CHARS`.
MAX_MESSAGE_CHARS = 1000
VALUE_CHARS = 80
#: CloudEvents extension attributes (CloudEvents 1.0 ``spec.md``, "Attribute Naming Convention" and
#: "Type System"): names of lower-case ASCII letters and digits, at most 20 characters; values are
#: strings (at most :data:`MAX_URI_CHARS` characters, no control characters), booleans or
#: integers within a signed 32-bit range. At most :data:`MAX_EXTENSIONS` per event.
EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
MAX_EXTENSIONS = 32
#: ``datacontenttype``: ``application/json``, with optional parameters (RFC 2045: ``; charset=utf-8``);
#: the type is compared case-insensitively; a ``charset`` must be UTF-8.
_JSON_MEDIA_TYPE = re.compile(r"application/json[ \t]*(;.*)?", re.IGNORECASE | re.DOTALL)
_CHARSET = re.compile(r";[ \t]*charset[ \t]*=[ \t]*\"?([^\";]*)\"?", re.IGNORECASE)


# --------------------------------------------------------------------------- error helpers
def _error(code: str, text: str, *, at: str | None = None, names_value: bool = False) -> PydanticCustomError:
    """A validation error with a fixed message (values go through the context, never the template).

    ``at`` appends a field to the error's location (model-level checks about one list);
    ``names_value`` says the text already names the offending values (no ``(got ...)``). Both
    travel in the error type (``event_overlap__named__at_time_entries``): pydantic substitutes
    every context key into the message, so the context holds the text alone.
    """
    kind = f"event_{code}" + ("__named" if names_value else "") + (f"__at_{at}" if at else "")
    return PydanticCustomError(kind, "{text}", {"text": text})


def _error_flags(kind: str) -> tuple[bool, str | None]:
    """``(names_value, at)`` from an error type made by :func:`_error`."""
    if not kind.startswith("event_"):
        return False, None
    flags = kind.split("__")[1:]
    at = next((flag[3:] for flag in flags if flag.startswith("at_")), None)
    return "named" in flags, at


class _JsonFloat(float):
    """A JSON number with a fraction or exponent, keeping its text (``1e400``, not ``inf``) for messages."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> _JsonFloat:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj

    def __repr__(self) -> str:
        return self.text


_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = 40
_REPR.maxother = 40
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 3
_REPR.maxlong = 40


def show_value(value: object, limit: int = VALUE_CHARS) -> str:
    """Readable, bounded ``repr`` of an offending value: at most ``limit`` characters plus ``…``.

    Strings are cut and followed by their length (``'/sss'… (100001 chars)``); containers are
    shown a few items and levels deep; JSON numbers as written (``1e400``). Never raises.
    """
    try:
        if isinstance(value, str):
            if len(value) <= limit:
                return repr(value)
            return f"{value[:limit]!r}… ({len(value)} chars)"
        if isinstance(value, _JsonFloat):
            text = value.text
        elif isinstance(value, (bool, int, float)) or value is None:
            text = repr(value)
        else:
            text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a value we cannot show (e.g. an int too long to print)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}…"


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _path(loc: Iterable[object]) -> str:
    parts = []
    for item in loc:
        text = str(item)
        parts.append(text if _PLAIN_KEY.fullmatch(text) else show_value(text, 40))
    return ".".join(parts) or "(root)"


def _join(parts: list[str]) -> str:
    """``"; "``-joined parts, each at most 600 characters, all at most :data:`MAX_MESSAGE_CHARS`."""
    out: list[str] = []
    used = 0
    for i, whole in enumerate(parts):
        part = whole[:599] + "…" if len(whole) > 600 else whole
        if out and used + len(part) + 2 > MAX_MESSAGE_CHARS - 20:
            out.append(f"and {len(parts) - i} more")
            break
        out.append(part)
        used += len(part) + 2
    return "; ".join(out)


# --------------------------------------------------------------------------- characters
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_CONTROL_NOT_WS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ID_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _char_name(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")


def _bad_char(value: str, *, text: bool) -> tuple[int, str] | None:
    """First refused character of ``value`` and its index: for identifiers (``text=False``) any
    Cc, Cf, Cs, Zl or Zp character; for free text (``text=True``) Cc except tab/CR/LF, Cs and
    the bidi controls."""
    pattern = _ASCII_CONTROL_NOT_WS if text else _ASCII_CONTROL
    match = pattern.search(value)
    first = (match.start(), match.group()) if match else None
    if not value.isascii():
        limit = first[0] if first else len(value)
        for index in range(limit):
            ch = value[index]
            if ch < "\x80":
                continue
            category = unicodedata.category(ch)
            if text:
                if category in ("Cc", "Cs") or ch in _BIDI_CONTROLS:
                    return index, ch
            elif category in _ID_BAD_CATEGORIES:
                return index, ch
    return first


def _char_message(value: object, *, text: bool) -> str:
    """Why ``value`` failed the character rule (names the first refused character and its position)."""
    bad = _bad_char(value, text=text) if isinstance(value, str) else None
    what = f"{_char_name(bad[1])} at position {bad[0]} " if bad else ""
    if text:
        return f"control character {what}is not allowed (free text allows tab, CR and LF)"
    return f"control or format character {what}is not allowed"


# Checked by pydantic-core's regex engine (fast); the message comes from _char_message. The JSON
# Schema carries an equivalent pattern for the Basic Multilingual Plane (ECMA 262 has no \p{Cf}).
_ID_PATTERN = r"^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*$"
_TEXT_PATTERN = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\u{202A}-\u{202E}\u{2066}-\u{2069}]*$"
_CHAR_PATTERNS = {_ID_PATTERN: False, _TEXT_PATTERN: True}
_ID_SCHEMA_PATTERN = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891"
    "\\u08e2\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb]*$"
)
_TEXT_SCHEMA_PATTERN = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069]*$"


def _string_rule(min_length: int, max_length: int, *, text: bool = False) -> StringConstraints:
    """Bounds and character rule of a string type (identifier rule, or the free-text rule)."""
    return StringConstraints(
        min_length=min_length, max_length=max_length, pattern=_TEXT_PATTERN if text else _ID_PATTERN
    )


def _string_schema(min_length: int, max_length: int, *, text: bool = False) -> WithJsonSchema:
    """JSON Schema of a string type made with :func:`_string_rule` (an ECMA 262 pattern)."""
    schema: dict[str, Any] = {
        "type": "string",
        "maxLength": max_length,
        "pattern": _TEXT_SCHEMA_PATTERN if text else _ID_SCHEMA_PATTERN,
    }
    if min_length:
        schema["minLength"] = min_length
    return WithJsonSchema(schema)


# Bounded string types refusing control/format characters (module docstring).
Id = Annotated[str, _string_rule(1, MAX_ID_CHARS), _string_schema(1, MAX_ID_CHARS)]
Label = Annotated[str, _string_rule(1, MAX_LABEL_CHARS), _string_schema(1, MAX_LABEL_CHARS)]
UriRef = Annotated[str, _string_rule(1, MAX_URI_CHARS), _string_schema(1, MAX_URI_CHARS)]
Text = Annotated[str, _string_rule(1, MAX_TEXT_CHARS, text=True), _string_schema(1, MAX_TEXT_CHARS, text=True)]
Summary = Annotated[str, _string_rule(0, MAX_TEXT_CHARS, text=True), _string_schema(0, MAX_TEXT_CHARS, text=True)]
TenantId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


def json_media_type_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable ``datacontenttype`` / ``Content-Type`` for JSON data
    (``None`` when it is): ``application/json`` with optional parameters, any ``charset`` UTF-8."""
    if not _JSON_MEDIA_TYPE.fullmatch(value.strip()):
        return "expected application/json (parameters such as charset=utf-8 allowed)"
    charset = _CHARSET.search(value)
    if charset and charset.group(1).strip().lower() not in ("utf-8", "utf8"):
        return f"charset {charset.group(1).strip()!r} is not UTF-8"
    return None


def _json_media_type(value: object) -> object:
    if isinstance(value, str) and (problem := json_media_type_problem(value)) is not None:
        raise _error("media_type", f"{show_value(value)}: {problem}", names_value=True)
    return value


JsonMediaType = Annotated[
    str,
    BeforeValidator(_json_media_type),
    WithJsonSchema(
        {"type": "string", "pattern": "^[Aa][Pp][Pp][Ll][Ii][Cc][Aa][Tt][Ii][Oo][Nn]/[Jj][Ss][Oo][Nn][ \t]*(;.*)?$"}
    ),
]


def extension_problem(name: str, value: object) -> str | None:
    """Why ``name: value`` is not an acceptable CloudEvents extension attribute (``None`` when it is;
    rules at :data:`EXTENSION_NAME`)."""
    if not EXTENSION_NAME.fullmatch(name):
        return "not a CloudEvents attribute name: lower-case ASCII letters and digits, at most 20"
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -(2**31) <= value < 2**31 else f"integer {value} is outside the 32-bit range"
    if isinstance(value, str):
        if len(value) > MAX_URI_CHARS:
            return f"longer than {MAX_URI_CHARS} characters"
        return None if _bad_char(value, text=False) is None else _char_message(value, text=False)
    return f"an extension attribute is a string, an integer or a boolean, not {_json_kind(value)}"


# --------------------------------------------------------------------------- decimals
_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    return f"a {type(value).__name__}"


def _decimal_string(
    integer_digits: int, *, positive: bool, maximum: Decimal | None = None
) -> Callable[[object], Decimal]:
    """A before-validator: a decimal string -> :class:`Decimal` within the bounds (see the module doc)."""
    limit = f"at most {integer_digits} integer digits and {DECIMAL_PLACES} decimals"

    def check(value: object) -> Decimal:
        if not isinstance(value, str):
            raise _error("decimal_type", f'must be a decimal string like "24.00", not {_json_kind(value)}')
        match = _DECIMAL.fullmatch(value)
        if match is None:
            raise _error(
                "decimal_format",
                f'must be a plain decimal string like "24.00" ({limit}; no exponent, spaces or other signs)',
            )
        sign, whole, fraction = match.groups()
        if len(whole) > integer_digits:
            raise _error("decimal_range", f"has too many integer digits ({limit})")
        if fraction is not None and len(fraction) > DECIMAL_PLACES:
            raise _error("decimal_range", f"has too many decimals ({limit})")
        number = Decimal(value)
        if sign or (positive and number == 0):
            raise _error("decimal_range", "must be greater than 0" if positive else "must not be negative")
        if maximum is not None and number > maximum:
            raise _error("decimal_range", f"must be at most {maximum}")
        return number

    return check


def _decimal_schema(
    integer_digits: int, *, positive: bool, maximum: Decimal | None = None, what: str
) -> WithJsonSchema:
    """JSON Schema of a decimal-string type checked by :func:`_decimal_string` with the same bounds."""
    low = "greater than 0" if positive else "0 or more"
    pattern = rf"^[0-9]{{1,{integer_digits}}}(\.[0-9]{{1,{DECIMAL_PLACES}}})?$"
    schema: dict[str, Any] = {
        "type": "string",
        "pattern": pattern,
        "description": f"{what}: decimal string, {low}"
        + (f", at most {maximum}" if maximum is not None else "")
        + f"; at most {integer_digits} integer digits and {DECIMAL_PLACES} decimals.",
    }
    return WithJsonSchema(schema)


# Decimal strings -> Decimal within bounds (module docstring).
Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_string(MONEY_INTEGER_DIGITS, positive=False)),
    _decimal_schema(MONEY_INTEGER_DIGITS, positive=False, what="Money"),
]
Quantity = Annotated[
    Decimal,
    BeforeValidator(_decimal_string(QUANTITY_INTEGER_DIGITS, positive=True)),
    _decimal_schema(QUANTITY_INTEGER_DIGITS, positive=True, what="Quantity"),
]
Distance = Annotated[
    Decimal,
    BeforeValidator(_decimal_string(QUANTITY_INTEGER_DIGITS, positive=False)),
    _decimal_schema(QUANTITY_INTEGER_DIGITS, positive=False, what="Distance (km)"),
]
TaxRate = Annotated[
    Decimal,
    BeforeValidator(_decimal_string(3, positive=False, maximum=Decimal(100))),
    _decimal_schema(3, positive=False, maximum=Decimal(100), what="Percentage"),
]


# --------------------------------------------------------------------------- times
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)
_TIME_EXAMPLE = "an RFC 3339 date-time with a UTC offset, like '2026-03-03T11:30:00+00:00' or '2026-03-03T11:30:00Z'"


def _rfc3339(value: object) -> datetime:
    """A before-validator: an RFC 3339 string with offset -> aware :class:`datetime` in years 2000–2100 (UTC)."""
    if not isinstance(value, str):
        raise _error("datetime_type", f"must be {_TIME_EXAMPLE}, not {_json_kind(value)}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise _error("datetime_format", f"must be {_TIME_EXAMPLE}")
    zulu, sign, off_h, off_m = match.group(8, 9, 10, 11)
    if zulu is None and sign is None:
        raise _error("datetime_naive", f"has no UTC offset (naive times are refused): must be {_TIME_EXAMPLE}")
    if not 1999 <= int(match.group(1)) <= 2101:  # before any arithmetic: year 9999 - 01:00 would overflow
        raise _error("datetime_range", f"must lie in years {EARLIEST_TIME.year}–{LATEST_TIME.year} (UTC)")
    if sign is not None and (int(off_h) > 23 or int(off_m) > 59):
        raise _error("datetime_format", f"has an invalid UTC offset: must be {_TIME_EXAMPLE}")
    try:  # the shape is checked: Python 3.11 reads it (Z, offsets, fractions cut to microseconds)
        moment = datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise _error("datetime_format", f"is not a valid date-time ({exc})") from None
    if not EARLIEST_TIME <= moment <= LATEST_TIME:
        raise _error("datetime_range", f"must lie in years {EARLIEST_TIME.year}–{LATEST_TIME.year} (UTC)")
    return moment


Time = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": (
                r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
            ),
            "description": "RFC 3339 date-time with a UTC offset, years 2000-2100 (UTC).",
        }
    ),
]


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_ItemT = TypeVar("_ItemT", bound=_HasId)


def _unique_ids(items: list[_ItemT], what: str) -> list[_ItemT]:
    """Refuse an id given twice in one list (``field 'data.parts': part id 'P-1' is given twice``)."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first = seen.setdefault(item.id, index)
        if first != index:
            raise _error(
                "duplicate_id",
                f"{what} id {show_value(item.id, 40)} is given twice (items {first} and {index})",
                names_value=True,
            )
    return items


# --------------------------------------------------------------------------- models
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TimeEntry(_Strict):
    """Time a technician clocked on the job.

    Either ``start`` and ``end`` (both with UTC offset) or ``duration_seconds`` must be given
    (``start`` + ``duration_seconds`` is accepted too); at most 7 days. ``break_minutes`` is unpaid
    break time inside the entry and is subtracted (for time bands, from the end of the entry).
    ``kind`` ``travel`` is time on the road, billed at the travel rate (or by ``distance_km`` when
    the tenant bills mileage). ``outside_quote`` marks extra work on a work order that executes a quote.
    """

    id: Id
    technician_id: Id
    skill: Label | None = Field(default=None, description="Overrides the technician's skill for this entry.")
    start: Time | None = None
    end: Time | None = None
    duration_seconds: Annotated[int, Field(gt=0, le=MAX_ENTRY_SECONDS)] | None = None
    break_minutes: Annotated[int, Field(ge=0, le=MAX_BREAK_MINUTES)] = 0
    kind: Literal["work", "travel"] = "work"
    visit_id: Id | None = Field(default=None, description="Groups entries into one visit; defaults to the event.")
    distance_km: Distance | None = Field(
        default=None,
        description="Distance driven (travel entries only); billed when the tenant bills travel by mileage.",
    )
    outside_quote: bool = Field(
        default=False,
        description="On a work order executing a quote: this time is an extra, billed on top of the quote.",
    )

    @model_validator(mode="after")
    def _start_end_or_duration(self) -> TimeEntry:
        if self.distance_km is not None and self.kind != "travel":
            raise _error(
                "entry",
                f"distance_km is only allowed on travel entries (kind 'travel'), not on kind {self.kind!r}",
                names_value=True,
            )
        if self.start is None and self.duration_seconds is None:
            raise _error("entry", "time entry needs start and end, or duration_seconds")
        if self.start is not None and self.end is None and self.duration_seconds is None:
            raise _error("entry", "time entry has start but neither end nor duration_seconds")
        if self.start is not None and self.end is not None:
            if self.end <= self.start:
                raise _error(
                    "entry", f"end {self.end.isoformat()} is not after start {self.start.isoformat()}", names_value=True
                )
            if (self.end - self.start).total_seconds() > MAX_ENTRY_SECONDS:
                raise _error(
                    "entry",
                    f"entry from {self.start.isoformat()} to {self.end.isoformat()} is longer than "
                    f"{MAX_ENTRY_SECONDS // 86400} days",
                    names_value=True,
                )
        return self

    @property
    def seconds(self) -> int:
        """Worked seconds: ``end - start`` (or ``duration_seconds``) minus breaks, never below 0."""
        if self.start is not None and self.end is not None:
            total = int((self.end - self.start).total_seconds())
        else:
            total = int(self.duration_seconds or 0)
        return max(0, total - self.break_minutes * 60)

    @property
    def interval(self) -> tuple[datetime, datetime] | None:
        """Clocked ``(start, end)`` (end = ``start + duration_seconds`` when no end); ``None`` when unclocked."""
        if self.start is None:
            return None
        end = self.end if self.end is not None else self.start + timedelta(seconds=int(self.duration_seconds or 0))
        return self.start, end


class PartUsage(_Strict):
    """A part (or consumable) used on the job. ``quantity`` may be fractional (``"2.5"`` kg).

    ``category`` selects the tenant's markup for that category; ``client_supplied`` parts are
    neither billed nor costed; ``outside_quote`` marks an extra on a work order executing a quote.
    """

    id: Id
    sku: Id
    description: Text
    quantity: Quantity
    unit: Label = "un"
    unit_cost: Money | None = Field(default=None, description="Our purchase cost per unit, when known.")
    unit_price: Money | None = Field(
        default=None, description="Sell price per unit from the platform's catalogue, when known."
    )
    category: Label | None = Field(
        default=None, description="Part category (selects the markup); default the tenant catalogue's."
    )
    client_supplied: bool = Field(default=False, description="The client supplied the part: not billed, not costed.")
    outside_quote: bool = Field(
        default=False,
        description="On a work order executing a quote: this part is an extra, billed on top of the quote.",
    )


class Expense(_Strict):
    """An expense incurred on the job (parking, tolls, ...). ``amount`` is net of VAT, in the tenant currency."""

    id: Id
    description: Text
    amount: Money
    billable: bool = True
    outside_quote: bool = Field(
        default=False, description="On a work order executing a quote: this expense is billed on top of the quote."
    )


class QuoteLine(_Strict):
    """An approved quote line: fixed price. ``tax_rate`` is a percentage (``"23"``, 0–100); default the tenant's VAT."""

    id: Id
    description: Text
    quantity: Quantity
    unit_price: Money
    tax_rate: TaxRate | None = None
    sku: Id | None = None


class _WorkData(_Strict):
    revision: Annotated[int, Field(ge=1, le=MAX_REVISION)] = 1
    client_id: Id
    site_id: Id
    contract_ref: Id | None = None
    time_entries: list[TimeEntry] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    parts: list[PartUsage] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    expenses: list[Expense] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    summary: Summary | None = Field(default=None, description="Short description shown on the invoice.")
    asset_ids: list[Id] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description="Assets (equipment) worked on, as the platform identifies them: for the economic report.",
    )

    @field_validator("time_entries")
    @classmethod
    def _unique_entries(cls, entries: list[TimeEntry]) -> list[TimeEntry]:
        return _unique_ids(entries, "entry")

    @field_validator("parts")
    @classmethod
    def _unique_parts(cls, parts: list[PartUsage]) -> list[PartUsage]:
        return _unique_ids(parts, "part")

    @field_validator("expenses")
    @classmethod
    def _unique_expenses(cls, expenses: list[Expense]) -> list[Expense]:
        return _unique_ids(expenses, "expense")

    def _own_visit(self) -> str:
        raise NotImplementedError

    @model_validator(mode="after")
    def _no_overlap(self) -> _WorkData:
        """Clocked entries of one technician in one visit must not overlap (``[start, end)`` intervals)."""
        spans: dict[tuple[str, str], list[tuple[datetime, datetime, str]]] = {}
        own = self._own_visit()
        for entry in self.time_entries:
            interval = entry.interval
            if interval is not None:
                spans.setdefault((entry.technician_id, entry.visit_id or own), []).append((*interval, entry.id))
        problems: list[str] = []
        for (tech, visit), group in spans.items():
            group.sort(key=lambda span: (span[0], span[1]))
            current = group[0]
            for nxt in group[1:]:
                if nxt[0] < current[1]:
                    problems.append(
                        f"entries {show_value(current[2], 40)} and {show_value(nxt[2], 40)} of technician "
                        f"{show_value(tech, 40)} overlap in visit {show_value(visit, 40)} "
                        f"({current[0].isoformat()}–{current[1].isoformat()} and "
                        f"{nxt[0].isoformat()}–{nxt[1].isoformat()})"
                    )
                if nxt[1] > current[1]:
                    current = nxt
        if problems:
            more = f"; and {len(problems) - 2} more overlaps" if len(problems) > 2 else ""
            raise _error("overlap", "; ".join(problems[:2]) + more, at="time_entries", names_value=True)
        return self


class WorkOrderCompletedData(_WorkData):
    """Data of ``maintenance.work_order.completed``."""

    work_order_id: Id
    kind: Literal["corrective", "preventive"] = "corrective"
    quote_id: Id | None = Field(default=None, description="Approved quote this work order executes, if any.")

    def _own_visit(self) -> str:
        return self.work_order_id


class ScheduledJobClosedData(_WorkData):
    """Data of ``maintenance.scheduled_job.closed`` (preventive maintenance visit)."""

    scheduled_job_id: Id
    kind: Literal["preventive"] = "preventive"

    def _own_visit(self) -> str:
        return self.scheduled_job_id


class QuoteApprovedData(_Strict):
    """Data of ``maintenance.quote.approved``."""

    quote_id: Id
    revision: Annotated[int, Field(ge=1, le=MAX_REVISION)] = 1
    client_id: Id
    site_id: Id
    work_order_id: Id | None = None
    contract_ref: Id | None = None
    lines: list[QuoteLine] = Field(min_length=1, max_length=MAX_LIST_ITEMS)
    summary: Summary | None = None

    @field_validator("lines")
    @classmethod
    def _unique_lines(cls, lines: list[QuoteLine]) -> list[QuoteLine]:
        return _unique_ids(lines, "line")


class DocumentChangeData(_Strict):
    """Data of a lifecycle change (reopened, cancelled): which revision it concerns, whose document, why.

    ``revision`` is required (1 to 2^31 − 1): the revision being reopened or cancelled, or the latest
    one the platform knows. ``client_id`` must be the document's client (it routes the event to the
    partition of that client's other events, which keeps them in order). ``reason`` is free text
    (1–500 characters) printed on a credit note or void reason; pricing supplies one when absent.
    """

    revision: Annotated[int, Field(ge=1, le=MAX_REVISION)]
    client_id: Id
    reason: Text | None = Field(default=None, description="Why (printed as the void or credit note reason).")


class WorkOrderChangeData(DocumentChangeData):
    """Data of ``maintenance.work_order.reopened`` and ``maintenance.work_order.cancelled``."""

    work_order_id: Id


class QuoteChangeData(DocumentChangeData):
    """Data of ``maintenance.quote.cancelled``."""

    quote_id: Id


def _extensions_schema(schema: dict[str, Any]) -> None:
    schema["propertyNames"] = {"anyOf": [{"enum": sorted(schema["properties"])}, {"pattern": "^[a-z0-9]{1,20}$"}]}
    schema["additionalProperties"] = {
        "anyOf": [
            {"type": "string", "maxLength": MAX_URI_CHARS},
            {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
            {"type": "boolean"},
        ]
    }
    schema["maxProperties"] = len(schema["properties"]) + MAX_EXTENSIONS


class _CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True, json_schema_extra=_extensions_schema)

    specversion: Literal["1.0"]
    id: Id
    source: UriRef = Field(description="URI-reference of the publishing platform.")
    time: Time
    subject: UriRef | None = None
    datacontenttype: JsonMediaType = "application/json"
    dataschema: UriRef | None = None
    tenant: TenantId

    @model_validator(mode="before")
    @classmethod
    def _check_extensions(cls, data: Any) -> Any:
        """Attributes other than the declared ones are CloudEvents extensions (``traceparent``, ...):
        kept, checked by :func:`extension_problem`."""
        if not isinstance(data, dict):
            return data
        extra = [name for name in data if name not in cls.model_fields]
        if len(extra) > MAX_EXTENSIONS:
            raise _error("extensions", f"{len(extra)} extension attributes; at most {MAX_EXTENSIONS}", names_value=True)
        for name in extra:
            if (problem := extension_problem(name, data[name])) is not None:
                raise _error("extension", problem, at=name, names_value=True)
        return data

    if TYPE_CHECKING:  # each event type declares its own ``data`` field (kept last in the field order)
        data: WorkOrderCompletedData | ScheduledJobClosedData | QuoteApprovedData | DocumentChangeData

    # -- identity ---------------------------------------------------------------------------
    @property
    def document(self) -> str:
        """Short document kind: ``wo`` (work order), ``sj`` (scheduled job) or ``qt`` (quote)."""
        raise NotImplementedError

    @property
    def business_id(self) -> str:
        """The platform id of the work order / scheduled job / quote."""
        raise NotImplementedError

    @property
    def revision(self) -> int:
        """The document's revision (``data.revision``)."""
        return self.data.revision

    @property
    def partition_key(self) -> str:
        """Kafka key on ``maintenance.events``: ``tenant:doc:id`` keeps one document's events ordered."""
        return f"{self.tenant}:{self.document}:{self.business_id}"

    @property
    def invoice_key(self) -> str:
        """Identity of the invoice this event produces: ``tenant:doc:id:rN``."""
        return f"{self.partition_key}:r{self.revision}"


class WorkOrderCompleted(_CloudEvent):
    """CloudEvent ``maintenance.work_order.completed``."""

    type: Literal["maintenance.work_order.completed"]
    data: WorkOrderCompletedData

    @property
    def document(self) -> str:
        """``wo``."""
        return "wo"

    @property
    def business_id(self) -> str:
        """``data.work_order_id``."""
        return self.data.work_order_id


class ScheduledJobClosed(_CloudEvent):
    """CloudEvent ``maintenance.scheduled_job.closed``."""

    type: Literal["maintenance.scheduled_job.closed"]
    data: ScheduledJobClosedData

    @property
    def document(self) -> str:
        """``sj``."""
        return "sj"

    @property
    def business_id(self) -> str:
        """``data.scheduled_job_id``."""
        return self.data.scheduled_job_id


class QuoteApproved(_CloudEvent):
    """CloudEvent ``maintenance.quote.approved``."""

    type: Literal["maintenance.quote.approved"]
    data: QuoteApprovedData

    @property
    def document(self) -> str:
        """``qt``."""
        return "qt"

    @property
    def business_id(self) -> str:
        """``data.quote_id``."""
        return self.data.quote_id


class _ChangeEvent(_CloudEvent):
    """A lifecycle change of a document (:class:`DocumentChangeData`); ``action`` says what it does to the invoice."""

    if TYPE_CHECKING:  # declared by each event type (kept last in the field order)
        type: str
        data: WorkOrderChangeData | QuoteChangeData

    @property
    def action(self) -> Literal["reopen", "cancel"]:
        """``reopen`` (``maintenance.work_order.reopened``: hold the invoice until a later revision) or
        ``cancel`` (the cancelled types: retire it)."""
        return "reopen" if self.type == WORK_ORDER_REOPENED else "cancel"

    @property
    def document(self) -> str:
        """``qt`` (a quote) or ``wo`` (a work order)."""
        return "qt" if isinstance(self.data, QuoteChangeData) else "wo"

    @property
    def business_id(self) -> str:
        """``data.quote_id`` or ``data.work_order_id``."""
        data = self.data
        return data.quote_id if isinstance(data, QuoteChangeData) else data.work_order_id

    @property
    def change_key(self) -> str:
        """Identity of the change: ``tenant:doc:id:rN:reopen`` or ``...:cancel``."""
        return f"{self.invoice_key}:{self.action}"


class WorkOrderReopened(_ChangeEvent):
    """CloudEvent ``maintenance.work_order.reopened``: hold the work order's invoice until a later revision."""

    type: Literal["maintenance.work_order.reopened"]
    data: WorkOrderChangeData


class WorkOrderCancelled(_ChangeEvent):
    """CloudEvent ``maintenance.work_order.cancelled``: retire the work order's invoice."""

    type: Literal["maintenance.work_order.cancelled"]
    data: WorkOrderChangeData


class QuoteCancelled(_ChangeEvent):
    """CloudEvent ``maintenance.quote.cancelled``: retire the quote's invoice (deposit or full)."""

    type: Literal["maintenance.quote.cancelled"]
    data: QuoteChangeData


#: An event priced into an invoice (or a not-billable record).
BillableEvent = WorkOrderCompleted | ScheduledJobClosed | QuoteApproved
#: A lifecycle change of a document: priced into a :class:`~connectors.sdk.invoice.DocumentChange`.
ChangeEvent = WorkOrderReopened | WorkOrderCancelled | QuoteCancelled
#: Any event :func:`parse_event` returns.
AnyEvent = BillableEvent | ChangeEvent
MaintenanceEvent = Annotated[
    WorkOrderCompleted | ScheduledJobClosed | QuoteApproved | WorkOrderReopened | WorkOrderCancelled | QuoteCancelled,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[MaintenanceEvent] = TypeAdapter(MaintenanceEvent)


# --------------------------------------------------------------------------- decoding
class EventDecodeError(ValueError):
    """Raised when a record is not a valid maintenance CloudEvent.

    ``error_class`` is one of ``too_large`` (over :data:`MAX_EVENT_BYTES`), ``not_json`` (not
    UTF-8 JSON, ``NaN``/``Infinity``, nested too deeply), ``not_cloudevent`` (not an object with
    ``specversion`` and ``type``), ``unknown_type`` or ``invalid`` (fails validation, including
    duplicate keys); the message names the offending field path and value, at most
    :data:`MAX_MESSAGE_CHARS` characters. ``event_type``: for ``unknown_type``, the type the record
    names when it is a string (else ``None``).
    """

    def __init__(self, error_class: str, message: str, *, event_type: str | None = None):
        super().__init__(message)
        self.error_class = error_class
        #: ``unknown_type``: the record's ``type`` (a string; e.g. to acknowledge types a tenant ignores)
        self.event_type = event_type


class _Object(dict[str, Any]):
    """A decoded JSON object in which some key was given more than once (``duplicates``: key, first, last value)."""

    __slots__ = ("duplicates",)
    duplicates: list[tuple[str, Any, Any]]


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed (JSON has no NaN or Infinity)")


def _loads(text: str) -> tuple[Any, bool]:
    """``json.loads`` keeping duplicate keys visible and JSON numbers with a fraction as written."""
    found: list[bool] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        marked = _Object(obj)
        first: dict[str, Any] = {}
        duplicates: list[tuple[str, Any, Any]] = []
        for key, value in pairs:
            if key in first:
                duplicates.append((key, first[key], value))
            else:
                first[key] = value
        marked.duplicates = duplicates
        found.append(True)
        return marked

    obj = json.loads(text, object_pairs_hook=pairs_hook, parse_float=_JsonFloat, parse_constant=_refuse_constant)
    return obj, bool(found)


def _structure_problems(obj: Any, want_duplicates: bool) -> tuple[bool, list[str]]:
    """Walk the decoded value once: ``(deeper than MAX_JSON_DEPTH, duplicate-key messages)``."""
    duplicates: list[str] = []
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(obj, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True, duplicates
        children: Iterable[tuple[str | int, Any]]
        if isinstance(node, dict):
            if want_duplicates and isinstance(node, _Object):
                for dup_key, first, last in node.duplicates:
                    duplicates.append(
                        f"field '{_path([*path, dup_key])}': key given more than once in one JSON object "
                        f"(first {show_value(first, 40)}, then {show_value(last, 40)})"
                    )
            children = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            continue
        for key, child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1, (*path, key) if want_duplicates else path))
    return False, duplicates


def parse_event(raw: bytes | bytearray | memoryview | str | dict[str, Any]) -> AnyEvent:
    """Decode and validate one event (rules and bounds: the module docstring).

    ``raw`` is UTF-8 JSON (bytes or str) or an already-decoded JSON object (a dict of JSON types:
    money as strings, times as strings). Returns the typed event. Raises :class:`EventDecodeError`
    for every failure, whatever the input, with an ``error_class`` (checked in this order:
    ``too_large``, ``not_json``, ``not_cloudevent``, ``unknown_type``, ``invalid``) and a message
    naming the field path and the bad value.
    """
    if isinstance(raw, dict):
        obj, has_duplicates = raw, False
    elif isinstance(raw, (bytes, bytearray, memoryview, str)):
        obj, has_duplicates = _decode(raw)
    else:
        raise EventDecodeError("not_json", f"value is not JSON text: got {type(raw).__name__}")
    if not isinstance(obj, dict) or "specversion" not in obj or "type" not in obj:
        if not isinstance(obj, dict):
            raise EventDecodeError(
                "not_cloudevent",
                f"not a CloudEvent: field 'specversion' is missing (the value is {_json_kind(obj)}, not a JSON object)",
            )
        missing = "specversion" if "specversion" not in obj else "type"
        raise EventDecodeError("not_cloudevent", f"not a CloudEvent: field '{missing}' is missing")
    kind = obj["type"]
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise EventDecodeError(
            "unknown_type",
            f"field 'type': unknown event type {show_value(kind)}; expected one of {', '.join(EVENT_TYPES)}",
            event_type=kind if isinstance(kind, str) else None,
        )
    if has_duplicates:
        _, duplicates = _structure_problems(obj, want_duplicates=True)
        raise EventDecodeError("invalid", _join(duplicates))
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise EventDecodeError("invalid", describe_validation_error(exc, strip_first=True)) from None
    except RecursionError:  # pragma: no cover - dict input nested deeper than the interpreter allows
        raise EventDecodeError("invalid", "value nested too deeply") from None


def parse_billable_event(raw: bytes | bytearray | memoryview | str | dict[str, Any]) -> BillableEvent:
    """:func:`parse_event` for an event that is priced into an invoice (for previews and tools).

    Raises :class:`EventDecodeError` like :func:`parse_event`, and ``invalid`` naming the type for a
    lifecycle change (``maintenance.work_order.cancelled`` ...), which prices to no invoice.
    """
    event = parse_event(raw)
    if isinstance(event, WorkOrderReopened | WorkOrderCancelled | QuoteCancelled):
        raise EventDecodeError(
            "invalid",
            f"field 'type': {event.type} is a lifecycle change, not priced into an invoice; expected one of "
            f"{', '.join(BILLABLE_EVENT_TYPES)}",
        )
    return event


def _decode(raw: bytes | bytearray | memoryview | str) -> tuple[Any, bool]:
    """Size check, UTF-8 and JSON decoding, depth check: ``(value, has duplicate keys)``."""
    if isinstance(raw, str):
        size = len(raw) if len(raw) > MAX_EVENT_BYTES else len(raw.encode("utf-8", "surrogatepass"))
    else:
        size = len(raw) if not isinstance(raw, memoryview) else raw.nbytes
    if size > MAX_EVENT_BYTES:
        what = f"{size} bytes" if not isinstance(raw, str) or size != len(raw) else f"at least {size} bytes"
        raise EventDecodeError(
            "too_large", f"event is {what}; the limit is {MAX_EVENT_BYTES} bytes ({MAX_EVENT_BYTES // 1024} KiB)"
        )
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventDecodeError(
                "not_json", f"value is not JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise EventDecodeError("not_json", "value is not JSON: it is empty")
    try:
        obj, has_duplicates = _loads(text)
    except RecursionError:
        raise EventDecodeError(
            "not_json", f"value is not JSON we accept: nested more than {MAX_JSON_DEPTH} levels deep"
        ) from None
    except ValueError as exc:  # json.JSONDecodeError, NaN/Infinity, integers over 4300 digits
        raise EventDecodeError("not_json", f"value is not JSON: {str(exc)[:200]}") from None
    # more nesting than brackets is impossible: walk the value only when the text has enough of them
    too_deep = text.count("[") + text.count("{") > MAX_JSON_DEPTH and _structure_problems(obj, want_duplicates=False)[0]
    if too_deep:
        raise EventDecodeError(
            "not_json", f"value is not JSON we accept: nested more than {MAX_JSON_DEPTH} levels deep"
        )
    return obj, has_duplicates


def describe_validation_error(exc: ValidationError, strip_first: bool = False) -> str:
    """``field 'path': message (got <value>)`` per error, joined with ``"; "``, at most :data:`MAX_MESSAGE_CHARS`.

    ``strip_first`` drops the union tag pydantic puts first in discriminated unions. Values are
    cut to :data:`VALUE_CHARS` characters (:func:`show_value`); errors past the limit are
    summarised as ``and N more``.
    """
    parts = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if strip_first and loc:
            loc = loc[1:]
        ctx = err.get("ctx") or {}
        names_value, at = _error_flags(err["type"])
        if at:
            loc.append(at)
        path = _path(loc)
        if err["type"] == "missing":
            parts.append(f"field '{path}': is required")
        elif err["type"] == "string_pattern_mismatch" and ctx.get("pattern") in _CHAR_PATTERNS:
            message = _char_message(err.get("input"), text=_CHAR_PATTERNS[ctx["pattern"]])
            parts.append(f"field '{path}': {message} (got {show_value(err.get('input'))})")
        elif names_value:
            parts.append(f"field '{path}': {err['msg']}")
        else:
            parts.append(f"field '{path}': {err['msg']} (got {show_value(err.get('input'))})")
    return _join(parts)


# --------------------------------------------------------------------------- tenant hint
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TENANT_IN_TEXT = re.compile(r'"tenant"\s*:\s*"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})"')
_HINT_BYTES = 1024 * 1024
_HINT_FALLBACK_CHARS = 64 * 1024
_WS = re.compile(r"[ \t\n\r]*")


def tenant_hint(raw: bytes | bytearray | memoryview | str | None) -> str | None:
    """The tenant a raw record names, even when the record is not a valid event; ``None`` when it names none.

    Reads the top-level members of a JSON object in order and returns the first ``"tenant"``
    whose value is a string matching the tenant pattern (``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``);
    a first ``"tenant"`` with any other value gives ``None``. When the object cannot be read up to
    its ``"tenant"`` member (cut short, nested too deeply, not JSON after it), falls back to the
    first ``"tenant": "<id>"`` in its first 64 KiB. Only the first 1 MiB is looked at; bytes are
    read as UTF-8 (invalid bytes replaced). Never raises. Fills the ``dlq.tenant`` header.
    """
    try:
        if raw is None:
            return None
        text = raw[:_HINT_BYTES] if isinstance(raw, str) else bytes(raw[:_HINT_BYTES]).decode("utf-8", "replace")
        return _top_level_tenant(text.lstrip("\ufeff"))
    except Exception:  # noqa: BLE001 - a hint: never fail the caller
        return None


def _skip_ws(text: str, pos: int) -> int:
    """Index of the first non-whitespace character of ``text`` at or after ``pos``."""
    match = _WS.match(text, pos)  # always matches (possibly empty)
    return match.end() if match is not None else pos


def _top_level_tenant(text: str) -> str | None:
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if not text.startswith("{", pos):
        return None
    pos += 1
    try:
        while True:
            pos = _skip_ws(text, pos)
            if text.startswith("}", pos):
                return None
            key, pos = decoder.raw_decode(text, pos)
            pos = _skip_ws(text, pos)
            if not isinstance(key, str) or not text.startswith(":", pos):
                break
            pos = _skip_ws(text, pos + 1)
            value, pos = decoder.raw_decode(text, pos)
            if key == "tenant":
                return value if isinstance(value, str) and _TENANT.fullmatch(value) else None
            pos = _skip_ws(text, pos)
            if text.startswith("}", pos):
                return None  # read the whole object: it names no tenant
            if not text.startswith(",", pos):
                break
            pos += 1
    except (ValueError, RecursionError):
        pass
    match = _TENANT_IN_TEXT.search(text, 0, _HINT_FALLBACK_CHARS)
    return match.group(1) if match else None


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of any maintenance event (the discriminated union)."""
    return _ADAPTER.json_schema()


def event_time(event: AnyEvent) -> datetime:
    """The CloudEvent ``time`` attribute (aware datetime)."""
    return event.time


# --------------------------------------------------------------------------- validated form
#: Header of a record on the internal by-client topic that carries its event's validated form
#: (:func:`validated_form`), next to the original event bytes in the value.
VALIDATED_HEADER = "broker.validated"
_FORM_VERSION = b"1"


@functools.cache
def _form_fingerprint() -> bytes:
    """The tag :func:`validated_form` writes: the format version and a digest of the event models'
    JSON Schema (field names, types, defaults), so a form written by a worker with other models is
    not loaded by this one (it parses the original bytes instead)."""
    schema = json.dumps(event_json_schema(), sort_keys=True).encode()
    return _FORM_VERSION + b"." + hashlib.sha256(schema).hexdigest()[:16].encode()


def validated_form(event: AnyEvent) -> bytes:
    """The compact internal encoding of a validated event: ``<fingerprint>:<JSON>``, the JSON being
    the model's own dump of the fields the event set (:func:`load_validated` reads it back)."""
    return _form_fingerprint() + b":" + event.model_dump_json(exclude_unset=True).encode()


def _strip(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` metadata and ``| None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            (annotation,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        else:
            return annotation


def _converter(annotation: Any) -> Callable[[Any], Any] | None:
    """How :func:`load_validated` turns a dumped value back into the field's value (``None``: as it is)."""
    annotation = _strip(annotation)
    if get_origin(annotation) is list:
        item = _converter(get_args(annotation)[0])
        return None if item is None else (lambda values: [item(value) for value in values])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _constructor(annotation)
    if annotation is Decimal:
        return Decimal  # exact: a Decimal's str() reads back to the same digits and exponent
    if annotation is datetime:
        return datetime.fromisoformat  # pydantic writes RFC 3339 with the offset kept
    return None


_ABSENT = object()
_ModelT = TypeVar("_ModelT", bound=BaseModel)


def trusted_model(
    model: type[_ModelT],
    values: dict[str, Any],
    *,
    fields_set: set[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> _ModelT:
    """An instance of ``model`` from values already valid and typed, every field given (``values`` becomes
    its ``__dict__``): what ``model.model_construct`` does, without its per-field Python loop.
    ``fields_set``: the fields given (default: all of ``values``); ``extra``: extra attributes."""
    made = model.__new__(model)
    object.__setattr__(made, "__dict__", values)
    object.__setattr__(made, "__pydantic_fields_set__", set(values) if fields_set is None else fields_set)
    object.__setattr__(made, "__pydantic_extra__", extra)
    object.__setattr__(made, "__pydantic_private__", None)
    return made


def _constructor(model: type[BaseModel]) -> Callable[[dict[str, Any]], Any]:
    """A loader of ``model`` from its dumped fields without validation: what ``model_construct``
    does (defaults filled, the given fields as set), with nested models, decimals and times
    converted back, in one pass planned once per model."""
    plan = [
        (name, _converter(field.annotation), field.default_factory, field.default)
        for name, field in model.model_fields.items()
    ]
    names = frozenset(model.model_fields)
    extra_allowed = model.model_config.get("extra") == "allow"

    def construct(obj: dict[str, Any]) -> Any:
        values: dict[str, Any] = {}
        get = obj.get
        for name, convert, factory, default in plan:
            value = get(name, _ABSENT)
            if value is _ABSENT:
                values[name] = factory() if factory is not None else default  # type: ignore[call-arg]
            else:
                values[name] = value if convert is None or value is None else convert(value)
        extra: dict[str, Any] | None = {} if extra_allowed else None
        if not obj.keys() <= names:
            if extra is None:
                raise ValueError(f"{model.__name__} has no field {sorted(obj.keys() - names)[0]!r}")
            extra = {key: value for key, value in obj.items() if key not in names}
        return trusted_model(model, values, fields_set=set(obj), extra=extra)

    return construct


@functools.cache
def _constructors() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """Event type -> loader of that event class (:func:`_constructor`)."""
    classes = (
        WorkOrderCompleted,
        ScheduledJobClosed,
        QuoteApproved,
        WorkOrderReopened,
        WorkOrderCancelled,
        QuoteCancelled,
    )
    return {get_args(cls.model_fields["type"].annotation)[0]: _constructor(cls) for cls in classes}


def load_validated(form: bytes) -> AnyEvent:
    """The event :func:`validated_form` encoded, without validating it again: equal to what
    :func:`parse_event` returned for it (fields, fields set, extension attributes).

    Trusted input only (the internal by-client topic, written by ``enrich`` after :func:`parse_event`).
    Raises :class:`EventDecodeError` ``internal`` when ``form`` is not one this worker can read (another
    fingerprint, cut short, not the JSON of an event)."""
    tag, _, text = bytes(form).partition(b":")
    if tag != _form_fingerprint():
        raise EventDecodeError(
            "internal", f"validated form {show_value(tag.decode('utf-8', 'replace'))} is not this worker's"
        )
    try:
        obj = json.loads(text)
        event: AnyEvent = _constructors()[obj["type"]](obj)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the record cannot be trusted
        raise EventDecodeError("internal", f"validated form unreadable: {show_value(repr(exc), 200)}") from None
    return event


def parse_forwarded(raw: bytes | None, form: bytes | None) -> AnyEvent:
    """The event of a by-client record: its validated form when it carries one written with this
    worker's models (:func:`load_validated`, raising ``internal`` when it is damaged), else the full
    :func:`parse_event` of ``raw`` (records written before the form existed, or by other models)."""
    if form is not None and bytes(form).startswith(_form_fingerprint() + b":"):
        return load_validated(form)
    return parse_event(raw if raw is not None else b"")

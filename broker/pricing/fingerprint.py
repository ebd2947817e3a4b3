"""The content fingerprint of an invoice version: what the customer is billed, hashed.

``sha256:<64 hex digits>`` of a canonical JSON document (version ``"v": 1``) holding exactly:

* the client: ``client_id``, ``client_name``, ``contact_id``;
* ``currency`` and ``tax_inclusive``;
* ``lines``, in order, each with ``kind``, ``description``, ``quantity``, ``unit``, ``unit_price``,
  ``discount_percent``, ``net``, ``tax_rate``, ``tax``, ``total``, ``account_code``, ``tax_type``;
* the totals ``net_total``, ``tax_total``, ``total``;
* ``legal_notes`` (printed on the invoice), in order.

Not hashed: times and dates (``event_time``, ``priced_at``, ``issue_date``, ``due_date`` — a
re-sent event with a later time is the same content), ids that identify rather than bill
(``event_id``, ``invoice_key``, ``invoice_number``, ``reference``, ``site_id``), what is never sent to
the billing system (``cost``, ``cost_total``, ``margin``, ``notes``, line ``source``/``rule``/
``covered_by``) and ``allowance``/``contract_id`` (their effect is in the lines).

Canonical JSON: keys sorted, no spaces (``separators=(",", ":")``), UTF-8 without escaping;
decimals as plain strings of their value with trailing zeros removed (``24.00`` and ``24`` both
``"24"``, never an exponent), so two prices equal in value hash alike; ``None`` as ``null``.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Iterable, Mapping
from decimal import Decimal

from connectors.sdk.invoice import Invoice, InvoiceLine

__all__ = ["DOCUMENT_FIELDS", "FINGERPRINT_VERSION", "LINE_FIELDS", "content_fingerprint", "fingerprint_of"]

FINGERPRINT_VERSION = 1
#: Invoice fields hashed (besides ``lines``).
DOCUMENT_FIELDS = (
    "client_id",
    "client_name",
    "contact_id",
    "currency",
    "tax_inclusive",
    "net_total",
    "tax_total",
    "total",
    "legal_notes",
)
#: Fields of each line hashed.
LINE_FIELDS = (
    "kind",
    "description",
    "quantity",
    "unit",
    "unit_price",
    "discount_percent",
    "net",
    "tax_rate",
    "tax",
    "total",
    "account_code",
    "tax_type",
)


_DECIMAL_ZERO_TEXTS = ("-0", "0")
_line_values = operator.attrgetter(*LINE_FIELDS)


def _canonical(value: object) -> object:
    """The JSON value of what :mod:`json` cannot encode itself: a decimal as a plain string without
    trailing zeros (``-0`` as ``0``). Called by the encoder for such values only, so the rest of the
    document (strings, numbers, ``None``, lists and tuples) stays in its C code. Raises ``TypeError``
    for any other type."""
    if isinstance(value, Decimal):
        text = str(value)  # "24.50", "-0.00", "1E+2": the fast path strips zeros of the first kind
        if "E" in text or "e" in text or "N" in text or "n" in text:  # exponent, NaN, Infinity
            text = format(value.normalize(), "f")
        elif "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in _DECIMAL_ZERO_TEXTS else text
    raise TypeError(f"cannot fingerprint a value of type {type(value).__name__}: {value!r}")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_canonical)


def fingerprint_of(fields: Mapping[str, object], lines: Iterable[InvoiceLine]) -> str:
    """The fingerprint of an invoice given as ``fields`` (at least :data:`DOCUMENT_FIELDS`) and its ``lines``.

    Returns ``sha256:`` followed by 64 lower-case hex digits (module docstring). Raises ``KeyError``
    naming a missing field, ``TypeError`` for a value that is not JSON, a decimal, a list or a tuple.
    """
    document: dict[str, object] = {name: fields[name] for name in DOCUMENT_FIELDS}
    document["lines"] = [dict(zip(LINE_FIELDS, _line_values(line), strict=True)) for line in lines]
    document["v"] = FINGERPRINT_VERSION
    return "sha256:" + hashlib.sha256(_ENCODER.encode(document).encode("utf-8")).hexdigest()


def content_fingerprint(invoice: Invoice) -> str:
    """The fingerprint of ``invoice``'s billable content (module docstring); ignores ``invoice.fingerprint``."""
    return fingerprint_of({name: getattr(invoice, name) for name in DOCUMENT_FIELDS}, invoice.lines)

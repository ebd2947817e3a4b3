"""Invoice numbers: deterministic, within the billing system's length limit (pure, no I/O).

:func:`invoice_number` is what pricing stamps on every invoice; :func:`shortest_invoice_number`
and :func:`invoice_number_limit` are what the configuration check (:mod:`broker.config`) uses to
refuse a prefix that cannot fit the tenant's billing system. The forms are documented in
``docs/pricing.md``.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

__all__ = [
    "DOCUMENT_KINDS",
    "INVOICE_NUMBER_MAX",
    "NUMBER_HASH_DIGITS",
    "invoice_number",
    "invoice_number_limit",
    "shortest_invoice_number",
]

#: Longest invoice number :func:`invoice_number` produces for any billing system (longer ones are
#: shortened with a hash); a system with a lower limit lowers it (:func:`invoice_number_limit`). Never
#: raised: every number issued under it stays the same.
INVOICE_NUMBER_MAX = 32
#: Hex digits of the SHA-256 that make a shortened invoice number unique (at least that many).
NUMBER_HASH_DIGITS = 8
#: The document kinds of our invoice numbers (``CloudEvent.document``): all two characters.
DOCUMENT_KINDS = ("wo", "sj", "qt")


def _sanitise(value: str) -> str:
    cleaned = re.sub(r"[^A-Z0-9-]+", "-", value.upper())
    return re.sub(r"-{2,}", "-", cleaned).strip("-")


def invoice_number_limit(system_max: int | None) -> int:
    """Longest invoice number for a billing system that takes ``system_max`` characters (``None``: no
    limit): :data:`INVOICE_NUMBER_MAX` (32), or ``system_max`` when lower.

    ``system_max`` is :attr:`connectors.sdk.interface.Capabilities.invoice_number_limit` of the
    tenant's connector (e.g. 25 for PayPal, 21 for QuickBooks Online).
    """
    return INVOICE_NUMBER_MAX if system_max is None else min(INVOICE_NUMBER_MAX, system_max)


def shortest_invoice_number(prefix: str) -> int:
    """Length of the shortest form :func:`invoice_number` can take for ``prefix``:
    ``PREFIX-DOC-`` and :data:`NUMBER_HASH_DIGITS` hex digits (``shortest_invoice_number("ACME") == 16``).

    A billing system whose limit is below it cannot hold every number of the tenant (the
    configuration is refused when it loads).
    """
    return len(_number_head(prefix, DOCUMENT_KINDS[0])) + NUMBER_HASH_DIGITS


def _number_head(prefix: str, document: str) -> str:
    return f"{_sanitise(prefix)}-{_sanitise(document)}-"


@lru_cache(maxsize=4096)
def invoice_number(
    prefix: str, document: str, document_id: str, revision: int, max_length: int = INVOICE_NUMBER_MAX
) -> str:
    """Deterministic invoice number ``PREFIX-DOC-ID-RN`` of at most ``max_length`` characters,
    e.g. ``invoice_number("ACME", "wo", "1001", 1) == "ACME-WO-1001-R1"``.

    Everything is upper-cased and every run of characters outside ``[A-Z0-9-]`` becomes one ``-``.
    ``max_length`` is :func:`invoice_number_limit` of the tenant's billing system. Three forms, the
    first that fits (``H(x)``: upper-case hex of ``sha256(x.encode("utf-8"))``):

    1. ``PREFIX-DOC-ID-RN`` when it fits and sanitising replaced nothing;
    2. ``PREFIX-DOC-<cut id>-<first 8 of H(document_id)>-RN``: the sanitised id cut to the room left
       (trailing ``-`` dropped; no cut id and its ``-`` when no room is left). So ``"A/B"`` and
       ``"A_B"`` stay distinct, and prefix, document and revision readable;
    3. when even ``PREFIX-DOC-<8 hex>-RN`` does not fit (a revision of many digits on a short
       limit): ``PREFIX-DOC-`` and the first ``max_length - len("PREFIX-DOC-")`` digits of
       ``H(document_id + "\x00" + str(revision))`` (at most 64), the revision then only in the hash.

    ``invoice_number("ACME", "wo", "MAINTAINX-ORG-321-WO-5550123", 1, 25) == "ACME-WO-MAI-<8 hex>-R1"``
    (25 characters). Raises :class:`ValueError` when ``max_length`` is below
    :func:`shortest_invoice_number` of ``prefix`` (the configuration check refuses such a tenant).
    """
    head = _number_head(prefix, document)
    if max_length < len(head) + NUMBER_HASH_DIGITS:
        raise ValueError(
            f"invoice_prefix {prefix!r}: no invoice number fits {max_length} characters "
            f"({head!r} and {NUMBER_HASH_DIGITS} hash digits need {len(head) + NUMBER_HASH_DIGITS})"
        )
    tail = f"-R{int(revision)}"
    clean_id = _sanitise(document_id)
    plain = f"{head}{clean_id}{tail}"
    lossy = clean_id != document_id.upper()
    if not lossy and clean_id and len(plain) <= max_length:
        return plain
    room = max_length - len(head) - len(tail) - NUMBER_HASH_DIGITS - 1
    if room >= -1:  # -1: the hash alone fits, without the cut id and its "-"
        digest = hashlib.sha256(document_id.encode("utf-8")).hexdigest()[:NUMBER_HASH_DIGITS].upper()
        kept = clean_id[: max(room, 0)].strip("-")
        middle = f"{kept}-{digest}" if kept else digest
        return f"{head}{middle}{tail}"
    whole = f"{document_id}\x00{int(revision)}".encode()
    return head + hashlib.sha256(whole).hexdigest()[: max_length - len(head)].upper()

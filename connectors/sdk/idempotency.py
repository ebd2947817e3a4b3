"""Idempotency keys from business identity only, within each billing system's limits.

A key is ``{tenant}:{connector}:{invoice_key}:{operation}`` — the tenant, the billing system, our
invoice key *with its revision* (``acme-fm:wo:1001:r2``) and the step (``create``, ``credit``,
``delete``, ``finalize``, ``email`` ...). Nothing else: no time, random value, host or process, so
the key is identical across retries, restarts, rebalances and workers. Each step of a multi-step
create (create draft, add lines, finalize, e-mail) has its own key, so replaying one step never
replays another.

When the readable form exceeds the system's length limit or uses characters it does not accept,
it becomes ``<sanitised readable prefix>:sha256:<64 hex digits of the full text>`` (limits of at
least 72 characters) or the first ``max_length`` hex digits of the SHA-256 (shorter limits, at
least 16 = 64 bits): still deterministic, still distinct per identity.

**Replays.** A record replayed from the dead-letter topic is a new delivery of the same invoice
version: inside :func:`generation` (the broker uses the record's ``dlq.replay.count``) the
operation becomes ``create.r1``, ``create.r2`` ... Still deterministic (the same replay retried
uses the same key), but the billing system's cached answer to the first, failed try (Xero keeps
it 6 minutes) does not answer the replay after the cause was fixed. Duplicates stay impossible:
the ledger looks up an invoice whose earlier outcome was unknown before creating it again.

Known limits (``docs/delivery.md``): Xero ``Idempotency-Key`` 128 characters; Stripe
``Idempotency-Key`` 255; QuickBooks Online ``requestid`` 50 (36 in a batch); PayPal
``PayPal-Request-Id`` 108.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

_GENERATION: ContextVar[int] = ContextVar("idempotency_generation", default=0)


@contextmanager
def generation(n: int) -> Iterator[None]:
    """Keys made inside the block belong to replay generation ``n`` (0 = the original delivery)."""
    token = _GENERATION.set(max(0, int(n)))
    try:
        yield
    finally:
        _GENERATION.reset(token)


def current_generation() -> int:
    return _GENERATION.get()


@dataclass(frozen=True)
class KeyRules:
    """A billing system's key constraints: ``max_length`` characters from the regex class ``charset``."""

    max_length: int = 128
    charset: str = "A-Za-z0-9:._-"

    def __post_init__(self) -> None:
        if self.max_length < 16:
            raise ValueError("idempotency keys need at least 16 characters to stay collision-free")

    def fits(self, key: str) -> bool:
        return len(key) <= self.max_length and re.fullmatch(f"[{self.charset}]+", key) is not None


XERO = KeyRules(128)
STRIPE = KeyRules(255)
QUICKBOOKS = KeyRules(50)
QUICKBOOKS_BATCH = KeyRules(36)
PAYPAL = KeyRules(108)
DEFAULT = XERO


def make_key(raw: str, rules: KeyRules = DEFAULT) -> str:
    """``raw`` itself when it fits ``rules``, else its deterministic digest form (module docstring)."""
    if rules.fits(raw):
        return raw
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    suffix = f":sha256:{digest}"
    if rules.max_length >= len(suffix) + 1 and rules.fits("a" + suffix):
        prefix = re.sub(f"[^{rules.charset}]", "_", raw)[: rules.max_length - len(suffix)]
        return prefix + suffix
    return digest[: rules.max_length]


def idempotency_key(tenant: str, connector: str, invoice_key: str, operation: str, rules: KeyRules = DEFAULT) -> str:
    """The key of ``operation`` on invoice version ``invoice_key`` of ``tenant`` in ``connector``.

    >>> idempotency_key("acme", "xero", "acme:wo:1:r1", "create")
    'acme:xero:acme:wo:1:r1:create'
    """
    if not operation or ":" in operation:
        raise ValueError(f"operation must be a non-empty word without ':' (got {operation!r})")
    gen = _GENERATION.get()
    if gen:
        operation = f"{operation}.r{gen}"
    return make_key(f"{tenant}:{connector}:{invoice_key}:{operation}", rules)


__all__ = [
    "DEFAULT",
    "PAYPAL",
    "QUICKBOOKS",
    "QUICKBOOKS_BATCH",
    "STRIPE",
    "XERO",
    "KeyRules",
    "current_generation",
    "generation",
    "idempotency_key",
    "make_key",
]

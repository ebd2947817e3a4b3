"""Callbacks to the maintenance platform, the pure parts: the tenant's target, the signed request, the
reading of a ``billing.payments`` record and of the platform's answer. ``broker callbacks``
(:mod:`broker.callbacks_service`) sends them; ``docs/payments.md``, "Callbacks to the platform".

**The request** is the Standard Webhooks scheme (https://www.standardwebhooks.com/), so a platform can
check it with an off-the-shelf library (``standardwebhooks``, ``svix``):

* ``POST <callbacks.url>``, body = the ``billing.payments`` record's value, byte for byte (the structured
  CloudEvent JSON as recorded), ``Content-Type: application/cloudevents+json``;
* ``Webhook-Id``: the CloudEvent ``id`` (the same on every attempt, so the platform can drop a duplicate);
* ``Webhook-Timestamp``: unix seconds when the attempt is signed (new on every attempt);
* ``Webhook-Signature``: ``v1,`` + Base64(HMAC-SHA256(key, ``"<id>.<timestamp>.<body>"``)), where the key
  is the Base64-decoded tenant secret without its ``whsec_`` prefix (:func:`secret_key`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urlsplit

from broker.config import BrokerConfig, Callbacks, ConfigError
from broker.payments.recorder import EVENT_TYPES

__all__ = [
    "CONTENT_TYPE",
    "SECRET_PREFIX",
    "CallbackTarget",
    "PaymentRecord",
    "answer_kind",
    "callback_targets_of",
    "read_record",
    "retry_after_seconds",
    "secret_key",
    "shown_url",
    "sign",
    "signed_headers",
]

#: ``Content-Type`` of a callback: a structured CloudEvent (CloudEvents JSON format).
CONTENT_TYPE = "application/cloudevents+json"
#: Prefix of a Standard Webhooks secret (``whsec_`` + Base64 of the key).
SECRET_PREFIX = "whsec_"
#: Bytes a key may have (Standard Webhooks: "between 24 bytes and 64 bytes").
KEY_BYTES = (24, 64)
USER_AGENT = "maintenance-billing-broker-callbacks/1"

_STATE_OF_TYPE = {kind: state for state, kind in EVENT_TYPES.items()}


def secret_key(secret: str, *, field: str = "secret") -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``secret`` without its ``whsec_`` prefix (optional),
    Base64-decoded. Raises :class:`ConfigError` naming ``field`` (never the value) when it is not Base64
    or the key is not 24 to 64 bytes long."""
    text = secret.strip()
    text = text.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{field}: not a Standard Webhooks secret ('whsec_' + Base64 of the key)") from None
    if not KEY_BYTES[0] <= len(key) <= KEY_BYTES[1]:
        raise ConfigError(
            f"{field}: the key is {len(key)} bytes; give {KEY_BYTES[0]} to {KEY_BYTES[1]} "
            "(e.g. 'whsec_' + `openssl rand -base64 32`)"
        )
    return key


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``Webhook-Signature`` of ``body``: ``v1,`` + Base64(HMAC-SHA256(``key``, ``"<id>.<timestamp>.<body>"``));
    ``timestamp`` in unix seconds."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one attempt (module docstring): ``Content-Type``, ``User-Agent``, ``Webhook-Id``,
    ``Webhook-Timestamp`` (``timestamp``, unix seconds) and ``Webhook-Signature``."""
    return {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        "Webhook-Id": webhook_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": sign(key, webhook_id, timestamp, body),
    }


def shown_url(url: str) -> str:
    """``url`` as logs and dead letters show it: scheme, host, port and path; the query (which may carry a
    token) and fragment left out."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


@dataclass(frozen=True)
class CallbackTarget:
    """One tenant's callbacks, ready to send: its :class:`~broker.config.Callbacks` settings and the HMAC
    ``key`` read from ``secret_env`` (kept out of ``repr``)."""

    tenant: str
    settings: Callbacks
    key: bytes = field(repr=False)

    def wants(self, state: str) -> bool:
        """Whether records of ``state`` (``paid``, ``partially_paid``, ``voided``) are sent."""
        return state in self.settings.events


def callback_targets_of(config: BrokerConfig, environ: Mapping[str, str] | None = None) -> dict[str, CallbackTarget]:
    """``{tenant: target}`` of every tenant with ``callbacks``, the key read from ``environ`` (default: the
    process environment). Raises :class:`ConfigError` naming the field: a variable that is not set or empty,
    or a value that is not a Standard Webhooks secret (:func:`secret_key`); the value is never shown."""
    env = os.environ if environ is None else environ
    targets = {}
    for tenant_id, tenant in config.tenants.items():
        callbacks = tenant.callbacks
        if callbacks is None:
            continue
        where = f"tenants.{tenant_id}.callbacks.secret_env"
        value = env.get(callbacks.secret_env)
        if not value:
            raise ConfigError(f"{where}: the environment variable {callbacks.secret_env} is not set")
        key = secret_key(value, field=f"{where} ({callbacks.secret_env})")
        targets[tenant_id] = CallbackTarget(tenant_id, callbacks, key)
    return targets


@dataclass(frozen=True)
class PaymentRecord:
    """What a callback needs of a ``billing.payments`` record: ``tenant``, the CloudEvent ``id`` (the
    ``Webhook-Id``) and ``state`` (``paid``, ``partially_paid``, ``voided``, from its ``type``)."""

    tenant: str
    event_id: str
    state: str


def read_record(value: bytes | None) -> PaymentRecord | None:
    """The :class:`PaymentRecord` of a record's value; ``None`` when it is not a JSON object with a string
    ``tenant``, a non-empty string ``id`` and a ``type`` of :data:`~broker.payments.recorder.EVENT_TYPES`
    (the topic may hold records of other writers: they are not called back)."""
    try:
        doc = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    tenant, event_id, state = doc.get("tenant"), doc.get("id"), _STATE_OF_TYPE.get(str(doc.get("type")))
    if not isinstance(tenant, str) or not isinstance(event_id, str) or not event_id or state is None:
        return None
    return PaymentRecord(tenant, event_id, state)


AnswerKind = Literal["ok", "retry", "rate_limited", "permanent"]


def answer_kind(status: int) -> AnswerKind:
    """What an HTTP status means for a callback: ``ok`` (2xx), ``rate_limited`` (429), ``retry`` (408 and
    5xx: tried again), ``permanent`` (anything else, redirects included: dead-lettered at once)."""
    if 200 <= status < 300:
        return "ok"
    if status == 429:
        return "rate_limited"
    if status == 408 or 500 <= status < 600:
        return "retry"
    return "permanent"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: a number of seconds, or an HTTP date (its distance
    from ``now``, default the current time; 0 when past). ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():  # delay-seconds (RFC 9110: 1*DIGIT)
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

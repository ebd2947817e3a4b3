"""Dead-letter records for ``billing.dlq``.

A record keeps the original key and value unchanged and explains the failure in headers, in the
style of Kafka Connect's error context (``errors.deadletterqueue.context.headers.enable``):

======================  =====================================================
header                  value
======================  =====================================================
``dlq.topic``           original topic
``dlq.partition``       original partition
``dlq.offset``          original offset
``dlq.stage``           ``decode``, ``enrich`` or ``deliver``
``dlq.error.class``     taxonomy class (``not_json``, ``invalid``, ``pricing``, ``permanent`` ...)
``dlq.exception.type``  Python exception type
``dlq.message``         human message naming the field and value (secrets redacted)
``dlq.tenant``          tenant, when known
``dlq.connector``       billing system, for the deliver stage
``dlq.http.status``     billing system's HTTP status, when there was one
``dlq.attempts``        delivery attempts made
``dlq.first.failure``   ISO 8601 UTC time of the first failure
``dlq.idempotency.key`` idempotency key used, when any
``dlq.replay.count``    times this record was replayed (0 on first failure)
======================  =====================================================
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_ENV_HINT = re.compile(r"(?i)(secret|token|password|api_key|apikey)")


def redact(message: str) -> str:
    """Remove bearer tokens and the values of secret-looking environment variables from ``message``."""
    message = _BEARER.sub(r"\1[REDACTED]", message)
    for name, value in os.environ.items():
        if value and len(value) >= 6 and _SECRET_ENV_HINT.search(name) and value in message:
            message = message.replace(value, "[REDACTED]")
    return message


def dlq_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    stage: str,
    error_class: str,
    exc: BaseException,
    tenant: str | None = None,
    connector: str | None = None,
    http_status: int | None = None,
    attempts: int = 0,
    first_failure: datetime | None = None,
    idempotency_key: str | None = None,
    replay_count: int = 0,
) -> list[tuple[str, bytes]]:
    """Build the header list (``[(name, utf-8 bytes)]``) described in the module docstring."""
    first = (first_failure or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()
    values = {
        "dlq.topic": topic,
        "dlq.partition": str(partition),
        "dlq.offset": str(offset),
        "dlq.stage": stage,
        "dlq.error.class": error_class,
        "dlq.exception.type": type(exc).__name__,
        "dlq.message": redact(str(exc))[:2000],
        "dlq.tenant": tenant,
        "dlq.connector": connector,
        "dlq.http.status": None if http_status is None else str(http_status),
        "dlq.attempts": str(attempts),
        "dlq.first.failure": first,
        "dlq.idempotency.key": idempotency_key,
        "dlq.replay.count": str(replay_count),
    }
    return [(k, v.encode()) for k, v in values.items() if v is not None]


def headers_to_dict(headers) -> dict[str, str]:
    """Decode Kafka headers (list of ``(str, bytes)`` or a dict) into ``{name: str}``."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return {k: (v.decode() if isinstance(v, (bytes, bytearray)) else str(v)) for k, v in items}

"""Logging of the long-running commands: plain text or one JSON object per line (``BROKER_LOG_FORMAT``).

* ``BROKER_LOG_FORMAT=text`` (default): ``<time> <LEVEL> <logger>: <message>``.
* Either way a message is cut after :data:`MAX_MESSAGE_CHARS` characters.
* ``BROKER_LOG_FORMAT=json``: one JSON object per line on stdout — ``time`` (UTC, RFC 3339),
  ``level``, ``logger``, ``message``, the record's structured fields (``extra=``) and, for an
  exception, ``exc_type`` and ``exc`` (the formatted traceback).

``BROKER_LOG_LEVEL`` (default WARNING) sets the level of everything except ``broker.outcomes``,
which always logs at INFO: one line per invoice outcome (:func:`log_outcome`) with ``tenant``,
``invoice_key``, ``billing_system``, ``outcome``, ``attempts``, ``latency_seconds`` and, when there
is one, ``external_number`` and ``error``. Outcomes carry no credentials; every line also passes
the SDK's filter that redacts credentials in query strings
(:class:`connectors.sdk.http.QuerySecretsFilter`).
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from connectors.sdk.invoice import DeliveryOutcome

__all__ = ["OUTCOMES_LOGGER", "JsonFormatter", "TextFormatter", "configure", "log_outcome", "logging_config"]

OUTCOMES_LOGGER = "broker.outcomes"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Longer messages are cut (with the count of what was cut).
MAX_MESSAGE_CHARS = 1000
#: Attributes every LogRecord has: not structured fields of a line.
_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "taskName"}

_outcomes = logging.getLogger(OUTCOMES_LOGGER)


def _message(record: logging.LogRecord) -> str:
    """The record's message, cut to :data:`MAX_MESSAGE_CHARS` (a library's message can hold a whole
    partition assignment)."""
    text = record.getMessage()
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_MESSAGE_CHARS]}… ({len(text) - MAX_MESSAGE_CHARS} more characters)"


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, the message cut to :data:`MAX_MESSAGE_CHARS`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = _message(record)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (module docstring); values that are not JSON become their ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            line["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` of one stdout handler in format ``fmt`` (``text`` or
    ``json``), the root at ``level`` and :data:`OUTCOMES_LOGGER` at INFO."""
    formatter: dict[str, Any] = {"()": JsonFormatter if fmt == "json" else TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"broker": formatter},
        "filters": {"secrets": {"()": "connectors.sdk.http.QuerySecretsFilter"}},
        "handlers": {
            "broker": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "broker",
                "filters": ["secrets"],
            }
        },
        "root": {"level": level, "handlers": ["broker"]},
        "loggers": {OUTCOMES_LOGGER: {"level": "INFO"}},
    }


def configure(level: str, fmt: str) -> None:
    """Apply :func:`logging_config` to this process."""
    logging.config.dictConfig(logging_config(level, fmt))


def log_outcome(outcome: DeliveryOutcome) -> None:
    """Log one line for an invoice outcome (at INFO on :data:`OUTCOMES_LOGGER`; WARNING when it was
    dead-lettered)."""
    fields: dict[str, Any] = {
        "tenant": outcome.tenant,
        "invoice_key": outcome.invoice_key,
        "billing_system": outcome.billing_system,
        "outcome": outcome.outcome,
        "attempts": outcome.attempts,
        "latency_seconds": None if outcome.latency_seconds is None else round(outcome.latency_seconds, 3),
    }
    if outcome.external_number:
        fields["external_number"] = outcome.external_number
    if outcome.error:
        fields["error"] = outcome.error
    level = logging.WARNING if outcome.outcome == "dead_lettered" else logging.INFO
    where = f" as {outcome.external_number}" if outcome.external_number else ""
    _outcomes.log(
        level,
        "invoice %s: %s in %s%s after %s attempt(s)",
        outcome.invoice_key,
        outcome.outcome,
        outcome.billing_system or "-",
        where,
        outcome.attempts,
        extra=fields,
    )

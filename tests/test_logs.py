"""``BROKER_LOG_FORMAT`` (:mod:`broker.logs`): one JSON object per line, the outcome line's fields."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from broker.logs import JsonFormatter, TextFormatter, log_outcome, logging_config
from broker.settings import Settings
from connectors.sdk.invoice import DeliveryOutcome


def _capture(name: str) -> tuple[io.StringIO, logging.Handler]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logging.getLogger(name).addHandler(handler)
    return out, handler


def test_a_json_line_has_the_fields_the_extras_and_the_exception():
    out, handler = _capture("test.logs")
    logger = logging.getLogger("test.logs")
    try:
        try:
            raise ValueError("bad value")
        except ValueError:
            logger.exception("failed for %s", "acme", extra={"tenant": "acme", "total": Decimal("1.50")})
    finally:
        logger.removeHandler(handler)
    line = json.loads(out.getvalue())
    assert set(line) == {"time", "level", "logger", "message", "tenant", "total", "exc_type", "exc"}
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "test.logs", "failed for acme")
    assert (line["tenant"], line["total"], line["exc_type"]) == ("acme", "1.50", "ValueError")
    assert line["exc"].endswith("ValueError: bad value")
    assert datetime.fromisoformat(line["time"]).tzinfo == UTC


def test_a_dead_lettered_outcome_is_a_warning_naming_the_error():
    out, handler = _capture("broker.outcomes")
    try:
        log_outcome(
            DeliveryOutcome(
                invoice_key="acme-fm:wo:1:r1",
                tenant="acme-fm",
                billing_system="xero",
                outcome="dead_lettered",
                attempts=3,
                error="validation: ContactID unknown",
                latency_seconds=12.34567,
                at=datetime(2026, 12, 6, tzinfo=UTC),
            )
        )
    finally:
        logging.getLogger("broker.outcomes").removeHandler(handler)
    line = json.loads(out.getvalue())
    assert {k: v for k, v in line.items() if k != "time"} == {
        "level": "WARNING",
        "logger": "broker.outcomes",
        "message": "invoice acme-fm:wo:1:r1: dead_lettered in xero after 3 attempt(s)",
        "tenant": "acme-fm",
        "invoice_key": "acme-fm:wo:1:r1",
        "billing_system": "xero",
        "outcome": "dead_lettered",
        "attempts": 3,
        "latency_seconds": 12.346,
        "error": "validation: ContactID unknown",
    }


def test_the_format_setting():
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"BROKER_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ValueError, match="BROKER_LOG_FORMAT='xml' is not one of text, json"):
        Settings.from_env({"BROKER_LOG_FORMAT": "xml"})
    config = logging_config("WARNING", "json")
    assert config["root"]["level"] == "WARNING" and config["loggers"]["broker.outcomes"] == {"level": "INFO"}
    assert config["formatters"]["broker"] == {"()": JsonFormatter}
    assert logging_config("INFO", "text")["formatters"]["broker"] == {"()": TextFormatter}
    record = logging.LogRecord("aiokafka", logging.INFO, "x", 1, "assigned %s", ("p" * 1500,), None)
    text = TextFormatter().format(record)
    assert text.endswith(" INFO aiokafka: assigned " + "p" * 991 + "… (509 more characters)")
    assert json.loads(JsonFormatter().format(record))["message"] == text.split(" aiokafka: ", 1)[1]


def test_an_unknown_broker_variable_is_warned_about_with_a_suggestion():
    from broker.settings import unknown_variables

    env = {"BROKER_LOG_LEVL": "INFO", "BROKER_METRICS_PORT": "1", "BROKER_WHATEVER": "x", "OTHER": "y"}
    assert unknown_variables(env) == [
        "BROKER_LOG_LEVL: unknown variable; did you mean BROKER_LOG_LEVEL?",
        "BROKER_WHATEVER: unknown variable (ignored)",
    ]
    from click.testing import CliRunner

    from broker.cli import main

    result = CliRunner().invoke(main, ["schemas", "export", "--check"], env={"BROKER_LOG_FORMT": "json"})
    assert "warning: BROKER_LOG_FORMT: unknown variable; did you mean BROKER_LOG_FORMAT?" in result.output

"""``BROKER_LOG_FORMAT`` (:mod:`broker.logs`): one JSON object per line, the outcome line's fields."""

from __future__ import annotations

import asyncio
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


@pytest.fixture
def root_logger():
    """The root logger, its level and handlers restored after the test (the worker reconfigures logging)."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("level", ["WARNING", "INFO"])
def test_the_worker_keeps_the_root_logger_at_the_log_level(root_logger, level):
    """What ``broker run`` builds sets up logging as the started worker does (mode's
    ``Worker._setup_logging``, run by ``default_on_first_start``): the root at BROKER_LOG_LEVEL, one
    handler at NOTSET (``broker.outcomes`` logs INFO lines through it), no spinner. A plain
    ``faust.Worker`` would leave the root at DEBUG."""
    import faust

    from broker.cli import build_worker
    from broker.faust_compat import create_faust_app

    settings = Settings.from_env({"BROKER_LOG_LEVEL": level, "BROKER_LOG_FORMAT": "json"})
    app = create_faust_app("test-logs", broker="kafka://127.0.0.1:1")  # never started: no connection
    worker = build_worker(app, settings)
    worker._setup_logging()
    assert root_logger.level == getattr(logging, level) and worker.spinner is None
    assert [(type(h).__name__, h.level) for h in root_logger.handlers] == [("StreamHandler", logging.NOTSET)]
    assert type(root_logger.handlers[0].formatter) is JsonFormatter
    assert logging.getLogger("aiokafka").getEffectiveLevel() == getattr(logging, level)
    assert logging.getLogger("broker.outcomes").getEffectiveLevel() == logging.INFO

    plain = faust.Worker(app, loglevel=level, logging_config=logging_config(level, "json"), quiet=True)
    plain._setup_logging()
    assert root_logger.level == (logging.DEBUG if level == "WARNING" else logging.INFO)  # faust's spinner


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
def test_dead_letters_log_one_warning_then_info_lines_and_a_summary(monkeypatch, level):
    """:class:`broker.dlq.DeadLetterLog`: the first dead letter of an interval at WARNING (redacted, with
    its key), the others at INFO, then one WARNING line counting them."""
    from broker.dlq import DeadLetterLog

    monkeypatch.setenv("XERO_CLIENT_SECRET", "s3cr3t-value-1")
    logger = logging.getLogger("test.dead_letters")
    logger.setLevel(level)
    out, handler = _capture("test.dead_letters")
    now = [0.0]
    dead = DeadLetterLog(logger, interval=10.0, clock=lambda: now[0])
    try:
        for t, where, stage, error_class, reason, key in [
            (0.0, "maintenance.events:0:1", "enrich", "invalid", ValueError("bad s3cr3t-value-1"), b"acme:wo:1"),
            (1.0, "maintenance.events:0:2", "decode", "not_json", "not JSON", None),
            (9.9, "maintenance.events:1:7", "enrich", "invalid", "minutes: -5", b"acme:wo:3"),
            (10.0, "billing.invoices:2:4", "deliver", "permanent", "400: ContactID", "acme:wo:4:r1"),
        ]:
            now[0] = t
            dead.dead_lettered(where, stage, error_class, reason, key)
        dead.flush()  # nothing more to sum up
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    lines = [(line["level"], line["message"]) for line in map(json.loads, out.getvalue().splitlines())]
    info = [
        ("INFO", "dead-lettered maintenance.events:0:2 at decode: not_json: not JSON"),
        ("INFO", "dead-lettered maintenance.events:1:7 at enrich: invalid: minutes: -5 (key acme:wo:3)"),
    ]
    assert lines == [
        ("WARNING", "dead-lettered maintenance.events:0:1 at enrich: invalid: bad [REDACTED] (key acme:wo:1)"),
        *(info if level == logging.INFO else []),
        (
            "WARNING",
            (
                "dead-lettered 2 more record(s) (one INFO line each; all on billing.dlq): decode/not_json 1, "
                "enrich/invalid 1; the last: maintenance.events:1:7 (key acme:wo:3)"
            ),
        ),
        ("WARNING", "dead-lettered billing.invoices:2:4 at deliver: permanent: 400: ContactID (key acme:wo:4:r1)"),
    ]


def test_dead_letters_not_logged_at_warning_are_summed_up_by_a_timer_of_the_loop():
    from broker.dlq import DeadLetterLog

    logger = logging.getLogger("test.dead_letters.timer")
    out, handler = _capture("test.dead_letters.timer")

    async def go() -> tuple[bool, bool]:
        dead = DeadLetterLog(logger, interval=30.0)
        dead.dead_lettered("maintenance.events:0:1", "decode", "not_json", "not JSON")
        dead.dead_lettered("maintenance.events:0:2", "decode", "not_json", "not JSON")
        scheduled = dead._timer is not None  # the summary is due when the interval ends
        dead.flush()
        return scheduled, dead._timer is None

    try:
        assert asyncio.run(go()) == (True, True)
    finally:
        logger.removeHandler(handler)
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == [
        "dead-lettered maintenance.events:0:1 at decode: not_json: not JSON",
        (
            "dead-lettered 1 more record(s) (one INFO line each; all on billing.dlq): decode/not_json 1; the last: "
            "maintenance.events:0:2"
        ),
    ]

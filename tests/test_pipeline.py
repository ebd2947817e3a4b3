"""End to end on a real Tansu broker, a real worker process and the Xero emulator (no mocks)."""

from __future__ import annotations

import json
import time
import urllib.request
from decimal import Decimal

import pytest

from broker.demo import Tally
from broker.kafka import ensure_topics, publish, read_events_file
from broker.settings import TOPIC_EVENTS
from tests.conftest import EXAMPLES, write_config

pytestmark = pytest.mark.integration

PICK = [
    "maintainx:wo:1001:r1",  # two technicians, travel, 2.5 kg refrigerant, billable + non-billable expense
    "maintainx:wo:1007:r1",  # Saturday call-out
    "limble:sj:SJ-2026-0311:r1",  # scheduled job (GBP tenant)
    "erpnext:qt:Q-2026-012:r1",  # approved quote, one line at 6 % VAT
    "limble:wo:5003:r1",
    "limble:wo:5003:r2",  # revision 2: a new invoice version
    "erpnext:qt:Q-2026-019:r1",  # zero-price warranty quote -> not billable
    "maintainx:wo:1042:r1",  # invalid: part quantity "-2"
]


#: sent in CloudEvents binary content mode (attributes in ``ce_*`` headers), with an extension attribute
BINARY = "maintainx:wo:1007:r1"


def _events() -> list[bytes]:
    by_id = {json.loads(raw)["id"]: raw for raw in read_events_file(EXAMPLES / "events.ndjson")}
    return [by_id[i] for i in PICK if i != BINARY] + [b"{this is not json"]


def _publish_binary(bootstrap: str) -> None:
    """``BINARY`` as a binary-mode record (Kafka protocol binding §3.2): ``data`` is the value."""
    from kafka import KafkaProducer

    by_id = {json.loads(raw)["id"]: json.loads(raw) for raw in read_events_file(EXAMPLES / "events.ndjson")}
    event = by_id[BINARY]
    data = json.dumps(event.pop("data")).encode()
    event.pop("datacontenttype", None)
    headers = [(f"ce_{name}", str(value).encode()) for name, value in event.items()]
    headers += [("ce_traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    headers += [("content-type", b"application/json; charset=utf-8")]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, batch_size=0)
    try:
        producer.send(TOPIC_EVENTS, key=b"acme-fm:wo:1007", value=data, headers=headers).get(timeout=30)
    finally:
        producer.close()


def _wait(tally: Tally, n: int, worker, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while tally.terminal < n:
        assert time.monotonic() < deadline, f"only {tally.terminal}/{n} finished; worker log:\n{worker.log()[-4000:]}"
        assert worker.proc.poll() is None, f"worker exited:\n{worker.log()[-4000:]}"
        tally.poll()


def test_events_become_exact_invoices_once(kafka, xero, tmp_path, worker_factory):
    config = write_config(tmp_path, xero.url)
    ensure_topics(kafka, 4)
    worker = worker_factory(config, kafka, separate_stderr=True, BROKER_LOG_FORMAT="json")
    events = _events()
    publish(kafka, TOPIC_EVENTS, events)
    _publish_binary(kafka)
    tally = Tally(kafka)
    try:
        _wait(tally, len(events) + 1, worker)
        held = {inv["InvoiceNumber"]: inv for inv in xero.invoices()}
        assert sorted(held) == sorted(
            [
                "ACME-WO-1001-R1",
                "ACME-WO-1007-R1",
                "NHV-SJ-SJ-2026-0311-R1",
                "ACME-QT-Q-2026-012-R1",
                "NHV-WO-5003-R1",
                "NHV-WO-5003-R2",
            ]
        )
        # Totals as Xero computed them (tax per line, 2 dp), hand-computed in tests/test_pricing.py.
        expected = {
            "ACME-WO-1001-R1": ("310.20", "71.36", "381.56", "EUR"),
            "NHV-SJ-SJ-2026-0311-R1": ("175.20", "35.04", "210.24", "GBP"),
            "ACME-QT-Q-2026-012-R1": ("1455.00", "330.40", "1785.40", "EUR"),
            # Saturday night: weekend band (first match) 1.5 h × 54.00 = 81.00 + weekend call-out 75.00 + 15.00 parts
            "ACME-WO-1007-R1": ("171.00", "39.33", "210.33", "EUR"),
            # one call-out per corrective visit: 2 × 60.00 (+ 70.00 + 87.50 + 18.72 + 16.50); tax 62.54
            "NHV-WO-5003-R2": ("312.72", "62.54", "375.26", "GBP"),
        }
        for number, (net, tax, total, cur) in expected.items():
            inv = held[number]
            assert (Decimal(str(inv["SubTotal"])), Decimal(str(inv["TotalTax"])), Decimal(str(inv["Total"]))) == (
                Decimal(net),
                Decimal(tax),
                Decimal(total),
            ), number
            assert inv["CurrencyCode"] == cur
            assert inv["Type"] == "ACCREC"
        # WO 1001 line by line: call-out, T31 2.25 h, T32 1 h, travel 0.5 h, contactor, 2.5 kg R410A, parking
        lines = held["ACME-WO-1001-R1"]["LineItems"]
        assert [Decimal(str(li["LineAmount"])) for li in lines] == [
            Decimal(x) for x in ("45.00", "94.50", "36.00", "10.00", "46.20", "72.00", "6.50")
        ]
        assert [Decimal(str(li["TaxAmount"])) for li in lines] == [
            Decimal(x) for x in ("10.35", "21.74", "8.28", "2.30", "10.63", "16.56", "1.50")
        ]
        assert [Decimal(str(li["Quantity"])) for li in lines] == [
            Decimal(x) for x in ("1", "2.25", "1", "0.5", "1", "2.5", "1")
        ]
        assert held["ACME-WO-1001-R1"]["Reference"] == "WO 1001 broker:acme-fm:wo:1001:r1"

        outcomes = {o["invoice_key"]: o["outcome"] for o in tally.outcomes}
        assert outcomes == {
            "acme-fm:wo:1001:r1": "created",
            "acme-fm:wo:1007:r1": "created",
            "nordic-hvac:sj:SJ-2026-0311:r1": "created",
            "acme-fm:qt:Q-2026-012:r1": "created",
            "nordic-hvac:wo:5003:r1": "created",
            "nordic-hvac:wo:5003:r2": "created",
            "acme-fm:qt:Q-2026-019:r1": "not_billable",
        }
        # Two dead letters: the invalid event (enrich) and the non-JSON record (decode).
        dead = sorted(tally.dead, key=lambda r: r["headers"]["dlq.stage"])
        assert [r["headers"]["dlq.stage"] for r in dead] == ["decode", "enrich"]
        assert [r["headers"]["dlq.error.class"] for r in dead] == ["not_json", "invalid"]
        invalid = dead[1]
        assert invalid["headers"]["dlq.topic"] == TOPIC_EVENTS
        assert int(invalid["headers"]["dlq.partition"]) in range(4) and int(invalid["headers"]["dlq.offset"]) >= 0
        assert (
            "data.parts.0.quantity" in invalid["headers"]["dlq.message"] and "'-2'" in invalid["headers"]["dlq.message"]
        )
        assert json.loads(invalid["value"])["id"] == "maintainx:wo:1042:r1"  # the original event, unchanged
        assert dead[0]["value"] == b"{this is not json"

        # Metrics are served by the worker and count what happened.
        text = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).read().decode()
        assert 'broker_events_consumed_total{type="maintenance.work_order.completed"} 4.0' in text
        assert 'broker_events_consumed_total{type="invalid"} 2.0' in text
        assert 'broker_invoices_delivered_total{billing_system="xero",outcome="created"} 6.0' in text
        assert 'broker_dead_letters_total{error_class="invalid",stage="enrich"} 1.0' in text
        assert "broker_delivery_latency_seconds_count" in text

        # BROKER_LOG_FORMAT=json: stdout is one JSON object per line, one line per invoice outcome, no secrets
        _check_json_log(worker, outcomes)

        # A platform retrying its webhooks: the same events again create nothing new.
        publish(kafka, TOPIC_EVENTS, events)
        _publish_binary(kafka)
        _wait(tally, 2 * (len(events) + 1), worker)
        assert len(xero.invoices()) == 6
        second = [o["outcome"] for o in tally.outcomes[7:]]
        assert sorted(second) == ["already_delivered"] * 6 + ["not_billable"]
        assert len(tally.dead) == 4
    finally:
        tally.close()


def _check_json_log(worker, outcomes: dict[str, str]) -> None:
    """The worker's stdout (``BROKER_LOG_FORMAT=json``): every line a JSON object with time, level,
    logger and message; one ``broker.outcomes`` line per outcome with its fields; no secret."""
    stdout = worker.log_path.read_text()
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and {"time", "level", "logger", "message"} <= set(line) for line in lines)
    logged = {line["invoice_key"]: line for line in lines if line["logger"] == "broker.outcomes"}
    assert {key: line["outcome"] for key, line in logged.items()} == outcomes
    line = logged["acme-fm:wo:1001:r1"]
    assert (line["level"], line["tenant"], line["billing_system"], line["attempts"]) == ("INFO", "acme-fm", "xero", 1)
    assert line["external_number"] == "ACME-WO-1001-R1" and isinstance(line["latency_seconds"], float)
    assert line["message"] == "invoice acme-fm:wo:1001:r1: created in xero as ACME-WO-1001-R1 after 1 attempt(s)"
    assert "demo-secret" not in stdout and "demo-refresh-token" not in stdout

"""``broker ingest`` over real HTTP (uvicorn on loopback) into the embedded Kafka (a real Tansu).

Content modes, credentials, deduplication and the problem documents of ``POST /events``
(:mod:`broker.intake`); what reaches ``maintenance.events`` is read back with a plain consumer.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from broker.config import load_config
from broker.embedded import EmbeddedKafka
from broker.events import parse_event
from broker.intake import Credential, credentials_of, sign
from broker.kafka import ensure_topics, read_events_file
from broker.settings import TOPIC_EVENTS, IntakeSettings
from tests.conftest import EXAMPLES
from tests.delivery_support import topic_records
from tests.intake_support import Intake as _Intake
from tests.intake_support import problem as _problem

pytestmark = pytest.mark.integration

TOKEN = b"token-of-acme-bridge"
SECRET = b"hmac-secret-of-acme-signer"
CREDENTIALS = [
    Credential("acme-fm", "bridge", "bearer", TOKEN),
    Credential("acme-fm", "signer", "hmac", SECRET),
    Credential("nordic-hvac", "bridge", "bearer", b"token-of-nordic"),
]
EVENTS = {json.loads(raw)["id"]: json.loads(raw) for raw in read_events_file(EXAMPLES / "events.ndjson")}
ACME = EVENTS["maintainx:wo:1001:r1"]  # tenant acme-fm
ACME_2 = EVENTS["maintainx:wo:1007:r1"]


class Intake(_Intake):
    """The intake with this module's senders."""

    def __init__(self, bootstrap: str, settings: IntakeSettings | None = None, clock=time.time) -> None:
        super().__init__(bootstrap, settings, clock, credentials=CREDENTIALS)


def _records(bootstrap: str) -> list[tuple[bytes | None, bytes]]:
    """Every record on maintenance.events: (key, value), in partition order."""
    return [(r.key, r.value) for r in topic_records(bootstrap, TOPIC_EVENTS)]


def counted(metrics: str) -> Counter[str]:
    """``broker_webhooks_received_total{platform="cloudevents"}`` by result, from a metrics page."""
    pattern = r'broker_webhooks_received_total\{platform="cloudevents",result="([a-z_]+)"\} ([0-9.e+]+)'
    return Counter({m.group(1): int(float(m.group(2))) for m in re.finditer(pattern, metrics)})


def _metric(page: str, name: str) -> float:
    match = re.search(rf'^{name}{{platform="cloudevents"}} ([0-9.e+]+)$', page, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _bearer(token: bytes = TOKEN, content_type: str = "application/cloudevents+json") -> dict[str, str]:
    return {"Authorization": f"Bearer {token.decode()}", "Content-Type": content_type}


def test_the_three_content_modes_reach_maintenance_events_once(kafka_events):
    with Intake(kafka_events) as intake:
        page = httpx.get(f"{intake.url}/metrics/", timeout=10).text
        before, duplicates_before = counted(page), _metric(page, "broker_intake_duplicates_total")
        # structured, with a bearer token
        structured = json.dumps(ACME).encode()
        answer = intake.post(structured, _bearer())
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": [ACME["id"]], "duplicates": [], "tenant": "acme-fm"}
        # binary, signed: attributes in ce-* headers (percent-encoded), data as the body
        attrs = {k: v for k, v in ACME_2.items() if k not in ("data", "datacontenttype")}
        body = json.dumps(ACME_2["data"]).encode()
        headers = {f"ce-{k}": str(v) for k, v in attrs.items()}
        headers.update(
            {
                "ce-traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "ce-subject": "work%20orders/1007",
                "Content-Type": "application/json; charset=utf-8",
                "X-Broker-Source": "acme-fm/signer",
                "X-Broker-Signature": sign(SECRET, int(time.time()), body),
            }
        )
        answer = intake.post(body, headers)
        assert answer.status_code == 202, answer.text
        # a batch of two events of the nordic tenant, one of them sent before
        nordic = [e for e in EVENTS.values() if e["tenant"] == "nordic-hvac"][:2]
        batch = json.dumps(nordic).encode()
        answer = intake.post(batch, _bearer(b"token-of-nordic", "application/cloudevents-batch+json"))
        assert answer.json() == {"accepted": [e["id"] for e in nordic], "duplicates": [], "tenant": "nordic-hvac"}
        # retries of accepted requests publish nothing new and still get 202
        assert intake.post(structured, _bearer()).json() == {
            "accepted": [],
            "duplicates": [ACME["id"]],
            "tenant": "acme-fm",
        }
        again = intake.post(batch, _bearer(b"token-of-nordic", "application/cloudevents-batch+json"))
        assert again.status_code == 202 and again.json()["duplicates"] == [e["id"] for e in nordic]
        page = httpx.get(f"{intake.url}/metrics/", timeout=10).text
    metrics = counted(page)
    metrics.subtract(before)
    records = _records(kafka_events)
    assert sorted(key.decode() for key, _ in records) == sorted(
        ["acme-fm:wo:1001", "acme-fm:wo:1007", *(parse_event(json.dumps(e)).partition_key for e in nordic)]
    )
    by_id = {json.loads(value)["id"]: value for _, value in records}
    assert by_id[ACME["id"]] == structured  # structured mode: the body, byte for byte
    binary = parse_event(by_id[ACME_2["id"]])
    assert binary.subject == "work orders/1007"
    assert binary.model_extra == {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    assert binary.data == parse_event(json.dumps(ACME_2)).data
    assert +metrics == Counter({"accepted": 3, "duplicate": 2})
    assert _metric(page, "broker_intake_duplicates_total") - duplicates_before == 3


def test_refused_requests_get_problem_documents_and_publish_nothing(kafka_events):
    structured = json.dumps(ACME).encode()
    now = int(time.time())
    signed = {"Content-Type": "application/cloudevents+json", "X-Broker-Source": "acme-fm/signer"}
    settings = IntakeSettings(publish_timeout=2.0, max_body_bytes=4096)
    with Intake(kafka_events, settings, clock=lambda: float(now)) as intake:
        before = counted(httpx.get(f"{intake.url}/metrics/", timeout=10).text)
        cases = [
            (b"", {"Content-Type": "application/cloudevents+json"}, 401, "no credentials"),
            (structured, {**_bearer(b"wrong")}, 401, "the token is not one of a configured sender"),
            (
                structured,
                {"Authorization": "Basic eDp5", "Content-Type": "application/cloudevents+json"},
                401,
                "expected 'Bearer <token>'",
            ),
            (
                structured,
                {**signed, "X-Broker-Signature": sign(b"other secret", now, structured)},
                401,
                "does not match the body",
            ),
            (
                structured + b" ",
                {**signed, "X-Broker-Signature": sign(SECRET, now, structured)},
                401,
                "does not match the body",
            ),
            (
                structured,
                {**signed, "X-Broker-Source": "acme-fm/bridge", "X-Broker-Signature": sign(SECRET, now, structured)},
                401,
                "is not a configured signing sender",
            ),
            (
                structured,
                {**signed, "X-Broker-Signature": sign(SECRET, now - 301, structured)},
                401,
                f"timestamp {now - 301} is 301 s from now; the tolerance is 300 s",
            ),
            (structured, _bearer(content_type="text/plain"), 415, "header 'Content-Type': 'text/plain'"),
            (
                structured,
                _bearer(b"token-of-nordic"),
                403,
                "field 'tenant': 'acme-fm'; this sender publishes for 'nordic-hvac'",
            ),
            (
                json.dumps({**ACME, "data": {**ACME["data"], "client_id": ""}}).encode(),
                _bearer(),
                422,
                "data.client_id",
            ),
            (
                json.dumps([ACME, {**ACME_2, "time": "yesterday"}]).encode(),
                _bearer(content_type="application/cloudevents-batch+json"),
                422,
                "batch item 1: field 'time'",
            ),
            (b"{not json", _bearer(), 422, "not JSON"),
            (b"x" * 5000, _bearer(), 413, "the limit is 4096"),
        ]
        for body, headers, status, detail in cases:
            answer = intake.post(body, headers)
            assert detail in _problem(answer, status), (headers, answer.text)
        metrics = counted(httpx.get(f"{intake.url}/metrics/", timeout=10).text)
    metrics.subtract(before)
    assert _records(kafka_events) == []
    assert +metrics == Counter(
        {"bad_signature": 6, "stale": 1, "unsupported_media_type": 1, "forbidden": 1, "invalid": 3, "too_large": 1}
    )


def test_kafka_unavailable_gives_503_with_retry_after_and_the_retry_is_accepted():
    kafka = EmbeddedKafka().start()
    try:
        ensure_topics(kafka.bootstrap, 4, [TOPIC_EVENTS])
        with Intake(kafka.bootstrap, IntakeSettings(publish_timeout=1.0)) as intake:
            assert httpx.get(f"{intake.url}/readyz", timeout=10).json() == {"status": "ok"}
            kafka.stop()
            answer = intake.post(json.dumps(ACME).encode(), _bearer())
            assert "not stored" in _problem(answer, 503)
            assert answer.headers["retry-after"] == "5"
    finally:
        kafka.stop()


def test_credentials_come_from_the_environment_named_in_the_config(tmp_path: Path, monkeypatch):
    import yaml

    from broker.config import ConfigError

    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    raw["tenants"]["acme-fm"]["intake"] = [
        {"name": "bridge", "token_env": "ACME_INTAKE_TOKEN"},
        {"name": "signer", "hmac_secret_env": "ACME_INTAKE_HMAC"},
    ]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("ACME_INTAKE_TOKEN", "t0k")
    monkeypatch.delenv("ACME_INTAKE_HMAC", raising=False)
    with pytest.raises(ConfigError, match="ACME_INTAKE_HMAC"):
        credentials_of(load_config(path))
    monkeypatch.setenv("ACME_INTAKE_HMAC", "s3cret")
    assert credentials_of(load_config(path)) == [
        Credential("acme-fm", "bridge", "bearer", b"t0k"),
        Credential("acme-fm", "signer", "hmac", b"s3cret"),
    ]
    raw["tenants"]["acme-fm"]["intake"] = [{"name": "both", "token_env": "A", "hmac_secret_env": "B"}]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="give exactly one of token_env and hmac_secret_env"):
        load_config(path)


def test_the_deduplication_window_survives_a_restart(kafka_events):
    """A new intake process remembers the window's events from the topic: a sender retrying after
    the restart publishes nothing new."""
    structured = json.dumps(ACME).encode()
    with Intake(kafka_events) as intake:
        assert intake.post(structured, _bearer()).json()["accepted"] == [ACME["id"]]
    with Intake(kafka_events) as intake:
        assert intake.post(structured, _bearer()).json() == {
            "accepted": [],
            "duplicates": [ACME["id"]],
            "tenant": "acme-fm",
        }
    with Intake(kafka_events, IntakeSettings(publish_timeout=2.0, dedup_seconds=0.001)) as intake:
        time.sleep(0.01)  # outside a (tiny) window the same event is published again
        assert intake.post(structured, _bearer()).json()["accepted"] == [ACME["id"]]
    assert [json.loads(v)["id"] for _, v in _records(kafka_events)] == [ACME["id"], ACME["id"]]

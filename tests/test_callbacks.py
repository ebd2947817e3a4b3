"""``broker callbacks``: payments told to the platform, signed the Standard Webhooks way.

Unit tests of the pure parts (signing with the Standard Webhooks example vector, the secret, answers,
``Retry-After``, the configuration), then the service end to end on one embedded Tansu for the module
(a topic pair per test, never mocked) against a real loopback HTTP receiver that checks every signature
itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import REGISTRY

from broker.callbacks import (
    CallbackTarget,
    answer_kind,
    callback_targets_of,
    read_record,
    retry_after_seconds,
    secret_key,
    shown_url,
    sign,
    signed_headers,
)
from broker.callbacks_service import CallbackService, Offsets
from broker.config import Callbacks, ConfigError, load_config
from broker.kafka import ensure_topics
from broker.payments.recorder import cloud_event
from connectors.sdk.payments import InvoiceState
from tests.conftest import EXAMPLES
from tests.delivery_support import GroupOffsets, publish_records, topic_records

#: The example of the Standard Webhooks specification (and of Svix's documentation).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


# ----------------------------------------------------------------------------------------------- pure parts
def test_signature_of_the_standard_webhooks_example() -> None:
    key = secret_key(SPEC_SECRET)
    assert len(key) == 24
    assert sign(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert signed_headers(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == {
        "Content-Type": "application/cloudevents+json",
        "User-Agent": "maintenance-billing-broker-callbacks/1",
        "Webhook-Id": SPEC_ID,
        "Webhook-Timestamp": "1614265330",
        "Webhook-Signature": SPEC_SIGNATURE,
    }
    assert secret_key(SPEC_SECRET.removeprefix("whsec_")) == key  # the prefix is optional


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("whsec_not base64!", "not a Standard Webhooks secret"),
        ("whsec_" + base64.b64encode(b"short").decode(), "5 bytes"),
    ],
)
def test_a_bad_secret_is_named_never_shown(value: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        secret_key(value, field="tenants.t.callbacks.secret_env (HOOK)")
    assert why in str(err.value) and "tenants.t.callbacks.secret_env (HOOK)" in str(err.value)
    assert value.removeprefix("whsec_") not in str(err.value)


def test_answers_and_retry_after() -> None:
    assert [answer_kind(s) for s in (200, 204, 301, 400, 401, 404, 408, 409, 429, 500, 503)] == [
        "ok",
        "ok",
        "permanent",
        "permanent",
        "permanent",
        "permanent",
        "retry",
        "permanent",
        "rate_limited",
        "retry",
        "retry",
    ]
    now = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Mon, 02 Mar 2026 10:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Mon, 02 Mar 2026 09:00:00 GMT", now) == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("-5") is None and retry_after_seconds("nan") is None


def test_callbacks_settings() -> None:
    ok = Callbacks(url="https://platform.example/hooks/payments?token=abc", secret_env="HOOK")
    assert ok.events == ["paid", "partially_paid", "voided"] and ok.max_attempts == 8
    assert shown_url(ok.url) == "https://platform.example/hooks/payments?…"
    for url in ("http://127.0.0.1:9000/x", "http://localhost/x", "http://[::1]:80/x"):
        assert Callbacks(url=url, secret_env="HOOK").url == url
    for url, why in [
        ("http://platform.example/x", "loopback"),
        ("ftp://platform.example/x", "https://"),
        ("https://user:pw@platform.example/x", "user or password"),
        ("platform.example/x", "https://"),
    ]:
        with pytest.raises(ValueError, match=why):
            Callbacks(url=url, secret_env="HOOK")
    with pytest.raises(ValueError, match="once"):
        Callbacks(url="https://p.example/", secret_env="HOOK", events=["paid", "paid"])
    with pytest.raises(ValueError):
        Callbacks(url="https://p.example/", secret_env="HOOK", events=["refunded"])


def test_targets_read_their_secret(tmp_path: Path) -> None:
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    raw["tenants"]["acme-fm"]["callbacks"] = {"url": "https://cmms.example/pay", "secret_env": "ACME_HOOK"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    config = load_config(path)
    with pytest.raises(ConfigError, match=r"tenants\.acme-fm\.callbacks\.secret_env: .*ACME_HOOK is not set"):
        callback_targets_of(config, {})
    targets = callback_targets_of(config, {"ACME_HOOK": SECRET})
    assert list(targets) == ["acme-fm"] and targets["acme-fm"].key == bytes(range(32))
    assert "key=" not in repr(targets["acme-fm"])  # never shown
    # the command refuses to start without the variable (exit 2), naming it
    from broker.cli import main

    result = CliRunner().invoke(
        main, ["callbacks", "--config", str(path), "--bootstrap-servers", "127.0.0.1:1"], env={"ACME_HOOK": ""}
    )
    assert result.exit_code == 2 and "ACME_HOOK is not set" in result.output


def test_read_record() -> None:
    found = read_record(b'{"tenant": "t", "id": "e1", "type": "billing.invoice.voided"}')
    assert found is not None and (found.tenant, found.event_id, found.state) == ("t", "e1", "voided")
    for value in (None, b"", b"[1]", b"not json", b'{"tenant": "t", "id": "e1", "type": "billing.invoice.created"}'):
        assert read_record(value) is None


def test_offsets_commit_up_to_the_first_record_not_done() -> None:
    offsets = Offsets()
    epochs = {offsets.add("p0", n) for n in (5, 6, 7)}
    (epoch,) = epochs
    offsets.done("p0", 6, epoch)
    assert offsets.take() == {} and offsets.in_flight() == 2
    offsets.done("p0", 5, epoch)
    assert offsets.take() == {"p0": 7} and offsets.take() == {}
    offsets.drop({"p0"})  # revoked: a late answer of the old epoch counts for nothing
    offsets.done("p0", 7, epoch)
    assert offsets.take() == {} and not offsets.current("p0", epoch) and offsets.in_flight() == 0


# ----------------------------------------------------------------------------------------------- end to end
class Receiver:
    """A loopback HTTP server taking POSTs: ``answers`` (status, headers) in turn, then 200; every request
    kept as ``(monotonic time, lower-cased headers, body)``."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]] | None = None):
        self.answers = list(answers or [])
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body))
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                text = b'{"error": "no such invoice"}' if status == 400 else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/payments"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verified(headers: dict[str, str], body: bytes, secret: str = SECRET) -> str:
    """The ``webhook-id`` of a request whose signature checks, computed here from the spec; fails otherwise."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(headers["webhook-signature"], expected), headers
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["content-type"] == "application/cloudevents+json"
    return headers["webhook-id"]


def payment(tenant: str, number: int, status: str = "paid") -> tuple[bytes, bytes]:
    """``(key, value)`` of a ``billing.payments`` record as ``broker payments`` writes it."""
    key = f"{tenant}:wo:{number}:r1"
    paid = {"paid": D("123.00"), "partially_paid": D("23.00"), "voided": D("0.00")}[status]
    state = InvoiceState.read(
        (f"ext-{number}", f"WO-{number}-R1", key), "EUR", D("123.00"), paid, voided=status == "voided"
    )
    event = cloud_event(tenant, "xero", state, D(0), datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    return key.encode(), json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def target(tenant: str, url: str, **settings: Any) -> CallbackTarget:
    options = {"backoff_seconds": 0.05, "max_backoff_seconds": 5.0, "timeout_seconds": 5.0, **settings}
    return CallbackTarget(tenant, Callbacks(url=url, secret_env="HOOK", **options), secret_key(SECRET))


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    from broker.embedded import EmbeddedKafka

    with EmbeddedKafka() as kafka:
        yield kafka.bootstrap


_topics = iter(range(1000))


@pytest.fixture
def topics(bootstrap: str) -> tuple[str, str]:
    """A fresh ``(payments, dlq)`` topic pair, one partition each (one order to check)."""
    n = next(_topics)
    pair = (f"billing.payments.t{n}", f"billing.dlq.t{n}")
    ensure_topics(bootstrap, 1, list(pair))
    return pair


@contextmanager
def running(bootstrap: str, topics: tuple[str, str], targets: dict[str, CallbackTarget]) -> Iterator[CallbackService]:
    """The service in a thread of its own until the ``with`` ends (then stopped: done offsets committed)."""
    service = CallbackService(
        bootstrap,
        targets,
        group=f"callbacks-{topics[0]}",
        topic=topics[0],
        dlq_topic=topics[1],
        max_batch_size=1,
        commit_seconds=0.2,
        session_timeout=3.0,  # quick joins (a member of generation 0 on Tansu never leaves: aiokafka skips it)
        rebalance_timeout=1.0,
    )
    stop, failed = threading.Event(), []

    def run() -> None:
        try:
            service.run_blocking(stop)
        except BaseException as exc:  # shown by the test
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the service did not stop"
        assert not failed, failed


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def counted(result: str) -> float:
    return REGISTRY.get_sample_value("broker_callbacks_total", {"result": result}) or 0.0


def lag(bootstrap: str, topics: tuple[str, str]) -> dict[Any, int]:
    offsets = GroupOffsets(bootstrap, f"callbacks-{topics[0]}", [topics[0]], partitions=1)
    try:
        return offsets.lag()
    finally:
        offsets.close()


def test_a_paid_record_is_called_back_once_signed(bootstrap: str, topics: tuple[str, str]) -> None:
    receiver = Receiver()
    targets = {
        "acme-fm": target("acme-fm", receiver.url),
        "liffey-fs": target("liffey-fs", receiver.url, events=["paid"]),
    }
    quiet = [payment("nordic-hvac", 1), payment("liffey-fs", 2, "voided")]  # no callbacks; a state not wanted
    key, value = payment("acme-fm", 1001)
    sent = counted("sent")
    try:
        publish_records(bootstrap, topics[0], [*quiet, (key, value)])
        with running(bootstrap, topics, targets):
            wait_until(lambda: len(receiver.requests) >= 1, "the callback")
            wait_until(lambda: not lag(bootstrap, topics), "the offsets committed")
            time.sleep(0.5)
        assert len(receiver.requests) == 1
        _, headers, body = receiver.requests[0]
        assert body == value  # the CloudEvent byte for byte, as recorded
        assert verified(headers, body) == json.loads(value)["id"]
        assert counted("sent") - sent == 1
        assert topic_records(bootstrap, topics[1]) == []
    finally:
        receiver.close()


def test_503_twice_then_200_is_three_attempts_one_id(bootstrap: str, topics: tuple[str, str]) -> None:
    receiver = Receiver([(503, {"Retry-After": "1"}), (503, {}), (200, {})])
    retried, sent = counted("retried"), counted("sent")
    try:
        publish_records(bootstrap, topics[0], [payment("acme-fm", 1002, "partially_paid")])
        with running(bootstrap, topics, {"acme-fm": target("acme-fm", receiver.url)}):
            wait_until(lambda: len(receiver.requests) >= 3, "three attempts")
            wait_until(lambda: not lag(bootstrap, topics), "the offsets committed")
        assert len(receiver.requests) == 3
        ids = {verified(headers, body) for _, headers, body in receiver.requests}
        assert len(ids) == 1  # one Webhook-Id, each attempt signed anew
        times = [at for at, _, _ in receiver.requests]
        assert times[1] - times[0] >= 0.9  # Retry-After: 1 waited
        assert times[2] - times[1] < 0.9  # then the backoff (0.1 s)
        assert (counted("retried") - retried, counted("sent") - sent) == (2, 1)
        assert topic_records(bootstrap, topics[1]) == []
    finally:
        receiver.close()


def test_a_4xx_is_dead_lettered_and_the_next_record_sent(bootstrap: str, topics: tuple[str, str]) -> None:
    receiver = Receiver([(400, {})])
    refused, following = payment("acme-fm", 1003), payment("acme-fm", 1004)
    dead = counted("dead_lettered")
    try:
        publish_records(bootstrap, topics[0], [refused, following])
        with running(bootstrap, topics, {"acme-fm": target("acme-fm", receiver.url)}) as service:
            wait_until(lambda: len(receiver.requests) >= 2, "both records")
            wait_until(lambda: not lag(bootstrap, topics), "the offsets committed")
        assert [body for _, _, body in receiver.requests] == [refused[1], following[1]]
        assert (service.sent, service.dead_lettered, counted("dead_lettered") - dead) == (1, 1, 1)
        (letter,) = topic_records(bootstrap, topics[1])
        assert (letter.key, letter.value) == refused
        headers = {name: value.decode() for name, value in letter.headers}
        assert headers["dlq.stage"] == "callback" and headers["dlq.error.class"] == "permanent"
        assert headers["dlq.http.status"] == "400" and headers["dlq.attempts"] == "1"
        assert headers["dlq.tenant"] == "acme-fm" and headers["dlq.topic"] == topics[0]
        assert headers["dlq.partition"] == "0" and headers["dlq.offset"] == "0"
        assert headers["dlq.idempotency.key"] == json.loads(refused[1])["id"]
        assert "answered 400" in headers["dlq.message"] and "no such invoice" in headers["dlq.message"]
    finally:
        receiver.close()


def test_attempts_used_up_are_dead_lettered(bootstrap: str, topics: tuple[str, str]) -> None:
    receiver = Receiver([(500, {}), (429, {"Retry-After": "0"})])
    try:
        publish_records(bootstrap, topics[0], [payment("acme-fm", 1005)])
        with running(bootstrap, topics, {"acme-fm": target("acme-fm", receiver.url, max_attempts=2)}):
            wait_until(lambda: len(topic_records(bootstrap, topics[1])) == 1, "the dead letter", timeout=20)
        assert len(receiver.requests) == 2
        headers = {name: value.decode() for name, value in topic_records(bootstrap, topics[1])[0].headers}
        assert (headers["dlq.error.class"], headers["dlq.http.status"], headers["dlq.attempts"]) == (
            "rate_limited",
            "429",
            "2",
        )
    finally:
        receiver.close()


def test_a_restart_after_success_sends_nothing_again(bootstrap: str, topics: tuple[str, str]) -> None:
    receiver = Receiver()
    targets = {"acme-fm": target("acme-fm", receiver.url)}
    first, second = payment("acme-fm", 1006), payment("acme-fm", 1007, "voided")
    try:
        publish_records(bootstrap, topics[0], [first])
        with running(bootstrap, topics, targets):
            wait_until(lambda: len(receiver.requests) == 1, "the first callback")
            wait_until(lambda: not lag(bootstrap, topics), "the first offset committed")
        publish_records(bootstrap, topics[0], [second])
        with running(bootstrap, topics, targets):  # the same group: resumes after the committed offset
            wait_until(lambda: len(receiver.requests) >= 2, "the second callback")
            time.sleep(0.5)
        assert [body for _, _, body in receiver.requests] == [first[1], second[1]]
    finally:
        receiver.close()

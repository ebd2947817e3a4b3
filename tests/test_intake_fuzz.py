"""Bad input at the intake: 10,000 requests (``slow``; 1,500 in the default suite) — bad and missing signatures, truncated and oversized
bodies, wrong content types, non-UTF-8 bytes, deeply nested JSON, repeated ids, replays past the
tolerance — mixed with valid ones, from 8 concurrent clients, over real HTTP into a real Tansu;
about a fifth of them are ERPNext webhooks (``POST /webhooks/erpnext/acme-fm``: valid, retried,
tampered, unsigned, ignored, unreadable).

The intake never fails or stalls (every request gets its expected status, it still answers
``/healthz`` at the end), publishes nothing for a refused request, counts each refusal by reason in
``broker_webhooks_received_total``, and every valid event is on ``maintenance.events`` exactly once.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from broker.embedded import EmbeddedKafka
from broker.intake import sign
from broker.kafka import ensure_topics
from broker.platforms.emulator import sample_bytes
from broker.platforms.emulator.erpnext import webhook
from broker.settings import TOPIC_EVENTS, IntakeSettings
from tests.intake_support import Intake, route
from tests.test_intake import ACME, CREDENTIALS, SECRET, TOKEN, _records

pytestmark = pytest.mark.integration

N = 10_000
MAX_BODY = 16 * 1024
EVENTS_PATH = "/events"
ERPNEXT_PATH = "/webhooks/erpnext/acme-fm"
ERPNEXT_SECRET = b"frappe-webhook-secret"
QUOTE = json.loads(sample_bytes("erpnext", "webhook_quotation_on_submit.body.json"))


def _valid(i: int) -> bytes:
    return json.dumps({**ACME, "id": f"fuzz-{i}", "data": {**ACME["data"], "work_order_id": f"F{i}"}}).encode()


def _quote(i: int) -> dict:
    return {**QUOTE, "name": f"SAL-QTN-F{i}"}


def _erpnext(rng: random.Random, i: int) -> list[tuple[str, bytes, dict[str, str], int, str, str]]:
    """ERPNext webhooks: ``(kind, body, headers, expected status, metrics result, path)``."""
    kind = rng.choice(
        ["erp_valid", "erp_valid", "erp_repeat", "erp_tampered", "erp_unsigned", "erp_ignored", "erp_bad"]
    )
    headers, body = webhook(ERPNEXT_SECRET, _quote(i))
    if kind == "erp_valid":
        return [(kind, body, headers, 202, "accepted", ERPNEXT_PATH)]
    if kind == "erp_repeat":  # Frappe retrying: the second is a duplicate
        return [
            ("erp_valid", body, headers, 202, "accepted", ERPNEXT_PATH),
            (kind, body, headers, 202, "duplicate", ERPNEXT_PATH),
        ]
    if kind == "erp_tampered":
        return [(kind, body.replace(b"980.0", b"98.0"), headers, 401, "bad_signature", ERPNEXT_PATH)]
    if kind == "erp_unsigned":
        return [(kind, body, {}, 401, "bad_signature", ERPNEXT_PATH)]
    if kind == "erp_ignored":
        headers, body = webhook(ERPNEXT_SECRET, {**_quote(i), "status": "Cancelled", "docstatus": 2})
        return [(kind, body, headers, 200, "ignored", ERPNEXT_PATH)]
    headers, body = webhook(ERPNEXT_SECRET, {**_quote(i), "items": [{"item_code": "X", "qty": "many"}]})
    return [(kind, body, headers, 422, "invalid", ERPNEXT_PATH)]


def _requests(rng: random.Random, now: int, n: int) -> list[tuple[str, bytes, dict[str, str], int, str, str]]:
    """``(kind, body, headers, expected status, expected metrics result, path)``, shuffled."""
    bearer = {"Authorization": f"Bearer {TOKEN.decode()}", "Content-Type": "application/cloudevents+json"}
    signed = {"Content-Type": "application/cloudevents+json", "X-Broker-Source": "acme-fm/signer"}
    out = []
    for i in range(n):
        if rng.random() < 0.2:
            out.extend(_erpnext(rng, i))
            continue
        kind = rng.choice(
            [
                "valid",
                "valid",
                "valid_signed",
                "repeat",
                "no_auth",
                "bad_token",
                "bad_signature",
                "tampered",
                "stale",
                "truncated",
                "oversized",
                "content_type",
                "not_utf8",
                "nested",
                "invalid_field",
            ]
        )
        body = _valid(i)
        if kind == "valid":
            out.append((kind, body, bearer, 202, "accepted"))
        elif kind == "valid_signed":
            out.append((kind, body, {**signed, "X-Broker-Signature": sign(SECRET, now, body)}, 202, "accepted"))
        elif kind == "repeat":  # the same event twice in a row: the second is a duplicate
            out.append(("valid", body, bearer, 202, "accepted", EVENTS_PATH))
            out.append((kind, body, bearer, 202, "duplicate", EVENTS_PATH))
        elif kind == "no_auth":
            out.append((kind, body, {"Content-Type": "application/cloudevents+json"}, 401, "bad_signature"))
        elif kind == "bad_token":
            out.append((kind, body, {**bearer, "Authorization": f"Bearer x{i}"}, 401, "bad_signature"))
        elif kind == "bad_signature":
            out.append((kind, body, {**signed, "X-Broker-Signature": f"t={now},v1={'0' * 64}"}, 401, "bad_signature"))
        elif kind == "tampered":
            headers = {**signed, "X-Broker-Signature": sign(SECRET, now, body)}
            out.append((kind, body.replace(b'"F', b'"G', 1), headers, 401, "bad_signature"))
        elif kind == "stale":
            out.append((kind, body, {**signed, "X-Broker-Signature": sign(SECRET, now - 3600, body)}, 401, "stale"))
        elif kind == "truncated":
            out.append((kind, body[: rng.randrange(1, len(body) - 1)], bearer, 422, "invalid"))
        elif kind == "oversized":
            out.append((kind, body + b" " * MAX_BODY, bearer, 413, "too_large"))
        elif kind == "content_type":
            out.append(
                (
                    kind,
                    body,
                    {**bearer, "Content-Type": rng.choice(["text/plain", "application/xml", ""])},
                    415,
                    "unsupported_media_type",
                )
            )
        elif kind == "not_utf8":
            out.append((kind, b"\xff\xfe" + body, bearer, 422, "invalid"))
        elif kind == "nested":
            out.append((kind, b"[" * 5000 + b"]" * 5000, bearer, 422, "invalid"))
        elif kind == "invalid_field":
            bad = json.loads(body)
            bad["data"]["time_entries"][0]["start"] = "not a time"
            out.append((kind, json.dumps(bad).encode(), bearer, 422, "invalid"))
    return [(*item, EVENTS_PATH) if len(item) == 5 else item for item in out]


def test_1500_mixed_requests_refuse_the_bad_and_store_the_good_once():
    _fuzz(1500, seed=11)


@pytest.mark.slow
def test_ten_thousand_mixed_requests_refuse_the_bad_and_store_the_good_once():
    _fuzz(N, seed=12)


def _fuzz(n: int, seed: int) -> None:
    rng = random.Random(seed)
    now = int(time.time())
    requests = _requests(rng, now, n)
    valid_ids = {json.loads(r[1])["id"] for r in requests if r[0] in ("valid", "valid_signed")}
    valid_ids |= {f"erpnext:Quotation:{json.loads(r[1])['name']}:on_submit" for r in requests if r[0] == "erp_valid"}
    routes = {("erpnext", "acme-fm"): route("erpnext", ERPNEXT_SECRET, default_site="LIS-HAL-ROOF")}
    with EmbeddedKafka() as kafka:
        ensure_topics(kafka.bootstrap, 4, [TOPIC_EVENTS])
        settings = IntakeSettings(publish_timeout=10.0, max_body_bytes=MAX_BODY)
        with Intake(
            kafka.bootstrap, settings, clock=lambda: float(now), credentials=CREDENTIALS, webhooks=routes
        ) as intake:
            # a "repeat" must follow its first send: each pair goes to one client, in order
            groups: list[list[tuple]] = []
            for item in requests:
                if item[0] in ("repeat", "erp_repeat"):
                    groups[-1].append(item)
                else:
                    groups.append([item])

            def send(group: list[tuple]) -> list[tuple[str, int, int]]:
                got = []
                with httpx.Client(timeout=60) as client:
                    for kind, body, headers, expected, _, path in group:
                        response = client.post(f"{intake.url}{path}", content=body, headers=headers)
                        got.append((kind, expected, response.status_code))
                return got

            page = httpx.get(f"{intake.url}/metrics/", timeout=10).text
            before = _counted(page)
            with ThreadPoolExecutor(8) as pool:
                answers = [a for group in pool.map(send, groups) for a in group]
            assert httpx.get(f"{intake.url}/healthz", timeout=10).json() == {"status": "ok"}
            metrics = httpx.get(f"{intake.url}/metrics/", timeout=10).text
        stored = Counter(json.loads(value)["id"] for _, value in _records(kafka.bootstrap))
    assert len(requests) >= n
    wrong = [(kind, expected, got) for kind, expected, got in answers if expected != got]
    assert wrong == [], Counter(wrong).most_common(5)
    assert stored == Counter(dict.fromkeys(valid_ids, 1))
    after = _counted(metrics)
    after.subtract(before)
    assert +after == Counter(
        f"{'erpnext' if path != EVENTS_PATH else 'cloudevents'}:{result}" for *_, result, path in requests
    )


def _counted(page: str) -> Counter[str]:
    """``broker_webhooks_received_total`` of ``cloudevents`` and ``erpnext`` as ``platform:result``."""
    pattern = r'broker_webhooks_received_total\{platform="(cloudevents|erpnext)",result="([a-z_]+)"\} ([0-9.e+]+)'
    return Counter({f"{m.group(1)}:{m.group(2)}": int(float(m.group(3))) for m in re.finditer(pattern, page)})

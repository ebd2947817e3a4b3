"""What the intake's tests share: the app served by uvicorn in a thread, a Kafka fixture, problem checks."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from broker.embedded import free_port
from broker.intake import Credential, KafkaPublisher, WebhookRoute, create_intake_app
from broker.settings import IntakeSettings


class Intake:
    """The intake app served by uvicorn in a thread of the test process (``with``)."""

    def __init__(
        self,
        bootstrap: str,
        settings: IntakeSettings | None = None,
        clock=time.time,
        *,
        credentials: list[Credential] | None = None,
        webhooks: dict[tuple[str, str], WebhookRoute] | None = None,
    ) -> None:
        self.settings = settings or IntakeSettings(publish_timeout=2.0)
        publisher = KafkaPublisher(bootstrap, timeout=self.settings.publish_timeout, max_batch_size=1, idempotent=False)
        app = create_intake_app(self.settings, publisher, credentials=credentials or [], webhooks=webhooks, clock=clock)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Intake:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the intake did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def post(self, body: bytes, headers: dict[str, str], path: str = "/events") -> httpx.Response:
        return httpx.post(f"{self.url}{path}", content=body, headers=headers, timeout=30)


def problem(response: httpx.Response, status: int) -> str:
    """The ``detail`` of an RFC 9457 problem answer with ``status`` (asserting its shape)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["title"]
    return str(body["detail"])


def route(platform: str, secret: bytes, api=None, *, tenant: str = "acme-fm", **context) -> WebhookRoute:
    """A webhook route for ``platform`` (``api``: a :class:`~broker.platforms.emulator.PlatformEmulator`
    whose API hydrates it, with its default credentials; ``context``: fields of the mapping
    :class:`~broker.platforms.base.Context`)."""
    from broker.platforms import adapter
    from broker.platforms.base import Context

    impl = adapter(platform)
    found = WebhookRoute(impl, secret, Context(tenant=tenant, platform=platform, **context))
    if api is not None:
        emulated = api.api(platform)
        found.api_url = api.base_url(platform)
        found.api_headers = impl.api_headers(emulated.username, emulated.token)
        found.per_minute = impl.requests_per_minute
    return found


def sample_request(platform: str, name: str) -> tuple[dict[str, str], bytes, dict]:
    """A sample webhook as the platform sent it: its headers (without the test vector), its body
    bytes, and the ``_test_vector`` (the secret that signed it)."""
    import json

    from broker.platforms.emulator import sample_bytes

    body = sample_bytes(platform, f"{name}.body.json")
    try:
        headers = json.loads(sample_bytes(platform, f"{name}.headers.json"))
    except FileNotFoundError:
        headers = {}
    vector = headers.pop("_test_vector", {})
    return headers, body, vector


def published(bootstrap: str) -> list[dict]:
    """Every event on ``maintenance.events``, decoded, in partition order."""
    import json

    from broker.settings import TOPIC_EVENTS
    from tests.delivery_support import topic_records

    return [json.loads(r.value) for r in topic_records(bootstrap, TOPIC_EVENTS)]

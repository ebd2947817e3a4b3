"""``broker ingest``: CloudEvents and platforms' webhooks over HTTP, authenticated, deduplicated,
acknowledged by Kafka.

``POST /webhooks/{platform}/{tenant}`` takes a maintenance platform's own webhook (MaintainX, Atlas
CMMS, ERPNext, Odoo, Limble, Infraspeak; the tenant's ``webhooks`` configuration,
:func:`webhook_routes_of`): the platform's adapter (:mod:`broker.platforms`) verifies it exactly as
that platform signs it, completes a thin one through the platform's API, and maps it to canonical
events, which then take the same path as below (validated, deduplicated, published, 202). A
verified webhook that bills nothing (another status) is answered 200 ``{"ignored": reason}``.

``POST /events`` takes CloudEvents in the three content modes of the CloudEvents HTTP protocol
binding (:mod:`broker.cloudevents`): structured (``application/cloudevents+json``), binary
(``ce-*`` headers, ``application/json`` body) and batched (``application/cloudevents-batch+json``).

* **Who sends.** Each tenant lists its senders (``intake`` in the tenant configuration,
  :class:`broker.config.IntakeSource`): a bearer token (``Authorization: Bearer <token>``) or an
  HMAC-SHA256 secret. A signed request names its sender (``X-Broker-Source: <tenant>/<name>``) and
  carries ``X-Broker-Signature: t=<unix seconds>,v1=<hex>``, the HMAC of ``<t>.`` followed by the
  raw body bytes; ``t`` must be within the tolerance of now (``BROKER_INTAKE_TOLERANCE``). Secrets
  are compared in constant time. The tenant comes from the credentials: an event whose ``tenant``
  is another is refused (403).
* **Never lost, never twice.** Every event of a request is validated first (all or nothing), then
  published to ``maintenance.events`` keyed ``tenant:doc:id`` with ``acks=all`` and an idempotent
  producer (not on the embedded Tansu, which has none: :class:`KafkaPublisher`); the answer is 202
  only after Kafka acknowledged every record. Kafka unavailable: 503 with ``Retry-After``, so the
  platform retries. An event whose ``(tenant, source, id)`` was accepted within the deduplication
  window (``BROKER_INTAKE_DEDUP_SECONDS``) is not published again and still gets 202 (listed in
  ``duplicates``): a platform's retry of an answered request changes nothing. The window is kept
  in the process and filled at start from the window's events on the topic
  (:func:`recent_event_ids`), so it survives a restart; between replicas running together the
  worker's ledger still turns a re-published event into ``already_delivered`` (``docs/intake.md``).
* **Errors** are RFC 9457 problem documents (``application/problem+json``): 401 missing or bad
  credentials or signature, 401 stale timestamp, 403 another tenant, 413 body over
  ``BROKER_INTAKE_MAX_BODY_BYTES``, 415 content type, 422 an invalid event (naming the field and
  the value, and the batch item), 503 Kafka unavailable.

Metrics: ``broker_webhooks_received_total{platform="cloudevents",result}``,
``broker_intake_latency_seconds{platform}``, ``broker_intake_duplicates_total{platform}``.
FastAPI (on Starlette and uvicorn) is the HTTP stack: well kept, ASGI, and it writes the OpenAPI
document of the service (``docs/intake-openapi.json``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from broker import metrics
from broker.cloudevents import (
    BATCH,
    STRUCTURED,
    http_binary_attributes,
    kafka_structured,
    media_type,
    split_batch,
    structured_from_binary,
)
from broker.config import PLATFORMS, BrokerConfig, resolve_secret
from broker.events import AnyEvent, EventDecodeError, parse_event
from broker.kafka_security import client_options
from broker.platforms import adapter
from broker.platforms.base import SOURCE_PREFIX, Adapter, Context, Ignored, Rejected, Webhook
from broker.platforms.client import PlatformClient
from broker.problems import Problem
from broker.settings import TOPIC_EVENTS, IntakeSettings

__all__ = [
    "Credential",
    "Deduplicator",
    "KafkaPublisher",
    "Problem",
    "PublishUnavailable",
    "WebhookRoute",
    "create_intake_app",
    "credentials_of",
    "openapi_document",
    "read_body",
    "recent_event_ids",
    "service_app",
    "sign",
    "webhook_routes_of",
]

log = logging.getLogger(__name__)

PLATFORM = "cloudevents"


# --------------------------------------------------------------------------- problems (broker/problems.py)
def service_app(
    name: str,
    description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    *,
    ready: Callable[[], bool],
    ready_summary: str,
) -> FastAPI:
    """The skeleton every HTTP service of the broker shares (``broker ingest``, ``broker payments``): a
    FastAPI app titled ``maintenance-billing-broker <name>`` with ``lifespan``, ``/metrics`` (this
    process's Prometheus registry), :class:`Problem` answered as its problem document, ``GET /healthz``
    (200 while the process runs) and ``GET /readyz`` (200 ``{"status": "ok"}`` when ``ready()``, else 503
    ``{"status": "starting"}``). The caller adds its routes."""
    from prometheus_client import make_asgi_app

    app = FastAPI(title=f"maintenance-billing-broker {name}", version="1", description=description, lifespan=lifespan)
    app.mount("/metrics", make_asgi_app())

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.get("/healthz", summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary=ready_summary)
    async def readyz() -> JSONResponse:
        ok = ready()
        return JSONResponse({"status": "ok" if ok else "starting"}, status_code=200 if ok else 503)

    return app


def _unauthorized(detail: str, result: str = "bad_signature") -> Problem:
    return Problem(401, "unauthorized", "Missing or bad credentials", detail, result=result)


# --------------------------------------------------------------------------- credentials
@dataclass(frozen=True)
class Credential:
    """One sender of a tenant: ``kind`` ``"bearer"`` or ``"hmac"``, its ``secret`` (bytes)."""

    tenant: str
    source: str
    kind: str
    secret: bytes


def credentials_of(config: BrokerConfig) -> list[Credential]:
    """Every tenant's intake senders with their secrets read from the environment. Raises
    :class:`~broker.config.ConfigError` naming a variable that is not set."""
    out = []
    for tenant_id, tenant in config.tenants.items():
        for index, source in enumerate(tenant.intake):
            field = f"tenants.{tenant_id}.intake.{index}"
            if source.token_env is not None:
                secret = resolve_secret(source.token_env, field=f"{field}.token_env")
                out.append(Credential(tenant_id, source.name, "bearer", secret.get_secret_value().encode()))
            elif source.hmac_secret_env is not None:
                secret = resolve_secret(source.hmac_secret_env, field=f"{field}.hmac_secret_env")
                out.append(Credential(tenant_id, source.name, "hmac", secret.get_secret_value().encode()))
    return out


@dataclass
class WebhookRoute:
    """One tenant's webhooks from one platform: the ``adapter``, the ``secret`` that authenticates
    them, the mapping :class:`~broker.platforms.base.Context`, and the API settings of hydration
    (``api_url``, ``api_headers``, ``per_minute``; the client is made when the intake starts)."""

    adapter: Adapter
    secret: bytes
    context: Context
    api_url: str | None = None
    api_headers: dict[str, str] | None = None
    per_minute: int | None = None
    client: PlatformClient | None = None


def webhook_routes_of(config: BrokerConfig) -> dict[tuple[str, str], WebhookRoute]:
    """``{(platform, tenant): route}`` of every tenant's ``webhooks`` with the secrets read from the
    environment. Raises :class:`~broker.config.ConfigError` naming a variable that is not set."""
    routes = {}
    for tenant_id, tenant in config.tenants.items():
        for platform, hook in tenant.webhooks.items():
            field = f"tenants.{tenant_id}.webhooks.{platform}"
            secret = resolve_secret(hook.secret_env, field=f"{field}.secret_env").get_secret_value().encode()
            impl = adapter(platform)
            context = Context(
                tenant=tenant_id,
                platform=platform,
                timezone=tenant.timezone,
                clients=hook.clients,
                sites=hook.sites,
                technicians=hook.technicians,
                default_site=hook.default_site,
                options=hook.options,
            )
            route = WebhookRoute(impl, secret, context)
            if hook.api is not None:
                token = resolve_secret(hook.api.token_env, field=f"{field}.api.token_env").get_secret_value()
                route.api_url = hook.api.base_url
                route.api_headers = impl.api_headers(hook.api.username, token)
                route.per_minute = hook.api.requests_per_minute or impl.requests_per_minute
            routes[(platform, tenant_id)] = route
    return routes


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Broker-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class Authenticator:
    """Finds the sender of a request (module docstring, "Who sends"); ``clock``: unix seconds."""

    def __init__(self, credentials: Iterable[Credential], tolerance: float, clock: Callable[[], float] = time.time):
        creds = list(credentials)
        self.bearer = [c for c in creds if c.kind == "bearer"]
        self.hmac = {f"{c.tenant}/{c.source}": c for c in creds if c.kind == "hmac"}
        self.tolerance = tolerance
        self.clock = clock

    def authenticate(self, headers: Any, body: bytes) -> Credential:
        """The request's sender; raises :class:`Problem` 401 (fails closed on anything missing)."""
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("header 'Authorization': expected 'Bearer <token>'")
            given = token.strip().encode()
            found: Credential | None = None
            for candidate in self.bearer:  # compare with every token, in constant time each
                if hmac.compare_digest(candidate.secret, given):
                    found = candidate
            if found is None:
                raise _unauthorized("header 'Authorization': the token is not one of a configured sender")
            return found
        signature = headers.get("x-broker-signature")
        if signature is None:
            raise _unauthorized("no credentials: send 'Authorization: Bearer <token>' or 'X-Broker-Signature'")
        source = headers.get("x-broker-source")
        signer = self.hmac.get(source or "")
        if signer is None:
            raise _unauthorized(f"header 'X-Broker-Source': {source!r} is not a configured signing sender")
        parts = dict(item.strip().partition("=")[::2] for item in signature.split(","))
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError:
            raise _unauthorized("header 'X-Broker-Signature': expected 't=<unix seconds>,v1=<hex>'") from None
        expected = sign(signer.secret, timestamp, body).split("v1=", 1)[1]
        if not hmac.compare_digest(expected.encode(), parts.get("v1", "").encode()):
            raise _unauthorized("header 'X-Broker-Signature': the signature does not match the body")
        skew = abs(self.clock() - timestamp)
        if skew > self.tolerance:
            raise _unauthorized(
                f"header 'X-Broker-Signature': timestamp {timestamp} is {skew:.0f} s from now; "
                f"the tolerance is {self.tolerance:.0f} s",
                result="stale",
            )
        return signer


# --------------------------------------------------------------------------- deduplication
class Deduplicator:
    """Event ids accepted within the last ``window`` seconds (at most ``max_entries``, the oldest
    forgotten first). ``clock``: monotonic seconds."""

    def __init__(self, window: float, max_entries: int, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.max_entries = max_entries
        self.clock = clock
        self._seen: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def _expire(self) -> None:
        now = self.clock()
        while self._seen and (next(iter(self._seen.values())) <= now or len(self._seen) > self.max_entries):
            self._seen.popitem(last=False)

    def seen(self, key: tuple[str, str, str]) -> bool:
        """True when ``key`` (tenant, CloudEvents source, id) was accepted within the window."""
        self._expire()
        return key in self._seen

    def remember(self, key: tuple[str, str, str], age: float = 0.0) -> None:
        """Note ``key`` as accepted ``age`` seconds ago (oldest first keeps the expiry order)."""
        self._seen.pop(key, None)
        self._seen[key] = self.clock() + self.window - max(0.0, age)
        self._expire()


async def recent_event_ids(
    bootstrap: str, window: float, limit: int, topic: str = TOPIC_EVENTS, timeout: float = 60.0
) -> list[tuple[tuple[str, str, str], float]]:
    """``((tenant, source, id), age in seconds)`` of the events on ``topic`` stored within the last
    ``window`` seconds (at most ``limit``, the newest kept), oldest first: what a starting intake
    remembers, so that its deduplication survives a restart and covers what other replicas
    published before it started. Records that are not CloudEvents are skipped. Raises what aiokafka
    raises when Kafka cannot be reached; gives up reading after ``timeout`` seconds."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_options())
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        now_ms = int(time.time() * 1000)
        starts = await consumer.offsets_for_times({tp: now_ms - int(window * 1000) for tp in tps})
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            start = starts.get(tp)
            consumer.seek(tp, start.offset if start is not None else ends[tp])
        found: list[tuple[int, tuple[str, str, str]]] = []
        deadline = time.monotonic() + timeout

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while time.monotonic() < deadline and await behind():
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for record in records:
                    key = _event_identity(record.headers, record.value)
                    if key is not None:
                        found.append((record.timestamp, key))
        found.sort()
        return [(key, max(0.0, (now_ms - ts) / 1000)) for ts, key in found[-limit:]]
    finally:
        await consumer.stop()


def _event_identity(headers: Any, value: bytes | None) -> tuple[str, str, str] | None:
    """``(tenant, source, id)`` of a record on ``maintenance.events`` (structured or binary mode), or
    None when it is not a CloudEvent with those attributes as strings."""
    try:
        obj = json.loads(kafka_structured(headers, value or b""))
    except (EventDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    key = (obj.get("tenant"), obj.get("source"), obj.get("id"))
    return key if all(isinstance(part, str) for part in key) else None  # type: ignore[return-value]


# --------------------------------------------------------------------------- publishing
class PublishUnavailable(Exception):  # noqa: N818 - the name says what the client is told
    """Kafka did not acknowledge in time (or cannot be reached): the request gets 503."""


class KafkaPublisher:
    """An aiokafka producer with ``acks=all`` on ``maintenance.events``, idempotent (``idempotent``)
    on Apache Kafka. The embedded Tansu answers ``InitProducerId`` with an error, so there it runs
    without idempotence (a retried send can then store a record twice; the worker's ledger turns
    the second into ``already_delivered``) and with ``max_batch_size`` 1 (it reports a wrong end
    offset after multi-record batches, ``docs/delivery.md``). ``timeout``: seconds; ``linger_ms``:
    how long a batch waits for more records (``BROKER_PRODUCER_LINGER_MS``)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        timeout: float,
        max_batch_size: int = 16384,
        idempotent: bool = True,
        topic: str = TOPIC_EVENTS,
        linger_ms: int = 0,
    ):
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.max_batch_size = max_batch_size
        self.linger_ms = linger_ms
        self.idempotent = idempotent
        self.topic = topic
        self._producer: Any = None

    async def start(self) -> None:
        """Connect (raises what aiokafka raises when no broker answers)."""
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=self.idempotent,
            max_batch_size=self.max_batch_size,
            linger_ms=self.linger_ms,
            request_timeout_ms=int(self.timeout * 1000),
            **client_options(),
        )
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and close."""
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, records: list[tuple[bytes, bytes]]) -> None:
        """Send ``records`` (key, value) and wait until Kafka acknowledged all of them; raises
        :class:`PublishUnavailable` after ``timeout`` seconds or on a Kafka error."""
        if self._producer is None:
            raise PublishUnavailable("the producer is not started")
        try:
            sends = [await self._producer.send(self.topic, key=key, value=value) for key, value in records]
            await asyncio.wait_for(asyncio.gather(*sends), timeout=self.timeout)
        except Exception as exc:  # any Kafka failure means "not acknowledged": the client retries
            raise PublishUnavailable(f"{type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- the service
async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, read as it streams in; a 413 :class:`Problem` (``too_large``) as soon as it
    (or its declared ``Content-Length``) is over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(
            413,
            "too-large",
            "Body too large",
            f"the body is {declared} bytes; the limit is {limit}",
            result="too_large",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(
                413, "too-large", "Body too large", f"the body is over the limit of {limit} bytes", result="too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _structured_events(request: Request, body: bytes) -> list[bytes]:
    """The request's events in structured form (content mode from ``Content-Type`` and headers)."""
    kind = media_type(request.headers.get("content-type"))
    try:
        if kind == BATCH:
            return split_batch(body)
        if kind == STRUCTURED:
            return [body]
        if "ce-specversion" in request.headers:
            return [
                structured_from_binary(
                    http_binary_attributes(request.headers.items()), request.headers.get("content-type"), body
                )
            ]
    except EventDecodeError as exc:
        raise Problem(422, "invalid-event", "Invalid event", str(exc), result="invalid") from None
    raise Problem(
        415,
        "unsupported-media-type",
        "Unsupported content type",
        f"header 'Content-Type': {request.headers.get('content-type')!r}; expected {STRUCTURED}, {BATCH}, "
        "or binary mode (ce-* headers with an application/json body)",
        result="unsupported_media_type",
    )


def _parse_all(raws: list[bytes], batch: bool) -> list[AnyEvent]:
    events = []
    for index, raw in enumerate(raws):
        try:
            events.append(parse_event(raw))
        except EventDecodeError as exc:
            where = f"batch item {index}: " if batch else ""
            raise Problem(422, "invalid-event", "Invalid event", f"{where}{exc}", result="invalid") from None
    return events


def _payload(body: bytes) -> Any:
    """A webhook body as JSON (numbers with a fraction as :class:`~decimal.Decimal`); 422 otherwise."""
    try:
        return json.loads(body.decode("utf-8").removeprefix("\ufeff"), parse_float=Decimal)
    except UnicodeDecodeError as exc:
        detail = f"the body is not JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
    except (ValueError, RecursionError) as exc:
        detail = f"the body is not JSON: {str(exc)[:200]}"
    raise Problem(422, "invalid-payload", "Invalid payload", detail, result="invalid")


def _refused(exc: Rejected) -> Problem:
    slug, title = {
        401: ("unauthorized", "Missing or bad signature"),
        422: ("invalid-payload", "Invalid payload"),
        503: ("unavailable", "Platform API unavailable"),
    }.get(exc.status, ("refused", "Refused"))
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return Problem(exc.status, slug, title, exc.detail, result=exc.result, headers=headers)


def create_intake_app(
    settings: IntakeSettings,
    publisher: KafkaPublisher,
    *,
    credentials: list[Credential],
    webhooks: dict[tuple[str, str], WebhookRoute] | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The intake as an ASGI app (routes in the module docstring; ``/metrics`` too). ``publisher``
    is started and stopped with the app; ``credentials``: the senders (:func:`credentials_of`);
    ``webhooks``: the platforms' routes (:func:`webhook_routes_of`; their API clients are opened and
    closed with the app); ``clock``: unix seconds, for signed timestamps."""
    auth = Authenticator(credentials, settings.tolerance, clock)
    dedup = Deduplicator(settings.dedup_seconds, settings.dedup_max)
    routes = webhooks or {}
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for route in routes.values():
            if route.api_url is not None:
                route.client = PlatformClient(
                    route.adapter.name, route.api_url, route.api_headers or {}, per_minute=route.per_minute
                )
        await publisher.start()
        for key, age in await recent_event_ids(publisher.bootstrap, settings.dedup_seconds, settings.dedup_max):
            dedup.remember(key, age)
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            await publisher.stop()
            for route in routes.values():
                if route.client is not None:
                    await route.client.close()
                    route.client = None

    app = service_app(
        "intake",
        "CloudEvents and maintenance platforms' webhooks into maintenance.events (docs/intake.md).",
        lifespan,
        ready=lambda: state["ready"],
        ready_summary="Ready: the Kafka producer is started",
    )

    async def accept(raws: list[bytes], events: list[AnyEvent]) -> tuple[list[str], list[str]]:
        """Publish the events not seen within the window (all acknowledged, or 503); returns the ids
        published and the ids not published again."""
        fresh, duplicates, keys = [], [], set()
        for raw, event in zip(raws, events, strict=True):
            key = (event.tenant, event.source, event.id)
            if dedup.seen(key) or key in keys:
                duplicates.append(event.id)
                continue
            keys.add(key)
            fresh.append((key, event, raw))
        try:
            await publisher.publish([(e.partition_key.encode(), raw) for _, e, raw in fresh])
        except PublishUnavailable as exc:
            log.warning("intake: Kafka did not acknowledge %d event(s): %s", len(fresh), exc)
            raise Problem(
                503,
                "unavailable",
                "Kafka unavailable",
                "the events were not stored; send them again",
                result="unavailable",
                headers={"Retry-After": "5"},
            ) from None
        for key, _, _ in fresh:
            dedup.remember(key)
        return [e.id for _, e, _ in fresh], duplicates

    def answered(
        platform: str, started: float, accepted: list[str], duplicates: list[str], tenant: str
    ) -> JSONResponse:
        metrics.WEBHOOKS_RECEIVED.labels(platform, "accepted" if accepted or not duplicates else "duplicate").inc()
        if duplicates:
            metrics.INTAKE_DUPLICATES.labels(platform).inc(len(duplicates))
        metrics.INTAKE_LATENCY.labels(platform).observe(time.monotonic() - started)
        return JSONResponse({"accepted": accepted, "duplicates": duplicates, "tenant": tenant}, status_code=202)

    def refused(platform: str, started: float, problem: Problem) -> JSONResponse:
        metrics.WEBHOOKS_RECEIVED.labels(platform, problem.result).inc()
        metrics.INTAKE_LATENCY.labels(platform).observe(time.monotonic() - started)
        return problem.response()

    @app.post(
        "/events",
        status_code=202,
        summary="Publish CloudEvents (structured, binary or batched content mode)",
        responses={
            401: {"description": "Missing or bad credentials, or a stale signed timestamp"},
            403: {"description": "An event of another tenant"},
            413: {"description": "Body over the limit"},
            415: {"description": "Unsupported content type"},
            422: {"description": "An invalid event, naming the field and the value"},
            503: {"description": "Kafka unavailable; retry after Retry-After seconds"},
        },
    )
    async def post_events(request: Request) -> JSONResponse:
        started = time.monotonic()
        try:
            body = await read_body(request, settings.max_body_bytes)
            sender = auth.authenticate(request.headers, body)
            raws = _structured_events(request, body)
            events = _parse_all(raws, media_type(request.headers.get("content-type")) == BATCH)
            for index, event in enumerate(events):
                if event.tenant != sender.tenant:
                    where = f"batch item {index}: " if len(events) > 1 else ""
                    raise Problem(
                        403,
                        "forbidden-tenant",
                        "Event of another tenant",
                        f"{where}field 'tenant': {event.tenant!r}; this sender publishes for {sender.tenant!r}",
                        result="forbidden",
                    )
            accepted, duplicates = await accept(raws, events)
        except Problem as problem:
            return refused(PLATFORM, started, problem)
        return answered(PLATFORM, started, accepted, duplicates, sender.tenant)

    @app.post(
        "/webhooks/{platform}/{tenant}",
        status_code=202,
        summary="A maintenance platform's webhook (MaintainX, Atlas CMMS, ERPNext, Odoo, Limble, Infraspeak)",
        responses={
            200: {"description": "Verified, and bills nothing (another status or event): ignored"},
            401: {"description": "Missing or bad signature, or a stale signed timestamp"},
            404: {"description": "Unknown platform, or a tenant without webhooks from it"},
            413: {"description": "Body over the limit"},
            415: {"description": "A content type other than JSON"},
            422: {"description": "A payload the mapping cannot read, naming the field and the value"},
            503: {"description": "Kafka or the platform's API unavailable; retry after Retry-After seconds"},
        },
    )
    async def post_webhook(platform: str, tenant: str, request: Request) -> JSONResponse:
        started = time.monotonic()
        label = platform if platform in PLATFORMS else "unknown"
        try:
            route = routes.get((platform, tenant))
            if route is None:
                what = f"platform {platform!r}" if platform not in PLATFORMS else f"tenant {tenant!r}"
                raise Problem(
                    404,
                    "not-found",
                    "Unknown platform or tenant",
                    f"{what}: no webhooks from {platform!r} are configured for tenant {tenant!r}",
                    result="not_found",
                )
            body = await read_body(request, settings.max_body_bytes)
            hook = Webhook(
                headers={name.lower(): value for name, value in request.headers.items()},
                body=body,
                url=str(request.url),
                query=dict(request.query_params),
            )
            try:
                route.adapter.verify(hook, route.secret, clock(), settings.tolerance)
                kind = media_type(request.headers.get("content-type"))
                if kind and kind != "application/json" and not kind.endswith("+json"):
                    raise Problem(
                        415,
                        "unsupported-media-type",
                        "Unsupported content type",
                        f"header 'Content-Type': {request.headers.get('content-type')!r}; expected application/json",
                        result="unsupported_media_type",
                    )
                payload = _payload(body)
                known = route.adapter.known_id(payload)
                if known is not None and dedup.seen((tenant, f"{SOURCE_PREFIX}{platform}", known)):
                    return answered(label, started, [], [known], tenant)  # a retry: no API call
                found = await route.adapter.events(payload, hook, route.context, route.client)
            except Rejected as exc:
                raise _refused(exc) from None
            if isinstance(found, Ignored):
                metrics.WEBHOOKS_RECEIVED.labels(label, "ignored").inc()
                metrics.INTAKE_LATENCY.labels(label).observe(time.monotonic() - started)
                return JSONResponse({"ignored": found.reason, "tenant": tenant}, status_code=200)
            raws = [json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() for event in found]
            accepted, duplicates = await accept(raws, _parse_all(raws, len(raws) > 1))
        except Problem as problem:
            return refused(label, started, problem)
        return answered(label, started, accepted, duplicates, tenant)

    return app


def openapi_document() -> dict[str, Any]:
    """The intake's OpenAPI document (written to ``schemas/intake.openapi.json`` by
    ``broker schemas export``)."""
    app = create_intake_app(IntakeSettings(), KafkaPublisher("localhost:9092", timeout=1.0), credentials=[])
    return app.openapi()

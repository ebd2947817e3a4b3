"""The connector SDK's HTTP base: auth with one renewal, transport and status mapping, exact JSON, redaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from types import MappingProxyType
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import SecretStr

from connectors.sdk import (
    ApiKeyAuth,
    Auth,
    AuthError,
    ConfigError,
    ConnectorSettings,
    ExternalInvoice,
    HttpConnector,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.sdk.http import redact_query

Handler = Callable[[httpx.Request], httpx.Response]


class Settings(ConnectorSettings):
    api_url: str = "https://api.acme.test"
    api_key_env: str = "ACME_KEY"


class Renewing(Auth):
    """A token that becomes ``tok-2`` after one renewal (counts renewals)."""

    def __init__(self) -> None:
        self.token, self.renewals = "tok-1", 0

    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> SecretStr | None:
        headers["Authorization"] = f"Bearer {self.token}"
        return SecretStr(self.token)

    async def renew(self, used: SecretStr | None) -> bool:
        self.renewals += 1
        self.token = "tok-2"
        return True

    def secrets(self) -> list[str]:
        return ["tok-1", "tok-2"]


class Acme(HttpConnector):
    name = "acme"
    label = "Acme"
    Settings = Settings
    status_overrides: ClassVar[Any] = MappingProxyType({409: None})
    handler: Handler
    auth_factory: Callable[[Acme], Auth] = staticmethod(lambda c: Renewing())  # type: ignore[assignment]
    seen: list[httpx.Request]

    def make_auth(self) -> Auth:
        return self.auth_factory(self)

    def http(self) -> httpx.AsyncClient:
        def record(request: httpx.Request) -> httpx.Response:
            self.seen.append(request)
            return self.handler(request)

        return httpx.AsyncClient(transport=httpx.MockTransport(record))

    async def check(self) -> None:
        return None

    async def deliver(self, invoice: Any) -> Any:
        raise NotImplementedError

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        return None


def _acme(handler: Handler, **attrs: Any) -> Acme:
    connector = Acme({}, tenant="t1")
    connector.handler = handler
    connector.seen = []
    for name, value in attrs.items():
        setattr(connector, name, value)
    return connector


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_401_renews_exactly_once_and_repeats_the_call():
    def handler(request: httpx.Request) -> httpx.Response:
        ok = request.headers["Authorization"] == "Bearer tok-2"
        return httpx.Response(200 if ok else 401, json={"message": "expired"})

    acme = _acme(handler)
    resp = _run(acme.request("GET", "https://api.acme.test/x"))
    assert resp.status_code == 200
    assert [r.headers["Authorization"] for r in acme.seen] == ["Bearer tok-1", "Bearer tok-2"]
    assert acme.auth.renewals == 1  # type: ignore[attr-defined]


def test_a_second_401_is_auth_error_with_the_detail_and_no_secret():
    acme = _acme(lambda r: httpx.Response(401, json={"message": "token tok-2 revoked"}))
    with pytest.raises(AuthError) as caught:
        _run(acme.request("POST", "https://api.acme.test/invoices?api_key=zzz", json={"a": 1}))
    assert str(caught.value) == "Acme POST /invoices: 401 Unauthorized after a token refresh (token *** revoked)"
    assert caught.value.http_status == 401
    assert len(acme.seen) == 2


def test_an_api_key_is_not_renewed_after_a_401():
    acme = _acme(
        lambda r: httpx.Response(401, json={"error": "bad key"}),
        auth_factory=lambda c: ApiKeyAuth(lambda: SecretStr("k-123456"), header=None, query="api_key"),
    )
    with pytest.raises(AuthError, match=r"^Acme GET /x: 401 Unauthorized \(bad key\)$"):
        _run(acme.request("GET", "https://api.acme.test/x"))
    assert [r.url.params["api_key"] for r in acme.seen] == ["k-123456"]


def test_json_bodies_keep_decimals_exact():
    acme = _acme(lambda r: httpx.Response(200, json={}))
    _run(acme.request("POST", "https://api.acme.test/x", json={"total": Decimal("136.50"), "n": 2}))
    assert acme.seen[0].content == b'{"total":136.50,"n":2}'
    assert acme.seen[0].headers["Content-Type"] == "application/json"
    with pytest.raises(TypeError, match=r"float 1\.5 in a money payload"):
        _run(acme.request("POST", "https://api.acme.test/x", json={"total": 1.5}))


@pytest.mark.parametrize(
    ("status", "method", "headers", "error", "message"),
    [
        (400, "POST", {}, PermanentError, "Acme POST /x: HTTP 400 (bad field)"),
        (
            429,
            "GET",
            {"Retry-After": "7"},
            RateLimitedError,
            "Acme GET /x: 429 rate limited, retry after 7s (bad field)",
        ),
        (500, "POST", {}, UncertainOutcomeError, "Acme POST /x: HTTP 500 (bad field)"),
        (503, "POST", {}, RetryableError, "Acme POST /x: HTTP 503 (bad field)"),
        (403, "GET", {}, AuthError, "Acme GET /x: HTTP 403 (bad field)"),
    ],
)
def test_statuses_map_through_the_shared_table(status, method, headers, error, message):
    acme = _acme(lambda r: httpx.Response(status, json={"message": "bad field"}, headers=headers))

    async def call() -> None:
        resp = await acme.request(method, "https://api.acme.test/x")
        acme.raise_for_status(resp, f"Acme {method} /x")

    with pytest.raises(error) as caught:
        _run(call())
    assert type(caught.value) is error
    assert str(caught.value) == message
    if status == 429:
        assert caught.value.retry_after == 7.0


def test_an_override_lets_a_status_through():
    acme = _acme(lambda r: httpx.Response(409, json={"message": "duplicate"}))

    async def call() -> int:
        resp = await acme.request("POST", "https://api.acme.test/x")
        acme.raise_for_status(resp, "Acme POST /x")
        return resp.status_code

    assert _run(call()) == 409


@pytest.mark.parametrize(
    ("exc", "method", "error", "message"),
    [
        (httpx.ConnectError("refused"), "POST", RetryableError, "Acme POST /x: request not sent (ConnectError)"),
        (
            httpx.ReadTimeout("slow"),
            "POST",
            UncertainOutcomeError,
            "Acme POST /x: request sent but no response (ReadTimeout); outcome unknown, reconcile with find()",
        ),
        (
            httpx.ReadTimeout("slow"),
            "GET",
            RetryableError,
            "Acme GET /x: no response (ReadTimeout); a read, safe to retry",
        ),
        (
            httpx.UnsupportedProtocol("ftp"),
            "GET",
            ConfigError,
            "Acme GET /x: bad URL in settings (UnsupportedProtocol)",
        ),
    ],
)
def test_transport_failures_map_to_the_taxonomy(exc, method, error, message):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(error) as caught:
        _run(_acme(handler).request(method, "https://api.acme.test/x"))
    assert type(caught.value) is error
    assert str(caught.value) == message


def test_credentials_in_query_strings_are_redacted_in_logs(caplog):
    assert redact_query("GET https://a/x?api_key=s3cret&n=1&access_token=abc") == (
        "GET https://a/x?api_key=***&n=1&access_token=***"
    )
    acme = _acme(
        lambda r: httpx.Response(200),
        auth_factory=lambda c: ApiKeyAuth(lambda: SecretStr("s3cret-key"), header=None, query="api_key"),
    )
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info("HTTP Request: GET https://api.acme.test/x?api_key=s3cret-key")
        _run(acme.request("GET", "https://api.acme.test/x"))
    assert [r.getMessage() for r in caplog.records if r.name == "httpx"] == [
        "HTTP Request: GET https://api.acme.test/x?api_key=***",
        'HTTP Request: GET https://api.acme.test/x?api_key=*** "HTTP/1.1 200 OK"',
    ]

"""The HTTP client that hydrates thin webhooks through a platform's API.

One :class:`PlatformClient` per tenant and platform (kept by the intake for its life): a pooled
``httpx.AsyncClient`` with the platform's authentication header, a pace that keeps under the
platform's published request rate (:class:`Pace`), and retries (tenacity) of what is worth
retrying: transport errors, 429 (waiting the ``Retry-After`` seconds it names, else an exponential
back-off) and 5xx. What is still failing after the retries, or a 401/403 (our API credentials), is
:class:`~broker.platforms.base.Rejected` 503 ``unavailable``: the webhook is answered 503 with
``Retry-After`` and the platform sends it again. A 404 is 422 ``invalid`` naming the resource.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from broker.platforms.base import Rejected

__all__ = ["Pace", "PlatformClient"]

log = logging.getLogger(__name__)

#: Retry-After from an unavailable platform API, told to the webhook's sender (seconds).
RETRY_AFTER_SECONDS = 30
MAX_RETRY_AFTER = 60.0


class Pace:
    """At most ``per_minute`` requests in any 60 s (a sliding window; ``None``: no limit).
    ``clock``: monotonic seconds."""

    def __init__(self, per_minute: int | None, clock: Any = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._sent: list[float] = []
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when one more request keeps within the limit (and count it)."""
        if self.per_minute is None:
            return
        async with self._lock:
            while True:
                now = self.clock()
                self._sent = [t for t in self._sent if now - t < 60.0]
                if len(self._sent) < self.per_minute:
                    self._sent.append(now)
                    return
                await asyncio.sleep(60.0 - (now - self._sent[0]))


class _RetryableError(Exception):
    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.retry_after = retry_after


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, _RetryableError) and exc.retry_after is not None:
        return min(exc.retry_after, MAX_RETRY_AFTER)
    return float(wait_exponential(multiplier=0.2, max=5)(state))


class PlatformClient:
    """GET JSON from ``base_url`` (the platform's API root, e.g. ``https://api.getmaintainx.com/v1``)
    with ``headers`` (authentication), at most ``per_minute`` requests a minute, ``attempts`` tries
    per request, ``timeout`` seconds per try. ``platform`` names it in errors and logs."""

    def __init__(
        self,
        platform: str,
        base_url: str,
        headers: Mapping[str, str],
        *,
        per_minute: int | None,
        attempts: int = 4,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.platform = platform
        self.pace = Pace(per_minute)
        self.attempts = attempts
        self.requests = 0
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=dict(headers), timeout=timeout, transport=transport
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get(self, path: str, params: Mapping[str, Any] | list[tuple[str, Any]] | None = None) -> Any:
        """The decoded JSON of ``GET <base_url>/<path>`` (floats decoded as :class:`~decimal.Decimal`).
        Raises :class:`Rejected`: 503 when the API stays unavailable, 422 for a 404."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=_wait,
                retry=retry_if_exception(lambda exc: isinstance(exc, _RetryableError)),
                reraise=True,
            ):
                with attempt:
                    return await self._get_once(path, params)
        except _RetryableError as exc:
            log.warning("%s API: GET %s failed after %d attempts: %s", self.platform, path, self.attempts, exc)
            raise Rejected(
                503,
                "unavailable",
                f"the {self.platform} API did not answer GET {path} ({exc}); send the webhook again",
                retry_after=RETRY_AFTER_SECONDS,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover - AsyncRetrying returns or raises

    async def _get_once(self, path: str, params: Any) -> Any:
        await self.pace.wait()
        self.requests += 1
        try:
            response = await self._http.get(path.lstrip("/"), params=params)
        except httpx.TransportError as exc:
            raise _RetryableError(f"{type(exc).__name__}: {exc}") from None
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("retry-after")
            seconds = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            raise _RetryableError(f"HTTP {response.status_code}", seconds)
        if response.status_code in (401, 403):
            log.error("%s API refused our credentials (HTTP %d) on GET %s", self.platform, response.status_code, path)
            raise Rejected(
                503,
                "unavailable",
                f"the {self.platform} API refused the broker's credentials (HTTP {response.status_code}); "
                "check the tenant's webhooks api settings",
                retry_after=RETRY_AFTER_SECONDS,
            )
        if response.status_code == 404:
            raise Rejected(422, "invalid", f"the {self.platform} API has no {path} (HTTP 404)")
        if response.status_code >= 400:
            raise Rejected(
                503,
                "unavailable",
                f"the {self.platform} API answered HTTP {response.status_code} to GET {path}",
                retry_after=RETRY_AFTER_SECONDS,
            )
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise _RetryableError(f"GET {path}: the answer is not JSON") from None

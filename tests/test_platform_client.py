"""The platforms' API client (:mod:`broker.platforms.client`): its pace under a published limit, and
what it retries, against the platform emulator over real HTTP."""

from __future__ import annotations

import asyncio

import pytest

from broker.platforms.base import Rejected
from broker.platforms.client import Pace, PlatformClient
from broker.platforms.emulator import PlatformEmulator


def test_the_pace_keeps_any_60_seconds_under_the_limit(monkeypatch):
    now = [1000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr("broker.platforms.client.asyncio.sleep", sleep)
    pace = Pace(3, clock=lambda: now[0])

    async def run() -> list[float]:
        started = []
        for step in (0.0, 10.0, 5.0, 0.0, 0.0):  # calls at t=0, 10, 15, then two more at once
            now[0] += step
            await pace.wait()
            started.append(now[0] - 1000.0)
        return started

    assert asyncio.run(run()) == [0.0, 10.0, 15.0, 60.0, 70.0]
    assert slept == [45.0, 10.0]
    assert asyncio.run(_no_limit()) is None


async def _no_limit() -> None:
    await Pace(None).wait()


def _client(platforms: PlatformEmulator, token: str = "maintainx-token") -> PlatformClient:
    return PlatformClient(
        "maintainx", platforms.base_url("maintainx"), {"Authorization": f"Bearer {token}"}, per_minute=None
    )


async def _get(client: PlatformClient, path: str):
    try:
        return await client.get(path)
    finally:
        await client.close()


def test_429_and_5xx_are_retried_and_a_lasting_outage_is_503(platforms):
    platforms.inject_fault("429", times=1)
    platforms.inject_fault("503", times=1)
    client = _client(platforms)
    found = asyncio.run(_get(client, "workorders/5550123"))
    assert found["workOrder"]["id"] == 5550123
    assert client.requests == 3
    assert platforms.count_429 == 1
    platforms.inject_fault("503", times=4)
    client = _client(platforms)
    with pytest.raises(Rejected) as refused:
        asyncio.run(_get(client, "workorders/5550123"))
    assert (refused.value.status, refused.value.result, refused.value.retry_after) == (503, "unavailable", 30)
    assert refused.value.detail == (
        "the maintainx API did not answer GET workorders/5550123 (HTTP 503); send the webhook again"
    )
    assert client.requests == 4


def test_refused_credentials_are_503_and_an_unknown_document_is_422(platforms):
    with pytest.raises(Rejected) as refused:
        asyncio.run(_get(_client(platforms, token="wrong"), "workorders/5550123"))
    assert (refused.value.status, refused.value.detail) == (
        503,
        "the maintainx API refused the broker's credentials (HTTP 401); check the tenant's webhooks api settings",
    )
    with pytest.raises(Rejected) as refused:
        asyncio.run(_get(_client(platforms), "workorders/1"))
    assert (refused.value.status, refused.value.result) == (422, "invalid")
    assert refused.value.detail == "the maintainx API has no workorders/1 (HTTP 404)"

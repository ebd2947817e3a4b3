"""Idempotency-key replay cache: a repeated key answers the saved response without re-executing."""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from connectors.sandbox.http import Response


@dataclass
class Saved:
    at: float
    status: int
    body: bytes
    headers: dict[str, str]
    #: what the emulator compares a replay against (e.g. the request body or its parameters)
    fingerprint: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def response(self, **more_headers: str) -> Response:
        headers = dict(self.headers)
        headers.update(more_headers)
        return Response(self.status, self.body, headers)


class ReplayCache:
    """Saved responses by key for ``ttl`` seconds (``None`` = forever); callers hold the emulator's lock."""

    def __init__(self, ttl: float | None = None) -> None:
        self.ttl = ttl
        self._saved: dict[Hashable, Saved] = {}

    def get(self, key: Hashable, now: float | None = None) -> Saved | None:
        """The live entry of ``key`` (an expired one is forgotten)."""
        now = time.monotonic() if now is None else now
        saved = self._saved.get(key)
        if saved is not None and self.ttl is not None and now - saved.at >= self.ttl:
            del self._saved[key]
            return None
        return saved

    def save(self, key: Hashable, resp: Response, *, fingerprint: Any = None, now: float | None = None) -> Saved:
        saved = Saved(time.monotonic() if now is None else now, resp.status, resp.body, dict(resp.headers), fingerprint)
        self._saved[key] = saved
        return saved

    def forget(self, key: Hashable) -> None:
        self._saved.pop(key, None)

    def clear(self) -> None:
        self._saved.clear()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._saved

    def __len__(self) -> int:
        return len(self._saved)

"""Webhooks an emulator sends, as its billing system would: signed, from a background thread, retried.

An emulator that has webhooks (Xero, Stripe, QuickBooks, PayPal, FreshBooks) holds a :class:`WebhookSender`.
An admin action (mark an invoice paid) calls :meth:`WebhookSender.send` with the payload while the emulator
holds its lock; the sender only queues it, and a daemon thread POSTs it once the action is done. That matters:
the receiver (``broker payments``) answers a webhook by reading the invoice back from the same emulator, which
would wait forever for a lock held by a thread that waits for the receiver.

Each delivery is signed at send time by the emulator's ``sign(body, now) -> headers`` (Stripe signs
every attempt with a fresh timestamp; Xero's signature depends on the body only). A non-2xx answer or a
connection error is retried ``retries`` times, ``retry_delay`` seconds apart (the real systems retry for
hours; Xero: "with decreasing frequency for 24 h", Stripe: "up to three days"). What happened is kept in
:attr:`WebhookSender.deliveries` (``(event name, HTTP status or 0, attempt)``) for tests and the admin API.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from connectors.sandbox.http import json_response

if TYPE_CHECKING:
    from connectors.sandbox.emulator import AdminRoute, Emulator

__all__ = ["Signer", "WebhookSender", "post"]

#: ``sign(body, unix seconds) -> headers`` of one delivery attempt.
Signer = Callable[[bytes, int], Mapping[str, str]]


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float = 10.0) -> int:
    """POST ``body`` to ``url`` (``http://`` only: loopback receivers) with ``headers``; the HTTP status,
    or 0 when no answer came (connection refused, reset, timeout)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", path or "/", body=body, headers={"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return 0
    finally:
        conn.close()


@dataclass(frozen=True)
class _Queued:
    name: str
    url: str
    body: bytes
    sign: Signer


class WebhookSender:
    """Queues signed webhooks and POSTs them from a daemon thread (module docstring).

    ``url``: where webhooks go (``None``: nowhere, nothing is sent or kept); ``retries``: further
    attempts after a failed one; ``retry_delay``: seconds between attempts; ``clock``: unix seconds
    for the signatures (tests of staleness pass an old one).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        retries: int = 2,
        retry_delay: float = 0.5,
        clock: Callable[[], float] = time.time,
    ):
        self.url = url
        self.retries = retries
        self.retry_delay = retry_delay
        self.clock = clock
        #: ``(event name, HTTP status (0: no answer), attempt number from 1)`` of every attempt, in order.
        self.deliveries: list[tuple[str, int, int]] = []
        #: The payloads sent, in order (``(event name, body)``), for :meth:`redeliver`.
        self.sent: list[tuple[str, bytes]] = []
        self._signers: list[Signer] = []
        self._targets: list[str | None] = []  # the URL each was sent to (None: :attr:`url`)
        self._queue: queue.Queue[_Queued | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._lock = threading.Lock()

    def send(self, name: str, payload: Mapping[str, Any] | bytes, sign: Signer, url: str | None = None) -> None:
        """Queue ``payload`` (a JSON object, or the exact body bytes) as event ``name`` to ``url`` (default
        :attr:`url`: systems with one endpoint per app; FreshBooks has one per registered callback); no-op
        without a URL."""
        target = url or self.url
        if not target:
            return
        body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        with self._lock:
            self.sent.append((name, body))
            self._signers.append(sign)
            self._targets.append(url)
        self._enqueue(_Queued(name, target, body, sign))

    def configure(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Take ``doc["url"]`` as the new URL when given (empty or ``None``: send nothing); ``{"url": url}``."""
        if "url" in doc:
            self.url = str(doc["url"]) if doc["url"] else None
        return {"url": self.url}

    def redeliver(self, index: int = -1) -> str:
        """Send webhook ``index`` of :attr:`sent` again (signed anew, as a system's retry is); its name.
        ``IndexError`` when there is none."""
        with self._lock:
            name, body = self.sent[index]
            sign = self._signers[index]
            target = self._targets[index] or self.url
        if target:
            self._enqueue(_Queued(name, target, body, sign))
        return name

    def admin_routes(
        self, emulator: Emulator, secret_field: str, set_secret: Callable[[str], None]
    ) -> dict[tuple[str, str], AdminRoute]:
        """The control API of these webhooks on ``emulator``::

            POST /_emulator/webhooks   {"url"?, <secret_field>?}  -> {"url"}  (where they go, what signs them)
            GET  /_emulator/webhooks   -> {"deliveries": [[event, status, attempt], ...], "sent": n}
            POST /_emulator/webhooks/redeliver {"index": -1}  -> {"redelivered": event}

        ``set_secret(value)`` takes a new signing secret (``secret_field`` given and not empty)."""

        def configure(doc: dict[str, Any]) -> dict[str, Any]:
            if doc.get(secret_field):
                set_secret(str(doc[secret_field]))
            return self.configure(doc)

        return {
            ("POST", "/_emulator/webhooks"): lambda req: emulator.admin_action(
                req, configure, refused="bad webhook settings"
            ),
            ("GET", "/_emulator/webhooks"): lambda _req: json_response(
                200, {"deliveries": [list(d) for d in self.deliveries], "sent": len(self.sent)}
            ),
            ("POST", "/_emulator/webhooks/redeliver"): lambda req: emulator.admin_action(
                req, lambda doc: {"redelivered": self.redeliver(int(doc.get("index", -1)))}, refused="nothing"
            ),
        }

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook was delivered or given up; whether that happened in time."""
        return self._idle.wait(timeout)

    def _enqueue(self, item: _Queued) -> None:
        with self._lock:
            self._pending += 1
            self._idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="emulator-webhooks", daemon=True)
                self._thread.start()
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._deliver(item)
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.set()

    def _deliver(self, item: _Queued) -> None:
        for attempt in range(1, self.retries + 2):
            status = post(item.url, item.body, item.sign(item.body, int(self.clock())))
            with self._lock:
                self.deliveries.append((item.name, status, attempt))
            if 200 <= status < 300 or status == 401:  # 401: refused for good (a key mismatch)
                return
            time.sleep(self.retry_delay)

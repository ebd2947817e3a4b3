"""A loopback emulator of the Ledgerly API (the example plugin's fake billing system).

What an emulator must reproduce (``docs/connectors.md``, "Emulator"): the real paths and auth
header, the error body shape, the uniqueness rule (invoice numbers per account), the idempotency
semantics (same key + same body replays the first answer; same key + another body is a 422),
the rate limit (429 + ``Retry-After``), totals computed the system's way, and injectable faults.

Faults (:meth:`LedgerlyEmulator.inject_fault`): ``"429"``, ``"503"``, ``"500"`` (answered without
processing) and ``"timeout_after_commit"`` (processed, then the connection is held ``hang_seconds``
and closed without an answer).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CENT = Decimal("0.01")
FAULTS = ("429", "503", "500", "timeout_after_commit")


class LedgerlyEmulator:
    """``LedgerlyEmulator(api_key=..., account_id=...).start()``; ``url`` is its base URL."""

    def __init__(
        self,
        *,
        api_key: str,
        account_id: str = "acc-1",
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit_per_minute: int = 120,
        hang_seconds: float = 2.0,
        customers: dict[str, str] | None = None,
    ):
        self.api_key, self.account_id, self.host, self.port = api_key, account_id, host, port
        self.rate_limit_per_minute, self.hang_seconds = rate_limit_per_minute, hang_seconds
        self.seed_customers = dict(customers or {})
        self.retry_after = 1
        self.idempotency_ttl = 24 * 3600.0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.reset()

    # ------------------------------------------------------------------ test helpers
    def reset(self) -> None:
        with self._lock:
            self.invoices: dict[str, dict] = {}
            self.customers: dict[str, dict] = {
                cid: {"id": cid, "name": name, "email": None, "tax_number": None}
                for cid, name in self.seed_customers.items()
            }
            self._keys: dict[str, tuple[float, str, int, bytes]] = {}
            self._faults: deque[str] = deque()
            self._window: deque[float] = deque()
            self.errors: list[str] = []
            self.idempotency_ttl = 24 * 3600.0

    def inject_fault(self, kind: str, times: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {FAULTS}")
        with self._lock:
            self._faults.extend([kind] * times)

    def start(self) -> LedgerlyEmulator:
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ request handling
    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict, dict[str, str], str | None]:
        """``(status, json body, headers, action)``; action ``"hang"`` = do not answer."""
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, _err("unauthorized", "invalid API key"), {}, None
        m = re.fullmatch(r"/v1/accounts/([^/]+)(/invoices|/customers)?", path)
        if not m:
            return 404, _err("not_found", f"no resource at {path}"), {}, None
        if m.group(1) != self.account_id:
            return 404, _err("account_not_found", f"account {m.group(1)} does not exist"), {}, None
        with self._lock:
            now = time.monotonic()
            while self._window and now - self._window[0] >= 60:
                self._window.popleft()
            if len(self._window) >= self.rate_limit_per_minute:
                return (
                    429,
                    _err("rate_limited", "too many requests"),
                    {"Retry-After": str(int(60 - (now - self._window[0])) + 1)},
                    None,
                )
            self._window.append(now)
            fault = self._faults.popleft() if self._faults else None
        if fault == "429":
            return 429, _err("rate_limited", "too many requests"), {"Retry-After": str(self.retry_after)}, None
        if fault in ("503", "500"):
            return int(fault), _err("unavailable", "try again later"), {}, None
        resource = m.group(2)
        if resource is None and method == "GET":
            return 200, {"id": self.account_id, "name": "Example account"}, {}, None
        key = headers.get("idempotency-key")
        with self._lock:
            if method == "POST" and key:
                digest = hashlib.sha256(method.encode() + path.encode() + body).hexdigest()
                cached = self._keys.get(key)
                if cached and time.monotonic() - cached[0] < self.idempotency_ttl:
                    if cached[1] != digest:
                        return 422, _err("idempotency_key_reused", "key used with another request"), {}, None
                    return cached[2], json.loads(cached[3]), {"Idempotent-Replayed": "true"}, None
            status, doc = self._route(method, resource, query, body)
            if method == "POST" and key and status < 500:
                self._keys[key] = (time.monotonic(), digest, status, json.dumps(doc).encode())
        return status, doc, {}, "hang" if fault == "timeout_after_commit" else None

    def _route(self, method: str, resource: str, query: dict[str, str], body: bytes) -> tuple[int, dict]:
        if resource == "/invoices" and method == "GET":
            return 200, {
                "data": [
                    inv for inv in self.invoices.values() if not query.get("number") or inv["number"] == query["number"]
                ]
            }
        if resource == "/customers" and method == "GET":
            field, value = next(((f, query[f]) for f in ("tax_number", "email", "name") if f in query), (None, None))
            return 200, {
                "data": [
                    c for c in self.customers.values() if field is None or (c.get(field) or "").lower() == value.lower()
                ]
            }
        try:
            doc = json.loads(body, parse_float=Decimal)
        except ValueError:
            return 400, _err("bad_json", "body is not JSON")
        if resource == "/customers" and method == "POST":
            if not doc.get("name"):
                return 422, _err("validation", "name is required", "name")
            cid = "cus_" + uuid.uuid4().hex[:12]
            self.customers[cid] = {
                "id": cid,
                "name": doc["name"],
                "email": doc.get("email"),
                "tax_number": doc.get("tax_number"),
            }
            return 201, self.customers[cid]
        if resource == "/invoices" and method == "POST":
            return self._create_invoice(doc)
        return 405, _err("method_not_allowed", f"{method} {resource}")

    def _create_invoice(self, doc: dict) -> tuple[int, dict]:
        number = doc.get("number")
        if not isinstance(number, str) or not number.strip():
            return 422, _err("validation", "number is required", "number")
        if any(inv["number"] == number for inv in self.invoices.values()):
            return 409, _err("duplicate_number", f"invoice number {number} already exists", "number")
        if doc.get("customer_id") not in self.customers:
            return 422, _err("validation", f"customer {doc.get('customer_id')} does not exist", "customer_id")
        lines = doc.get("lines") or []
        if not lines or len(lines) > 1000:
            return 422, _err("validation", "between 1 and 1000 lines are required", "lines")
        net_total = tax_total = Decimal("0")
        for n, line in enumerate(lines, 1):
            try:
                qty, price, rate = (Decimal(str(line[k])) for k in ("quantity", "unit_price", "tax_rate"))
            except (KeyError, InvalidOperation):
                return 422, _err(
                    "validation", f"line {n}: quantity, unit_price and tax_rate must be decimal strings", "lines"
                )
            if rate not in (Decimal("0"), Decimal("6"), Decimal("13"), Decimal("23")):
                return 422, _err("validation", f"line {n}: unknown tax rate {rate}", "tax_rate")
            if len(str(line.get("description") or "")) > 5000:
                return 422, _err("validation", f"line {n}: description longer than 5000 characters", "description")
            net = (qty * price).quantize(CENT, rounding=ROUND_HALF_UP)  # per line, half-up: Ledgerly's rule
            net_total += net
            tax_total += (net * rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        inv_id = "inv_" + uuid.uuid4().hex[:12]
        self.invoices[inv_id] = {
            "id": inv_id,
            "number": number,
            "customer_id": doc["customer_id"],
            "currency": doc.get("currency"),
            "net_total": str(net_total),
            "tax_total": str(tax_total),
            "total": str(net_total + tax_total),
            "lines": len(lines),
            "status": "issued",
            "memo": str(doc.get("memo") or ""),
            "notes": str(doc.get("notes") or ""),
        }
        return 201, self.invoices[inv_id]


def _err(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, **({"field": field} if field else {})}}


class _Handler(BaseHTTPRequestHandler):
    emulator: LedgerlyEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, doc, extra, action = self.emulator.handle(self.command, split.path, query, headers, body)
        except Exception as exc:  # an emulator bug: 500, remembered for the harness
            self.emulator.errors.append(repr(exc))
            status, doc, extra, action = 500, _err("emulator_error", "bug"), {}, None
        if action == "hang":
            self.emulator._stop.wait(self.emulator.hang_seconds)
            self.close_connection = True
            return
        payload = json.dumps(doc, default=str).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(payload)), **extra}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve  # noqa: N815 - http.server's names

"""The part every emulator shares: lifecycle, records, fault queue, request validation hook, admin API.

A subclass calls :meth:`Emulator._init_sandbox` in its constructor, implements ``_init_state`` (which
calls :meth:`Emulator._init_records`), ``_handle`` (its system's rules) and, when it wants, more admin
routes (:meth:`Emulator._admin_routes`; :meth:`Emulator._admin_listing` lists a multi-account store, see
:func:`stored_objects`; :meth:`Emulator.admin_action` serves a write that takes a JSON body and answers
400 with the reason when refused) and its own internal-error body (:meth:`Emulator._internal_error`). An API call
can go through :meth:`Emulator._gate` (rate limits, injected faults, delay, processing under the lock).
The standard admin API (under ``/_emulator``)::

    GET  /_emulator/stats          -> stats()
    POST /_emulator/faults         {"kind": "503", "times": 3}
    POST /_emulator/reset          -> reset_state()
    POST /_emulator/expire-tokens  -> expire_access_tokens()
"""

from __future__ import annotations

import copy
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

from connectors.sandbox.faults import AFTER_COMMIT, FAULT_KINDS, Fault, FaultQueue, after_commit
from connectors.sandbox.http import Request, Response, Server, json_response, loads_decimal, start_server, stop_server
from connectors.sandbox.limits import Concurrency, Window

RequestValidator = Callable[[str, str, dict[str, Any], dict[str, Any], bytes], Any]
AdminRoute = Callable[[Request], Response]
#: ``on_step(operation, stored)``: see :attr:`Emulator.on_step`
StepHook = Callable[[str, dict[str, Any]], Any]
ADMIN_PREFIX = "/_emulator"


class Emulator:
    """Base of the loopback emulators (``start()``/``stop()`` or ``with``; ``port=0`` picks a free port)."""

    #: thread name prefix and ``Server`` header
    name: ClassVar[str] = "emulator"
    server_version: ClassVar[str] = "Emulator/1.0"
    fault_kinds: ClassVar[tuple[str, ...]] = FAULT_KINDS
    #: close without acting when a request body arrives cut off (a killed client)
    drop_incomplete_bodies: ClassVar[bool] = True
    http_methods: ClassVar[frozenset[str]] = frozenset({"GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"})
    #: whether ``/_emulator`` calls are recorded in ``calls``
    record_admin_calls: ClassVar[bool] = True
    #: Test hook ``on_step(operation, stored)`` of the emulators that report their writes (crash tests kill
    #: a worker there): called by :meth:`_answer_processed` after a write was stored, before its answer
    #: is written; ``stored`` is a copy of what the write stored. ``None``: no hook.
    on_step: StepHook | None = None

    host: str
    port: int
    hang_seconds: float
    response_delay: float
    request_validator: RequestValidator | None
    calls: list[tuple[str, str, int]]
    count_429: int
    validation_failures: list[str]
    server_errors: list[str]
    faults: FaultQueue

    def _init_sandbox(
        self,
        host: str,
        port: int,
        *,
        hang_seconds: float = 30.0,
        response_delay: float = 0.0,
        request_validator: RequestValidator | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.hang_seconds = hang_seconds
        self.response_delay = response_delay
        self.request_validator = request_validator
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def _new_fault_queue(self) -> FaultQueue:
        return FaultQueue(self.fault_kinds)

    def _init_records(self) -> None:
        """Records and pending faults (part of ``_init_state``: ``reset_state()`` forgets them)."""
        self.faults = self._new_fault_queue()
        self.calls = []
        self.count_429 = 0
        self.validation_failures = []
        self.server_errors = []

    def _init_state(self) -> None:
        self._init_records()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns ``self``. Idempotent."""
        if self._server is None:
            self._stop.clear()
            self._server, self._thread = start_server(
                self, self.host, self.port, self.name, server_version=self.server_version
            )
            self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (hanging fault handlers are woken up)."""
        self._stop.set()
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        stop_server(server, thread)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    def reset_state(self) -> None:
        """Forget the stored objects, windows, faults and records (issued tokens are kept)."""
        with self._lock:
            self._init_state()

    def expire_access_tokens(self) -> None:
        """Expire every issued access token now (systems without tokens: nothing to do)."""

    # ------------------------------------------------------------------ faults
    def _add_fault(self, fault: Fault, times: int = 1, *, after_each: bool = True) -> None:
        with self._lock:
            self.faults.add(fault, times, after_each=after_each)

    def _take_fault(self, method: str = "", path: str = "", operation: str | None = None) -> Fault | None:
        """The injected fault that hits this call (caller holds the lock)."""
        return self.faults.take(method, path, operation)

    def _delay(self) -> None:
        """Hold the call ``response_delay`` seconds (woken up by :meth:`stop`)."""
        if self.response_delay > 0:
            self._stop.wait(self.response_delay)

    def _throttle(self, window: Window, limit: int | None) -> int | None:
        """Count a call in ``window`` against ``limit`` (set first: a setting tests may change at run time).
        Over the limit: the call is not counted but in ``count_429``; returns its ``Retry-After`` seconds
        (else ``None``). Caller holds the lock."""
        now = time.monotonic()
        window.limit = limit
        if window.admit(now):
            return None
        self.count_429 += 1
        return window.retry_after_seconds(now)

    def _fault_answer(self, fault: Fault | None) -> Response | None:
        """The answer of an injected fault that strikes before processing; ``None`` when there is no fault
        or it strikes after commit (process the call, then :meth:`_answer_processed`).

        ``"reset"`` resets the connection; ``"429"`` is counted in ``count_429`` and answered by
        :meth:`_fault_throttled`; any other kind is an HTTP status answered by :meth:`_fault_status`.
        """
        if fault is None or fault.kind in AFTER_COMMIT:
            return None
        if fault.kind == "reset":
            return Response(0, action="reset")
        if fault.kind == "429":
            with self._lock:
                self.count_429 += 1
            return self._fault_throttled(fault)
        return self._fault_status(int(fault.kind))

    def _fault_throttled(self, fault: Fault) -> Response:
        """The system's 429 for an injected ``"429"`` (``Retry-After``: the fault's, else 1 s)."""
        retry = 1 if fault.retry_after is None else fault.retry_after
        return json_response(429, {"error": "too many requests"}, {"Retry-After": str(retry)})

    def _fault_status(self, status: int) -> Response:
        """The system's answer to an injected server error (``"503"``, ``"500"``)."""
        return json_response(status, {"error": f"injected fault {status}"})

    def _answer_processed(
        self, resp: Response, fault: Fault | None, step: tuple[str, dict[str, Any] | None] | None = None
    ) -> Response:
        """Finish a processed call: report ``step`` (``(operation, stored copy)``; a ``None`` copy = nothing
        stored) to :attr:`on_step`, then apply an after-commit ``fault`` (the answer is then not sent)."""
        if step is not None and step[1] is not None and self.on_step is not None:
            self.on_step(step[0], step[1])  # committed, not answered yet
        return after_commit(resp, None if fault is None else fault.kind)

    def _gate(
        self,
        req: Request,
        admit: Callable[[], Response | None],
        inflight: Concurrency,
        process: Callable[[], Response],
    ) -> Response:
        """Serve one API call through the usual gate. Under the lock, ``admit()`` counts the call against the
        rate limits and enters it in ``inflight`` (or returns the system's 429: then nothing else happens) and
        the injected fault that hits it is taken; a fault that strikes before processing is answered
        (:meth:`_fault_answer`); otherwise the call waits ``response_delay``, ``process()`` answers it under
        the lock and an after-commit fault is applied (:meth:`_answer_processed`). An admitted call leaves
        ``inflight`` whatever happens."""
        with self._lock:
            refused = admit()
            if refused is not None:
                return refused
            fault = self._take_fault(req.method, req.path)
        try:
            answer = self._fault_answer(fault)
            if answer is not None:
                return answer
            self._delay()
            with self._lock:
                resp = process()
            return self._answer_processed(resp, fault)
        finally:
            with self._lock:
                inflight.leave()

    # ------------------------------------------------------------------ request handling
    def _handle(self, req: Request) -> Response:
        raise NotImplementedError

    def _internal_error(self) -> Response:
        """The answer to an emulator bug (the traceback is kept in ``server_errors``)."""
        return json_response(500, {"error": "emulator error"})

    def _record(self, method: str, path: str, status: int) -> None:
        if not self.record_admin_calls and path.startswith(ADMIN_PREFIX):
            return
        with self._lock:
            self.calls.append((method, path, status))

    def _invalid(self, req: Request, path: str | None = None, **headers: str) -> str | None:
        """Run ``request_validator``; the failure message (also kept in ``validation_failures``) or ``None``.

        ``path`` is what is validated and named in the message (``req.path`` by default); ``headers`` are
        added to the request's for the validator (e.g. the raw query).
        """
        if self.request_validator is None:
            return None
        path = req.path if path is None else path
        try:
            self.request_validator(req.method, path, dict(req.query), dict(req.headers, **headers), req.body)
        except Exception as exc:  # noqa: BLE001 - any exception = the request does not conform
            message = f"{req.method} {path}: {type(exc).__name__}: {exc}"
            with self._lock:
                self.validation_failures.append(message)
            return message
        return None

    # ------------------------------------------------------------------ admin API
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": [list(c) for c in self.calls],
                "call_count": len(self.calls),
                "count_429": self.count_429,
                "validation_failures": list(self.validation_failures),
                "server_errors": list(self.server_errors),
                "pending_faults": self._pending_faults(),
            }

    def _pending_faults(self) -> list[Any]:
        return self.faults.kinds_pending()

    def _inject_from_admin(self, doc: dict[str, Any]) -> None:
        """``POST /_emulator/faults``: ``{"kind", "times"}`` by default."""
        self.inject_fault(str(doc["kind"]), int(doc.get("times", 1)))

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` API calls fail with ``kind`` (see :mod:`connectors.sandbox.faults`)."""
        self._add_fault(Fault(kind), times)

    def _admin_fault(self, req: Request) -> Response:
        try:
            doc = loads_decimal(req.body or b"{}")
            self._inject_from_admin(doc)
        except (ValueError, KeyError, TypeError) as exc:
            return json_response(400, {"error": f"bad fault request: {exc}", "kinds": list(self.fault_kinds)})
        with self._lock:
            return json_response(200, {"ok": True, "pending_faults": self._pending_faults()})

    def _admin_routes(self) -> dict[tuple[str, str], AdminRoute]:
        """``(method, lower-case path)`` -> handler of the admin API; subclasses add their listings."""

        def ok(action: Callable[[], None]) -> AdminRoute:
            def run(_req: Request) -> Response:
                action()
                return json_response(200, {"ok": True})

            return run

        return {
            ("GET", f"{ADMIN_PREFIX}/stats"): lambda _req: json_response(200, self.stats()),
            ("POST", f"{ADMIN_PREFIX}/faults"): self._admin_fault,
            ("POST", f"{ADMIN_PREFIX}/reset"): ok(self.reset_state),
            ("POST", f"{ADMIN_PREFIX}/expire-tokens"): ok(self.expire_access_tokens),
        }

    def admin_action(
        self, req: Request, action: Callable[[dict[str, Any]], Mapping[str, Any]], *, refused: str = "refused"
    ) -> Response:
        """Serve an admin write (``POST /_emulator/...``): run ``action`` on the request's JSON body.

        The body (empty = ``{}``) is read with exact decimals and must be a JSON object; ``action(doc)``
        returns the 200 answer's JSON object. A body that is not an object, or an action raising
        ``KeyError`` (a missing field), ``ValueError`` (the emulator refuses: unknown id, over the amount
        due...), ``TypeError`` or ``ArithmeticError``, is answered 400 ``{"error": "<refused>:
        <exception class>: <reason>"}`` and changes nothing the action did not already change (actions
        validate before they write).
        """
        try:
            doc = loads_decimal(req.body or b"{}")
            if not isinstance(doc, dict):
                raise TypeError(f"the body must be a JSON object, got {type(doc).__name__}")
            answer = dict(action(doc))
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            return json_response(400, {"error": f"{refused}: {type(exc).__name__}: {exc}"})
        return json_response(200, answer)

    def _admin_listing(self, accounts: Mapping[str, Any], store: str, tag: str) -> Response:
        """A listing of the admin API: every account's objects in ``store`` (see :func:`stored_objects`), each with
        its account id under ``tag``."""
        with self._lock:
            listing = stored_objects(accounts, store, tag=tag)
        return json_response(200, listing)

    def _admin(self, req: Request, path: str | None = None) -> Response:
        """Answer an ``/_emulator`` call."""
        lower = (req.path if path is None else path).rstrip("/").lower()
        route = self._admin_routes().get((req.method, lower))
        if route is None:
            return json_response(404, {"error": f"unknown control route {req.method} {req.path}"})
        return route(req)


def stored_objects(
    accounts: Mapping[str, Any], store: str, account: str | None = None, *, tag: str | None = None
) -> list[dict[str, Any]]:
    """Deep copies of the objects that every account (or only ``account``) of a multi-account emulator keeps in
    its store ``store`` (an attribute ``{id: object}`` of the account's state in ``accounts``), in order;
    ``tag``: each copy with its account id under that key. Caller holds the emulator's lock."""
    names = list(accounts) if account is None else [account]
    copies = [(name, copy.deepcopy(obj)) for name in names for obj in getattr(accounts[name], store).values()]
    return [obj if tag is None else {**obj, tag: name} for name, obj in copies]


def serve_until_interrupted(emulator: Emulator, lines: list[str]) -> None:
    """Print ``lines`` (URLs, credentials), serve until Ctrl-C, then stop."""
    for line in lines:
        print(line)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        emulator.stop()

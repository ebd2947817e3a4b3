"""Loopback HTTP plumbing of the emulators (stdlib ``ThreadingHTTPServer``), written once.

A request becomes a :class:`Request`, the emulator's ``_handle(request) -> Response`` answers it and
:class:`Handler` writes the answer in one write — or performs the response's fault action instead:
``"reset"`` (TCP RST without a response), ``"drop"`` (close without a response), ``"hang"`` (keep the
socket open ``hang_seconds``, then close without a response).
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import sys
import threading
import traceback
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from connectors.sdk.money import dumps

JSON_UTF8 = "application/json; charset=utf-8"


@dataclass
class Request:
    method: str
    path: str
    #: the request target as sent (path and query)
    raw_target: str
    #: query parameters, last value of each
    query: dict[str, str]
    #: lower-case header names
    headers: dict[str, str]
    body: bytes
    #: the raw query string (bracket notation, repeated names)
    raw_query: str = ""
    #: every value of each query parameter
    query_lists: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: None = send; "reset" = RST without response; "drop" = close without response; "hang" = wait, then drop
    action: str | None = None


def json_response(
    status: int, obj: Any, headers: dict[str, str] | None = None, *, content_type: str = JSON_UTF8
) -> Response:
    """JSON body with exact decimals (``dumps`` writes Decimal as JSON numbers)."""
    h = {"Content-Type": content_type}
    h.update(headers or {})
    return Response(status, dumps(obj), h)


def html_response(status: int, title: str) -> Response:
    """A bare HTML error page (``<h1>503 Service Unavailable</h1>``), as a system's front end answers when the
    service behind it is down."""
    page = f"<html><body><h1>{status} {title}</h1></body></html>"
    return Response(status, page.encode(), {"Content-Type": "text/html"})


def loads_decimal(data: bytes | str) -> Any:
    """JSON with every fraction as :class:`~decimal.Decimal`."""
    return json.loads(data, parse_float=Decimal)


class Served(Protocol):
    """What :class:`Handler` needs from an emulator (see :class:`connectors.sandbox.Emulator`)."""

    _lock: threading.RLock
    _stop: threading.Event
    hang_seconds: float
    server_errors: list[str]

    @property
    def drop_incomplete_bodies(self) -> bool:
        """Close without acting when the body arrives cut off (a killed client)."""

    @property
    def http_methods(self) -> frozenset[str]:
        """HTTP methods served; others get 501 like a handler without ``do_<METHOD>``."""

    def _handle(self, req: Request) -> Response: ...

    def _internal_error(self) -> Response: ...

    def _record(self, method: str, path: str, status: int) -> None: ...


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.reset_sockets: set[socket.socket] = set()
        self.reset_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that died mid-request (crash tests kill workers with SIGKILL) is not an emulator error
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can block on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    def shutdown_request(self, request: Any) -> None:
        with self.reset_lock:
            reset = request in self.reset_sockets
            self.reset_sockets.discard(request)
        if reset:  # SO_LINGER(1, 0) + close = TCP RST instead of an orderly FIN
            self.close_request(request)
            return
        super().shutdown_request(request)


class Handler(BaseHTTPRequestHandler):
    emulator: Served
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "Emulator/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
        pass

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # headers and body go out in one write; avoid Nagle/delayed-ACK stalls
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _read(self) -> Request | None:
        split = urlsplit(self.path)
        lists = parse_qs(split.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        if len(body) < length and self.emulator.drop_incomplete_bodies:
            # the client went away in the middle of its request (e.g. a killed worker): like a real
            # server, never act on a request whose body did not arrive whole
            self.close_connection = True
            return None
        query = {k: v[-1] for k, v in lists.items()}
        return Request(self.command, split.path, self.path, query, headers, body, split.query, lists)

    def _serve(self) -> None:
        emu = self.emulator
        if self.command not in emu.http_methods:
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        req = self._read()
        if req is None:
            return
        try:
            resp = emu._handle(req)
        except Exception:  # noqa: BLE001 - an emulator bug: answer 500 and keep the traceback for tests
            with emu._lock:
                emu.server_errors.append(traceback.format_exc())
            resp = emu._internal_error()
        if resp.action is not None:
            emu._record(req.method, req.path, 0)
            self.close_connection = True
            if resp.action == "reset":
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with self.server.reset_lock:
                    self.server.reset_sockets.add(self.connection)
            elif resp.action == "hang":
                emu._stop.wait(emu.hang_seconds)
            return
        emu._record(req.method, req.path, resp.status)
        self.send_response(resp.status)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        if self.command != "HEAD" and resp.body:  # one write for status line, headers and body
            self._headers_buffer.append(b"\r\n" + resp.body)  # type: ignore[attr-defined]
            self.flush_headers()
        else:
            self.end_headers()

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve  # noqa: N815 - http.server's names


def start_server(
    emulator: Served, host: str, port: int, name: str, *, server_version: str = "Emulator/1.0"
) -> tuple[Server, threading.Thread]:
    """Bind ``host:port`` (0 = free port) and serve ``emulator`` in a daemon thread."""
    handler = type(f"{name}Handler", (Handler,), {"emulator": emulator, "server_version": server_version})
    server = Server((host, port), handler)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"{name}:{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return server, thread


def stop_server(server: Server | None, thread: threading.Thread | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join(timeout=5)

"""Loopback HTTP plumbing shared by billing-system emulators (stdlib ``ThreadingHTTPServer``).

Kept separate from the emulator logic: a request becomes a :class:`Request`, the emulator's
``_handle(request) -> Response`` answers it, and :class:`Handler` writes the answer — or performs a
fault action instead: ``"reset"`` (TCP RST without a response), ``"drop"`` (close without a
response), ``"hang"`` (keep the socket open ``hang_seconds``, then close without a response).
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import traceback
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from connectors.sdk.money import dumps


@dataclass
class Request:
    method: str
    path: str
    raw_target: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: None = send; "reset" = RST without response; "drop" = close without response; "hang" = wait, then drop
    action: str | None = None


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    """JSON body with exact decimals (``dumps`` writes Decimal as JSON numbers)."""
    h = {"Content-Type": "application/json;charset=UTF-8"}
    h.update(headers or {})
    return Response(status, dumps(obj), h)


def loads_decimal(data: bytes | str) -> Any:
    return json.loads(data, parse_float=Decimal)


class EmulatorCore(Protocol):
    _lock: threading.RLock
    _stop: threading.Event
    hang_seconds: float
    server_errors: list[str]

    def _handle(self, req: Request) -> Response: ...

    def _record(self, method: str, path: str, status: int) -> None: ...


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any):
        self.reset_sockets: set[socket.socket] = set()
        self._reset_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can block on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    def shutdown_request(self, request: Any) -> None:
        with self._reset_lock:
            reset = request in self.reset_sockets
            self.reset_sockets.discard(request)
        if reset:  # SO_LINGER(1, 0) + close = TCP RST instead of an orderly FIN
            self.close_request(request)
            return
        super().shutdown_request(request)


class Handler(BaseHTTPRequestHandler):
    emulator: EmulatorCore
    protocol_version = "HTTP/1.1"
    server_version = "Emulator/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
        pass

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _serve(self) -> None:
        emu = self.emulator
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        req = Request(self.command, split.path, self.path, query, headers, body)
        try:
            resp = emu._handle(req)
        except Exception:  # an emulator bug: answer 500 and keep the traceback for tests
            with emu._lock:
                emu.server_errors.append(traceback.format_exc())
            resp = json_response(500, {"error": "emulator error"})
        if resp.action is not None:
            emu._record(req.method, req.path, 0)
            self.close_connection = True
            if resp.action == "reset":
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                with self.server._reset_lock:  # type: ignore[attr-defined]
                    self.server.reset_sockets.add(self.connection)  # type: ignore[attr-defined]
            elif resp.action == "hang":
                emu._stop.wait(emu.hang_seconds)
            return
        emu._record(req.method, req.path, resp.status)
        self.send_response(resp.status)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        if self.command != "HEAD" and resp.body:
            self._headers_buffer.append(b"\r\n" + resp.body)  # type: ignore[attr-defined]
            self.flush_headers()
        else:
            self.end_headers()

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve


def start_server(emulator: EmulatorCore, host: str, port: int, name: str) -> tuple[Server, threading.Thread]:
    """Bind ``host:port`` (0 = free port) and serve ``emulator`` in a daemon thread."""
    handler = type(f"{name}Handler", (Handler,), {"emulator": emulator})
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

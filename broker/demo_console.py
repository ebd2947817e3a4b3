"""The operator console of ``broker demo --keep-running``: the status view and the console, in threads.

:func:`start_demo_console` materialises the status topics (:data:`broker.statusdb.service.STATUS_TOPICS`)
into ``<data dir>/status.db`` with a :class:`~broker.statusdb.service.StatusView` in one thread and
serves the operator console (:func:`broker.console.app.create_console_app` under uvicorn) in another,
on ``127.0.0.1``, port ``BROKER_CONSOLE_PORT`` or a free one. It has one operator, ``demo``, of every
tenant, with a password drawn at start (printed by the demo: it is the only way in); sessions are
signed with a random secret that is never shown. Replays and approvals go to the demo's Kafka.
:meth:`DemoConsole.stop` stops the console, then the view.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from broker.embedded import free_port

if TYPE_CHECKING:
    import uvicorn
    from sqlalchemy import Engine

    from broker.statusdb.service import StatusView

__all__ = ["OPERATOR", "DemoConsole", "start_demo_console"]

#: The demo console's one operator (every tenant).
OPERATOR = "demo"
HOST = "127.0.0.1"


@dataclass
class DemoConsole:
    """A running status view and operator console (:func:`start_demo_console`)."""

    url: str
    password: str
    database: Path
    engine: Engine
    bootstrap: str
    view: StatusView
    server: uvicorn.Server
    threads: tuple[threading.Thread, threading.Thread]
    stopping: threading.Event

    def caught_up(self, timeout: float = 30.0) -> bool:
        """Wait until the view has written every record the status topics hold now; False after ``timeout``."""
        from kafka import KafkaConsumer, TopicPartition

        from broker.kafka_security import tool_options
        from broker.statusdb.service import STATUS_TOPICS

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, **tool_options())
        try:
            consumer.topics()  # fresh metadata
            partitions = [
                TopicPartition(topic, p) for topic in STATUS_TOPICS for p in consumer.partitions_for_topic(topic) or ()
            ]
            ends = consumer.end_offsets(partitions) if partitions else {}
        finally:
            consumer.close()
        deadline = time.monotonic() + timeout
        while self.threads[1].is_alive():
            written = self.view.positions()
            if all(written.get((tp.topic, tp.partition), 0) >= end for tp, end in ends.items()):
                return True
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return False

    def status_counts(self) -> dict[str, int]:
        """Invoice versions in the status database per status."""
        from broker.statusdb.read import status_counts

        return status_counts(self.engine)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the console (its port closes), then the status view; close the database."""
        self.server.should_exit = True
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout)
        self.engine.dispose()


def _port() -> int:
    given = os.environ.get("BROKER_CONSOLE_PORT")
    if not given:
        return free_port(HOST)
    try:
        return int(given)
    except ValueError:
        raise ValueError(f"BROKER_CONSOLE_PORT: {given!r} is not a port number") from None


def start_demo_console(bootstrap: str, data_dir: Path, timeout: float = 10.0) -> DemoConsole:
    """Start the status view on ``bootstrap`` into ``data_dir/status.db`` and the console over it (module
    docstring); return once the console listens. Raises ``RuntimeError`` (or ``ValueError`` for a bad
    ``BROKER_CONSOLE_PORT``) when it cannot listen, having stopped what it started."""
    import uvicorn

    from broker.console.app import create_console_app
    from broker.console.auth import ALL_TENANTS, Operator, SessionSigner, hash_password
    from broker.statusdb.service import StatusView
    from broker.statusdb.store import default_url, migrate, open_database

    port = _port()
    database = data_dir / "status.db"
    engine = open_database(default_url(data_dir))
    migrate(engine)
    password = secrets.token_urlsafe(12)
    operators = {OPERATOR: Operator(OPERATOR, hash_password(password), frozenset({ALL_TENANTS}))}
    app = create_console_app(engine, operators, SessionSigner(secrets.token_bytes(32)), bootstrap=bootstrap)
    view = StatusView(engine, bootstrap, refresh_seconds=1.0)
    stopping = threading.Event()
    config = uvicorn.Config(
        app, host=HOST, port=port, log_config=None, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)  # not in the main thread: it leaves the demo's signal handlers alone
    threads = (
        threading.Thread(target=server.run, name="demo-console", daemon=True),
        threading.Thread(target=view.run, args=(stopping,), name="demo-status-view", daemon=True),
    )
    running = DemoConsole(
        f"http://{HOST}:{port}/", password, database, engine, bootstrap, view, server, threads, stopping
    )
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not threads[0].is_alive() or time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(f"the operator console cannot listen on {HOST}:{port}")
        time.sleep(0.02)
    return running

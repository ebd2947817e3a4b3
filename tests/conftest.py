"""Shared fixtures: a real Tansu broker per test, the Xero emulator, and worker processes.

Nothing here mocks Kafka: integration tests run against Tansu (Kafka protocol) on loopback and a
real ``python -m broker run`` worker process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "broker" / "examples"
XERO_SPEC = ROOT / "tests" / "specs" / "xero" / "xero_accounting.yaml"
DEMO_SECRETS = {"XERO_CLIENT_SECRET": "demo-secret", "XERO_REFRESH_TOKEN": "demo-refresh-token"}


@pytest.fixture
def kafka():
    """A fresh in-memory Tansu broker for one test; yields its bootstrap ``host:port``."""
    from broker.embedded import EmbeddedKafka

    with EmbeddedKafka() as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def xero_validator():
    """Request validator built once from the official Xero OpenAPI spec."""
    from connectors.xero.spec import make_request_validator

    return make_request_validator(XERO_SPEC)


@pytest.fixture
def xero(xero_validator):
    """The Xero emulator on a free loopback port, validating every request against the spec."""
    from connectors.xero.emulator import XeroEmulator

    emulator = XeroEmulator(
        tenant_ids=("00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"),
        request_validator=xero_validator,
    ).start()
    yield emulator
    emulator.stop()
    assert not emulator.validation_failures, emulator.validation_failures


def write_config(
    tmp_path: Path, emulator_url: str, source: Path = EXAMPLES / "config.yaml", *, all_tenants: bool = False
) -> Path:
    """Copy a tenant config with the Xero URLs pointed at the emulator; return its path.

    Only the tenants billed in Xero are kept (the example config also has tenants on Stripe,
    QuickBooks, InvoiceXpress and Moloni, which need their own emulators: ``broker.sandboxes``);
    ``all_tenants=True`` keeps every tenant (their settings other than the Xero ones untouched).
    """
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not all_tenants:
        raw["tenants"] = {tid: t for tid, t in raw["tenants"].items() if t["billing"]["system"] == "xero"}
    for tenant in raw["tenants"].values():
        if tenant["billing"]["system"] != "xero":
            continue
        tenant["billing"]["settings"]["api_url"] = emulator_url
        tenant["billing"]["settings"]["identity_url"] = emulator_url
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def wait_ready(url: str, proc: subprocess.Popen | None = None, log: Path | None = None, timeout: float = 60) -> None:
    """Block until ``GET {url}/readyz`` answers 200. Raises ``AssertionError`` (with the tail of ``log``)
    when ``proc`` exits first or ``timeout`` seconds pass."""
    import time

    import httpx

    def tail() -> str:
        return log.read_text()[-3000:] if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc is None or proc.poll() is None, f"{url}: the process exited\n{tail()}"
        assert time.monotonic() < deadline, f"{url}/readyz did not answer 200 within {timeout:.0f} s\n{tail()}"
        time.sleep(0.1)


class WorkerProcess:
    """A ``python -m broker run`` subprocess; ``kill()`` sends SIGKILL, ``stop()`` SIGTERM."""

    def __init__(
        self,
        config_path: Path,
        bootstrap: str,
        tmp_path: Path,
        app_id: str = "broker-test",
        *,
        separate_stderr: bool = False,
        **env,
    ):
        from broker.embedded import free_port

        self.metrics_port = free_port()
        self.log_path = tmp_path / f"worker-{app_id}.log"
        #: stderr's own file (else stderr goes to ``log_path`` with stdout)
        self.err_path = tmp_path / f"worker-{app_id}.err" if separate_stderr else None
        self.env = {
            **os.environ,
            **DEMO_SECRETS,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "BROKER_METRICS_PORT": str(self.metrics_port),
            "BROKER_APP_ID": app_id,
            "BROKER_DATA_DIR": str(tmp_path / "data"),
            "BROKER_TOPIC_PARTITIONS": "4",
            # Tansu reports a wrong end offset after multi-record batches (docs/delivery.md)
            "BROKER_PRODUCER_MAX_BATCH_SIZE": "1",
            **env,
        }
        self.args = [sys.executable, "-m", "broker", "run", "--config", str(config_path)]
        self.proc = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=open(self.log_path, "ab"),  # noqa: SIM115 - the worker process owns the file until it exits
            stderr=subprocess.STDOUT if self.err_path is None else open(self.err_path, "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log(self) -> str:
        out = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        if self.err_path is not None and self.err_path.exists():
            out += "\n[stderr]\n" + self.err_path.read_text(errors="replace")
        return out


@pytest.fixture
def worker_factory(tmp_path):
    """Start worker processes; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def make(config_path: Path, bootstrap: str, **kw) -> WorkerProcess:
        w = WorkerProcess(config_path, bootstrap, tmp_path, **kw).start()
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


@pytest.fixture
def kafka_events():
    """An embedded Kafka (Tansu) with ``maintenance.events`` (4 partitions); yields its bootstrap."""
    from broker.embedded import EmbeddedKafka
    from broker.kafka import ensure_topics
    from broker.settings import TOPIC_EVENTS

    with EmbeddedKafka() as kafka:
        ensure_topics(kafka.bootstrap, 4, [TOPIC_EVENTS])
        yield kafka.bootstrap


@pytest.fixture
def platforms():
    """The platform emulator (every platform's API on one loopback port, the sample scenario loaded)."""
    from broker.platforms.emulator import PlatformEmulator

    with PlatformEmulator() as emulator:
        yield emulator

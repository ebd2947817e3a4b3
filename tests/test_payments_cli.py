"""``broker payments`` as a user runs it: a subprocess with a tenants file on the embedded Tansu.

It prints where each tenant's webhooks go, becomes ready, answers Xero's intent-to-receive check (a
well-signed empty event list: 200 with an empty body; a badly signed one: 401) and stops on SIGTERM.
On SIGTERM it shuts down cleanly, stopping the embedded Kafka it started, and exits with status 143
(128 + 15). A tenant naming a webhook variable that is not set stops it at once with
exit status 2 naming it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from broker.embedded import free_port
from connectors.xero.payments import xero_signature
from tests.conftest import DEMO_SECRETS, wait_ready
from tests.delivery_support import delivery_config

pytestmark = pytest.mark.integration

KEY = "cli-test-xero-webhook-key"
INTENT = b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"QWERTYUIOP"}'


def _config(tmp_path: Path) -> Path:
    """The Xero tenants of the examples (an unreachable API: nothing here reads it) with
    ``billing.payments`` for acme-fm."""
    path = delivery_config(tmp_path, "http://127.0.0.1:9")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["tenants"]["acme-fm"]["billing"]["payments"] = {"webhook_secret_env": "ACME_XERO_WEBHOOK_KEY"}
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **DEMO_SECRETS, "BROKER_DATA_DIR": str(tmp_path / "data"), **extra}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the embedded Tansu
    return env


def test_broker_payments_serves_xero_webhooks_and_stops_on_sigterm(tmp_path):
    port = free_port()
    log = tmp_path / "payments.log"
    args = [sys.executable, "-m", "broker", "payments", "--config", str(_config(tmp_path)), "--port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            env=_env(tmp_path, ACME_XERO_WEBHOOK_KEY=KEY),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        hook = f"{url}/webhooks/payments/xero/acme-fm"
        good = httpx.post(hook, content=INTENT, headers={"x-xero-signature": xero_signature(KEY.encode(), INTENT)})
        forged = httpx.post(hook, content=INTENT, headers={"x-xero-signature": xero_signature(b"other", INTENT)})
        assert (good.status_code, good.content) == (200, b"")
        assert forged.status_code == 401
        assert forged.headers["content-type"] == "application/problem+json"
        printed = log.read_text()
        assert f"acme-fm (xero): webhooks at {hook}" in printed
        assert KEY not in printed
        proc.send_signal(signal.SIGTERM)  # the process only: it stops its server and the Tansu it started
        proc.wait(30)
        # a clean shutdown, then exit status 128 + 15 (broker.cli_common.serve_asgi)
        assert proc.returncode == 128 + signal.SIGTERM, log.read_text()[-3000:]
        tansu = re.search(r"Embedded Kafka \(Tansu\) on 127\.0\.0\.1:(\d+)", printed)
        assert tansu is not None, printed
        with pytest.raises(OSError):  # it stopped the embedded Kafka it started (its own process group)
            socket.create_connection(("127.0.0.1", int(tansu.group(1))), timeout=2).close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_broker_payments_names_a_missing_webhook_variable(tmp_path):
    args = [sys.executable, "-m", "broker", "payments", "--config", str(_config(tmp_path)), "--port", str(free_port())]
    done = subprocess.run(args, check=False, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "tenants.acme-fm.billing.payments.webhook_secret_env" in done.stderr
    assert "ACME_XERO_WEBHOOK_KEY" in done.stderr

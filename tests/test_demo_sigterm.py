"""``broker demo --keep-running`` stops what it started on SIGTERM: the worker process, the emulators
and the embedded Kafka (``slow``: the demo runs in full first)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_the_worker_and_the_embedded_kafka():
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "demo", "--keep-running"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    try:
        deadline = time.monotonic() + 600
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "keeps running" in line or time.monotonic() > deadline:
                break
        text = "".join(seen)
        assert "keeps running" in text, text[-3000:]
        worker = int(re.search(r"worker pid (\d+)", text).group(1))
        kafka_port = int(re.search(r"Tansu\) on 127\.0\.0\.1:(\d+)", text).group(1))
        assert _alive(worker)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived the demo"
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", kafka_port), timeout=2):
            pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

"""``broker demo --keep-running`` stops what it started on SIGTERM: the operator console, the worker
process, the emulators and the embedded Kafka (``slow``: the demo runs in full first)."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import pytest

from tests.demo_support import start_demo_keep_running, stop_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_the_console_the_worker_and_the_embedded_kafka():
    proc, text = start_demo_keep_running()
    try:
        assert "keeps running" in text, text[-3000:]
        worker = int(re.search(r"worker pid (\d+)", text).group(1))
        kafka_port = int(re.search(r"Tansu\) on 127\.0\.0\.1:(\d+)", text).group(1))
        console_port = int(re.search(r"Operator console: http://127\.0\.0\.1:(\d+)/", text).group(1))
        assert _alive(worker)
        socket.create_connection(("127.0.0.1", console_port), timeout=2).close()
    finally:
        status = stop_demo(proc)
    assert status == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "the worker outlived the demo"
    for port in (console_port, kafka_port):
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass

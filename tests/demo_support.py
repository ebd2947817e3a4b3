"""What the tests of ``broker demo --keep-running`` share: start it, stop it, ask its operator console."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from tests.conftest import ROOT


def start_demo_keep_running() -> tuple[subprocess.Popen[str], str]:
    """Start ``broker demo --keep-running`` (its own embedded Tansu, a free console port, its own process
    group); return it and what it printed up to the line saying that everything keeps running."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "BROKER_CONSOLE_PORT")}
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
    assert proc.stdout is not None
    for line in proc.stdout:  # ends at the line, or when the demo exits
        seen.append(line)
        if "keeps running" in line:
            break
    return proc, "".join(seen)


def stop_demo(proc: subprocess.Popen[str]) -> int | None:
    """SIGTERM the demo and wait for it (SIGKILL its process group after 60 s); its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def get(url: str, user: str | None = None, password: str = "") -> tuple[int, Any]:
    """``GET url`` (HTTP Basic when ``user``): the status and the JSON body (``None`` when not JSON)."""
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None

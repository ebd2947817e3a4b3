"""A production install (``pip install .``, no extras) runs a worker without any sandbox code.

The worker is started from a fresh virtual environment holding only the runtime dependencies, with
a Xero-only tenant configuration, against a real Tansu broker and the Xero emulator (which runs in
this test process, from the development install). It must invoice one event, and when it stops,
the modules it imported must include no emulator, spec check, sandbox kit or conformance kit, and
no connector other than Xero's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import venv
from pathlib import Path

import pytest

from broker.kafka import ensure_topics, publish, read_events_file
from broker.settings import TOPIC_EVENTS
from tests.conftest import EXAMPLES, ROOT, WorkerProcess, write_config

pytestmark = pytest.mark.integration

#: Written into the production environment: records the worker's modules when it exits, then runs ``broker``.
DRIVER = """\
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from broker.cli import main
sys.argv[0] = "broker"
main()
"""

#: Module name parts that belong to the sandbox (emulators and their kit) or the test kits, never to a worker.
SANDBOX_PARTS = ("emulator", "spec", "sandbox", "testing", "openapi_core", "jsonschema", "pytest")


#: Not copied with the sources: the development environment, caches, build output, data.
SKIP_COPY = {".venv", ".git", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis", ".broker-data", "tests"}


@pytest.fixture(scope="module")
def production_python(tmp_path_factory) -> Path:
    """A virtual environment with ``pip install <repo>`` (runtime dependencies only); its interpreter."""
    home = tmp_path_factory.mktemp("prod-venv")
    source = tmp_path_factory.mktemp("source") / "src"  # a copy: pip builds in the source tree (build/)
    shutil.copytree(
        ROOT,
        source,
        ignore=lambda folder, names: [n for n in names if n in SKIP_COPY or n.endswith(".egg-info")],
    )
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    python = home / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"pip install . failed (needs the package index for the runtime dependencies):\n{done.stderr[-3000:]}"
        )
    return python


def test_production_install_has_no_sandbox_extra(production_python):
    probe = "import importlib.util as u; print([m for m in ('openapi_core', 'jsonschema', 'pytest') if u.find_spec(m)])"
    found = subprocess.run([str(production_python), "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_worker_imports_only_the_xero_connector(production_python, kafka, xero, tmp_path):
    config = write_config(tmp_path, xero.url)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    modules_file = tmp_path / "modules.json"
    ensure_topics(kafka, 4)
    worker = WorkerProcess(config, kafka, tmp_path, app_id="broker-prod")
    worker.args = [str(production_python), str(driver), str(modules_file), "run", "--config", str(config)]
    worker.env = {k: v for k, v in worker.env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    by_id = {json.loads(raw)["id"]: raw for raw in read_events_file(EXAMPLES / "events.ndjson")}
    worker.proc = subprocess.Popen(
        worker.args,
        env=worker.env,
        cwd=tmp_path,  # not the checkout: the installed package must be what runs
        stdout=open(worker.log_path, "ab"),  # noqa: SIM115 - the worker owns the file until it exits
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        publish(kafka, TOPIC_EVENTS, [by_id["maintainx:wo:1001:r1"]])
        deadline = time.monotonic() + 120
        while not xero.invoices():
            assert worker.proc.poll() is None, f"worker exited:\n{worker.log()[-4000:]}"
            assert time.monotonic() < deadline, f"no invoice after 120 s; worker log:\n{worker.log()[-4000:]}"
            time.sleep(0.5)
    finally:
        worker.stop()
    assert [inv["InvoiceNumber"] for inv in xero.invoices()] == ["ACME-WO-1001-R1"]
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    broker_file = subprocess.run(
        [str(production_python), "-c", "import broker; print(broker.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert not broker_file.startswith(str(ROOT) + os.sep), broker_file  # the installed copy, not the checkout
    assert [m for m in modules if any(part in m.split(".") or m.startswith(part) for part in SANDBOX_PARTS)] == []
    connectors = sorted({m.split(".")[1] for m in modules if m.startswith("connectors.")})
    assert connectors == ["registry", "sdk", "xero"]
    assert "broker.cli" in modules

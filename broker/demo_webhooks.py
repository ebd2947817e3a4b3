"""The demo's webhook stage: maintenance platforms' signed webhooks through a running ``broker ingest``.

:func:`run_webhooks` starts the platform emulator (:mod:`broker.platforms.emulator`, the sample
scenario: a chiller repair on 2025-03-15 and a quotation on 2025-03-18), gives tenant ``acme-fm``
webhooks from MaintainX, Atlas CMMS and ERPNext (secrets and API tokens in environment variables;
the platforms' references mapped to the tenant's clients, sites and technicians), starts ``broker
ingest`` as its own process, and sends:

* MaintainX ``WORK_ORDER_STATUS_CHANGE`` -> DONE, signed now (``t=<now>``): thin, so the intake
  fetches the work order with its time items, parts and expenses from the MaintainX emulator;
* Atlas ``WORK_ORDER_STATUS_CHANGE`` -> COMPLETE (hex HMAC of the body): labour, parts and costs
  fetched from the Atlas emulator;
* ERPNext Quotation ``on_submit`` (base64 HMAC of the body): complete as sent;
* the MaintainX webhook once more, as MaintainX retries: 202 and nothing new.

Then it waits for the three invoices and prints them next to the total the billing system holds.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from broker.embedded import free_port
from broker.platforms.base import base64_signature, hex_signature
from broker.platforms.emulator import PlatformEmulator, sample_bytes

__all__ = ["DEMO_TENANT", "run_webhooks", "webhook_config"]

DEMO_TENANT = "acme-fm"
SECRETS = {
    "DEMO_MAINTAINX_WEBHOOK_SECRET": "demo-maintainx-subscription-secret",
    "DEMO_ATLAS_WEBHOOK_SECRET": "demo-atlas-endpoint-secret",
    "DEMO_ERPNEXT_WEBHOOK_SECRET": "demo-frappe-webhook-secret",
    "DEMO_MAINTAINX_API_TOKEN": "maintainx-token",
    "DEMO_ATLAS_API_TOKEN": "atlas-token",
}
#: The sample scenario's references -> acme-fm's ids (broker/examples/config.yaml).
HOTEL = "CLI-HAL"
ROOF = "LIS-HAL-ROOF"


def webhook_config(platforms: PlatformEmulator) -> dict[str, Any]:
    """``webhooks`` of the demo tenant: MaintainX and Atlas hydrated through ``platforms``, ERPNext."""
    return {
        "maintainx": {
            "secret_env": "DEMO_MAINTAINX_WEBHOOK_SECRET",
            "api": {"base_url": platforms.base_url("maintainx"), "token_env": "DEMO_MAINTAINX_API_TOKEN"},
            "clients": {"CLI-HAD": HOTEL},
            "sites": {"611": ROOF},
            "technicians": {"31": "T31", "32": "T32"},
        },
        "atlas": {
            "secret_env": "DEMO_ATLAS_WEBHOOK_SECRET",
            "api": {"base_url": platforms.base_url("atlas"), "token_env": "DEMO_ATLAS_API_TOKEN"},
            "clients": {"88": HOTEL},
            "sites": {"777": ROOF},
            "technicians": {"1001": "T31", "1002": "T32"},
        },
        "erpnext": {
            "secret_env": "DEMO_ERPNEXT_WEBHOOK_SECRET",
            "clients": {"Hotel Atlantico Demo": HOTEL},
            "default_site": ROOF,
        },
    }


def _requests() -> list[tuple[str, dict[str, str], bytes]]:
    """``(platform, headers, body)`` of the webhooks the demo sends, signed as each platform signs."""
    from broker.platforms.emulator.maintainx import webhook

    now = int(time.time())
    maintainx = webhook(
        SECRETS["DEMO_MAINTAINX_WEBHOOK_SECRET"].encode(), 5550123, timestamp=now, occurred_at="2025-03-15T12:40:07Z"
    )
    atlas_body = sample_bytes("atlas", "webhook_work_order_status_change.body.json")
    atlas_headers = {
        "content-type": "application/json",
        "x-webhook-signature": hex_signature(SECRETS["DEMO_ATLAS_WEBHOOK_SECRET"].encode(), atlas_body),
        "x-webhook-timestamp": str(now * 1000),
        "x-webhook-id": "0b6f2d8e-6c1a-4e57-9d0c-3f1e2a7b9c44",
        "x-webhook-event": "WORK_ORDER_STATUS_CHANGE",
    }
    quote = sample_bytes("erpnext", "webhook_quotation_on_submit.body.json")
    erpnext_headers = {
        "x-frappe-webhook-signature": base64_signature(SECRETS["DEMO_ERPNEXT_WEBHOOK_SECRET"].encode(), quote)
    }
    return [
        ("maintainx", *maintainx),
        ("atlas", atlas_headers, atlas_body),
        ("erpnext", erpnext_headers, quote),
        ("maintainx", *maintainx),  # MaintainX retrying: a duplicate
    ]


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def run_webhooks(
    console: Console,
    *,
    bootstrap: str,
    workdir: Path,
    demo_config: dict[str, Any],
    env: dict[str, str],
    wait_for: Callable[[int], bool],
    outcomes: Callable[[], list[dict[str, Any]]],
    priced: Callable[[str], dict[str, Any]],
    held_total: Callable[[dict[str, Any]], Any],
) -> bool:
    """Run the webhook stage (module docstring); True when every check held.

    ``wait_for(n)`` waits for ``n`` more terminal outcomes (False on timeout); ``outcomes()`` lists
    the delivery outcomes read so far; ``priced(invoice_key)`` is the priced invoice;
    ``held_total(outcome)`` the total the billing system holds for a delivered outcome."""
    with PlatformEmulator() as platforms:
        config = copy.deepcopy(demo_config)
        config["tenants"][DEMO_TENANT]["webhooks"] = webhook_config(platforms)
        path = workdir / "config-intake.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        intake_env = {
            **env,
            **SECRETS,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "BROKER_INTAKE_PORT": str(port),
            "BROKER_PRODUCER_IDEMPOTENCE": "false",  # the embedded Tansu has no idempotent producers
        }
        console.print(f"\nWebhooks: platform emulator {platforms.url}; starting broker ingest on {url} ...")
        with open(workdir / "intake.log", "wb") as log:
            intake = subprocess.Popen(
                [sys.executable, "-m", "broker", "ingest", "--config", str(path)],
                env=intake_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            if not _wait_ready(url, intake, 60):
                console.print(f"[red]broker ingest did not become ready; see {workdir / 'intake.log'}[/]")
                return False
            return _send_and_show(console, url, platforms, wait_for, outcomes, priced, held_total)
        finally:
            intake.terminate()
            try:
                intake.wait(20)
            except subprocess.TimeoutExpired:
                intake.kill()


def _send_and_show(
    console: Console,
    url: str,
    platforms: PlatformEmulator,
    wait_for: Callable[[int], bool],
    outcomes: Callable[[], list[dict[str, Any]]],
    priced: Callable[[str], dict[str, Any]],
    held_total: Callable[[dict[str, Any]], Any],
) -> bool:
    before = len(outcomes())
    sent = Table(title="Signed webhooks sent to broker ingest", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Platform", "Answer", "Events accepted", "Duplicates"):
        sent.add_column(column, no_wrap=True)
    ok = True
    accepted: list[str] = []
    for platform, headers, body in _requests():
        answer = httpx.post(f"{url}/webhooks/{platform}/{DEMO_TENANT}", content=body, headers=headers, timeout=30)
        doc = answer.json()
        ok = ok and answer.status_code == 202
        accepted += doc.get("accepted", [])
        sent.add_row(
            platform,
            str(answer.status_code),
            ", ".join(doc.get("accepted", [])) or "-",
            ", ".join(doc.get("duplicates", [])) or "-",
        )
    console.print(sent)
    hydrated = {p: len(platforms.requests(p)) for p in ("maintainx", "atlas")}
    console.print(
        f"hydrated through the platform APIs: MaintainX {hydrated['maintainx']} request(s), "
        f"Atlas {hydrated['atlas']} request(s)",
        highlight=False,
    )
    ok = ok and len(accepted) == 3 and all(hydrated.values())
    if not wait_for(len(accepted)):
        console.print("[red]timed out waiting for the webhooks' invoices[/]")
        return False
    table = Table(title="Invoices from the webhooks", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Platform", "Document", "Invoice number", "Total", "Held total", "Outcome"):
        table.add_column(column, no_wrap=True)
    for outcome in outcomes()[before:]:
        invoice = priced(outcome["invoice_key"])
        held = held_total(outcome)
        matches = held is not None and invoice and Decimal(held) == Decimal(invoice["total"])
        ok = ok and outcome["outcome"] == "created" and bool(matches)
        table.add_row(
            str(invoice.get("event_id", "?")).split(":", 1)[0] if invoice else "?",
            outcome["invoice_key"],
            invoice.get("invoice_number", "?") if invoice else "?",
            invoice.get("total", "?") if invoice else "?",
            "-" if held is None else str(held),
            outcome["outcome"] + ("" if matches else " [red]MISMATCH[/]"),
        )
    console.print(table)
    return ok

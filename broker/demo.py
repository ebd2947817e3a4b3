"""``broker demo``: the whole pipeline on bundled example data, on this machine only.

Starts (1) the embedded Kafka unless ``KAFKA_BOOTSTRAP_SERVERS`` is set, (2) the Xero emulator on a
free loopback port, (3) a worker process (``python -m broker run``), publishes
``broker/examples/events.ndjson``, waits until every event is invoiced, not billable or
dead-lettered, prints the invoices as the billing system holds them, then publishes the same
events again (as a platform retrying its webhooks would) and shows that nothing new was created.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from decimal import Decimal
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.dlq import headers_to_dict
from broker.embedded import MEMORY_NOTICE, EmbeddedKafka, free_port
from broker.settings import TOPIC_DELIVERIES, TOPIC_DLQ, TOPIC_EVENTS, TOPIC_INVOICES

EXAMPLES = Path(__file__).parent / "examples"
DEMO_SECRETS = {"XERO_CLIENT_SECRET": "demo-secret", "XERO_REFRESH_TOKEN": "demo-refresh-token"}


class Tally:
    """Follows ``billing.deliveries`` and ``billing.dlq`` (and ``billing.invoices``) with kafka-python.

    ``terminal`` counts records that end an event's journey: one delivery outcome or one DLQ record.
    """

    def __init__(self, bootstrap: str):
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(TOPIC_DELIVERIES, TOPIC_DLQ, TOPIC_INVOICES, bootstrap_servers=bootstrap,
                                      group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        self.outcomes: list[dict] = []
        self.dead: list[dict] = []
        self.priced: dict[str, dict] = {}

    @property
    def terminal(self) -> int:
        return len(self.outcomes) + len(self.dead)

    def poll(self, timeout: float = 0.5) -> int:
        """Read what is available; return how many terminal records arrived."""
        before = self.terminal
        for _tp, msgs in self.consumer.poll(timeout_ms=int(timeout * 1000)).items():
            for m in msgs:
                if m.topic == TOPIC_DELIVERIES:
                    self.outcomes.append(json.loads(m.value))
                elif m.topic == TOPIC_DLQ:
                    self.dead.append({"key": m.key, "value": m.value, "headers": headers_to_dict(m.headers)})
                else:
                    doc = json.loads(m.value)
                    self.priced[doc["invoice_key"]] = doc
        return self.terminal - before

    def close(self) -> None:
        self.consumer.close()


def _demo_config(config_path: Path, emulator_url: str) -> dict:
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for tenant in raw["tenants"].values():
        settings = tenant["billing"]["settings"]
        if tenant["billing"]["system"] == "xero":
            settings["api_url"] = emulator_url
            settings["identity_url"] = emulator_url
    return raw


def _wait(tally: Tally, target: int, timeout: float, console: Console, label: str) -> bool:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task(label, total=target, completed=min(tally.terminal, target))
        deadline = time.monotonic() + timeout
        while tally.terminal < target and time.monotonic() < deadline:
            tally.poll()
            progress.update(task, completed=min(tally.terminal, target))
    return tally.terminal >= target


def _metrics_snapshot(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    totals: Counter = Counter()
    for line in text.splitlines():
        if line.startswith("broker_") and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            name = name_labels.split("{")[0]
            if name.endswith(("_total", "_count")):
                totals[name] += float(value)
    return dict(totals)


def run_demo(*, events_path: str | None = None, config_path: str | None = None, timeout: float = 180.0,
             keep_running: bool = False, console: Console | None = None) -> int:
    """Run the demo; return the process exit status (0 when every check held)."""
    from broker.kafka import ensure_topics, publish, read_events_file
    from connectors.xero.emulator import XeroEmulator

    console = console or Console(width=None if sys.stdout.isatty() else 140)
    events_file = Path(events_path) if events_path else EXAMPLES / "events.ndjson"
    config_file = Path(config_path) if config_path else EXAMPLES / "config.yaml"
    records = read_events_file(events_file)
    workdir = Path(tempfile.mkdtemp(prefix="broker-demo-"))

    kafka = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    worker = None
    tally = None
    raw_config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    xero_tenant_ids = sorted({t["billing"]["settings"].get("xero_tenant_id") for t in raw_config["tenants"].values()
                              if t["billing"]["system"] == "xero"})
    emulator = XeroEmulator(tenant_ids=tuple(xero_tenant_ids)).start()
    try:
        if not bootstrap:
            kafka = EmbeddedKafka().start()
            bootstrap = kafka.bootstrap
            console.print(f"[yellow]{MEMORY_NOTICE.format(bootstrap=bootstrap)}[/]")
        console.print(f"Xero emulator: {emulator.url}")
        demo_config = workdir / "config.yaml"
        demo_config.write_text(yaml.safe_dump(_demo_config(config_file, emulator.url), sort_keys=False))
        metrics_port = free_port()
        partitions = 4
        ensure_topics(bootstrap, partitions)
        env = {**os.environ, **DEMO_SECRETS, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "BROKER_METRICS_PORT": str(metrics_port), "BROKER_METRICS_HOST": "127.0.0.1",
               "BROKER_TOPIC_PARTITIONS": str(partitions), "BROKER_DATA_DIR": str(workdir / "data"),
               "BROKER_APP_ID": f"broker-demo-{os.getpid()}"}
        worker_log = open(workdir / "worker.log", "wb")
        worker = subprocess.Popen([sys.executable, "-m", "broker", "run", "--config", str(demo_config)],
                                  env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
        console.print(f"worker pid {worker.pid} (log {workdir / 'worker.log'}); "
                      f"metrics at http://127.0.0.1:{metrics_port}/metrics")

        tally = Tally(bootstrap)
        with Progress(console=console) as progress:
            task = progress.add_task(f"publishing {len(records)} events to {TOPIC_EVENTS}", total=len(records))
            publish(bootstrap, TOPIC_EVENTS, records, on_sent=lambda: progress.advance(task))
        if not _wait(tally, len(records), timeout, console, "invoicing"):
            console.print(f"[red]timed out: {tally.terminal}/{len(records)} events finished; see {workdir / 'worker.log'}[/]")
            return 1
        first_pass = list(tally.outcomes)
        held = emulator.invoices()
        ok = _print_results(console, tally, held)

        console.print(f"\nPublishing the same {len(records)} events again, as a platform retrying its webhooks would ...")
        with Progress(console=console) as progress:
            task = progress.add_task("re-publishing", total=len(records))
            publish(bootstrap, TOPIC_EVENTS, records, on_sent=lambda: progress.advance(task))
        if not _wait(tally, 2 * len(records), timeout, console, "re-processing"):
            console.print("[red]timed out waiting for the second pass[/]")
            return 1
        second = Counter(o["outcome"] for o in tally.outcomes[len(first_pass):])
        after = emulator.invoices()
        new = len(after) - len(held)
        console.print(f"second pass: {dict(second)}; invoices in Xero before {len(held)}, after {len(after)}: "
                      f"[bold]{'no second invoice was created' if new == 0 else f'{new} NEW INVOICES'}[/]")
        ok = ok and new == 0 and second.get("created", 0) == 0

        snap = _metrics_snapshot(metrics_port)
        console.print(f"\nmetrics (http://127.0.0.1:{metrics_port}/metrics):")
        for name in sorted(snap):
            console.print(f"  {name} {snap[name]:g}")
        if keep_running:
            console.print("\n[bold]Everything keeps running; press Ctrl-C to stop.[/]")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        if tally:
            tally.close()
        if worker and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        emulator.stop()
        if kafka:
            kafka.stop()


def _print_results(console: Console, tally: Tally, held: list[dict]) -> bool:
    """Print the invoice table, the not-billable events and the dead letters.

    Returns True when every invoice the billing system holds has exactly our net, VAT and total.
    """
    by_number = {inv["InvoiceNumber"]: inv for inv in held}
    table = Table(title="Invoices in the billing system (Xero emulator)")
    table.add_column("Document", overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column("Client", overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column("Invoice number", no_wrap=True, min_width=15)
    for col in ("Net", "VAT", "Total"):
        table.add_column(col, justify="right", no_wrap=True, min_width=8)
    table.add_column("Cur", min_width=3, no_wrap=True)
    table.add_column("Status", no_wrap=True, min_width=10)
    ok = True
    counts: Counter = Counter()
    per_system: Counter = Counter()
    not_billable = []
    outcomes = sorted(tally.outcomes, key=lambda o: (o["tenant"], tally.priced.get(o["invoice_key"], {}).get(
        "invoice_number", o["invoice_key"])))
    for outcome in outcomes:
        counts[outcome["outcome"]] += 1
        priced = tally.priced.get(outcome["invoice_key"], {})
        if outcome["outcome"] == "not_billable":
            not_billable.append(outcome)
            continue
        if outcome["outcome"] == "dead_lettered":
            table.add_row(priced.get("reference", outcome["invoice_key"]), priced.get("client_name", ""), "-", "-",
                          "-", "-", "", "[red]dead-lettered[/]")
            continue
        per_system[outcome["billing_system"]] += 1
        inv = by_number.get(outcome.get("external_number") or priced.get("invoice_number"), {})
        net, tax, total = (Decimal(str(inv.get(k, "0"))) for k in ("SubTotal", "TotalTax", "Total"))
        matches = bool(priced) and (net, tax, total) == (
            Decimal(priced["net_total"]), Decimal(priced["tax_total"]), Decimal(priced["total"]))
        ok = ok and matches
        status = inv.get("Status", "?") + ("" if matches else " [red]TOTAL MISMATCH[/]")
        table.add_row(priced.get("reference", ""), priced.get("client_name", ""), inv.get("InvoiceNumber", "?"),
                      f"{net}", f"{tax}", f"{total}", inv.get("CurrencyCode", ""), status)
    console.print(table)
    if not_billable:
        console.print("[bold]Not billable (no invoice):[/]")
        for outcome in not_billable:
            console.print(f"  {outcome['invoice_key']}: {outcome.get('error')}", highlight=False)
    if tally.dead:
        dlq = Table(title="Dead-lettered events (billing.dlq)")
        dlq.add_column("Stage")
        dlq.add_column("Error class")
        dlq.add_column("Original record", no_wrap=True)
        dlq.add_column("Reason", overflow="fold")
        for rec in tally.dead:
            h = rec["headers"]
            dlq.add_row(h.get("dlq.stage", ""), h.get("dlq.error.class", ""),
                        f"{h.get('dlq.topic')}:{h.get('dlq.partition')}:{h.get('dlq.offset')}", h.get("dlq.message", ""))
        console.print(dlq)
    console.print(f"events: {sum(counts.values()) + len(tally.dead)} -> " + ", ".join(
        f"{n} {k.replace('_', ' ')}" for k, n in sorted(counts.items())) + f", {len(tally.dead)} dead-lettered")
    for system, n in sorted(per_system.items()):
        console.print(f"  {system}: {n} invoices delivered; billing system holds {len(held)}; "
                      f"totals {'all equal ours to the cent' if ok else '[red]DIFFER[/]'}")
    return ok

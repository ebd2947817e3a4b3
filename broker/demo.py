"""``broker demo``: the whole pipeline on bundled example data, on this machine only.

Starts (1) the embedded Kafka unless ``KAFKA_BOOTSTRAP_SERVERS`` is set, (2) the Xero emulator and,
for every other billing system of the config's tenants, that system's emulator through its harness
(:mod:`broker.sandboxes`), each on a free loopback port, (3) a worker process (``python -m broker
run``), publishes ``broker/examples/events.ndjson``, waits until every event is invoiced, not
billable or dead-lettered, prints every invoice next to the total its billing system holds and a
summary line per system, then publishes the same events again (as a platform retrying its webhooks
would) and shows, per system, that nothing new was created; then the lifecycle (revisions,
cancellations) per system, and signed webhooks from MaintainX, Atlas CMMS and ERPNext through a
running ``broker ingest`` (:mod:`broker.demo_webhooks`); last, a monthly-invoiced client's February
and the economic report of the demo months (:mod:`broker.demo_periodic`). With ``--keep-running`` it
then starts the status view and the operator console (:mod:`broker.demo_console`), prints the console's
address and its demo login in the report and leaves everything up until Ctrl-C or SIGTERM; without it
the console is not started (it would stop with the demo a moment later).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.config import load_yaml
from broker.demo_console import OPERATOR, DemoConsole, start_demo_console
from broker.demo_periodic import MONTHLY_CLIENT, run_periodic
from broker.demo_periodic import TENANT as PERIODIC_TENANT
from broker.demo_webhooks import DEMO_TENANT, run_webhooks
from broker.dlq import headers_to_dict
from broker.embedded import MEMORY_NOTICE, EmbeddedKafka, free_port
from broker.kafka_security import client_options
from broker.sandboxes import SANDBOXES, Sandbox, start_sandbox
from broker.settings import TOPIC_DELIVERIES, TOPIC_DLQ, TOPIC_EVENTS, TOPIC_INVOICES
from connectors.testing.harness import HeldInvoice

if TYPE_CHECKING:
    from connectors.xero.emulator import XeroEmulator

EXAMPLES = Path(__file__).parent / "examples"
DEMO_SECRETS = {"XERO_CLIENT_SECRET": "demo-secret", "XERO_REFRESH_TOKEN": "demo-refresh-token"}


#: Outcomes that say an invoice waits on a retry topic: not the end of its journey.
PARKED_OUTCOMES = ("parked", "needs_reauth")


class Tally:
    """Follows ``billing.deliveries`` and ``billing.dlq`` (and ``billing.invoices``) with kafka-python.

    ``terminal`` counts records that end an event's journey: one delivery outcome or one DLQ record. The
    outcomes ``parked`` and ``needs_reauth`` do not: they are kept apart, in ``parked``.
    """

    def __init__(self, bootstrap: str):
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            TOPIC_DELIVERIES,
            TOPIC_DLQ,
            TOPIC_INVOICES,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **client_options(),
        )
        self.outcomes: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []
        self.parked: list[dict[str, Any]] = []
        self.priced: dict[str, dict[str, Any]] = {}

    @property
    def terminal(self) -> int:
        """Records read so far that end an event's journey (delivery outcomes and dead letters)."""
        return len(self.outcomes) + len(self.dead)

    def poll(self, timeout: float = 0.5) -> int:
        """Read what is available; return how many terminal records arrived."""
        before = self.terminal
        for msgs in self.consumer.poll(timeout_ms=int(timeout * 1000)).values():
            for m in msgs:
                if m.topic == TOPIC_DELIVERIES:
                    outcome = json.loads(m.value)
                    waits = outcome.get("outcome") in PARKED_OUTCOMES
                    (self.parked if waits else self.outcomes).append(outcome)
                elif m.topic == TOPIC_DLQ:
                    self.dead.append({"key": m.key, "value": m.value, "headers": headers_to_dict(m.headers)})
                else:
                    doc = json.loads(m.value)  # an invoice or not-billable record, or a DocumentChange
                    self.priced[doc.get("invoice_key") or doc["change_key"]] = doc
        return self.terminal - before

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()


def _demo_config(raw: dict[str, Any], emulator_url: str, sandboxes: dict[str, Sandbox]) -> dict[str, Any]:
    """The configuration the demo's worker runs: Xero tenants on the Xero emulator, the others on their
    system's sandbox (settings merged over the tenant's, customer creation on)."""
    raw = copy.deepcopy(raw)
    for tenant in raw["tenants"].values():
        billing = tenant["billing"]
        settings = billing.setdefault("settings", {})
        if billing["system"] == "xero":
            settings["api_url"] = emulator_url
            settings["identity_url"] = emulator_url
        else:
            settings.update(copy.deepcopy(sandboxes[billing["system"]].settings))
    return raw


def _xero_held(emulator: XeroEmulator) -> list[HeldInvoice]:
    return [
        HeldInvoice(
            external_id=inv["InvoiceID"],
            number=inv["InvoiceNumber"],
            total=Decimal(str(inv["Total"])),
            currency=inv.get("CurrencyCode"),
            line_count=len(inv.get("LineItems") or []),
            raw=inv,
        )
        for inv in emulator.invoices()
    ]


def _document(invoice_key: str) -> str:
    """``acme-fm:wo:1001:r1`` -> ``WO 1001 r1`` (the platform document and its revision)."""
    parts = invoice_key.split(":")
    if len(parts) < 4:
        return invoice_key
    return f"{parts[1].upper()} {':'.join(parts[2:-1])} {parts[-1]}"


def _held_status(held: HeldInvoice) -> str:
    raw = held.raw if isinstance(held.raw, dict) else {}
    status = raw.get("Status") or raw.get("status")
    if status is None and raw.get("Balance") is not None:  # QuickBooks: no status field; open while a balance is due
        status = "open" if Decimal(str(raw["Balance"])) > 0 else "paid"
    return {0: "draft", 1: "closed"}.get(status, str(status)) if status is not None else ""


def _wait(tally: Tally, target: int, timeout: float, console: Console, label: str) -> bool:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task(label, total=target, completed=min(tally.terminal, target))
        deadline = time.monotonic() + timeout
        while tally.terminal < target and time.monotonic() < deadline:
            tally.poll()
            progress.update(task, completed=min(tally.terminal, target))
    return tally.terminal >= target


#: Billing system -> the REAL statuses its emulator must show after the demo's lifecycle: (the replaced
#: or cancelled document, its credit note or ``None`` when none may be issued, the replacing document).
#: By each system's rules (docs/connectors.md §5a): Xero voids an unpaid AUTHORISED invoice, Stripe
#: voids an unpaid ``open`` one, Moloni never changes a closed (certified) document and credits it.
LIFECYCLE: dict[str, tuple[str, str | None, str]] = {
    "xero": ("VOIDED", None, "AUTHORISED"),
    "stripe": ("void", None, "open"),
    "moloni": ("closed", "closed", "closed"),
}


@dataclass(frozen=True)
class LifecycleCase:
    """The two work orders the demo runs through the lifecycle on one system's tenant (keys ``tenant:wo:id``)."""

    system: str
    amended: str
    cancelled: str


def _lifecycle_event(source: dict[str, Any], kind: str, ident: str, revision: int, data: dict[str, Any]) -> bytes:
    """A copy of the completion CloudEvent ``source`` as ``maintenance.work_order.<kind>`` of work order
    ``ident`` at ``revision`` (its client kept; ``data`` the other data fields)."""
    origin = source["id"].split(":")[0]
    body = {"work_order_id": ident, "revision": revision, "client_id": source["data"]["client_id"], **data}
    return json.dumps(
        source
        | {
            "id": f"{origin}:wo:{ident}:r{revision}:{kind}",
            "type": f"maintenance.work_order.{kind}",
            "subject": f"work-orders/{ident}",
            "data": body,
        }
    ).encode()


def _lifecycle_completion(source: dict[str, Any], ident: str, revision: int) -> bytes:
    """``source``'s completion as work order ``ident`` at ``revision``; from revision 2 on with one more
    billable expense (12.30 net, so the new revision has another total)."""
    own = ("work_order_id", "revision", "client_id")
    data = {k: v for k, v in copy.deepcopy(source["data"]).items() if k not in own}
    if revision > 1:
        extra = {"id": "E-DEMO-R2", "description": "Parking (return visit)", "amount": "12.30"}
        data["expenses"] = [*data.get("expenses", []), extra]
    return _lifecycle_event(source, "completed", ident, revision, data)


def _lifecycle_events(records: list[bytes], systems: dict[str, str]) -> tuple[list[bytes], list[LifecycleCase]]:
    """For each system of :data:`LIFECYCLE` that a tenant bills in: copies of that tenant's first example
    completion under two new work order ids ``<id>A`` (r1 -> reopened -> r2 with another total) and
    ``<id>C`` (r1 -> cancelled). Returns the raw CloudEvents, in order, and the cases."""
    events: list[bytes] = []
    cases: list[LifecycleCase] = []
    parsed = []
    for raw in records:
        try:
            parsed.append(json.loads(raw))
        except ValueError:
            continue
    completions = [e for e in parsed if isinstance(e, dict) and e.get("type") == "maintenance.work_order.completed"]
    for system in LIFECYCLE:
        tenants = {tid for tid, s in systems.items() if s == system}
        source = next((e for e in completions if e.get("tenant") in tenants), None)
        if source is None:
            continue
        wo, tenant = source["data"]["work_order_id"], source["tenant"]
        amended, cancelled = f"{wo}A", f"{wo}C"
        events += [
            _lifecycle_completion(source, amended, 1),
            _lifecycle_event(source, "reopened", amended, 1, {"reason": "Client reported the fault again"}),
            _lifecycle_completion(source, amended, 2),
            _lifecycle_completion(source, cancelled, 1),
            _lifecycle_event(source, "cancelled", cancelled, 1, {"reason": "Visit billed by mistake"}),
        ]
        cases.append(LifecycleCase(system, f"{tenant}:wo:{amended}", f"{tenant}:wo:{cancelled}"))
    return events, cases


def _xero_credit_notes(emulator: XeroEmulator) -> list[HeldInvoice]:
    return [
        HeldInvoice(
            external_id=note["CreditNoteID"],
            number=note.get("CreditNoteNumber") or "",
            total=Decimal(str(note["Total"])),
            currency=note.get("CurrencyCode"),
            raw=note,
            status=note.get("Status"),
        )
        for note in emulator.credit_notes()
    ]


def _print_lifecycle(
    console: Console,
    tally: Tally,
    cases: list[LifecycleCase],
    readers: dict[str, Callable[[], list[HeldInvoice]]],
    credit_readers: dict[str, Callable[[], list[HeldInvoice]]],
) -> bool:
    """Print, per case, each replaced or cancelled document with the status its billing system REALLY
    holds (read back from the emulator), the replacing document and the credit note, if any; True when
    every status is the one :data:`LIFECYCLE` expects and the outcomes' ``billed_total`` is right
    (the new revision's total after a replacement, 0 after a cancellation)."""
    ok = True
    outcomes = {(o["invoice_key"], o["outcome"]): o for o in tally.outcomes}
    console.print("\n[bold]Lifecycle: replaced and cancelled documents, their real status in the billing system[/]")

    def status(found: HeldInvoice | None, expected: str | None) -> str:
        nonlocal ok
        word = (found.status or _held_status(found)) if found else "MISSING"
        if word != expected:
            ok = False
            return f"{word} [red](expected {expected})[/]"
        return word

    for case in cases:
        held = {h.external_id: h for h in readers[case.system]()}
        notes = {h.number: h for h in credit_readers[case.system]()}
        retired, note_status, live = LIFECYCLE[case.system]
        for order, kind in ((case.amended, "replaced"), (case.cancelled, "cancelled")):
            first = outcomes.get((f"{order}:r1", "created"), {})
            if kind == "replaced":
                change = outcomes.get((f"{order}:r2", "amended")) or outcomes.get((f"{order}:r2", "created"), {})
                expected_billed = tally.priced.get(f"{order}:r2", {}).get("total")
            else:
                change = outcomes.get((f"{order}:r1", "cancelled"), {})
                expected_billed = "0"
            old = held.get(str(first.get("external_id")))
            line = (
                f"  {case.system}: {_document(order + ':r1').rsplit(' ', 1)[0]} {kind} ({change.get('amendment')}): "
                f"{tally.priced.get(order + ':r1', {}).get('invoice_number', '?')} "
                f"{status(old, retired)}"
            )
            if kind == "replaced":
                new = held.get(str(change.get("external_id")))
                number = tally.priced.get(order + ":r2", {}).get("invoice_number", "?")
                line += f" -> {number} {status(new, live)}"
                if old and new and old.total == new.total:
                    ok, line = False, line + " [red]SAME TOTAL[/]"
            cn = change.get("credit_note_number")
            if cn or note_status:
                note = notes.get(str(cn))
                line += f", credit note {cn} {status(note, note_status)}"
                if note and old and note.total != old.total:
                    ok, line = False, line + f" [red]CREDITS {note.total} OF {old.total}[/]"
            billed = change.get("billed_total")
            if billed is None or expected_billed is None or Decimal(str(billed)) != Decimal(str(expected_billed)):
                ok, line = False, line + f" [red]billed {billed}, expected {expected_billed}[/]"
            else:
                line += f", billed {Decimal(str(billed)):.2f}"  # money: 2 decimals, nothing to round
            console.print(line, highlight=False, soft_wrap=True)  # one line each, however long
    return ok


def _metrics_snapshot(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    totals: defaultdict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith("broker_") and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            name = name_labels.split("{")[0]
            if name.endswith(("_total", "_count")):
                totals[name] += float(value)
    return dict(totals)


#: Delivery outcomes after which the billing system holds the invoice version (the status view's ``delivered``).
DELIVERED = ("created", "already_delivered", "amended")


def _delivered(outcomes: list[dict[str, Any]]) -> set[str]:
    """The invoice keys whose latest outcome delivered them and that no later version replaced."""
    latest = {o["invoice_key"]: o["outcome"] for o in outcomes}
    replaced = {o["replaced"] for o in outcomes if o.get("replaced") and o["replaced"] != o["invoice_key"]}
    return {key for key, outcome in latest.items() if outcome in DELIVERED} - replaced


def _print_console(console: Console, served: DemoConsole, outcomes: list[dict[str, Any]]) -> bool:
    """The report's console lines: its address and demo login, what its status view holds per status;
    True when the view caught up and its ``delivered`` invoices are exactly those the demo delivered."""
    console.print(
        f"\n[bold]Operator console: {served.url}  user {OPERATOR}, password {served.password}[/]",
        highlight=False,
        soft_wrap=True,
    )
    if not served.caught_up():
        console.print("  [red]its status view did not catch up with the topics within 30 s[/]")
        return False
    counts = served.status_counts()
    console.print(
        f"  its status view ({escape(str(served.database))}) holds {sum(counts.values())} invoice versions: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        highlight=False,
        soft_wrap=True,
    )
    delivered = len(_delivered(outcomes))
    if counts.get("delivered", 0) != delivered:
        console.print(f"  [red]this demo delivered {delivered} invoices it did not replace or cancel since[/]")
        return False
    console.print(f"  the {delivered} delivered are the invoices this demo delivered and did not replace or cancel")
    return True


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_demo(
    *,
    events_path: str | None = None,
    config_path: str | None = None,
    timeout: float = 180.0,
    keep_running: bool = False,
    console: Console | None = None,
) -> int:
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
    served: DemoConsole | None = None
    raw_config = load_yaml(config_file.read_text(encoding="utf-8"))
    systems = {tid: t["billing"]["system"] for tid, t in raw_config["tenants"].items()}
    unknown = sorted({s for s in systems.values() if s != "xero" and s not in SANDBOXES})
    if unknown:
        console.print(
            f"[red]no emulator for billing system(s) {', '.join(unknown)}; the demo can run "
            f"xero, {', '.join(sorted(SANDBOXES))}[/]"
        )
        return 2
    xero_tenant_ids = sorted(
        {
            t["billing"]["settings"].get("xero_tenant_id")
            for t in raw_config["tenants"].values()
            if t["billing"]["system"] == "xero"
        }
    )
    emulator = XeroEmulator(tenant_ids=tuple(xero_tenant_ids)).start()
    sandboxes: dict[str, Sandbox] = {}
    # SIGTERM (docker stop, kill) unwinds like Ctrl-C: the `finally` below stops the worker, the
    # emulators and the embedded Kafka instead of leaving them running
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        for tid, system in systems.items():  # one emulator per billing system (its tenants share it)
            if system != "xero" and system not in sandboxes:
                sandboxes[system] = start_sandbox(system, raw_config["tenants"][tid]["billing"].get("settings"))
        readers: dict[str, Callable[[], list[HeldInvoice]]] = {"xero": lambda: _xero_held(emulator)}
        readers.update({system: sandbox.invoices for system, sandbox in sandboxes.items()})
        if not bootstrap:
            kafka = EmbeddedKafka().start()
            bootstrap = kafka.bootstrap
            console.print(f"[yellow]{MEMORY_NOTICE.format(bootstrap=bootstrap)}[/]")
        console.print(
            f"emulators: xero {emulator.url}"
            + "".join(f", {system} {sandbox.url}" for system, sandbox in sorted(sandboxes.items())),
            highlight=False,
        )
        for system, sandbox in sorted(sandboxes.items()):
            for note in sandbox.notes:
                console.print(f"  [yellow]{system} emulator: {escape(note)}[/]", highlight=False)
        for tid, system in systems.items():
            console.print(f"  tenant {tid}: {raw_config['tenants'][tid]['name']} -> {system}", highlight=False)
        demo_config = workdir / "config.yaml"
        demo_config.write_text(
            yaml.safe_dump(_demo_config(raw_config, emulator.url, sandboxes), sort_keys=False, allow_unicode=True),
            encoding="utf-8",
        )
        metrics_port = free_port()
        partitions = 4
        ensure_topics(bootstrap, partitions)
        secrets = dict(DEMO_SECRETS)
        for sandbox in sandboxes.values():
            secrets.update(sandbox.env)
        env = {
            **os.environ,
            **secrets,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "BROKER_METRICS_PORT": str(metrics_port),
            "BROKER_METRICS_HOST": "127.0.0.1",
            "BROKER_TOPIC_PARTITIONS": str(partitions),
            "BROKER_DATA_DIR": str(workdir / "data"),
            "BROKER_APP_ID": f"broker-demo-{os.getpid()}",
            "BROKER_PRODUCER_MAX_BATCH_SIZE": os.environ.get("BROKER_PRODUCER_MAX_BATCH_SIZE", "1"),
            "BROKER_PERIOD_CHECK_SECONDS": "2",  # the monthly client's February closes within seconds
        }
        with open(workdir / "worker.log", "wb") as worker_log:  # the worker writes to its own copy
            worker = subprocess.Popen(
                [sys.executable, "-m", "broker", "run", "--config", str(demo_config)],
                env=env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        console.print(
            f"worker pid {worker.pid} (log {workdir / 'worker.log'}); "
            f"metrics at http://127.0.0.1:{metrics_port}/metrics"
        )

        tally = Tally(bootstrap)
        with Progress(console=console) as progress:
            task = progress.add_task(f"publishing {len(records)} events to {TOPIC_EVENTS}", total=len(records))
            publish(bootstrap, TOPIC_EVENTS, records, on_sent=lambda: progress.advance(task))
        if not _wait(tally, len(records), timeout, console, "invoicing"):
            console.print(
                f"[red]timed out: {tally.terminal}/{len(records)} events finished; see {workdir / 'worker.log'}[/]"
            )
            return 1
        first_pass = list(tally.outcomes)
        held = {system: read() for system, read in readers.items()}
        ok = _print_results(console, tally, held, systems)

        console.print(
            f"\nPublishing the same {len(records)} events again, as a platform retrying its webhooks would ..."
        )
        with Progress(console=console) as progress:
            task = progress.add_task("re-publishing", total=len(records))
            publish(bootstrap, TOPIC_EVENTS, records, on_sent=lambda: progress.advance(task))
        if not _wait(tally, 2 * len(records), timeout, console, "re-processing"):
            console.print("[red]timed out waiting for the second pass[/]")
            return 1
        second = Counter(o["outcome"] for o in tally.outcomes[len(first_pass) :])
        console.print(f"second pass: {dict(sorted(second.items()))}")
        ok = ok and second.get("created", 0) == 0
        for system in sorted(readers, key=lambda s: (s != "xero", s)):
            before, after = len(held[system]), len(readers[system]())
            new = after - before
            ok = ok and new == 0
            verdict = "[bold]no second invoice[/]" if new == 0 else f"[bold red]{new} NEW INVOICES[/]"
            console.print(f"  {system}: invoices held before {before}, after {after}: {verdict}", highlight=False)
        lifecycle, cases = _lifecycle_events(records, systems)
        console.print(
            f"\nLifecycle: publishing {len(lifecycle)} events (per system: completion r1 -> reopened -> r2 with "
            "another total; completion r1 -> cancelled) ..."
        )
        before_lifecycle = tally.terminal
        publish(bootstrap, TOPIC_EVENTS, lifecycle)
        if not _wait(tally, before_lifecycle + len(lifecycle), timeout, console, "lifecycle"):
            console.print("[red]timed out waiting for the lifecycle events[/]")
            return 1
        credit_readers: dict[str, Callable[[], list[HeldInvoice]]] = {"xero": lambda: _xero_credit_notes(emulator)}
        credit_readers.update({system: sandbox.harness.credit_notes for system, sandbox in sandboxes.items()})
        ok = _print_lifecycle(console, tally, cases, readers, credit_readers) and ok
        ok = ok and len(cases) >= 3
        if DEMO_TENANT in raw_config["tenants"]:
            ok = (
                run_webhooks(
                    console,
                    bootstrap=bootstrap,
                    workdir=workdir,
                    demo_config=_demo_config(raw_config, emulator.url, sandboxes),
                    env=env,
                    wait_for=lambda n: _wait(tally, tally.terminal + n, timeout, console, "webhooks"),
                    outcomes=lambda: list(tally.outcomes),
                    priced=lambda key: tally.priced.get(key, {}),
                    held_total=lambda outcome: next(
                        (i.total for i in _xero_held(emulator) if i.external_id == outcome.get("external_id")), None
                    ),
                )
                and ok
            )
        if MONTHLY_CLIENT in raw_config["tenants"].get(PERIODIC_TENANT, {}).get("clients", {}):
            ok = (
                run_periodic(
                    console,
                    bootstrap=bootstrap,
                    workdir=workdir,
                    config_path=demo_config,
                    wait_for=lambda n: _wait(tally, tally.terminal + n, timeout, console, "the monthly invoice"),
                    outcomes=lambda: list(tally.outcomes),
                    held_total=lambda outcome: next(
                        (i.total for i in _xero_held(emulator) if i.external_id == outcome.get("external_id")), None
                    ),
                )
                and ok
            )
        for system, sandbox in sorted(sandboxes.items()):
            for problem in sandbox.problems():
                ok = False
                console.print(f"[red]{system} emulator: {escape(problem)}[/]", highlight=False)

        snap = _metrics_snapshot(metrics_port)
        console.print(f"\nmetrics (http://127.0.0.1:{metrics_port}/metrics):")
        for name in sorted(snap):
            console.print(f"  {name} {snap[name]:g}")
        if keep_running:
            try:
                served = start_demo_console(bootstrap, workdir / "data")
            except (RuntimeError, ValueError) as exc:
                ok = False
                console.print(f"\n[red]operator console: {escape(str(exc))}[/]", highlight=False)
            else:
                ok = _print_console(console, served, tally.outcomes) and ok
        else:
            console.print(
                "\nOperator console: not started; `broker demo --keep-running` serves these invoices there "
                "and prints its address and a demo login"
            )
        console.print("[bold green]demo OK[/]" if ok else "[bold red]demo FAILED: see above[/]")
        if keep_running:
            console.print(
                "\n[bold]Everything keeps running (Kafka, the emulators, the worker, the status view, the operator "
                "console); press Ctrl-C to stop.[/]"
            )
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        if served is not None:
            served.stop()
        if tally:
            tally.close()
        if worker and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        emulator.stop()
        for sandbox in sandboxes.values():
            sandbox.stop()
        if kafka:
            kafka.stop()
        signal.signal(signal.SIGTERM, previous)


def _print_results(console: Console, tally: Tally, held: dict[str, list[HeldInvoice]], systems: dict[str, str]) -> bool:
    """Print the invoice table (ours next to what each billing system holds), the not-billable
    events, the dead letters and one summary line per billing system.

    ``held``: billing system -> the invoices its emulator holds; ``systems``: tenant -> billing system.
    Returns True when every delivered invoice is held by its billing system with exactly our total.
    """
    index: dict[str, dict[str, HeldInvoice]] = {}
    for system, invoices in held.items():
        by_key = index.setdefault(system, {})
        for invoice in invoices:
            by_key.setdefault(invoice.number, invoice)
            by_key.setdefault(f"id:{invoice.external_id}", invoice)
    table = Table(
        title="Invoices: ours, and the total each billing system (emulator) holds",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("System", no_wrap=True, min_width=6)
    table.add_column("Document", overflow="ellipsis", no_wrap=True, min_width=7, max_width=19)
    table.add_column("Client", overflow="ellipsis", no_wrap=True, min_width=10, max_width=22)
    table.add_column("Invoice number", no_wrap=True, min_width=14)
    for col in ("Net", "VAT", "Total"):
        table.add_column(col, justify="right", no_wrap=True, min_width=7)
    table.add_column("Held total", justify="right", no_wrap=True, min_width=11)
    table.add_column("Status", no_wrap=True, min_width=6)
    ok = True
    counts: Counter[str] = Counter()
    per_system: Counter[str] = Counter()
    mismatches: Counter[str] = Counter()
    rejected: Counter[str] = Counter()  # invoices the billing system refused (dead-lettered at delivery)
    not_billable: list[dict[str, Any]] = []

    def sort_key(o: dict[str, Any]) -> tuple[bool, str, str, str]:
        system = o.get("billing_system") or systems.get(o["tenant"], "")
        return (
            system != "xero",
            system,
            o["tenant"],
            tally.priced.get(o["invoice_key"], {}).get("invoice_number", o["invoice_key"]),
        )

    for outcome in sorted(tally.outcomes, key=sort_key):
        counts[outcome["outcome"]] += 1
        priced = tally.priced.get(outcome["invoice_key"], {})
        system = outcome.get("billing_system") or systems.get(outcome["tenant"], "?")
        if outcome["outcome"] == "not_billable":
            not_billable.append(outcome)
            continue
        if outcome["outcome"] == "dead_lettered":
            ok = False
            rejected[system] += 1
            table.add_row(
                system,
                _document(outcome["invoice_key"]),
                priced.get("client_name", ""),
                "-",
                "-",
                "-",
                "-",
                "-",
                "[red]dead-lettered[/]",
            )
            continue
        if outcome["outcome"] == "superseded":  # a newer revision was billed first: nothing created for this one
            table.add_row(
                system,
                _document(outcome["invoice_key"]),
                priced.get("client_name", ""),
                priced.get("invoice_number", "?"),
                "-",
                "-",
                "-",
                "-",
                "superseded",
            )
            continue
        per_system[system] += 1
        found = index.get(system, {})
        inv = (
            found.get(f"id:{outcome.get('external_id')}")
            or found.get(priced.get("invoice_number", ""))
            or found.get(outcome.get("external_number") or "")
        )
        ours = Decimal(priced["total"]) if priced else None
        matches = inv is not None and ours is not None and Decimal(inv.total) == ours
        raw = inv.raw if inv is not None and isinstance(inv.raw, dict) else {}
        if matches and "SubTotal" in raw and "TotalTax" in raw:  # Xero shows its net and VAT too: compare them as well
            matches = (Decimal(str(raw["SubTotal"])), Decimal(str(raw["TotalTax"]))) == (
                Decimal(priced["net_total"]),
                Decimal(priced["tax_total"]),
            )
        if not matches:
            ok = False
            mismatches[system] += 1
        status = (_held_status(inv) if inv else "") + (
            "" if matches else " [red]MISSING[/]" if inv is None else " [red]TOTAL MISMATCH[/]"
        )
        table.add_row(
            system,
            _document(outcome["invoice_key"]),
            priced.get("client_name", ""),
            priced.get("invoice_number", "?"),
            priced.get("net_total", "?"),
            priced.get("tax_total", "?"),
            priced.get("total", "?"),
            f"{inv.total} {(inv.currency or priced.get('currency', '')).upper()}" if inv else "-",
            status.strip(),
        )
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
            dlq.add_row(
                h.get("dlq.stage", ""),
                h.get("dlq.error.class", ""),
                f"{h.get('dlq.topic')}:{h.get('dlq.partition')}:{h.get('dlq.offset')}",
                h.get("dlq.message", ""),
            )
        console.print(dlq)
    console.print(
        f"events: {sum(counts.values()) + len(tally.dead)} -> "
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(counts.items()))
        + f", {len(tally.dead)} dead-lettered"
    )
    for system in sorted(set(systems.values()) | set(per_system), key=lambda s: (s != "xero", s)):
        n, bad = per_system[system], mismatches[system]
        verdict = "totals equal ours to the cent" if not bad else f"[red]{bad} MISSING OR DIFFERENT[/]"
        if rejected[system]:
            verdict += f", [red]{rejected[system]} dead-lettered at delivery[/]"
        if n == 0:
            ok, verdict = False, "[red]nothing delivered[/]"
        console.print(
            f"  {system}: {n} invoices, {verdict} (the billing system holds {len(held.get(system, []))})",
            highlight=False,
        )
    return ok

#!/usr/bin/env python3
"""Benchmark: the start-up and per-record costs of issue 15 (item 5), each next to its baseline
measured in the same run. Prints the figures and the ratios.

Not a test: run it with ``make bench-startup`` (or ``python tools/bench_startup.py``). Single
process, no Kafka; about 25 s with the defaults (the pure-Python YAML loader takes a third).

* **config parse**: a generated configuration of ``--tenants`` tenants (the six example tenants of
  ``broker/examples/config.yaml`` in turn, each with its own id and invoice prefix) parsed by
  :func:`broker.config.load_yaml` (PyYAML's C loader, libyaml) and by the pure-Python loader
  (``yaml.safe_load`` before); both must give the same data. ``--memory``: also the peak RSS of a
  process that parses it with each (and of one that only reads the text).
* **connector lookup**: :func:`connectors.registry.load` (entry points read once per process) against
  what it did before on every call: ``importlib.metadata.entry_points(group=..., name=...)`` and
  the entry's distribution metadata.
* **redact**: :func:`broker.dlq.redact` (secret values read again only when the environment changes)
  against the scan of the whole environment it did on every call.
* **dead-letter log line**: :class:`broker.dlq.DeadLetterLog` within an interval (a counter; the line
  is at INFO, off at the default WARNING) against the WARNING line each dead letter logged, both
  formatted by the broker's text formatter into a discarded stream.

Usage::

    python tools/bench_startup.py [--tenants 1000] [--rounds 3] [--memory]

Times are the best of ``--rounds`` (per call: of rounds of many calls; the pure-Python loader: one
round), wall clock: other load on the machine can only make a round slower.
"""

from __future__ import annotations

import argparse
import copy
import io
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker import dlq  # noqa: E402
from broker.config import YAML_LOADER, load_yaml  # noqa: E402
from broker.logs import TextFormatter  # noqa: E402
from connectors import registry  # noqa: E402

EXAMPLE_CONFIG = ROOT / "broker" / "examples" / "config.yaml"


def generated_config(tenants: int) -> str:
    """YAML text of a configuration with ``tenants`` tenants (the example ones in turn, renamed)."""
    examples = load_yaml(EXAMPLE_CONFIG.read_text(encoding="utf-8"))["tenants"]
    names = sorted(examples)
    out: dict[str, Any] = {}
    for i in range(tenants):
        tenant = copy.deepcopy(examples[names[i % len(names)]])
        tenant["name"] = f"Tenant {i} Lda"
        tenant["invoice_prefix"] = f"T{i:04d}"
        out[f"tenant-{i:04d}"] = tenant
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(
        {"tenants": out}, Dumper=dumper, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None
    )


def best(rounds: int, func: Callable[[], object]) -> tuple[float, object]:
    """Seconds of the fastest of ``rounds`` calls of ``func``, and what the last call returned."""
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    return min(times), result


def per_call(rounds: int, func: Callable[[], object], target: float = 0.2) -> float:
    """Seconds per call of ``func``: the best of ``rounds`` rounds of about ``target`` seconds each."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    number = max(1, int(number * target / 0.2))
    return min(timer.repeat(repeat=rounds, number=number)) / number


_PEAK_RSS = """
import sys, yaml
text = open(sys.argv[1], encoding="utf-8").read()
if sys.argv[2] != "none":
    yaml.load(text, Loader=getattr(yaml, sys.argv[2]))
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_rss_mb(text: str, loader: str) -> float:
    """Peak RSS (MB) of a fresh interpreter that reads ``text`` and parses it with ``yaml.<loader>``
    (``"none"``: does not parse it)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, f.name, loader], capture_output=True, text=True, check=True
        )
    return int(done.stdout) / 1024  # VmHWM (this process's peak RSS since exec) is in KiB; Linux only


def uncached_lookup(name: str) -> type:
    """What :func:`connectors.registry.load` did on every call before it kept the entry points."""
    from importlib.metadata import entry_points

    ep = next(iter(entry_points(group=registry.GROUP, name=name)))
    dist = ep.dist
    _ = (dist.name, dist.version) if dist is not None else None  # read by every lookup, for the entry
    cls: type = ep.load()
    return cls


_SECRET_ENV_HINT = re.compile(r"(?i)(secret|token|password|api_key|apikey)")


def redact_scanning(message: str) -> str:
    """What :func:`broker.dlq.redact` did on every call before: scan the whole environment."""
    message = dlq._BEARER.sub(r"\1[REDACTED]", message)
    for name, value in os.environ.items():
        if value and len(value) >= 6 and _SECRET_ENV_HINT.search(name) and value in message:
            message = message.replace(value, "[REDACTED]")
    return message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000, help="tenants of the generated config (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measure (default 3)")
    parser.add_argument("--memory", action="store_true", help="also the peak RSS of parsing with each loader")
    args = parser.parse_args(argv)

    # -- config parse
    text = generated_config(args.tenants)
    fast, parsed = best(args.rounds, lambda: load_yaml(text))
    pure, parsed_pure = best(1, lambda: yaml.load(text, Loader=yaml.SafeLoader))  # slow: one round
    assert parsed == parsed_pure, "the C and pure loaders disagree"
    print(
        f"config parse, {args.tenants} tenants ({len(text) / 1e6:.1f} MB of YAML): {YAML_LOADER.__name__} "
        f"{fast:.2f} s, pure SafeLoader {pure:.2f} s; pure/C = {pure / fast:.1f}x"
    )
    if args.memory:
        base, c_peak, pure_peak = (peak_rss_mb(text, loader) for loader in ("none", YAML_LOADER.__name__, "SafeLoader"))
        print(
            f"config parse, peak RSS: {YAML_LOADER.__name__} {c_peak:.0f} MB, pure SafeLoader {pure_peak:.0f} MB "
            f"(reading the text alone {base:.0f} MB); pure/C = {pure_peak / c_peak:.2f}x"
        )

    # -- connector lookup
    registry.load("xero")  # imports the connector and reads the entry points once
    cached = per_call(args.rounds, lambda: registry.load("xero"))
    uncached = per_call(args.rounds, lambda: uncached_lookup("xero"))
    print(
        f"connector lookup (registry.load('xero')): cached {cached * 1e6:.1f} µs, uncached {uncached * 1e3:.2f} ms; "
        f"uncached/cached = {uncached / cached:.0f}x; for {args.tenants} tenants "
        f"{cached * args.tenants * 1e3:.1f} ms against {uncached * args.tenants:.2f} s"
    )

    # -- redact
    os.environ.setdefault("XERO_CLIENT_SECRET", "bench-secret-value")  # as a worker has
    message = (
        "PermanentError: 400 ValidationException: ContactID 3f1c2a10-5b1e-4c7a-9d01-000000000101 is not valid "
        "for invoice ACME-WO-123-R1 (tenant acme-fm)"
    )
    assert dlq.redact(message) == redact_scanning(message)
    new = per_call(args.rounds, lambda: dlq.redact(message))
    old = per_call(args.rounds, lambda: redact_scanning(message))
    print(
        f"redact, {len(os.environ)} environment variables: cached secrets {new * 1e6:.1f} µs, scanning the "
        f"environment {old * 1e6:.1f} µs per call; scanning/cached = {old / new:.1f}x"
    )

    # -- dead-letter log line
    logger = logging.getLogger("bench.dead_letters")
    logger.propagate = False
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    exc = ValueError("data.labour[0].minutes: -5 is not a non-negative integer (work order WO-123)")
    where, key = "maintenance.events:1:12345", b"acme-fm:wo:WO-123"
    dead = dlq.DeadLetterLog(logger)
    dead.dead_lettered(where, "enrich", "invalid", exc, key)  # the interval's WARNING line: the rest are counted
    summed = per_call(args.rounds, lambda: dead.dead_lettered(where, "enrich", "invalid", exc, key))

    def warning_line() -> None:
        handler.stream.seek(0)
        logger.warning("dead-lettered %s at %s: %s: %s", where, "enrich", "invalid", dlq.clip(exc))

    each = per_call(args.rounds, warning_line)
    print(
        f"dead-letter log line: counted within the interval {summed * 1e6:.1f} µs, a WARNING line each "
        f"{each * 1e6:.1f} µs per dead letter; line/counted = {each / summed:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``broker report economics`` against ``billing.invoices`` on a real embedded Kafka (Tansu): the scenario's
priced documents published as the price stage publishes them (keyed ``tenant:doc:id``, the document's JSON),
with a replay, another tenant's document and a cancelled one; the csv and json outputs carry the figures
computed by hand in ``tests/test_economics.py``. And the command's errors: Kafka unreachable, no topic,
an unknown tenant, the html format without matplotlib."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from broker.cli import main
from broker.kafka import ensure_topics, publish
from broker.settings import TOPIC_INVOICES
from connectors.sdk.invoice import DocumentChange, Invoice
from tests.economics_support import TENANT, priced_documents

ROOT = Path(__file__).resolve().parent.parent
XERO = {
    "api_url": "http://127.0.0.1:8765",
    "identity_url": "http://127.0.0.1:8765",
    "xero_tenant_id": "00000000-0000-0000-0000-000000000001",
    "client_id": "demo-client",
    "client_secret_env": "XERO_CLIENT_SECRET",
    "refresh_token_env": "XERO_REFRESH_TOKEN",
    "tax_types": {"23": "OUTPUT2"},
}
RANGE = ["--from", "2026-03-01", "--to", "2026-04-30"]


def _config(tmp_path: Path) -> str:
    tenant = {**TENANT, "billing": {"system": "xero", "settings": XERO}}
    other = {**tenant, "name": "Other FM", "clients": {"CLI-1": {"name": "Other's client"}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"tenants": {"acme": tenant, "other": other}}, allow_unicode=True), encoding="utf-8")
    return str(path)


def _records() -> list[bytes]:
    """What the price stage would have published: the scenario's documents in order, then a replay of WO 1001 r1
    (after r2: r2 still counts), another tenant's invoice, a document completed and then cancelled."""
    docs = priced_documents()
    r1 = docs[0]
    other = r1.model_copy(
        update={
            "tenant": "other",
            "order_key": "other:wo:1001",
            "invoice_key": "other:wo:1001:r1",
            "client_id": "CLI-1",
        }
    )
    late = docs[4]  # WO 1002, as a template for a document that is cancelled
    assert isinstance(late, Invoice)
    cancelled = late.model_copy(
        update={"order_key": "acme:wo:9009", "invoice_key": "acme:wo:9009:r1", "document_id": "9009"}
    )
    change = DocumentChange(
        action="cancel",
        change_key="acme:wo:9009:r1:cancel",
        order_key="acme:wo:9009",
        tenant="acme",
        billing_system="xero",
        event_id="evt-9009-cancel",
        event_type="maintenance.work_order.cancelled",
        event_time=late.event_time,
        document="wo",
        document_id="9009",
        revision=1,
        client_id="CLI-1",
        reason="cancelled by the client",
        issue_date=late.issue_date,
    )
    return [d.model_dump_json().encode() for d in [*docs, r1, other, cancelled, change]]


def _key(raw: bytes) -> bytes:
    return json.loads(raw)["order_key"].encode()


def _run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["report", "economics", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.integration
def test_csv_and_json_from_billing_invoices_on_kafka(kafka, tmp_path):
    ensure_topics(kafka, 4, [TOPIC_INVOICES])
    records = _records()
    assert publish(kafka, TOPIC_INVOICES, records, keyer=_key) == 11
    config = _config(tmp_path)
    common = ["--config", config, "--tenant", "acme", *RANGE, "--bootstrap-servers", kafka]

    code, out, err = _run([*common, "--format", "csv"])
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["row"], r["key"], r["label"]) for r in rows] == [
        ("group", "CLI-1", "Hotel Atlântico Lisboa, S.A."),
        ("group", "CLI-2", "Escritórios Norte, Lda."),
        ("total", "", "Total"),
    ]
    columns = ("documents", "worked_hours", "billed_hours", "covered_hours", "revenue", "fee_revenue", "cost",
               "margin", "margin_percent", "visits", "assets")  # fmt: skip
    assert [tuple(r[c] for c in columns) for r in rows] == [
        ("3", "3.50", "0.25", "4.00", "124.50", "225.00", "101.50", "248.00", "70.96", "3", "2"),
        ("2", "3.92", "4.25", "0.00", "326.50", "0.00", "148.25", "178.25", "54.59", "2", "1"),
        ("5", "7.42", "4.50", "4.00", "451.00", "225.00", "249.75", "426.25", "63.05", "5", "3"),
    ]
    # the invoice revenue is the sum of the invoices covered, to the cent: 79.50 + 141.50 + 45.00 + 185.00
    assert rows[-1]["revenue"] == "451.00"

    code, out, err = _run([*common, "--format", "json", "--by", "month"])
    assert code == 0, err
    doc = json.loads(out)
    assert [(r["key"], r["revenue"], r["fee_revenue"], r["cost"]) for r in doc["rows"]] == [
        ("2026-03", "221.00", "150.00", "139.75"),
        ("2026-04", "230.00", "75.00", "110.00"),
    ]
    assert (doc["total"]["revenue"], doc["total"]["cost"], doc["out_of_range"]) == ("451.00", "249.75", 1)
    assert [(a["month"], a["used_hours"], a["sold_hours"], a["used_percent"]) for a in doc["allowances"]] == [
        ("2026-03", "2.00", "2.00", "100.00"),
        ("2026-04", "1.00", "2.00", "50.00"),
    ]
    [contract] = doc["contracts"]
    assert (contract["effective_hourly_rate"], contract["list_hourly_rate"], contract["recommended_monthly_fee"]) == (
        "56.25", "30.00", "29.78",
    )  # fmt: skip
    # 11 records: 10 of acme (7 documents, a replay, the cancelled one and its change) and one of another tenant,
    # skipped by its key; r1 and its replay replaced by r2; WO 9009 cancelled: 6 documents, 5 in the range
    assert doc["source"] == {
        "topic": TOPIC_INVOICES,
        "records_read": 11,
        "tenant_records": 10,
        "documents": 6,
        "in_range": 5,
        "replaced_revisions": 2,
        "cancelled": 1,
        "unreadable": 0,
    }

    html_path = tmp_path / "report.html"
    code, out, err = _run([*common, "--format", "html", "--output", str(html_path), "--by", "contract"])
    assert code == 0, err
    assert out == "" and f"written to {html_path}" in " ".join(err.split())
    page = html_path.read_text(encoding="utf-8")
    assert page.count("<svg ") == 2 and "http" not in page and "<script" not in page


def test_unreachable_kafka_names_the_address(tmp_path):
    from broker.embedded import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "report", "economics", "--config", _config(tmp_path), "--tenant", "acme",
         *RANGE, "--bootstrap-servers", address],
        cwd=ROOT, capture_output=True, check=False, text=True, timeout=60,
        env={**os.environ, "KAFKA_CONNECT_TIMEOUT": "1"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: cannot reach Kafka at {address} within 1 s (KAFKA_CONNECT_TIMEOUT)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 20


@pytest.mark.integration
def test_a_cluster_without_the_topic_is_an_error_naming_it(kafka, tmp_path):
    code, _, err = _run(["--config", _config(tmp_path), "--tenant", "acme", *RANGE, "--bootstrap-servers", kafka])
    assert code == 2
    assert f"topic billing.invoices does not exist at {kafka}" in " ".join(err.split())


def test_usage_errors_exit_2_before_reading_kafka(tmp_path, monkeypatch):
    config = _config(tmp_path)
    nowhere = ["--bootstrap-servers", "127.0.0.1:9"]
    code, _, err = _run(["--config", config, "--tenant", "nobody", *RANGE, *nowhere])
    assert code == 2 and "unknown tenant 'nobody'; configured: acme, other" in " ".join(err.split())
    code, _, err = _run(
        ["--config", config, "--tenant", "acme", "--from", "2026-05-01", "--to", "2026-04-01", *nowhere]
    )
    assert code == 2 and "--from 2026-05-01 is after --to 2026-04-01" in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the `report` extra were not installed
    code, _, err = _run(["--config", config, "--tenant", "acme", *RANGE, "--format", "html", *nowhere])
    assert code == 2
    assert "pip install 'maintenance-billing-broker[report]'" in " ".join(err.split())

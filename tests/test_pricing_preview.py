"""``broker invoice preview`` shows every line with its source and rule, the cost and the margin."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from broker.cli import main
from tests.conftest import EXAMPLES
from tests.golden.pricing_cases import qt, tenant, wo

CONFIG = str(EXAMPLES / "config.yaml")


def _write(tmp_path: Path, name: str, doc: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def _cdp_event(tmp_path: Path) -> str:
    # acme-fm CLI-CDP (contract ABONO-2026-CDP: 4 h/month; labour discount 5 %), Tuesday 2026-03-03 09:00-12:00
    event = wo(
        entries=[
            {
                "id": "TE-1",
                "technician_id": "T31",
                "start": "2026-03-03T09:00:00+00:00",
                "end": "2026-03-03T12:00:00+00:00",
            }
        ],
        client="CLI-CDP",
        site="LIS-CDP-PLANT",
    )
    event["tenant"] = "acme-fm"
    return _write(tmp_path, "event.json", event)


def test_preview_json_shows_covered_lines_allowance_and_discount(tmp_path):
    result = CliRunner().invoke(
        main, ["invoice", "preview", "--config", CONFIG, _cdp_event(tmp_path), "--allowance-used", "120"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    # 180 min worked; 240 - 120 = 120 min left: 2 h covered, 1 h billed at 42.00 less 5 % = 39.90 (VAT 9.177 -> 9.18)
    # call-out 45.00 (VAT 10.35): net 84.90, VAT 19.53, total 104.43; cost 3 h × 24.00 = 72.00; margin 12.90
    assert [
        (ln["kind"], ln["quantity"], ln["net"], ln["discount_percent"], ln["covered_by"]) for ln in doc["lines"]
    ] == [
        ("call_out", "1", "45.00", "0", None),
        ("labour", "2", "0.00", "0", "ABONO-2026-CDP"),
        ("labour", "1", "39.90", "5", None),
    ]
    assert (doc["net_total"], doc["tax_total"], doc["total"], doc["cost_total"], doc["margin"]) == (
        "84.90",
        "19.53",
        "104.43",
        "72.00",
        "12.90",
    )
    assert doc["allowance"] == {
        "contract_id": "ABONO-2026-CDP",
        "month": "2026-03",
        "allowance_minutes": 240,
        "used_before_minutes": 120,
        "consumed_minutes": 120,
        "remaining_minutes": 0,
    }
    assert all(ln["source"] == "time_entry:TE-1" and ln["rule"] for ln in doc["lines"][1:])
    assert doc["lines"][1]["rule"].startswith("contract:ABONO-2026-CDP:corrective_allowance 4 h/month")
    assert doc["lines"][2]["rule"].endswith("discount:client 5%")


def test_preview_table_shows_every_line_source_rule_cost_and_margin(tmp_path):
    result = CliRunner().invoke(
        main, ["invoice", "preview", "--config", CONFIG, _cdp_event(tmp_path), "--format", "table"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    # nothing used before: the 3 h are covered, only the call-out is billed: 45.00 + 10.35 = 55.35; cost 72.00
    assert "covered by ABONO-2026-CDP" in out and "contract:ABONO-2026-CDP:corrective_allowance" in out
    assert "work_order:1001 · call_out_fee; corrective visit" in out and "time_entry:TE-1" in out
    assert "55.35" in out and "margin -27.00 EUR" in out
    assert "contract ABONO-2026-CDP allowance 2026-03: 240 min/month, used before 0 min, covered here 180 min" in out


def test_preview_of_a_reverse_charge_client_prints_the_legal_note(tmp_path):
    event = wo(
        entries=[{"id": "TE-1", "technician_id": "T31", "duration_seconds": 3600}], client="CLI-EBV", site="VGO-1"
    )
    event["tenant"] = "acme-fm"
    result = CliRunner().invoke(
        main, ["invoice", "preview", "--config", CONFIG, _write(tmp_path, "e.json", event), "--format", "table"]
    )
    assert result.exit_code == 0, result.output
    assert "autoliquidação" in result.output and "Customer VAT number: ESB00000104" in result.output
    doc = json.loads(
        CliRunner().invoke(main, ["invoice", "preview", "--config", CONFIG, _write(tmp_path, "e.json", event)]).output
    )
    # call-out 45.00 + 1 h × 42.00 = 87.00 at 0 %
    assert (doc["net_total"], doc["tax_total"], doc["total"]) == ("87.00", "0.00", "87.00")
    assert doc["legal_notes"][0].startswith("IVA - autoliquidação")


def test_preview_of_a_covered_scheduled_job_and_of_a_quote_balance(tmp_path):
    sj = {
        "specversion": "1.0",
        "id": "t:sj:1",
        "source": "/t",
        "type": "maintenance.scheduled_job.closed",
        "time": "2026-03-03T12:00:00+00:00",
        "tenant": "acme-fm",
        "data": {
            "scheduled_job_id": "SJ-1",
            "client_id": "CLI-CDP",
            "site_id": "LIS-CDP-WARD2",
            "time_entries": [{"id": "TE-1", "technician_id": "T31", "duration_seconds": 5400}],
        },
    }
    result = CliRunner().invoke(main, ["invoice", "preview", "--config", CONFIG, _write(tmp_path, "sj.json", sj)])
    doc = json.loads(result.output)
    assert (doc["status"], doc["reason_code"], doc["cost_total"]) == ("not_billable", "covered_by_contract", "36.00")
    assert doc["lines"][0]["covered_by"] == "ABONO-2026-CDP"

    # a config whose quotes are invoiced as 30 % deposit + balance: the work order needs --quote
    import yaml

    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    raw["tenants"]["acme"] = tenant(quotes={"deposit_percent": "30"})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    work = _write(
        tmp_path,
        "wo.json",
        wo(entries=[{"id": "TE-1", "technician_id": "T31", "duration_seconds": 3600}], quote_id="Q-12"),
    )
    missing = CliRunner().invoke(main, ["invoice", "preview", "--config", str(config), work])
    assert missing.exit_code == 1 and "data.quote_id" in missing.output
    ok = CliRunner().invoke(
        main, ["invoice", "preview", "--config", str(config), work, "--quote", _write(tmp_path, "q.json", qt())]
    )
    assert ok.exit_code == 0, ok.output
    # balance 686.00 + 315.00 + 17.50 (6 %) = 1018.50; VAT 157.78 + 72.45 + 1.05 = 231.28; total 1249.78
    doc = json.loads(ok.output)
    assert (doc["net_total"], doc["tax_total"], doc["total"]) == ("1018.50", "231.28", "1249.78")

"""Periodic invoicing (issue 14, item 2), the pure part: a month of work orders on one invoice with
the contract's subscription fee, revisions before and after the close, late documents, the close
instant in the tenant's zone. Every amount is computed by hand in the comments.

Tenant ``acme`` of the golden table (EUR, Europe/Lisbon, VAT 23 %, hvac 42.00/h cost 24.00, T32
personal 36.00/h cost 21.00, 15-min increment, 60-min minimum); client CLI-1 invoiced monthly under
contract AV-1 (fee 150.00 a month, covers the call-out fees only).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.config import Tenant
from broker.events import parse_event
from broker.pricing import price_event
from broker.pricing.periodic import (
    PERIODS_TABLE,
    PeriodResult,
    accumulate,
    close_period,
    closes_at,
    due_periods,
    period_containing,
    remove_document,
)
from connectors.sdk.invoice import Invoice
from tests.golden.periodic_cases import CONTRACT, MARCH_COST_AND_MARGIN, MARCH_LINES, MARCH_TOTALS, march_wo
from tests.golden.periodic_cases import MARCH as MARCH_RAW
from tests.golden.pricing_cases import dur, tenant

NOW = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)


def _tenant(**client) -> Tenant:
    return Tenant.model_validate(tenant(client={"invoicing": "monthly", "contracts": [CONTRACT], **client}))


def _wo(wo_id: str, day: int, entries, revision: int = 1):
    return parse_event(march_wo(wo_id, day, entries, revision))


def _feed(t: Tenant, events, table: dict, now: datetime = NOW) -> list:
    published = []
    for event in events:
        priced = price_event(event, "acme", t, priced_at=now)
        result = accumulate(priced, "acme", t, table, now=now)
        for name, key, value in result.writes:
            assert name == PERIODS_TABLE
            table[key] = value
        published += result.publish
    return published


MARCH = [parse_event(raw) for raw in MARCH_RAW]  # tests/golden/periodic_cases.py


def test_periods_and_the_close_in_the_tenants_zone():
    assert period_containing(datetime(2026, 3, 31).date(), "monthly").id == "2026-03"
    week = period_containing(datetime(2026, 3, 4).date(), "weekly")
    assert (week.id, str(week.start), str(week.end)) == ("2026-W10", "2026-03-02", "2026-03-09")
    # Lisbon is on WEST (UTC+1) from 2026-03-29: March closes at 2026-04-01 00:00 local = 2026-03-31 23:00 UTC
    t = _tenant()
    assert closes_at(t, period_containing(datetime(2026, 3, 1).date(), "monthly")) == datetime(
        2026, 3, 31, 23, 0, tzinfo=UTC
    )
    table: dict = {}
    assert _feed(t, MARCH, table) == []  # nothing is invoiced while the period is open
    assert due_periods(table, {"acme": t}, datetime(2026, 3, 31, 22, 59, 59, tzinfo=UTC)) == []
    assert due_periods(table, {"acme": t}, datetime(2026, 3, 31, 23, 0, tzinfo=UTC)) == ["acme:CLI-1:2026-03"]
    # with an hour of grace for the last day's late events: due from 2026-04-01 00:00 UTC
    hour = timedelta(hours=1)
    assert due_periods(table, {"acme": t}, datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC), grace=hour) == []
    assert due_periods(table, {"acme": t}, datetime(2026, 4, 1, 0, 0, tzinfo=UTC), grace=hour) == ["acme:CLI-1:2026-03"]


def test_a_month_of_four_work_orders_one_revision_and_the_fee_gives_one_invoice():
    t = _tenant()
    table: dict = {}
    _feed(t, MARCH, table)
    result = close_period("acme:CLI-1:2026-03", t, table, now=NOW)
    [invoice] = result.publish
    assert isinstance(invoice, Invoice)
    # the hand-computed golden case (tests/golden/periodic_cases.py)
    assert [(line.description, str(line.net), str(line.tax)) for line in invoice.lines] == MARCH_LINES
    assert (str(invoice.net_total), str(invoice.tax_total), str(invoice.total)) == MARCH_TOTALS
    assert (str(invoice.cost_total), str(invoice.margin)) == MARCH_COST_AND_MARGIN
    assert (invoice.invoice_key, invoice.order_key, invoice.invoice_number) == (
        "acme:per:CLI-1-2026-03:r1",
        "acme:per:CLI-1-2026-03",
        "ACME-PE-CLI-1-2026-03-R1",
    )
    assert (str(invoice.issue_date), str(invoice.due_date), invoice.reference) == (
        "2026-03-31",
        "2026-04-30",
        "Services March 2026",
    )
    assert (invoice.document, invoice.document_id, invoice.contract_id) == ("per", "CLI-1-2026-03", "AV-1")
    [(_name, key, state)] = result.writes
    assert (key, state["status"]) == ("acme:CLI-1:2026-03", "closed")
    table[key] = state
    # closing again gives the same invoice (same key, same content) and writes nothing
    again = close_period(key, t, table, now=datetime(2026, 4, 3, tzinfo=UTC))
    assert again.writes == [] and again.publish[0].fingerprint == invoice.fingerprint
    assert again.publish[0].invoice_key == invoice.invoice_key


def test_a_revision_after_the_close_is_a_new_revision_of_the_period_invoice():
    t = _tenant()
    table: dict = {}
    _feed(t, MARCH, table)
    table.update((key, value) for _name, key, value in close_period("acme:CLI-1:2026-03", t, table, now=NOW).writes)
    # WO 2004 r2: 60 min = 42.00 (tax 9.66) instead of 94.50 (tax 21.74)
    # net 406.50 - 94.50 + 42.00 = 354.00; tax 93.50 - 21.74 + 9.66 = 81.42; total 435.42
    [revised] = _feed(t, [_wo("2004", 24, [dur("TE-1", "T31", 60)], revision=2)], table)
    assert revised.invoice_key == "acme:per:CLI-1-2026-03:r2"
    assert (str(revised.net_total), str(revised.tax_total), str(revised.total)) == ("354.00", "81.42", "435.42")
    assert table["acme:CLI-1:2026-03"]["revision"] == 2
    # the same revision again, priced a day later (a redelivery), changes nothing
    later = datetime(2026, 4, 3, tzinfo=UTC)
    assert _feed(t, [_wo("2004", 24, [dur("TE-1", "T31", 60)], revision=2)], table, later) == []
    # cancelling WO 2003: r3 without its 36.00 + 8.28: net 318.00, tax 73.14, total 391.14
    removed = remove_document("acme:wo:2003", 1, t, table, now=NOW)
    assert removed is not None
    [third] = removed.publish
    assert (third.invoice_key, str(third.net_total), str(third.tax_total)) == (
        "acme:per:CLI-1-2026-03:r3",
        "318.00",
        "73.14",
    )


@pytest.mark.parametrize("late", ["next_period", "amend"])
def test_a_new_document_dated_in_a_closed_period(late):
    raw = tenant(client={"invoicing": "monthly", "contracts": [CONTRACT]}, periodic={"late": late})
    t = Tenant.model_validate(raw)
    table: dict = {}
    _feed(t, MARCH, table)
    table.update((key, value) for _name, key, value in close_period("acme:CLI-1:2026-03", t, table, now=NOW).writes)
    published = _feed(t, [_wo("2005", 30, [dur("TE-1", "T31", 60)])], table)
    if late == "next_period":  # into April, the period of NOW (2 April): nothing to publish yet
        assert published == []
        assert list(table["acme:CLI-1:2026-04"]["documents"]) == ["acme:wo:2005"]
        assert table["index:acme:wo:2005"] == "acme:CLI-1:2026-04"
    else:  # March r2: + 42.00 (tax 9.66): net 448.50, tax 103.16, total 551.66
        [amended] = published
        assert amended.invoice_key == "acme:per:CLI-1-2026-03:r2"
        assert (str(amended.net_total), str(amended.tax_total), str(amended.total)) == ("448.50", "103.16", "551.66")


def test_a_portuguese_client_gets_portuguese_sections_and_fee():
    t = _tenant(language="pt")
    table: dict = {}
    _feed(t, MARCH[:1], table)
    [invoice] = close_period("acme:CLI-1:2026-03", t, table, now=NOW).publish
    assert [line.description for line in invoice.lines] == [
        "OT 2001: Taxa de deslocação – abrangido pelo contrato AV-1",
        "OT 2001: Mão de obra – Ana Costa (hvac): 1 h",
        "Avença, contrato AV-1 – março de 2026",
    ]
    assert invoice.reference == "Serviços de março de 2026"


def test_a_replay_after_the_close_changes_nothing():
    """A worker killed after the close prices its uncommitted events again, in their order, against
    the recovered (closed) period: WO 2002 and WO 2004 r1 after their r2, a cancelled WO 2003 r1
    after its cancel."""
    t = _tenant()
    table: dict = {}
    _feed(t, MARCH, table)
    revised = [_wo("2004", 24, [dur("TE-1", "T31", 60)], revision=2)]
    assert _feed(t, revised, table) == []
    removed = remove_document("acme:wo:2003", 1, t, table, now=NOW)
    assert removed is not None and removed.publish == []
    table.update((key, value) for _name, key, value in removed.writes)
    table.update((key, value) for _name, key, value in close_period("acme:CLI-1:2026-03", t, table, now=NOW).writes)
    before = dict(table)
    # the whole month again (WO 2004 r1 and WO 2003 r1 included), its revision, the cancel
    assert _feed(t, [*MARCH, *revised], table) == []
    assert remove_document("acme:wo:2003", 1, t, table, now=NOW) == PeriodResult()
    assert table == before
    assert table["acme:CLI-1:2026-03"]["revisions"] == {
        "acme:wo:2001": 1,
        "acme:wo:2002": 2,
        "acme:wo:2003": 1,
        "acme:wo:2004": 2,
    }
    # a cancel of an older revision than the one kept changes nothing either
    assert remove_document("acme:wo:2004", 1, t, table, now=NOW) == PeriodResult()
    # a new revision after the close is still a new revision of the period invoice
    [third] = _feed(t, [_wo("2003", 17, [dur("TE-1", "T31", 60)], revision=2)], table)
    assert third.invoice_key == "acme:per:CLI-1-2026-03:r2"

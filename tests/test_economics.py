"""The economic report, pure (``broker.economics``): documents priced by the pricing engine from the
scenario of ``tests/economics_support.py``, figures computed by hand below.

The priced documents (net = revenue, cost; minutes worked / billed; hvac cost 24.00 an hour, T32 21.00):

=====================  =====================================================  ======  ======
document               lines                                                  net     cost
=====================  =====================================================  ======  ======
WO 1001 r1 (March 5)   replaced by r2: counted nowhere                        69.00   60.00
WO 1001 r2 (March 6)   call-out 45.00; T31 130 min worked -> 135 billed: 120   79.50   72.00
                       covered by AB-1 (allowance), 15 at 42.00 = 10.50;
                       part 2 × 12.00 = 24.00 (cost 20.00); cost 52.00 + 20.00
SJ 2001 (March 10)     not billable: T32 50 worked, 60 billed, covered         0       17.50
WO 3001 (March 12)     CLI-2 at its 40.00: T32 45 -> 60 min = 40.00 (15.75),   141.50  50.25
                       T31 70 -> 75 min = 50.00 (28.00), call-out 45.00,
                       parking 6.50 (6.50)
WO 1002 (April 7)      call-out 45.00; T31 30 worked -> 60 billed, covered     45.00   12.00
WO 3002 (April 20)     T31 120 min = 80.00 (48.00), call-out 45.00, part       185.00  98.00
                       60.00 (50.00)
WO 1003 (May 4)        outside the range                                      87.00   24.00
=====================  =====================================================  ======  ======

Contract AB-1 (CLI-1, SITE-1): 150.00 a month, valid to April 15: fees 150.00 (March) + 150 × 15 / 30 =
75.00 (April) = 225.00 over 1.5 months.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from broker.economics import UNATTRIBUTED, economic_report, select_documents
from connectors.sdk.invoice import DocumentChange, Invoice, InvoiceLine, NotBillable
from tests.economics_support import TENANT_ID, entry, event, priced_documents, tenant

MARCH, APRIL_END = date(2026, 3, 1), date(2026, 4, 30)


@pytest.fixture(scope="module")
def documents() -> list[Invoice | NotBillable]:
    return priced_documents()


def _report(documents, by="client", **kw):
    selection = select_documents(documents, TENANT_ID)
    return economic_report(selection.documents, TENANT_ID, tenant(), MARCH, APRIL_END, by, **kw)


def _figures(row):
    return (
        row.documents,
        row.invoices,
        row.worked_minutes,
        row.billed_minutes,
        row.covered_minutes,
        row.worked_hours,
        row.billed_hours,
        row.covered_hours,
        row.revenue,
        row.fee_revenue,
        row.cost,
        row.margin,
        row.margin_percent,
        row.visits,
        row.assets,
    )


def test_the_latest_revision_per_document_is_counted_once(documents):
    selection = select_documents(documents, TENANT_ID)
    assert [d.invoice_key for d in selection.documents] == [
        "acme:wo:1001:r2",
        "acme:sj:2001:r1",
        "acme:wo:3001:r1",
        "acme:wo:1002:r1",
        "acme:wo:3002:r1",
        "acme:wo:1003:r1",
    ]
    assert (selection.read, selection.replaced, selection.cancelled) == (7, 1, [])
    # r2 first and r1 replayed after it (a DLQ replay): r2 still wins; the same r2 twice counts once
    again = select_documents([documents[1], documents[0], documents[1]], TENANT_ID)
    assert [d.invoice_key for d in again.documents] == ["acme:wo:1001:r2"]
    assert again.replaced == 2


def test_by_client_hand_computed(documents):
    report = _report(documents)
    assert [r.key for r in report.rows] == ["CLI-1", "CLI-2"]
    cli1, cli2 = report.rows
    assert cli1.label == "Hotel Atlântico Lisboa, S.A."
    # CLI-1: WO 1001 r2, SJ 2001, WO 1002. Worked 130 + 50 + 30 = 210 min = 3.50 h; billed (not covered) 15 min
    # = 0.25 h; covered 120 + 60 + 60 = 240 = 4.00 h. Revenue 79.50 + 0 + 45.00 = 124.50; fees 225.00; cost
    # 72.00 + 17.50 + 12.00 = 101.50; margin 124.50 + 225.00 - 101.50 = 248.00; 248.00 / 349.50 = 70.958 %
    # -> 70.96. Visits (1001, V1), (2001, 2001), (1002, V1); assets CH-01, AHU-02.
    assert _figures(cli1) == (
        3, 2, D("210"), 15, 240, D("3.50"), D("0.25"), D("4.00"),
        D("124.50"), D("225.00"), D("101.50"), D("248.00"), D("70.96"), 3, 2,
    )  # fmt: skip
    # CLI-2: WO 3001, WO 3002. Worked 45 + 70 + 120 = 235 min = 3.9167 -> 3.92 h; billed 60 + 75 + 120 = 255
    # = 4.25 h. Revenue 141.50 + 185.00 = 326.50; cost 50.25 + 98.00 = 148.25; margin 178.25;
    # 178.25 / 326.50 = 54.594 % -> 54.59. Visits 2, asset LIFT-1 on both.
    assert _figures(cli2) == (
        2, 2, D("235"), 255, 0, D("3.92"), D("4.25"), D("0.00"),
        D("326.50"), D("0.00"), D("148.25"), D("178.25"), D("54.59"), 2, 1,
    )  # fmt: skip
    # Total: 445 min = 7.4167 -> 7.42 h; revenue 451.00; fees 225.00; cost 249.75; margin 426.25;
    # 426.25 / 676.00 = 63.054 % -> 63.05; 5 visits; assets CH-01, AHU-02, LIFT-1.
    assert _figures(report.total) == (
        5, 4, D("445"), 270, 240, D("7.42"), D("4.50"), D("4.00"),
        D("451.00"), D("225.00"), D("249.75"), D("426.25"), D("63.05"), 5, 3,
    )  # fmt: skip
    assert report.out_of_range == 1  # WO 1003 (May)


def test_revenue_and_cost_totals_equal_the_invoices_to_the_cent(documents):
    report = _report(documents)
    covered = [
        d
        for d in select_documents(documents, TENANT_ID).documents
        if (d.issue_date if isinstance(d, Invoice) else d.event_time.date()) <= APRIL_END
    ]
    invoices = [d for d in covered if isinstance(d, Invoice)]
    assert report.total.revenue == sum((i.net_total for i in invoices), D(0)) == D("451.00")
    assert report.total.cost == sum((d.cost_total for d in covered), D(0)) == D("249.75")
    for by in ("client", "contract", "site", "technician", "month"):
        rows = _report(documents, by).rows
        for name in ("revenue", "fee_revenue", "cost", "worked_minutes", "billed_minutes", "covered_minutes"):
            assert sum((getattr(r, name) for r in rows), D(0)) == getattr(report.total, name), (by, name)


def test_by_technician_puts_what_no_technician_did_in_its_own_row(documents):
    report = _report(documents, "technician")
    assert [r.key for r in report.rows] == ["T31", "T32", UNATTRIBUTED]
    t31, t32, rest = report.rows
    # T31: 1001 r2 (115.55 + 14.45 worked, 120 covered + 15 billed, 10.50, cost 46.22 + 5.78), 3001 (70, 75, 50.00,
    # 28.00), 1002 (30, 60 covered, 0, 12.00), 3002 (120, 120, 80.00, 48.00)
    assert _figures(t31)[:12] == (
        4, 4, D("350.00"), 210, 180, D("5.83"), D("3.50"), D("3.00"), D("140.50"), D("0.00"), D("140.00"), D("0.50"),
    )  # fmt: skip
    assert t31.visits == 4
    # T32: SJ 2001 (50 worked, 60 covered, cost 17.50), 3001 (45 worked, 60 billed, 40.00, 15.75)
    assert _figures(t32)[:11] == (
        2, 1, D("95"), 60, 60, D("1.58"), D("1.00"), D("1.00"), D("40.00"), D("0.00"), D("33.25"),
    )  # fmt: skip
    # the rest: call-outs 4 × 45.00 + parts 24.00 + 60.00 + parking 6.50 = 270.50; their cost 20.00 + 50.00 + 6.50;
    # every contract fee
    assert (rest.revenue, rest.cost, rest.fee_revenue, rest.worked_minutes) == (D("270.50"), D("76.50"), D("225.00"), 0)


def test_by_month_site_and_contract(documents):
    march, april = _report(documents, "month").rows
    assert (march.key, march.revenue, march.fee_revenue, march.cost) == (
        "2026-03",
        D("221.00"),
        D("150.00"),
        D("139.75"),
    )
    assert (april.key, april.revenue, april.fee_revenue, april.cost) == (
        "2026-04",
        D("230.00"),
        D("75.00"),
        D("110.00"),
    )
    # the contract names one site: its fees go to it; the not-billable SJ 2001 is at SITE-1 too
    site1, site2 = _report(documents, "site").rows
    assert (site1.key, site1.documents, site1.revenue, site1.fee_revenue) == ("SITE-1", 3, D("124.50"), D("225.00"))
    assert (site2.key, site2.documents, site2.revenue, site2.fee_revenue) == ("SITE-2", 2, D("326.50"), D("0.00"))
    none, ab1 = _report(documents, "contract").rows
    assert (none.key, none.label, none.documents, none.revenue) == ("", "(no contract)", 2, D("326.50"))
    assert (ab1.key, ab1.documents, ab1.covered_minutes, ab1.fee_revenue) == ("AB-1", 3, 240, D("225.00"))


def test_allowance_used_against_sold_per_contract_and_month(documents):
    allowances = _report(documents).allowances
    # March: r2 consumed the whole 120 min (r1's 105 no longer count) and needed 135: 15 billed beyond.
    # April: WO 1002 consumed 60 of 120 (the contract ends April 15: April's allowance is still sold).
    assert [
        (a.contract_id, a.month, a.sold_minutes, a.used_minutes, a.beyond_minutes, a.used_percent) for a in allowances
    ] == [
        ("AB-1", "2026-03", 120, 120, 15, D("100.00")),
        ("AB-1", "2026-04", 120, 60, 0, D("50.00")),
    ]


def test_contract_recommendation(documents):
    [row] = _report(documents).contracts
    assert (row.client_id, row.contract_id, row.months, row.monthly_fee) == ("CLI-1", "AB-1", D("1.5"), D("150.00"))
    assert (row.fee_revenue, row.revenue, row.cost, row.covered_minutes, row.documents) == (
        D("225.00"), D("124.50"), D("101.50"), 240, 3,
    )  # fmt: skip
    # 225.00 of fees for 4.00 covered hours = 56.25 an hour, against the rate card's general 30.00: 187.50 %
    assert (row.effective_hourly_rate, row.list_hourly_rate, row.list_rate_source) == (
        D("56.25"), D("30.00"), "skill:general",
    )  # fmt: skip
    assert row.effective_vs_list_percent == D("187.50")
    # target 40 %: revenue needed 101.50 / 0.60 = 169.1667; minus the invoices' 124.50 = 44.6667 over 1.5
    # months = 29.7778 -> rounded up 29.78 a month
    assert (row.target_margin_percent, row.recommended_monthly_fee) == (D("40"), D("29.78"))
    assert row.margin_percent == D("70.96")


def test_a_loss_making_contract_gets_a_higher_fee_and_a_whole_range_the_whole_fee():
    heavy = [
        event("5001", "2026-03-02T10:00:00Z", client="CLI-1", site="SITE-1", entries=[entry("TE-1", "T31", 600, "2001")],
              scheduled=True),
    ]  # fmt: skip
    docs = priced_documents(heavy)
    assert isinstance(docs[0], NotBillable) and docs[0].cost_total == D("240.00")  # 600 min × 24.00 / 60
    report = economic_report(docs, TENANT_ID, tenant(), date(2026, 3, 1), date(2026, 3, 31), "contract")
    [row] = report.contracts
    # one whole month: fee 150.00; cost 240.00; margin -90.00; needed 240.00 / 0.60 = 400.00 -> 400.00 a month
    assert (row.months, row.fee_revenue, row.margin, row.recommended_monthly_fee) == (
        D("1"), D("150.00"), D("-90.00"), D("400.00"),
    )  # fmt: skip
    # 600 covered minutes = 10 h for 150.00: 15.00 an hour, half of the rate card's 30.00
    assert (row.effective_hourly_rate, row.effective_vs_list_percent) == (D("15.00"), D("50.00"))


def test_cancellations_corrections_and_other_tenants():
    docs = priced_documents()
    wo3002 = docs[5]
    assert isinstance(wo3002, Invoice)
    cancel = DocumentChange(
        action="cancel",
        change_key="acme:wo:3002:r1:cancel",
        order_key="acme:wo:3002",
        tenant="acme",
        billing_system="xero",
        event_id="evt-cancel",
        event_type="maintenance.work_order.cancelled",
        event_time=wo3002.event_time,
        document="wo",
        document_id="3002",
        revision=1,
        client_id="CLI-2",
        reason="client cancelled",
        issue_date=wo3002.issue_date,
    )
    other = wo3002.model_copy(
        update={"tenant": "other", "order_key": "other:wo:3002", "invoice_key": "other:wo:3002:r1"}
    )
    corrected = wo3002.model_copy(update={"net_total": D("200.00")})  # the same invoice version, other content
    records = [*docs, other, corrected, cancel]
    amend = select_documents(records, TENANT_ID)
    assert amend.cancelled == ["acme:wo:3002"] and amend.other_tenants == 1 and amend.changes == 1
    assert "acme:wo:3002:r1" not in [d.invoice_key for d in amend.documents]
    # without the cancellation: the later content wins (amend), the first one with corrections: reject
    kept = {d.invoice_key: d for d in select_documents(records[:-1], TENANT_ID).documents}
    assert kept["acme:wo:3002:r1"].net_total == D("200.00")
    kept = {d.invoice_key: d for d in select_documents(records[:-1], TENANT_ID, corrections="reject").documents}
    assert kept["acme:wo:3002:r1"].net_total == D("185.00")
    # a correction the deliver stage issued (key ...:c1, corrects the version) stands for that version
    correction = wo3002.model_copy(
        update={"invoice_key": "acme:wo:3002:r1:c1", "corrects": "acme:wo:3002:r1", "net_total": D("190.00")}
    )
    kept = {d.order_key: d for d in select_documents([*docs, correction], TENANT_ID).documents}
    assert kept["acme:wo:3002"].net_total == D("190.00")


def test_errors_name_what_is_wrong(documents):
    with pytest.raises(ValueError, match="starts"):
        economic_report([], TENANT_ID, tenant(), APRIL_END, MARCH)
    with pytest.raises(ValueError, match="cannot group by 'asset'"):
        economic_report([], TENANT_ID, tenant(), MARCH, APRIL_END, "asset")
    usd = documents[1].model_copy(update={"currency": "USD"})
    with pytest.raises(ValueError, match=r"acme:wo:1001:r2 is in USD"):
        economic_report([usd], TENANT_ID, tenant(), MARCH, APRIL_END)
    with pytest.raises(ValueError, match="of tenant 'acme', not 'other'"):
        economic_report(documents, "other", tenant(), MARCH, APRIL_END)


def test_the_document_date_is_the_local_date_in_the_tenant_zone():
    # 2026-03-31T23:30Z is April 1 in Lisbon (WEST, +01:00): an April document (and April's allowance)
    late = [event("6001", "2026-03-31T23:30:00Z", client="CLI-1", site="SITE-1", entries=[entry("TE-1", "T31", 30)])]
    [doc] = priced_documents(late)
    assert isinstance(doc, Invoice) and doc.issue_date == date(2026, 4, 1)
    march = economic_report([doc], TENANT_ID, tenant(), MARCH, date(2026, 3, 31))
    april = economic_report([doc], TENANT_ID, tenant(), date(2026, 4, 1), APRIL_END, "month")
    assert (march.total.documents, march.out_of_range) == (0, 1)
    assert [r.key for r in april.rows] == ["2026-04"]
    assert [(a.month, a.used_minutes) for a in april.allowances] == [("2026-04", 60)]


def test_platform_asset_ids_keep_the_distinct_valid_ids():
    from broker.platforms.base import asset_ids

    # ints as text, first occurrence kept; None, empty, 0 (Limble's "no asset"), too long, unprintable left out
    assert asset_ids(42001, "CH-01", None, "", 0, "0", "CH-01", "x" * 129, "A\u200bB", True, " AHU-2 ") == [
        "42001",
        "CH-01",
        "AHU-2",
    ]


def test_a_fee_already_on_a_periodic_invoice_is_not_counted_twice(documents):
    # March's fee of AB-1 billed as a subscription line on CLI-1's periodic invoice, issued April 1
    template = documents[4]  # WO 1002: an invoice of CLI-1 under AB-1
    assert isinstance(template, Invoice)
    fee = InvoiceLine(
        kind="subscription", description="Subscription AB-1 – March 2026", quantity=D("1"), unit_price=D("150.00"),
        net=D("150.00"), tax_rate=D("23"), tax=D("34.50"), total=D("184.50"), source="contract:AB-1:2026-03",
        rule="contract:AB-1:monthly_fee",
    )  # fmt: skip
    periodic = template.model_copy(
        update={
            "invoice_key": "acme:per:CLI-1-2026-03:r1", "order_key": "acme:per:CLI-1-2026-03", "document": "per",
            "document_id": "CLI-1-2026-03", "issue_date": date(2026, 4, 1), "lines": [fee], "net_total": D("150.00"),
            "tax_total": D("34.50"), "total": D("184.50"), "cost_total": D("0.00"), "margin": D("150.00"),
            "allowance": None, "asset_ids": [],
        }
    )  # fmt: skip
    report = _report([*documents, periodic])
    cli1 = report.rows[0]
    # the invoice's 150.00 is revenue (the column equals the invoices); March's configured fee is left out of the
    # fees (April's 75.00 stays): the margin is the same as without the periodic invoice, 248.00
    assert (cli1.revenue, cli1.fee_revenue, cli1.margin) == (D("274.50"), D("75.00"), D("248.00"))
    assert report.total.revenue == D("601.00")  # 451.00 + 150.00
    [row] = report.contracts
    # for the contract the billed fee is fee revenue, not other revenue: the recommendation does not change
    assert (row.fee_revenue, row.revenue, row.recommended_monthly_fee) == (D("225.00"), D("124.50"), D("29.78"))

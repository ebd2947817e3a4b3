"""Pricing configuration validation, state handling and property tests (hypothesis) of the pricing rules.

Hand-computed examples live in the golden table (tests/golden/pricing_cases.py); here we check
invariants over generated inputs and that bad configuration is refused with its field path.
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from broker.config import ConfigError, Tenant, parse_config
from broker.events import parse_event
from broker.pricing import ALLOWANCE_TABLE, QUOTES_TABLE, PricingError, apply_allowance, price_event, price_with_state
from broker.pricing.bands import split_interval
from connectors.sdk.invoice import Invoice, InvoiceLine, NotBillable
from connectors.sdk.money import minor_units
from tests.golden.pricing_cases import BANDS, BASE_TENANT, CONTRACT, at, dur, qt, tenant, wo


# --------------------------------------------------------------------------- configuration is refused with its path
def _config(raw_tenant: dict) -> dict:
    return {"tenants": {"acme": raw_tenant}}


def _refused(raw_tenant: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(_config(raw_tenant), source="t.yaml")
    return str(exc.value)


def test_overlapping_contracts_are_refused_with_the_path():
    other = dict(CONTRACT, id="ABONO-2", valid_from="2026-06-01", valid_to=None)
    message = _refused(tenant(client={"contracts": [CONTRACT, other]}))
    assert "tenants.acme.clients.CLI-1.contracts" in message
    assert "contracts.1 'ABONO-2'" in message and "overlaps contracts.0 'ABONO-1'" in message and "SITE-1" in message
    # an all-sites contract overlaps any site; back-to-back periods or disjoint sites do not overlap
    assert "every site" in _refused(tenant(client={"contracts": [CONTRACT, dict(other, sites=[])]}))
    parse_config(_config(tenant(client={"contracts": [CONTRACT, dict(other, valid_from="2027-01-01")]})))
    parse_config(_config(tenant(client={"contracts": [CONTRACT, dict(other, sites=["SITE-2"])]})))
    assert "valid_to 2025-01-01 is before valid_from" in _refused(
        tenant(client={"contracts": [dict(CONTRACT, valid_to="2025-01-01")]})
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("start", "25:00", "invalid time '25:00'"),
        ("end", "7:00", "invalid time '7:00'"),
        ("start", 1200, "quoted 'HH:MM' string"),  # YAML reads an unquoted 20:00 as 1200
    ],
)
def test_band_with_an_invalid_time_is_refused_with_the_path(field, value, expected):
    band = {"name": "night", "start": "20:00", "end": "07:00", "factor": "1.25", field: value}
    message = _refused(tenant(rate_card={"time_bands": [{"name": "weekend", "days": ["SAT"], "factor": "1.5"}, band]}))
    assert f"tenants.acme.rate_card.time_bands.1.{field}:" in message and expected in message


def test_band_without_condition_or_with_equal_times_is_refused():
    assert "has no condition" in _refused(tenant(rate_card={"time_bands": [{"name": "x", "factor": "2"}]}))
    assert "same time" in _refused(
        tenant(rate_card={"time_bands": [{"name": "x", "start": "08:00", "end": "08:00", "factor": "2"}]})
    )
    assert "tenants.acme.rate_card.time_bands.0.days.0" in _refused(
        tenant(rate_card={"time_bands": [{"name": "x", "days": ["SATURDAY"], "factor": "2"}]})
    )


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (
            lambda t: t["rate_card"]["skills"]["hvac"].update(hourly_rate="-5"),
            "tenants.acme.rate_card.skills.hvac.hourly_rate",
        ),
        (
            lambda t: t["clients"]["CLI-1"].update(skill_rates={"hvac": "-1"}),
            "tenants.acme.clients.CLI-1.skill_rates.hvac",
        ),
        (lambda t: t["clients"]["CLI-1"].update(hourly_rate="-0.01"), "tenants.acme.clients.CLI-1.hourly_rate"),
        (
            lambda t: t["rate_card"].update(time_bands=[{"name": "n", "holiday": True, "factor": "-1"}]),
            "tenants.acme.rate_card.time_bands.0.factor",
        ),
        (lambda t: t["rate_card"].update(mileage_rate_per_km="-0.4"), "tenants.acme.rate_card.mileage_rate_per_km"),
        (
            lambda t: t["rate_card"]["technicians"]["T32"].update(cost_rate="-21"),
            "tenants.acme.rate_card.technicians.T32.cost_rate",
        ),
    ],
)
def test_negative_rates_are_refused_with_the_path(mutate, path):
    raw = copy.deepcopy(BASE_TENANT)
    mutate(raw)
    message = _refused(raw)
    assert f"{path}: Input should be greater than" in message and "(got '-" in message


def test_other_pricing_settings_are_checked():
    assert "tenants.acme.clients.CLI-1: Value error, reverse_charge needs" in _refused(
        tenant(client={"reverse_charge": True})
    )
    assert "tax_exempt needs tax_exemption_note" in _refused(tenant(client={"tax_exempt": True}))
    assert "skill 'welding' is not in rate_card.skills" in _refused(tenant(client={"skill_rates": {"welding": "50"}}))
    assert "needs mileage_rate_per_km" in _refused(tenant(rate_card={"travel_billing": "mileage"}))
    assert "travel_billing 'both' needs mileage_rate_per_km" in _refused(tenant(rate_card={"travel_billing": "both"}))
    assert "clients.CLI-1.travel_billing 'mileage' needs rate_card.mileage_rate_per_km" in _refused(
        tenant(client={"travel_billing": "mileage"})
    )
    assert "tenants.acme.rate_card.cost_basis: Input should be 'worked' or 'billed' (got 'paid')" in _refused(
        tenant(rate_card={"cost_basis": "paid"})
    )
    assert "deposit_percent is invoiced at approval" in _refused(
        tenant(quotes={"invoice_at": "completion", "deposit_percent": "30"})
    )
    assert "tenants.acme.tax.rates.labor" in _refused(tenant(tax={"rates": {"labor": "6"}}))
    assert "whole number of minutes" in _refused(
        tenant(client={"contracts": [dict(CONTRACT, covers={"corrective_hours_per_month": "0.001"})]})
    )


def test_example_configs_still_load_and_use_the_new_keys():
    from broker.config import load_config
    from tests.conftest import EXAMPLES

    config = load_config(EXAMPLES / "config.yaml")
    acme = config.tenant("acme-fm")
    assert [b.name for b in acme.rate_card.time_bands] == ["holiday", "weekend", "night", "overtime"]
    assert acme.clients["CLI-CDP"].contracts[0].covers.corrective_minutes == 240
    assert acme.clients["CLI-EBV"].reverse_charge
    # the official calendar of PT / Lisbon district gives exactly the 2026 dates the example used to list
    assert (acme.holidays.country, acme.holidays.subdivision) == ("PT", "11")
    assert acme.holidays.dates().year(2026) == {date.fromisoformat(d) for d in PT_LISBON_2026}
    assert config.tenant("nordic-hvac").holidays.add == [
        date(2026, 1, 1), date(2026, 4, 3), date(2026, 4, 6), date(2026, 5, 4),
        date(2026, 5, 25), date(2026, 8, 31), date(2026, 12, 25), date(2026, 12, 28),
    ]  # fmt: skip


# --------------------------------------------------------------------------- holidays: dates or an official calendar
#: Public holidays of Portugal + Lisbon district (PT-11) in 2026, from the official calendar: New Year, Good Friday,
#: Easter Sunday, Freedom Day, Labour Day, Corpus Christi, Portugal Day, Santo António (Lisbon only), Assumption,
#: Republic Day, All Saints, Restoration of Independence, Immaculate Conception, Christmas.
PT_LISBON_2026 = (
    "2026-01-01", "2026-04-03", "2026-04-05", "2026-04-25", "2026-05-01", "2026-06-04", "2026-06-10",
    "2026-06-13", "2026-08-15", "2026-10-05", "2026-11-01", "2026-12-01", "2026-12-08", "2026-12-25",
)  # fmt: skip


def _holidays(value) -> Tenant:
    return parse_config(_config(tenant(holidays=value))).tenant("acme")


def _days(*texts: str) -> frozenset[date]:
    return frozenset(date.fromisoformat(t) for t in texts)


def test_holidays_as_a_list_of_dates_still_work():
    calendar = _holidays(["2026-04-03", "2026-04-25"]).holidays
    assert calendar.country is None and calendar.add == [date(2026, 4, 3), date(2026, 4, 25)]
    assert date(2026, 4, 3) in calendar and date(2026, 6, 13) not in calendar and "2026-04-03" not in calendar
    assert calendar.dates().year(2026) == _days("2026-04-03", "2026-04-25")
    assert calendar.dates().year(2027) == frozenset()
    assert _holidays([]).holidays.dates().year(2026) == frozenset()
    assert Tenant.model_validate(tenant()).holidays.dates().year(2026) == frozenset()  # not given: none
    assert _holidays(["2026-04-03"]) == _holidays(["2026-04-03"])  # two tenants parsed alike are equal
    assert "tenants.acme.holidays.add.0: Input should be a valid date" in _refused(tenant(holidays=["2026-13-01"]))
    assert "tenants.acme.holidays: Value error, holidays is a list of dates or a mapping" in _refused(
        tenant(holidays="PT")
    )


def test_holidays_from_the_official_calendar_of_a_country_and_region():
    lisbon = _holidays({"country": "PT", "subdivision": "11"}).holidays
    assert lisbon.dates().year(2026) == _days(*PT_LISBON_2026)
    # any year: 2025 (Easter 20 April, Corpus Christi 19 June)
    assert lisbon.dates().year(2025) == _days(
        "2025-01-01", "2025-04-18", "2025-04-20", "2025-04-25", "2025-05-01", "2025-06-10", "2025-06-13",
        "2025-06-19", "2025-08-15", "2025-10-05", "2025-11-01", "2025-12-01", "2025-12-08", "2025-12-25",
    )  # fmt: skip
    assert lisbon.dates().year(2026) is lisbon.dates().year(2026)  # computed once per year
    # the national calendar has no Santo António; Porto district (13) has São João on 24 June instead
    national = _holidays({"country": "PT"}).holidays
    assert national.dates().year(2026) == _days(*PT_LISBON_2026) - {date(2026, 6, 13)}
    porto = _holidays({"country": "PT", "subdivision": "13"}).holidays
    assert porto.dates().year(2026) == _days(*PT_LISBON_2026) - {date(2026, 6, 13)} | {date(2026, 6, 24)}
    # the package's aliases are accepted too
    assert _holidays({"country": "PT", "subdivision": "Lisboa"}).holidays.dates().year(2026) == _days(*PT_LISBON_2026)


def test_holidays_add_and_remove_adjust_the_official_calendar():
    calendar = _holidays(
        {"country": "PT", "subdivision": "11", "add": ["2026-12-24", "2027-02-09"], "remove": ["2026-06-04"]}
    ).holidays
    assert calendar.dates().year(2026) == _days(*PT_LISBON_2026) - {date(2026, 6, 4)} | {date(2026, 12, 24)}
    assert date(2027, 2, 9) in calendar and date(2027, 5, 27) in calendar  # Corpus Christi 2027 is still one
    assert date(2026, 6, 4) not in calendar and date(2026, 12, 24) in calendar
    assert _holidays({"add": ["2026-12-24"]}).holidays.dates().year(2026) == _days("2026-12-24")  # no country


def test_holidays_load_from_yaml(tmp_path):
    from broker.config import load_config
    from tests.conftest import EXAMPLES

    text = (EXAMPLES / "config.yaml").read_text(encoding="utf-8")
    text = text.replace(
        'holidays: {country: PT, subdivision: "11"}',
        'holidays: {country: PT, subdivision: "11", add: [2026-12-24], remove: [2026-06-13]}',
    )
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    calendar = load_config(path).tenant("acme-fm").holidays
    assert calendar.dates().year(2026) == _days(*PT_LISBON_2026) - {date(2026, 6, 13)} | {date(2026, 12, 24)}
    path.write_text(text.replace('subdivision: "11"', "subdivision: 11"), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert (
        'tenants.acme-fm.holidays.subdivision: Value error, subdivision codes are text: quote it (subdivision: "11")'
        in str(exc.value)
    )


@pytest.mark.parametrize(
    ("holidays", "expected"),
    [
        (
            {"country": "XX"},
            (
                "tenants.acme.holidays.country: Value error, unknown country 'XX': not an ISO 3166-1 country code "
                "the holidays package has a calendar for (e.g. 'PT', 'ES', 'GB'); close codes: "
            ),  # then XK, SX, MX: package data
        ),
        ({"country": "XX"}, "(got 'XX')"),
        ({"country": "pt"}, "tenants.acme.holidays.country: Value error, unknown country 'pt'"),
        ({"country": "pt"}, "did you mean 'PT'? (got 'pt')"),
        ({"country": "Portugal"}, "did you mean 'PT'? (got 'Portugal')"),
        (
            {"country": "PT", "subdivision": "99"},
            (
                "tenants.acme.holidays.subdivision: Value error, unknown subdivision '99' of PT; valid: 01 (Aveiro), "
                "02 (Beja), 03 (Braga), 04 (Bragança), 05 (Castelo Branco), 06 (Coimbra), 07 (Évora), 08 (Faro), "
                "09 (Guarda), 10 (Leiria), 11 (Lisboa), 12 (Portalegre), 13 (Porto), 14 (Santarém), 15 (Setúbal), "
                "16 (Viana do Castelo), 17 (Vila Real), 18 (Viseu), 20 (Região Autónoma dos Açores), "
                "30 (Região Autónoma da Madeira) (got '99')"
            ),
        ),
        ({"country": "PT", "subdivision": "lisbon"}, "unknown subdivision 'lisbon' of PT; valid: 01 (Aveiro)"),
        ({"country": "PT", "subdivision": "lisboa"}, "unknown subdivision 'lisboa' of PT (did you mean '11'?); valid:"),
        (
            {"country": "PT", "subdivision": 11},
            'tenants.acme.holidays.subdivision: Value error, subdivision codes are text: quote it (subdivision: "11")',
        ),
        ({"subdivision": "11"}, "tenants.acme.holidays.subdivision: Value error, a subdivision needs a country"),
        ({"country": "NL", "subdivision": "X"}, "unknown subdivision 'X' of NL; valid: Midden, Noord, Zuid (got 'X')"),
        (
            {"country": "PT", "subdivision": "11", "remove": ["2026-06-12"]},
            (
                "tenants.acme.holidays.remove: Value error, 2026-06-12 is not a holiday of PT subdivision 11 "
                "(nothing to remove) (got ['2026-06-12'])"
            ),
        ),
        (
            {"country": "PT", "remove": ["2026-06-13"]},
            "tenants.acme.holidays.remove: Value error, 2026-06-13 is not a holiday of PT (nothing to remove)",
        ),
        (
            {"country": "PT", "add": ["2026-06-04"], "remove": ["2026-06-04"]},
            "tenants.acme.holidays.remove: Value error, 2026-06-04 is both in add and in remove",
        ),
        ({"remove": ["2026-06-04"]}, "tenants.acme.holidays.remove: Value error, remove needs a country"),
        (
            {"country": "PT", "subdivison": "11"},
            "tenants.acme.holidays.subdivison: unknown field; did you mean subdivision?",
        ),
    ],
)
def test_bad_holiday_calendars_are_refused_with_the_field_and_the_value(holidays, expected):
    assert expected in _refused(tenant(holidays=holidays))


def test_holiday_lookups_while_pricing_read_no_file(monkeypatch):
    import builtins

    raw = tenant(rate_card={"time_bands": BANDS}, holidays={"country": "PT", "subdivision": "11"})
    priced_tenant = Tenant.model_validate(raw)  # the calendar is built here (the package reads its names file once)

    def no_open(*args, **kwargs):
        raise AssertionError(f"file opened while pricing: {args[:1]}")

    monkeypatch.setattr(builtins, "open", no_open)
    # Santo António 2031 (a Friday): a year not computed yet, 10:00-11:00 +01:00 at the holiday rate 84.00/h
    event = wo(kind="preventive", entries=[at("TE-1", "T31", "2031-06-13T10:00:00+01:00", "2031-06-13T11:00:00+01:00")])
    result = price_event(parse_event(event), "acme", priced_tenant)
    assert [(ln.net, ln.rule.split(";")[0]) for ln in result.lines] == [
        (Decimal("84.00"), "rate:skill:hvac × band holiday 2")
    ]


# --------------------------------------------------------------------------- state: allowance and quotes tables
def _state_price(event: dict, tenant_raw: dict, tables: dict):
    return price_with_state(
        parse_event(event),
        "acme",
        Tenant.model_validate(tenant_raw),
        allowances=tables[ALLOWANCE_TABLE],
        quotes=tables[QUOTES_TABLE],
    )


def test_quote_table_feeds_the_balance_and_ignores_older_revisions():
    raw = tenant(quotes={"deposit_percent": "30"})
    tables = {ALLOWANCE_TABLE: {}, QUOTES_TABLE: {}}
    first = _state_price(qt(), raw, tables)
    assert [w[:2] for w in first.writes] == [(QUOTES_TABLE, "acme:qt:Q-12")]
    tables[QUOTES_TABLE]["acme:qt:Q-12"] = first.writes[0][2]
    assert _state_price(qt(), raw, tables).writes == []  # the same quote again: nothing to write
    newer = qt(
        lines=[{"id": "QL-9", "description": "Compressor", "quantity": "1", "unit_price": "1000.00"}], revision=2
    )
    second = _state_price(newer, raw, tables)
    tables[QUOTES_TABLE]["acme:qt:Q-12"] = second.writes[0][2]
    assert _state_price(qt(), raw, tables).writes == []  # r1 after r2: kept r2
    balance = _state_price(wo(entries=[dur("TE-1", "T31", 60)], quote_id="Q-12"), raw, tables).priced
    # balance of r2: 1000.00 - 300.00 deposit = 700.00; labour inside the quote is cost only
    assert [(ln.source, ln.net) for ln in balance.lines] == [("quote_line:QL-9", Decimal("700.00"))]


def test_quote_of_another_client_is_an_error():
    raw = tenant(quotes={"invoice_at": "completion"}, clients={"CLI-2": {"name": "Other"}})
    other = qt()
    other["data"]["client_id"] = "CLI-2"
    with pytest.raises(PricingError) as exc:
        price_event(
            parse_event(wo(entries=[dur("TE-1", "T31", 60)], quote_id="Q-12")),
            "acme",
            Tenant.model_validate(raw),
            quote=parse_event(other),
        )
    assert exc.value.field == "data.quote_id" and "CLI-2" in str(exc.value)


def test_apply_allowance_does_not_modify_its_input():
    record = {"ABONO-1": {"acme:wo:1:r1": 60}}
    snapshot = copy.deepcopy(record)
    priced = price_event(
        parse_event(wo(entries=[dur("TE-1", "T31", 60)])),
        "acme",
        Tenant.model_validate(tenant(client={"contracts": [CONTRACT]})),
        allowance_used=record["ABONO-1"],
    )
    new = apply_allowance(record, priced.allowance)
    assert record == snapshot and new == {"ABONO-1": {"acme:wo:1:r1": 60, "acme:wo:1001:r1": 60}}


# --------------------------------------------------------------------------- DST-correct splitting
LISBON = ZoneInfo("Europe/Lisbon")


@settings(max_examples=100, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2026, 3, 27), max_value=datetime(2026, 10, 27)),
    minutes=st.integers(min_value=1, max_value=36 * 60),
    cuts=st.sets(st.integers(min_value=0, max_value=1439), max_size=4),
)
def test_split_keeps_real_elapsed_time(start, minutes, cuts):
    start = start.replace(tzinfo=UTC)
    end = start + timedelta(minutes=minutes)
    pieces = split_interval(start, end, LISBON, tuple(sorted(cuts | {0})))
    assert pieces[0][0] == start and pieces[-1][1] == end
    assert all(a < b for a, b in pieces) and all(p[1] == q[0] for p, q in itertools.pairwise(pieces))
    # no piece crosses a local midnight: its first and last second are on the same local date
    for a, b in pieces:
        assert a.astimezone(LISBON).date() == (b - timedelta(seconds=1)).astimezone(LISBON).date()
    assert sum((b - a for a, b in pieces), timedelta()) == end - start


# --------------------------------------------------------------------------- property tests over the whole engine
CURRENCIES = ["EUR", "JPY", "BHD", "GBP"]
DAYS = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]


def _money(places: int, high: int = 500):
    return st.decimals(
        min_value=Decimal("0"), max_value=Decimal(high), places=places, allow_nan=False, allow_infinity=False
    )


@st.composite
def band(draw, index: int):
    kind = draw(st.sampled_from(["days", "window", "holiday", "overtime", "days+window"]))
    b = {
        "name": f"b{index}",
        "factor": str(draw(st.sampled_from([Decimal("1.25"), Decimal("1.5"), Decimal("2"), Decimal("1.333")]))),
    }
    if "days" in kind:
        b["days"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True))
    if "window" in kind:
        s, e = draw(st.integers(0, 1439)), draw(st.integers(1, 1440))
        assume(s != e % 1440)
        b["start"], b["end"] = f"{s // 60:02d}:{s % 60:02d}", f"{e // 60:02d}:{e % 60:02d}"
    if kind == "holiday":
        b["holiday"] = True
    if kind == "overtime":
        b["overtime_after_hours"] = str(draw(st.sampled_from([Decimal("2"), Decimal("4"), Decimal("8")])))
    if draw(st.booleans()):
        b["call_out_fee"] = "70"
    return b


@st.composite
def scenario(draw):
    currency = draw(st.sampled_from(CURRENCIES))
    places = minor_units(currency)
    client: dict = {}
    if draw(st.booleans()):
        client["discount"] = {
            "labour_percent": str(draw(st.sampled_from([Decimal("0"), Decimal("5"), Decimal("12.5")]))),
            "parts_percent": str(draw(st.sampled_from([Decimal("0"), Decimal("3")]))),
        }
    treatment = draw(st.sampled_from(["normal", "normal", "exempt", "reverse"]))
    if treatment == "exempt":
        client.update(tax_exempt=True, tax_exemption_note="Exempt")
    elif treatment == "reverse":
        client.update(reverse_charge=True, tax_number="ES123")
    if draw(st.booleans()):
        client["contracts"] = [
            dict(
                CONTRACT,
                covers={
                    "preventive_labour": draw(st.booleans()),
                    "preventive_parts": draw(st.booleans()),
                    "corrective_hours_per_month": str(draw(st.sampled_from([0, 1, 4]))),
                    "call_out_fee": draw(st.booleans()),
                },
            )
        ]
    if draw(st.booleans()):
        client["skill_rates"] = {"hvac": str(draw(_money(places)))}
    raw = tenant(
        currency=currency,
        vat_percent=str(draw(st.sampled_from([Decimal("0"), Decimal("5.5"), Decimal("10"), Decimal("23")]))),
        holidays=["2026-03-03", "2026-10-25"],
        client=client,
        tax={
            "prices_include_tax": draw(st.booleans()),
            "rates": draw(st.sampled_from([{}, {"labour": "6"}, {"part": "13", "expense": "0"}])),
        },
        rate_card={
            "billing_increment_minutes": draw(st.sampled_from([1, 5, 10, 15, 30])),
            "minimum_billable_minutes": draw(st.sampled_from([0, 30, 60])),
            "rounding_per": draw(st.sampled_from(["visit", "entry"])),
            "skills": {
                "hvac": {"hourly_rate": str(draw(_money(places))), "cost_rate": str(draw(_money(places)))},
                "general": {"hourly_rate": str(draw(_money(places))), "cost_rate": "10"},
            },
            "technicians": {"T1": {"skill": "hvac", "hourly_rate": str(draw(_money(places)))}},
            "time_bands": [draw(band(i)) for i in range(draw(st.integers(0, 3)))],
            "travel_hourly_rate": draw(st.one_of(st.none(), _money(places).map(str))),
            "call_out_fee": draw(st.one_of(st.none(), _money(places).map(str))),
            "parts_markup_percent": str(draw(st.decimals(min_value=0, max_value=100, places=2))),
            "parts_markup_by_category": {"gas": "35"},
            "expenses_handling_percent": str(draw(st.decimals(min_value=0, max_value=25, places=2))),
        },
    )
    base = datetime(2026, 3, 27, tzinfo=UTC) + timedelta(minutes=draw(st.sampled_from([0, 2 * 1440 + 1, 211 * 1440])))
    entries = []
    busy_until: dict[tuple, datetime] = {}  # clocked entries of one technician in one visit must not overlap
    for i in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["work", "work", "travel"]))
        entry = {
            "id": f"TE-{i}",
            "technician_id": draw(st.sampled_from(["T1", "T2", "T3"])),
            "kind": kind,
            "visit_id": draw(st.sampled_from([None, "V2"])),
        }
        if kind == "work" and draw(st.booleans()):
            start = base + timedelta(minutes=draw(st.integers(0, 3 * 1440)))
            slot = (entry["technician_id"], entry["visit_id"])
            start = max(start, busy_until.get(slot, start))
            end = start + timedelta(minutes=draw(st.integers(1, 14 * 60)))
            busy_until[slot] = end
            entry.update(start=start.isoformat(), end=end.isoformat(), break_minutes=draw(st.sampled_from([0, 0, 30])))
        else:
            entry["duration_seconds"] = draw(st.integers(1, 10 * 3600))
        entries.append({k: v for k, v in entry.items() if v is not None})
    parts = []
    for i in range(draw(st.integers(0, 3))):
        p = {
            "id": f"P-{i}",
            "sku": f"S{i}",
            "description": "x",
            "quantity": str(draw(st.decimals(min_value=Decimal("0.001"), max_value=50, places=3))),
            "unit_cost": str(draw(st.decimals(min_value=0, max_value=999, places=2))),
            "client_supplied": draw(st.booleans()),
            "category": draw(st.sampled_from([None, "gas"])),
        }
        if draw(st.booleans()):
            p["unit_price"] = str(draw(st.decimals(min_value=0, max_value=999, places=2)))
        parts.append({k: v for k, v in p.items() if v is not None})
    expenses = [
        {
            "id": f"E-{i}",
            "description": "x",
            "amount": str(draw(st.decimals(min_value=0, max_value=300, places=2))),
            "billable": draw(st.booleans()),
        }
        for i in range(draw(st.integers(0, 2)))
    ]
    event = wo(
        kind=draw(st.sampled_from(["corrective", "preventive"])),
        entries=entries,
        parts=parts,
        expenses=expenses,
        time=(base + timedelta(days=3)).isoformat(),
    )
    if draw(st.integers(0, 5)) == 0:
        event = qt(lines=[{"id": "QL-1", "description": "x", "quantity": "2", "unit_price": str(draw(_money(places)))}])
    used = {"acme:wo:0001:r1": draw(st.integers(0, 300))} if draw(st.booleans()) else None
    return Tenant.model_validate(raw), parse_event(event), used


def _q(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(scenario())
def test_property_invoices_add_up_exactly(case):
    tenant_model, event, used = case
    result = price_event(event, "acme", tenant_model, allowance_used=used)
    places = minor_units(tenant_model.currency)
    lines = result.lines
    for line in lines:
        # net + tax = total per line; no amount has more decimals than the currency allows
        assert line.net + line.tax == line.total
        for amount in (line.net, line.tax, line.total, line.cost):
            assert amount.as_tuple().exponent >= -places, (line, amount)
        assert line.net >= 0 and line.tax >= 0
        # the line amount is exactly quantity × unit price less the discount, as a billing system recomputes it
        amount = _q(line.quantity * line.unit_price * (100 - line.discount_percent) / 100, places)
        assert amount == (line.total if isinstance(result, Invoice) and result.tax_inclusive else line.net), line
        if line.covered_by:
            assert line.total == 0
    # what billing.invoices carries validates back to the same document (lines are built from trusted values)
    assert type(result).model_validate_json(result.model_dump_json()) == result
    assert set(vars(result)) == set(type(result).model_fields)
    for line in lines:
        assert InvoiceLine.model_validate(line.model_dump()) == line
        assert set(vars(line)) == set(InvoiceLine.model_fields)
    if isinstance(result, NotBillable):
        assert all(line.total == 0 for line in lines)
        assert result.reason_code in ("zero_total", "covered_by_contract", "billed_on_completion")
        return
    # totals always equal the sum of the lines
    assert result.net_total == sum((line.net for line in lines), Decimal(0))
    assert result.tax_total == sum((line.tax for line in lines), Decimal(0))
    assert result.total == sum((line.total for line in lines), Decimal(0)) == result.net_total + result.tax_total
    assert result.total != 0
    assert result.margin == result.net_total - result.cost_total
    for amount in (result.net_total, result.tax_total, result.total, result.cost_total, result.margin):
        assert amount.as_tuple().exponent >= -places
    if tenant_model.clients["CLI-1"].reverse_charge or tenant_model.clients["CLI-1"].tax_exempt:
        assert result.tax_total == 0 and result.legal_notes
    if result.allowance is not None:
        a = result.allowance
        assert 0 <= a.consumed_minutes <= a.needed_minutes
        assert a.used_before_minutes + a.consumed_minutes <= max(
            a.allowance_minutes, a.used_before_minutes
        ) or a.invoice_key in (used or {})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(scenario())
def test_property_labour_never_bills_less_than_worked(case):
    tenant_model, event, _used = case
    assume(event.type == "maintenance.work_order.completed")
    result = price_event(event, "acme", tenant_model)
    assume(isinstance(result, Invoice))
    worked = sum(e.seconds for e in event.data.time_entries if e.kind == "work")
    labour = [ln for ln in result.lines if ln.kind == "labour"]  # billed and covered lines
    # rounding only ever adds time; 4-dp hour quantities may each lose at most 0.00005 h
    assert sum((ln.quantity for ln in labour), Decimal(0)) * 3600 >= Decimal(worked) - Decimal("0.18") * len(labour)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(scenario())
def test_property_redelivery_is_idempotent(case):
    tenant_model, event, _used = case
    tables = {ALLOWANCE_TABLE: {}, QUOTES_TABLE: {}}
    first = price_with_state(
        event, "acme", tenant_model, allowances=tables[ALLOWANCE_TABLE], quotes=tables[QUOTES_TABLE]
    )
    for table, key, value in first.writes:
        tables[table][key] = value
    snapshot = copy.deepcopy(tables)
    second = price_with_state(
        event, "acme", tenant_model, allowances=tables[ALLOWANCE_TABLE], quotes=tables[QUOTES_TABLE]
    )
    assert second.writes == [] and tables == snapshot
    assert second.priced == first.priced

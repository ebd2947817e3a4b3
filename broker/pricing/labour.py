"""Labour, travel and call-out: from time entries to billable minutes per technician, visit, rate and band.

Units: entries give seconds; lines carry whole **minutes** (multiples of the billing increment,
except when the minimum tops a visit up); quantities are hours (``Decimal``, ≤ 4 dp).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from broker.config import Client, RateCard, Tenant, TimeBand
from broker.events import ScheduledJobClosed, TimeEntry, WorkOrderCompleted
from broker.pricing.bands import CompiledBands, factor_text, split_local, split_overtime
from broker.pricing.core import PricingError, fmt_percent, hours_quantity, money_rounder, zone_of
from broker.texts import InvoiceTexts

WorkEvent = WorkOrderCompleted | ScheduledJobClosed


@dataclass(slots=True)
class Rate:
    """The hourly rate that applies to one entry, and where it came from.

    ``rule``: ``rate:client_skill:<client>:<skill>``, ``rate:client:<client>``,
    ``rate:technician:<id>`` or ``rate:skill:<skill>`` (most specific first).
    """

    rule: str
    skill: str
    hourly: Decimal
    cost: Decimal
    who: str


def labour_rate(
    card: RateCard, client_id: str, client: Client, technician_id: str, entry_skill: str | None, *, field_path: str
) -> Rate:
    """Rate for ``technician_id`` working as ``entry_skill`` (or their skill, or the default skill) for ``client``.

    Precedence (most specific wins): client+skill (``client.skill_rates``), client
    (``client.hourly_rate``), technician (``technicians.<id>.hourly_rate``), skill. The cost rate
    is the technician's ``cost_rate``, else the skill's. Raises :class:`PricingError` at
    ``field_path`` when the skill is not in the rate card.
    """
    tech = card.technicians.get(technician_id)
    skill = entry_skill or (tech.skill if tech else None) or card.default_skill
    if skill not in card.skills:
        raise PricingError(field_path, skill, f"skill is not in the rate card ({', '.join(card.skills)})")
    skill_rate = card.skills[skill]
    who = (tech.name if tech and tech.name else None) or technician_id
    cost = tech.cost_rate if tech and tech.cost_rate is not None else skill_rate.cost_rate
    if skill in client.skill_rates:
        return Rate(f"rate:client_skill:{client_id}:{skill}", skill, client.skill_rates[skill], cost, who)
    if client.hourly_rate is not None:
        return Rate(f"rate:client:{client_id}", skill, client.hourly_rate, cost, who)
    if tech is not None and tech.hourly_rate is not None:
        return Rate(f"rate:technician:{technician_id}", skill, tech.hourly_rate, cost, who)
    return Rate(f"rate:skill:{skill}", skill, skill_rate.hourly_rate, cost, who)


@dataclass(slots=True)
class LabourLine:
    """Billable labour of one technician in one visit at one rate and band (before contracts and tax).

    ``order`` is the chronological position of the line's first piece ``(instant, entry index)``
    (unclocked entries sort at the event time); ``last`` the end of its last piece. ``minutes`` is
    the billed time (increments, minimum); ``worked_seconds`` the time worked (after breaks, before
    rounding), including that of pieces too short to earn an increment of their own, billed here.
    """

    technician_id: str
    visit: str
    rate: Rate
    band: TimeBand | None
    minutes: int
    entry_ids: list[str]
    order: tuple[datetime, int]
    last: tuple[datetime, int]
    minimum_applied: bool = False
    worked_seconds: int = 0


@dataclass(slots=True)
class _Acc:
    """The time of one line (rate + band) of a rounding unit, as it accumulates."""

    seconds: int
    entry_ids: list[str]
    first: tuple[datetime, int]
    last: tuple[datetime, int]
    rate: Rate
    band: TimeBand | None


def _entry_interval(entry: TimeEntry) -> tuple[datetime, datetime] | None:
    """Clocked interval of an entry with breaks taken off its end; ``None`` for an unclocked entry."""
    if entry.start is None:
        return None
    end = entry.end if entry.end is not None else entry.start + timedelta(seconds=int(entry.duration_seconds or 0))
    if entry.break_minutes:
        end = end - timedelta(minutes=entry.break_minutes)
    return entry.start, end


def labour_lines(
    event: WorkEvent,
    tenant: Tenant,
    client: Client,
    bands: CompiledBands,
    *,
    include: Callable[[TimeEntry], bool] = lambda _entry: True,
) -> list[LabourLine]:
    """Billable labour lines from the event's ``work`` entries accepted by ``include``.

    1. Each entry's clocked interval (start..end minus breaks) is split at band boundaries on the
       tenant's wall clock (:mod:`broker.pricing.bands`); overtime counts per technician per
       local day within the event. Unclocked (duration-only) entries are one normal-rate piece.
    2. Pieces are grouped per rounding unit (technician+visit, or time entry with
       ``rounding_per: entry``) and line (rate + band). The unit's total is rounded **up** to the
       increment once; whole increments go to each line (floor of its time) and the increments
       left over go to the lines with the largest remainders (ties: the later line). An exact
       multiple is never rounded up, and crossing a band never adds time.
    3. A technician's visit below ``minimum_billable_minutes`` is topped up on its last line.

    Returns the lines grouped by technician-visit (in order of first appearance), each visit's
    lines in time order. Raises :class:`PricingError` for an unknown skill (``data.time_entries.N.skill``).
    """
    card = tenant.rate_card
    zone = zone_of(tenant)
    data = event.data
    default_visit = event.business_id
    event_time = event.time
    inc_s = card.billing_increment_minutes * 60
    per_entry = card.rounding_per == "entry"
    has_bands = bool(bands.bands)
    thresholds = bands.overtime_thresholds

    # unit key (tech, visit[, entry index]) -> line key (rate rule, band name) -> accumulated time
    units: dict[tuple[str, str] | tuple[str, str, int], dict[tuple[str, str], _Acc]] = {}
    unit_order: dict[tuple[str, str], None] = {}  # (tech, visit) in order of first appearance
    rates: dict[tuple[str, str | None], Rate] = {}

    def add(
        *,
        tech: str,
        visit: str,
        index: int,
        entry_id: str,
        rate: Rate,
        band: TimeBand | None,
        seconds: int,
        first: tuple[datetime, int],
        last: tuple[datetime, int],
    ) -> None:
        unit = units.setdefault((tech, visit, index) if per_entry else (tech, visit), {})
        key = (rate.rule, band.name if band is not None else "")
        acc = unit.get(key)
        if acc is None:
            unit[key] = _Acc(seconds, [entry_id], first, last, rate, band)
            return
        acc.seconds += seconds
        if entry_id not in acc.entry_ids:
            acc.entry_ids.append(entry_id)
        acc.first = min(acc.first, first)
        acc.last = max(acc.last, last)

    overtime_pieces: dict[str, list[tuple[datetime, datetime, datetime, int, TimeEntry, Rate, str]]] = {}
    for index, entry in enumerate(data.time_entries):
        if entry.kind != "work" or not include(entry):
            continue
        tech = entry.technician_id
        rate = rates.get((tech, entry.skill))
        if rate is None:
            rate = rates[(tech, entry.skill)] = labour_rate(
                card, data.client_id, client, tech, entry.skill, field_path=f"data.time_entries.{index}.skill"
            )
        visit = entry.visit_id or default_visit
        unit_order.setdefault((tech, visit), None)
        interval = _entry_interval(entry)
        if interval is None:
            seconds = entry.seconds
            if seconds > 0:
                order = (event_time, index)
                add(
                    tech=tech,
                    visit=visit,
                    index=index,
                    entry_id=entry.id,
                    rate=rate,
                    band=None,
                    seconds=seconds,
                    first=order,
                    last=order,
                )
            continue
        start, end = interval
        if end <= start:
            continue
        if not has_bands:
            add(
                tech=tech,
                visit=visit,
                index=index,
                entry_id=entry.id,
                rate=rate,
                band=None,
                seconds=int((end - start).total_seconds()),
                first=(start, index),
                last=(end, index),
            )
            continue
        parts = split_local(start, end, zone, bands.cuts)
        if thresholds:
            overtime_pieces.setdefault(tech, []).extend(
                (a, b, local, index, entry, rate, visit) for a, b, local in parts
            )
            continue
        for a, b, local in parts:
            add(
                tech=tech,
                visit=visit,
                index=index,
                entry_id=entry.id,
                rate=rate,
                band=bands.classify(local, 0),
                seconds=int((b - a).total_seconds()),
                first=(a, index),
                last=(b, index),
            )

    for tech, tech_pieces in overtime_pieces.items():
        tech_pieces.sort(key=lambda p: (p[0], p[3]))
        worked: dict[date, int] = {}
        for a, b, local, index, entry, rate, visit in tech_pieces:
            for pa, pb, plocal, before in split_overtime([(a, b, local)], thresholds, worked):
                seconds = int((pb - pa).total_seconds())
                if seconds > 0:
                    add(
                        tech=tech,
                        visit=visit,
                        index=index,
                        entry_id=entry.id,
                        rate=rate,
                        band=bands.classify(plocal, before),
                        seconds=seconds,
                        first=(pa, index),
                        last=(pb, index),
                    )

    # round each unit once and share its increments among its lines
    increment = card.billing_increment_minutes
    lines: dict[tuple[str, str, str, str], LabourLine] = {}
    for unit_key, accs in units.items():
        tech, visit = unit_key[0], unit_key[1]
        if len(accs) == 1:
            ((key, acc),) = accs.items()
            alloc = {key: -(-acc.seconds // inc_s)}
        else:
            total = sum(a.seconds for a in accs.values())
            blocks = -(-total // inc_s)
            alloc = {k: a.seconds // inc_s for k, a in accs.items()}
            left = blocks - sum(alloc.values())
            if left:
                # largest remainder first; ties: the later line
                by_remainder = sorted(accs, key=lambda k: (accs[k].seconds % inc_s, accs[k].last), reverse=True)
                for k in by_remainder[:left]:
                    alloc[k] += 1
            absorbed = [k for k in accs if alloc[k] == 0]
            if absorbed:  # lines that got no increment: their entries (and time) are within the unit's largest line
                biggest = max(accs, key=lambda k: (alloc[k], accs[k].seconds))
                for k in absorbed:
                    accs[biggest].seconds += accs[k].seconds
                    for entry_id in accs[k].entry_ids:
                        if entry_id not in accs[biggest].entry_ids:
                            accs[biggest].entry_ids.append(entry_id)
        for key, acc in accs.items():
            minutes = alloc[key] * increment
            if minutes == 0:
                continue
            line_key = (tech, visit, key[0], key[1])
            line = lines.get(line_key)
            if line is None:
                lines[line_key] = LabourLine(
                    tech,
                    visit,
                    acc.rate,
                    acc.band,
                    minutes,
                    list(acc.entry_ids),
                    acc.first,
                    acc.last,
                    worked_seconds=acc.seconds,
                )
            else:
                line.minutes += minutes
                line.worked_seconds += acc.seconds
                line.entry_ids.extend(i for i in acc.entry_ids if i not in line.entry_ids)
                line.order = min(line.order, acc.first)
                line.last = max(line.last, acc.last)

    # minimum per technician per visit, topped up on the visit's chronologically last line
    minimum = card.minimum_billable_minutes
    by_visit: dict[tuple[str, str], list[LabourLine]] = {}
    for line in lines.values():
        by_visit.setdefault((line.technician_id, line.visit), []).append(line)
    ordered: list[LabourLine] = []
    for tech_visit in unit_order:
        visit_lines = by_visit.get(tech_visit)
        if not visit_lines:
            continue
        if len(visit_lines) > 1:
            visit_lines.sort(key=lambda ln: ln.order)
        total = sum(ln.minutes for ln in visit_lines)
        if 0 < total < minimum:
            last = max(visit_lines, key=lambda ln: ln.last)
            last.minutes += minimum - total
            last.minimum_applied = True
        ordered.extend(visit_lines)
    return ordered


def labour_unit_price(line: LabourLine, currency: str) -> Decimal:
    """Hourly price of a labour line: the rate, times the band factor (rounded half-up to the currency)."""
    if line.band is None:
        return line.rate.hourly
    return money_rounder(currency)(line.rate.hourly * line.band.factor)


def labour_rule(line: LabourLine, card: RateCard) -> str:
    """Rule text: ``rate:skill:hvac × band night 1.25; increment 15 min; minimum 60 min[ (applied)]``."""
    band = f" × band {line.band.name} {factor_text(line.band.factor)}" if line.band else ""
    applied = " (applied)" if line.minimum_applied else ""
    per = "; per entry" if card.rounding_per == "entry" else ""
    return (
        f"{line.rate.rule}{band}; increment {card.billing_increment_minutes} min{per}; "
        f"minimum {card.minimum_billable_minutes} min{applied}"
    )


def labour_description(line: LabourLine, default_visit: str, minutes: int, texts: InvoiceTexts) -> str:
    """``Labour – Ana Costa (hvac), night, visit V2: 1.5 h`` in the language of ``texts``."""
    band = texts.text("band", band=line.band.name) if line.band else ""
    visit = "" if line.visit == default_visit else texts.text("visit", visit=line.visit)
    return texts.text(
        "labour",
        technician=line.rate.who,
        skill=line.rate.skill,
        band=band,
        visit=visit,
        time=texts.hours(hours_quantity(minutes)),
    )


# --------------------------------------------------------------------------- travel
@dataclass(slots=True)
class TravelGroup:
    """Travel of one technician in one visit (or one entry with ``rounding_per: entry``): ``minutes``
    billed (rounded up to the increment), ``seconds`` travelled, ``km`` driven (``None``: not given)."""

    technician_id: str
    visit: str
    rate: Rate
    minutes: int
    km: Decimal | None
    entry_ids: list[str]
    first_index: int
    seconds: int = 0


def travel_groups(
    event: WorkEvent, tenant: Tenant, client: Client, *, include: Callable[[TimeEntry], bool] = lambda _entry: True
) -> list[TravelGroup]:
    """Travel entries grouped per technician and visit (per entry with ``rounding_per: entry``).

    Minutes are rounded up to the increment (no minimum). When the client's travel is billed by
    mileage (``travel_billing: mileage`` or ``both``, :meth:`Tenant.travel_billing`) every travel
    entry needs ``distance_km``; :class:`PricingError` names ``data.time_entries.N.distance_km``
    otherwise.
    """
    card = tenant.rate_card
    data = event.data
    default_visit = event.business_id
    mileage = tenant.travel_billing(data.client_id) != "time"
    groups: dict[tuple[str, str] | tuple[str, str, int], tuple[Rate, int, Decimal | None, list[str], int]] = {}
    for index, entry in enumerate(data.time_entries):
        if entry.kind != "travel" or not include(entry):
            continue
        if mileage and entry.distance_km is None:
            raise PricingError(
                f"data.time_entries.{index}.distance_km",
                None,
                "travel is billed by mileage but the entry has no distance_km",
            )
        rate = labour_rate(
            card,
            data.client_id,
            client,
            entry.technician_id,
            entry.skill,
            field_path=f"data.time_entries.{index}.skill",
        )
        visit = entry.visit_id or default_visit
        key: tuple[str, str] | tuple[str, str, int] = (
            (entry.technician_id, visit, index) if card.rounding_per == "entry" else (entry.technician_id, visit)
        )
        if key in groups:
            r, seconds, km, ids, first = groups[key]
            km = (km or Decimal(0)) + entry.distance_km if entry.distance_km is not None else km
            groups[key] = (r, seconds + entry.seconds, km, [*ids, entry.id], first)
        else:
            groups[key] = (rate, entry.seconds, entry.distance_km, [entry.id], index)
    out: list[TravelGroup] = []
    inc = card.billing_increment_minutes
    for key, (rate, seconds, km, ids, first) in groups.items():
        minutes = -(-seconds // (inc * 60)) * inc if seconds > 0 else 0
        if minutes == 0 and not km:
            continue
        out.append(TravelGroup(key[0], key[1], rate, minutes, km, ids, first, seconds=max(seconds, 0)))
    return out


def travel_description(group: TravelGroup, default_visit: str, what: str, texts: InvoiceTexts) -> str:
    """``Travel – Ana Costa, visit V2: 0.5 h`` (``what``: the time or the km, already formatted)."""
    visit = "" if group.visit == default_visit else texts.text("visit", visit=group.visit)
    return texts.text("travel", technician=group.rate.who, visit=visit, time=what)


# --------------------------------------------------------------------------- call-out
@dataclass(slots=True)
class CallOut:
    """One call-out: the visit, its fee, and the band that made it out-of-hours (if any)."""

    visit: str
    source: str
    fee: Decimal
    rule: str
    band: TimeBand | None


def call_outs(event: WorkOrderCompleted, tenant: Tenant, bands: CompiledBands) -> list[CallOut]:
    """Call-out fees of a corrective work order: one per visit (``call_out_per: visit``) or one per work order.

    A visit is the set of entries with the same ``visit_id`` (entries without one form the work
    order's own visit; a work order without entries is one visit). The fee is the rate card's
    ``call_out_fee``; when the visit starts (earliest clocked work start) in a time band other
    than an overtime band, it is that band's ``call_out_fee``, else ``call_out_fee_out_of_hours``,
    else ``call_out_fee``. No fee configured -> no line.
    """
    card = tenant.rate_card
    zone = zone_of(tenant)
    default_visit = event.data.work_order_id
    starts: dict[str, datetime | None] = {}
    for entry in event.data.time_entries:
        visit = (entry.visit_id or default_visit) if card.call_out_per == "visit" else default_visit
        starts.setdefault(visit, None)
        if entry.kind == "work" and entry.start is not None:
            current = starts[visit]
            starts[visit] = entry.start if current is None or entry.start < current else current
    if not starts:
        starts[default_visit] = None
    out: list[CallOut] = []
    for visit, start in starts.items():
        band = bands.classify(start.astimezone(zone), 0, ignore_overtime=True) if (start and bands.bands) else None
        fee = card.call_out_fee
        rule = "call_out_fee"
        if band is not None:
            if band.call_out_fee is not None:
                fee, rule = band.call_out_fee, f"call_out_fee:band {band.name}"
            elif card.call_out_fee_out_of_hours is not None:
                fee, rule = card.call_out_fee_out_of_hours, f"call_out_fee_out_of_hours (band {band.name})"
            else:
                band = None  # the band does not change the fee
        if fee is None:
            continue
        source = f"work_order:{default_visit}" if visit == default_visit else f"visit:{visit}"
        out.append(
            CallOut(
                visit,
                source,
                fee,
                f"{rule}; corrective {'visit' if card.call_out_per == 'visit' else 'work order'}",
                band,
            )
        )
    return out


def discount_rule(percent: Decimal) -> str:
    """``; discount:client 10%`` or empty."""
    return f"; discount:client {fmt_percent(percent)}%" if percent else ""


__all__ = [
    "CallOut",
    "LabourLine",
    "Rate",
    "TravelGroup",
    "call_outs",
    "discount_rule",
    "hours_quantity",
    "labour_description",
    "labour_lines",
    "labour_rate",
    "labour_rule",
    "labour_unit_price",
    "travel_description",
    "travel_groups",
]

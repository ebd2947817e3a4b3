"""Time bands on the tenant's local wall clock: split clocked time where a band may start or end.

A moment belongs to a band when the band's conditions hold for the tenant's *local wall clock*
at that moment (weekday, time of day, holiday date) and, for overtime bands, for the time the
technician had already worked that local day. The first band in the rate card's list that
matches wins (bands never stack); no match is the normal rate.

Splitting is DST-correct: pieces are cut at every local midnight and every band start/end on
each local day the interval touches, computed for both folds of an ambiguous wall time, and at
every UTC-offset change inside the interval. Each piece is then classified by the wall clock at
its start. In the spring-forward gap a wall time that does not exist is reached at the
transition instant; in the repeated autumn hour the wall clock shows the hour twice, and so do
the bands. Durations are always real elapsed seconds (UTC), so a night shift across the change
bills the hours actually worked (one less in spring, one more in autumn).
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from broker.config import HolidayCalendar, TimeBand, hhmm_minutes

_WEEKDAY_INDEX = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4, "SAT": 5, "SUN": 6}


class CompiledBands:
    """A rate card's bands prepared for fast classification (weekday sets, windows in seconds).

    ``holidays``: the tenant's :class:`~broker.config.HolidayCalendar` (its dates looked up through
    :meth:`~broker.config.HolidayCalendar.dates`, each year computed once) or plain dates.
    """

    __slots__ = ("_compiled", "bands", "cuts", "holidays", "overtime_thresholds")

    def __init__(self, bands: list[TimeBand], holidays: HolidayCalendar | Iterable[date]):
        self.bands = bands
        # the tenant's calendar (each year's dates computed once) or plain dates
        self.holidays: Container[date] = (
            holidays.dates() if isinstance(holidays, HolidayCalendar) else frozenset(holidays)
        )
        cuts = {0}
        compiled: list[tuple[TimeBand, frozenset[int] | None, tuple[int, int] | None, bool, int | None]] = []
        thresholds: set[int] = set()
        for band in bands:
            days = frozenset(_WEEKDAY_INDEX[d] for d in band.days) if band.days else None
            window: tuple[int, int] | None = None
            if band.start is not None and band.end is not None:
                start_s, end_s = hhmm_minutes(band.start) * 60, hhmm_minutes(band.end) * 60
                window = (start_s, end_s % 86400)
                cuts.add(start_s // 60)
                cuts.add((end_s // 60) % 1440)
            overtime = int(band.overtime_after_hours * 3600) if band.overtime_after_hours is not None else None
            if overtime is not None:
                thresholds.add(overtime)
            compiled.append((band, days, window, band.holiday, overtime))
        self.cuts = tuple(sorted(cuts))
        self.overtime_thresholds = tuple(sorted(thresholds))
        self._compiled = compiled

    def classify(self, local: datetime, worked_before: int, *, ignore_overtime: bool = False) -> TimeBand | None:
        """First band matching wall-clock moment ``local`` after ``worked_before`` seconds worked that day.

        ``ignore_overtime`` skips bands with an overtime condition (used to decide the call-out fee).
        """
        tod = local.hour * 3600 + local.minute * 60 + local.second
        weekday = local.weekday()
        for band, days, window, holiday, overtime in self._compiled:
            if overtime is not None and (ignore_overtime or worked_before < overtime):
                continue
            if days is not None and weekday not in days:
                continue
            if holiday and local.date() not in self.holidays:
                continue
            if window is not None:
                start_s, end_s = window
                inside = (start_s <= tod < end_s) if start_s < end_s else (tod >= start_s or tod < end_s)
                if not inside:
                    continue
            return band
        return None


def _offset(moment: datetime, zone: ZoneInfo) -> timedelta:
    """The zone's UTC offset at ``moment`` (an aware datetime)."""
    offset = moment.astimezone(zone).utcoffset()
    if offset is None:  # pragma: no cover - a ZoneInfo always gives an aware time an offset
        raise ValueError(f"{zone} gives no UTC offset at {moment.isoformat()}")
    return offset


def _transition(lo: datetime, hi: datetime, zone: ZoneInfo) -> datetime:
    """The instant in (lo, hi] where the zone's UTC offset changes (binary search to the second)."""
    before = _offset(lo, zone)
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset(datetime.fromtimestamp(mid, UTC), zone) == before:
            lo_s = mid
        else:
            hi_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def split_interval(
    start: datetime, end: datetime, zone: ZoneInfo, cuts: tuple[int, ...]
) -> list[tuple[datetime, datetime]]:
    """Cut ``[start, end)`` (aware datetimes) at each local wall time in ``cuts`` (minutes after
    midnight) on every local day it touches, and at UTC-offset changes. Returns UTC pieces in order.
    """
    return [(a, b) for a, b, _local in split_local(start, end, zone, cuts)]


def split_local(
    start: datetime, end: datetime, zone: ZoneInfo, cuts: tuple[int, ...]
) -> list[tuple[datetime, datetime, datetime]]:
    """Like :func:`split_interval`, with each piece's local wall-clock start (naive) as a third item."""
    start = start.astimezone(UTC)
    end = end.astimezone(UTC)
    if end <= start:
        return []
    offset = _offset(start, zone)
    if offset == _offset(end, zone) and end - start <= _FAST_SPAN:
        # one UTC offset over the whole interval (transitions are months apart): plain arithmetic
        local_start = start.replace(tzinfo=None) + offset
        local_end = end.replace(tzinfo=None) + offset
        points = [local_start]
        day = local_start.replace(hour=0, minute=0, second=0, microsecond=0)
        steps = _cut_steps(cuts)
        while day < local_end:
            for step in steps:
                wall = day + step
                if local_start < wall < local_end:
                    points.append(wall)
            day += _DAY
        points.append(local_end)
        if len(points) == 2:
            return [(start, end, local_start)]
        points.sort()
        return [
            ((a - offset).replace(tzinfo=UTC), (b - offset).replace(tzinfo=UTC), a)
            for a, b in pairwise(points)
            if b > a
        ]
    return [(a, b, a.astimezone(zone).replace(tzinfo=None)) for a, b in _split_slow(start, end, zone, cuts)]


_FAST_SPAN = timedelta(days=7)
_STEPS: dict[tuple[int, ...], tuple[timedelta, ...]] = {}


def _cut_steps(cuts: tuple[int, ...]) -> tuple[timedelta, ...]:
    steps = _STEPS.get(cuts)
    if steps is None:
        steps = _STEPS[cuts] = tuple(timedelta(minutes=m) for m in cuts)
    return steps


_DAY = timedelta(days=1)


def _split_slow(
    start: datetime, end: datetime, zone: ZoneInfo, cuts: tuple[int, ...]
) -> list[tuple[datetime, datetime]]:
    """General case (the interval spans a UTC-offset change): both folds of every wall time, plus the transitions."""
    first_day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date() + timedelta(days=1)
    points = {start, end}
    day = first_day
    while day <= last_day:
        for minute in cuts:
            wall = datetime.combine(day, time(minute // 60, minute % 60))
            for fold in (0, 1):
                moment = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                if start < moment < end:
                    points.add(moment)
        day += timedelta(days=1)
    ordered = sorted(points)
    # add offset transitions (at most one between two consecutive cut points: cuts include midnight)
    extra: list[datetime] = []
    previous = ordered[0]
    previous_offset = _offset(previous, zone)
    for moment in ordered[1:]:
        offset = _offset(moment, zone)
        if offset != previous_offset:
            extra.append(_transition(previous, moment, zone))
        previous, previous_offset = moment, offset
    if extra:
        ordered = sorted(set(ordered) | set(extra))
    return [(a, b) for a, b in pairwise(ordered) if b > a]


def split_overtime(
    pieces: list[tuple[datetime, datetime, datetime]], thresholds: tuple[int, ...], worked: dict[date, int]
) -> list[tuple[datetime, datetime, datetime, int]]:
    """Cut time-ordered ``pieces`` ``(start, end, local start)`` of one technician where the time
    worked that local day crosses a threshold (seconds).

    ``worked`` maps local date -> seconds already worked (updated in place). Returns
    ``(start, end, local start, worked_before_seconds)``.
    """
    out: list[tuple[datetime, datetime, datetime, int]] = []
    for a, b, local in pieces:
        local_day = local.date()
        before = worked.get(local_day, 0)
        seconds = int((b - a).total_seconds())
        cursor, cursor_local, done = a, local, before
        for threshold in thresholds:
            if done < threshold < before + seconds:
                step = timedelta(seconds=threshold - done)
                out.append((cursor, cursor + step, cursor_local, done))
                cursor, cursor_local, done = cursor + step, cursor_local + step, threshold
        out.append((cursor, b, cursor_local, done))
        worked[local_day] = before + seconds
    return out


@lru_cache(maxsize=256)
def factor_text(factor: Decimal) -> str:
    """``Decimal("1.50")`` -> ``"1.5"``."""
    return format(factor.normalize(), "f")

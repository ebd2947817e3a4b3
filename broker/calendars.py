"""Official public-holiday calendars for the tenant's ``holidays:`` (the "holiday" time band).

The calendars come from the ``holidays`` package (https://holidays.readthedocs.io): its
:func:`holidays.country_holidays` gives the public holidays of a country (ISO 3166-1 code, ``PT``)
and optionally of one of its subdivisions (ISO 3166-2 code or an alias the package knows, ``"11"``
or ``"Lisboa"``), with the package's defaults: category ``public`` only, observed (substitute)
days included where the country has them. The package computes each year in memory; it reads
only its own translation file of holiday names, once, when a calendar is created
(:func:`official_calendar`, called while the configuration is validated), never while pricing.

:class:`HolidayDates` is what the time bands look dates up in: ``day in dates``, with the dates of
each year computed once and kept (the band check runs for every piece of clocked time).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from holidays import HolidayBase

__all__ = ["HolidayDates", "check_country", "check_subdivision", "official_calendar"]


def check_country(country: str) -> str:
    """``country`` when the ``holidays`` package has its calendar (ISO 3166-1 alpha-2 or alpha-3 code).

    Raises ``ValueError`` naming the value, with a suggestion when one is cheap to find: the code
    in capitals (``'pt'`` -> ``'PT'``), the code of a country named in English (``'Portugal'``), or
    close codes.
    """
    import holidays

    supported = holidays.list_supported_countries()
    if country in supported:
        return country
    hint = ""
    named = getattr(holidays, country.replace(" ", ""), None) if country.isascii() and country.strip() else None
    code = getattr(named, "country", None)
    if country.upper() in supported:
        hint = f"; did you mean {country.upper()!r}?"
    elif isinstance(code, str) and code in supported:
        hint = f"; did you mean {code!r}?"
    else:
        close = difflib.get_close_matches(country.upper(), [c for c in supported if len(c) == 2], n=3, cutoff=0.5)
        if close:
            hint = f"; close codes: {', '.join(close)}"
    raise ValueError(
        f"unknown country {country!r}: not an ISO 3166-1 country code the holidays package has a calendar for "
        f"(e.g. 'PT', 'ES', 'GB'){hint}"
    )


def check_subdivision(country: str, subdivision: str) -> str:
    """``subdivision`` when it is a subdivision of ``country`` (a code the ``holidays`` package lists,
    e.g. ``"11"`` for Lisbon district, or one of its aliases, e.g. ``"Lisboa"``).

    Raises ``ValueError`` naming the value and listing the valid codes (with their names when the
    package has them), or saying the country has no subdivisions.
    """
    import holidays

    calendar = holidays.country_holidays(country)
    codes: tuple[str, ...] = tuple(calendar.subdivisions)
    aliases: dict[str, str] = dict(getattr(calendar, "subdivisions_aliases", {}) or {})
    if subdivision in codes or subdivision in aliases:
        return subdivision
    if not codes:
        raise ValueError(f"country {country!r} has no subdivisions in the holidays package")
    names: dict[str, list[str]] = {}
    for alias, code in aliases.items():
        names.setdefault(code, []).append(alias)
    hint = ""
    by_name = {alias.casefold(): code for alias, code in aliases.items()} | {c.casefold(): c for c in codes}
    if subdivision.casefold() in by_name:
        hint = f" (did you mean {by_name[subdivision.casefold()]!r}?)"
    valid = ", ".join(f"{code} ({' / '.join(names[code])})" if code in names else code for code in codes)
    raise ValueError(f"unknown subdivision {subdivision!r} of {country}{hint}; valid: {valid}")


def official_calendar(country: str, subdivision: str | None) -> HolidayBase:
    """The ``holidays`` package's calendar of ``country`` / ``subdivision`` (already checked with
    :func:`check_country` and :func:`check_subdivision`), no year computed yet: ``day in calendar``
    computes the year of ``day`` the first time (``expand=True``).

    Raises ``NotImplementedError`` (the package's error) for an unknown country or subdivision.
    """
    import holidays

    return holidays.country_holidays(country, subdiv=subdivision)


class HolidayDates:
    """The holiday dates of a tenant: ``day in dates`` (local dates).

    A day is a holiday when it is in ``add``, or in the official ``calendar`` (a ``holidays``
    package calendar from :func:`official_calendar`, or ``None`` for none) and not in ``remove``.
    The dates of a year are computed on the first lookup in that year and kept, so a lookup is a
    dictionary and a set access. A year the package has no data for (before a country's calendar
    starts, or outside the years of a computed lunar calendar, e.g. India's 2001-2035) has only the
    ``add`` days.
    """

    __slots__ = ("_add", "_calendar", "_key", "_remove", "_years")

    def __init__(self, calendar: HolidayBase | None, add: Iterable[date] = (), remove: Iterable[date] = ()):
        self._calendar = calendar
        self._add = frozenset(add)
        self._remove = frozenset(remove)
        self._years: dict[int, frozenset[date]] = {}
        # what defines the dates (equal keys, equal dates): two tenants parsed alike compare equal
        self._key = (getattr(calendar, "country", None), getattr(calendar, "subdiv", None), self._add, self._remove)

    def year(self, year: int) -> frozenset[date]:
        """The holiday dates of ``year`` (computed once)."""
        dates = self._years.get(year)
        if dates is None:
            official: set[date] = set()
            if self._calendar is not None:
                with warnings.catch_warnings():  # "holidays available only from 2001 to 2035" (India): none then
                    warnings.simplefilter("ignore", UserWarning)
                    date(year, 1, 1) in self._calendar  # noqa: B015 - the lookup computes the year (expand=True)
                official = {day for day in self._calendar if day.year == year}
            dates = frozenset((official - self._remove) | {day for day in self._add if day.year == year})
            self._years[year] = dates
        return dates

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        dates = self._years.get(day.year)
        if dates is None:
            dates = self.year(day.year)
        return day in dates

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HolidayDates) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        country, subdivision, add, remove = self._key
        return f"HolidayDates(country={country!r}, subdivision={subdivision!r}, add={len(add)}, remove={len(remove)})"

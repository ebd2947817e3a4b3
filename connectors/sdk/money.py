"""Money helpers: ISO 4217 minor units, the one rounding rule we use, and JSON with exact decimals.

All amounts are :class:`decimal.Decimal`; floats are never accepted. Rounding is
ROUND_HALF_UP to the currency's minor unit (EUR/GBP/USD 2 decimals, JPY 0, BHD/KWD 3),
per ISO 4217 (https://www.iso.org/iso-4217-currency-codes.html).

Also here, because every mapper needs them the same way: reading an amount out of an answer
(:func:`amount_or_none`), tax-rate keys and lookups (:func:`rate_key`, :func:`lookup_rate`), the
decimals of a value (:func:`decimal_places`) and line layouts (:func:`net_layout`, :func:`quantity_note`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

_V = TypeVar("_V")

#: ISO 4217 minor units for currencies whose exponent is not 2.
_MINOR_UNITS_EXCEPTIONS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}


def minor_units(currency: str) -> int:
    """Number of decimals of ``currency`` (ISO 4217 code, e.g. ``"EUR"`` -> 2, ``"JPY"`` -> 0)."""
    return _MINOR_UNITS_EXCEPTIONS.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    """Smallest amount of ``currency`` as a Decimal (``"EUR"`` -> ``Decimal("0.01")``)."""
    return Decimal(1).scaleb(-minor_units(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` half-up to the minor unit of ``currency``.

    >>> round_money(Decimal("2.675"), "EUR")
    Decimal('2.68')
    >>> round_money(Decimal("1234.5"), "JPY")
    Decimal('1235')
    """
    if not isinstance(amount, Decimal):
        raise TypeError(f"amount must be Decimal, got {type(amount).__name__}: {amount!r}")
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """Amount in minor units as an int (``Decimal("12.34")`` EUR -> ``1234``); rounds half-up first."""
    return int(round_money(amount, currency).scaleb(minor_units(currency)))


# --------------------------------------------------------------------------- what the mappers share
def amount_or_none(value: Any) -> Decimal | None:
    """An amount as a billing system's answer holds it, as :class:`Decimal`; ``None`` when there is none.

    A ``Decimal`` is returned as it is; any other value is read from its text, exactly as written
    (``"136.50"`` -> ``Decimal("136.50")``, ``1200`` -> ``Decimal("1200")``). ``None``, booleans and
    text that is not a number (``"n/a"``) give ``None``: nothing is rounded and nothing raises.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except (ArithmeticError, ValueError):  # decimal.InvalidOperation: not a number
        return None


def rate_key(rate: Decimal) -> str:
    """Shortest plain text of a decimal, never in exponent notation: the key of a tax-rate percentage.

    ``Decimal("23.00")`` -> ``"23"``, ``Decimal("6.50")`` -> ``"6.5"``, ``Decimal("1E+1")`` -> ``"10"``,
    any zero (``0.00``, ``-0``) -> ``"0"``. Mappers key their tax mappings by it (``tax_types["23"]``).
    """
    if rate == 0:
        return "0"
    return format(rate.normalize(), "f")


def lookup_rate(mapping: Mapping[str, _V] | None, rate: Decimal) -> _V | None:
    """The value of the first key of ``mapping`` that names the same percentage as ``rate``; ``None`` when none does.

    Keys are percentage texts, compared by value through :func:`rate_key`: for ``Decimal("23")``
    the keys ``"23"``, ``"23.0"``, ``" 23.00 "`` and ``"23%"`` all match. A key that is not a
    number is skipped; ``mapping`` may be ``None`` (nothing matches).
    """
    wanted = rate_key(rate)
    for key, value in (mapping or {}).items():
        try:
            if rate_key(Decimal(str(key).strip().rstrip("%"))) == wanted:
                return value
        except (ArithmeticError, ValueError):  # decimal.InvalidOperation: not a percentage
            continue
    return None


def decimal_places(value: Decimal) -> int:
    """Decimals ``value`` needs, trailing zeros not counted: ``Decimal("0.8330")`` -> 3, ``42.00`` and ``1E+2`` -> 0."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@dataclass(frozen=True)
class NetLayout:
    """How a line goes out as ``qty × unit_price`` so that the billing system's line amount is our net.

    ``amount`` is our net, which ``qty × unit_price`` rounded half-up to the currency's minor unit
    always equals; ``exact`` is True when ``qty`` and ``unit_price`` are the line's own, unchanged.
    """

    qty: Decimal
    unit_price: Decimal
    amount: Decimal
    exact: bool


def net_layout(
    net: Decimal, quantity: Decimal, unit_price: Decimal, currency: str, *, keep: bool, max_places: int
) -> NetLayout:
    """The :class:`NetLayout` of a line whose amount must come out as ``net`` in ``currency``.

    In this order: the line's own ``quantity × unit_price`` when ``keep`` (the caller's own
    conditions: no discount, not tax-inclusive...) and their product rounds to ``net``; else our
    ``quantity`` with the unit price of fewest decimals, from the currency's minor unit up to
    ``max_places``, that does (``net / quantity`` rounded half-up to that many decimals); else
    ``1 × net``. Rounding is half-up to the minor unit (:func:`round_money`). Example: a net of
    33.75 EUR for 2 × 18.75 less 10 % gives ``2 × 16.875`` with ``max_places=5``, ``1 × 33.75``
    with ``max_places=2``.
    """
    if keep and round_money(quantity * unit_price, currency) == net:
        return NetLayout(quantity, unit_price, net, True)
    if quantity != 0:
        exact = net / quantity
        for places in range(minor_units(currency), max_places + 1):
            price = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
            if round_money(quantity * price, currency) == net:
                return NetLayout(quantity, price, net, False)
    return NetLayout(Decimal(1), net, net, False)


def quantity_note(quantity: Decimal, unit: str, unit_price: Decimal, discount_percent: Decimal = Decimal(0)) -> str:
    """How a line sent as ``1 × amount`` was made up: ``"3.25 h x 42.00"``, ``"2 un x 18.75 less 10%"``.

    An integral quantity is written without decimals (``2.000`` -> ``"2"``), any other one and the
    unit price exactly as they are; a discount is added as a percentage (:func:`rate_key`).
    """
    qty = format(quantity.normalize(), "f") if quantity == quantity.to_integral_value() else format(quantity, "f")
    text = f"{qty} {unit} x {format(unit_price, 'f')}"
    if discount_percent:
        text += f" less {rate_key(discount_percent)}%"
    return text


# --------------------------------------------------------------------------- JSON with exact decimals
def _encode(obj: Any, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(json.dumps(obj, ensure_ascii=False))
    elif isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"cannot serialise non-finite Decimal {obj!r} as JSON")
        out.append(format(obj, "f"))
    elif isinstance(obj, int):
        out.append(str(int(obj)))
    elif isinstance(obj, float):
        raise TypeError(f"float {obj!r} in a money payload; use decimal.Decimal")
    elif isinstance(obj, Mapping):
        out.append("{")
        first = True
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, got {type(key).__name__}: {key!r}")
            if not first:
                out.append(",")
            first = False
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value, out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _encode(value, out)
        out.append("]")
    elif isinstance(obj, (date, datetime)):
        out.append(json.dumps(obj.isoformat()))
    else:
        raise TypeError(f"cannot serialise {type(obj).__name__} as JSON: {obj!r}")


def dumps(obj: Any) -> bytes:
    """Serialise ``obj`` as compact UTF-8 JSON; :class:`Decimal` values become JSON numbers with their exact text.

    ``{"a": Decimal("136.50")}`` -> ``b'{"a":136.50}'``. Accepts dict/list/tuple/str/int/bool/None/Decimal
    and ``date``/``datetime`` (ISO 8601 strings). Raises ``TypeError`` for floats (money is never
    float) and other types, ``ValueError`` for NaN/Infinity.
    """
    out: list[str] = []
    _encode(obj, out)
    return "".join(out).encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Parse JSON with every non-integer number as :class:`Decimal` (``parse_float=Decimal``)."""
    return json.loads(data, parse_float=Decimal)

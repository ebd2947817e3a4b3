"""Money helpers: ISO 4217 minor units, the one rounding rule we use, and JSON with exact decimals.

All amounts are :class:`decimal.Decimal`; floats are never accepted. Rounding is
ROUND_HALF_UP to the currency's minor unit (EUR/GBP/USD 2 decimals, JPY 0, BHD/KWD 3),
per ISO 4217 (https://www.iso.org/iso-4217-currency-codes.html).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

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

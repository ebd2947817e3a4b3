"""Money helpers: ISO 4217 minor units and the one rounding rule we use.

All amounts are :class:`decimal.Decimal`; floats are never accepted. Rounding is
ROUND_HALF_UP to the currency's minor unit (EUR/GBP/USD 2 decimals, JPY 0, BHD/KWD 3),
per ISO 4217 (https://www.iso.org/iso-4217-currency-codes.html).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

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

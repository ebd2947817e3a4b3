"""Request values as the emulated systems read them (lenient parsing, the system's own rules decide)."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

_CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    """``value`` rounded half-up to the hundredth (systems that keep every amount to the cent, whatever the
    currency)."""
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def decimal_or_none(value: Any) -> Decimal | None:
    """A finite number from a request value (a JSON number, or numeric text with blanks around it);
    ``None`` for null, booleans, blank or non-numeric text, NaN and infinities."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        return None
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def json_or_none(data: bytes) -> Any:
    """``data`` parsed as JSON (e.g. an answer the emulator is about to send); ``None`` when it is empty or
    not JSON."""
    try:
        return json.loads(data or b"null")
    except ValueError:
        return None

"""VAT rates a tenant's lines can carry, as connectors check them against their tax-code settings
when the configuration loads (:meth:`connectors.sdk.interface.Connector.required_tax_mapping`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from connectors.sdk.money import lookup_rate, rate_key

__all__ = ["VatRate", "VatTreatment", "unmapped_rates"]


#: What a VAT rate is used for: the tenant's own rates (``standard``, a 0 % rate included), the lines of
#: a ``tax_exempt`` client (``exempt``) or of a ``reverse_charge`` client (``reverse_charge``).
VatTreatment = Literal["standard", "exempt", "reverse_charge"]


@dataclass(frozen=True)
class VatRate:
    """A VAT rate a tenant's invoice lines can carry, known from its configuration (checked when it loads).

    ``rate``: a percentage (``Decimal("23")``; ``0`` for exempt and reverse-charge lines).
    ``treatment``: see :data:`VatTreatment`. ``tax_type``: the billing-system code the tenant maps
    for these lines (``tax.exempt_tax_type`` / ``tax.reverse_charge_tax_type``), which the lines
    carry as :attr:`InvoiceLine.tax_type <connectors.sdk.invoice.InvoiceLine.tax_type>`; ``None`` when
    the connector maps the rate from its settings. ``sources``: the configuration fields that produce
    it (``("vat_percent", "tax.rates.part")``), for messages.

    Rates that only events carry (an approved quote line's own ``tax_rate``) are not known at load:
    the mappers refuse such a line when nothing maps its rate.
    """

    rate: Decimal
    treatment: VatTreatment = "standard"
    tax_type: str | None = None
    sources: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The rate as mappings key it: ``"23"``, ``"6.5"``, ``"0"`` (:func:`~connectors.sdk.money.rate_key`)."""
        return rate_key(self.rate)

    @property
    def code_field(self) -> str | None:
        """The tenant field that can give these lines a code: ``tax.exempt_tax_type`` /
        ``tax.reverse_charge_tax_type``; ``None`` for ``standard`` rates (mapped by the connector's settings)."""
        return None if self.treatment == "standard" else f"tax.{self.treatment}_tax_type"

    @property
    def label(self) -> str:
        """``VAT 6% (tax.rates.part)``, ``VAT 0% of exempt clients (clients.C1.tax_exempt)``: the rate in messages."""
        what = {"standard": "", "exempt": " of exempt clients", "reverse_charge": " of reverse-charge clients"}
        shown = list(self.sources[:3]) + ([f"{len(self.sources) - 3} more"] if len(self.sources) > 3 else [])
        where = f" ({', '.join(shown)})" if shown else ""
        return f"VAT {self.key}%{what[self.treatment]}{where}"


def unmapped_rates(
    rates: Iterable[VatRate], mapping: Mapping[str, object] | None, *, line_codes: bool = True
) -> list[VatRate]:
    """The rates of ``rates`` that ``mapping`` (percentage text -> code, read with
    :func:`~connectors.sdk.money.lookup_rate`) leaves without a code, in order.

    ``line_codes``: a rate whose lines carry the tenant's own code (``rate.tax_type``) counts as
    mapped (the mapper sends that code); ``False`` for a mapper that reads the rate only.
    """
    return [rate for rate in rates if not (line_codes and rate.tax_type) and lookup_rate(mapping, rate.rate) is None]

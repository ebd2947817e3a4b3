"""Settings of the InvoiceXpress connector (``billing.settings`` of a tenant billed in InvoiceXpress).

Kept apart from :mod:`connectors.invoicexpress.connector` so the pure mapper can read them without
importing the connector.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from connectors.sdk.invoice import LineKind
from connectors.sdk.money import lookup_rate
from connectors.sdk.settings import ConnectorSettings

if TYPE_CHECKING:
    from connectors.sdk.tax import VatRate

#: Mainland Portugal VAT names of a default InvoiceXpress account (``settings.tax_names`` overrides them).
DEFAULT_TAX_NAMES: dict[str, str] = {"23": "IVA23", "13": "IVA13", "6": "IVA6", "0": "IVA0"}

#: AT VAT exemption codes ("motivos de isenção", M01–M99) accepted for ``tax_exemption``.
EXEMPTION_CODE_PATTERN = r"^M\d{2}$"


def is_exemption_code(tax_type: str | None) -> bool:
    """Whether ``tax_type`` (a line's tenant code) is an AT exemption code such as ``M40`` (not a tax name)."""
    return bool(tax_type and re.match(EXEMPTION_CODE_PATTERN, tax_type))


class InvoiceXpressSettings(ConnectorSettings):
    """``billing.settings`` of a tenant billed in InvoiceXpress.

    ``account_name`` (the subdomain), ``api_key_env`` (variable holding the API key), ``api_url``
    (a template with ``{account}``), ``sequence_id`` (the AT-registered series; the account default
    when unset), ``tax_names`` (VAT percentage text -> the account's tax name; every rate the tenant
    bills needs one, 0 % included: InvoiceXpress silently applies its default tax to an unknown
    name), ``tax_exemption`` (AT code such as ``M07``/``M40`` for invoices with 0 % lines; a tenant's
    ``tax.exempt_tax_type`` / ``tax.reverse_charge_tax_type`` that is an AT code wins for those
    clients' invoices, any other value is a tax name), ``item_names`` (our line kind
    -> catalogue item name), ``invoice_status`` (``finalized`` = issued, ``draft`` = left for
    review), ``send_email`` (+ ``email_subject``/``email_body``, ``{number}`` and ``{reference}``
    are filled in), ``rounding_method`` (how the account rounds VAT: ``line`` per item, which
    matches our rule, or ``document``; used to refuse before sending an invoice whose total would
    differ — the draft's own total is checked before finalising in any case).

    Clients: InvoiceXpress itself matches the invoice's ``client`` by ``code`` (our ``contact_id``,
    else our client id) and then name, and creates an unknown one. ``create_clients: false`` first
    looks the client up (``clients/find-by-code``, then ``find-by-name``) and refuses the invoice
    naming the client when neither finds it. ``rate_limit_per_minute``: a lower share of the
    account's 100 requests/minute when other integrations use the same account.
    """

    api_url: str = "https://{account}.app.invoicexpress.com"
    account_name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    api_key_env: str = Field(min_length=1)
    sequence_id: str | None = Field(default=None, pattern=r"^\d+$")
    tax_names: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TAX_NAMES))
    tax_exemption: str | None = Field(default=None, pattern=EXEMPTION_CODE_PATTERN)
    item_names: dict[LineKind, str] = Field(default_factory=dict)
    invoice_status: Literal["finalized", "draft"] = "finalized"
    send_email: bool = False
    email_subject: str = "Fatura {number}"
    email_body: str = "Segue em anexo a fatura {number} ({reference})."
    rounding_method: Literal["line", "document"] = "line"
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    create_clients: bool = True
    rate_limit_per_minute: int | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Lower than the account's 100 requests/minute when other integrations share the account.",
    )

    def tax_name_of(self, rate: Decimal, tax_type: str | None = None) -> str | None:
        """The account's tax name for ``rate``: ``tax_type`` (the line's tenant code) unless it is an AT
        exemption code, else ``tax_names[rate]``; ``None`` when neither names one."""
        if tax_type and not is_exemption_code(tax_type):
            return tax_type
        name = lookup_rate(self.tax_names, rate)
        return None if name is None else str(name)

    def tax_exemption_of(self, tax_type: str | None = None) -> str | None:
        """The AT exemption reason of an invoice with 0 % lines: ``tax_type`` when it is an AT code, else
        ``tax_exemption``; ``None`` when neither is set."""
        return tax_type if tax_type and is_exemption_code(tax_type) else self.tax_exemption

    def tax_mapping_problems(self, rates: Sequence[VatRate]) -> list[str]:
        """Rates without a tax name (:meth:`tax_name_of`) and 0 % rates without an AT exemption reason
        (:meth:`tax_exemption_of`): InvoiceXpress would apply its default tax, or refuse the invoice."""
        problems = []
        for rate in rates:
            if self.tax_name_of(rate.rate, rate.tax_type) is None:
                problems.append(f'{rate.label} has no InvoiceXpress tax: add billing.settings.tax_names["{rate.key}"]')
            if rate.rate == 0 and self.tax_exemption_of(rate.tax_type) is None:
                problems.append(
                    f"{rate.label} needs an AT exemption reason (M01-M99, e.g. M07): set "
                    "billing.settings.tax_exemption" + (f" or {rate.code_field}" if rate.code_field else "")
                )
        return problems


__all__ = ["DEFAULT_TAX_NAMES", "EXEMPTION_CODE_PATTERN", "InvoiceXpressSettings", "is_exemption_code"]

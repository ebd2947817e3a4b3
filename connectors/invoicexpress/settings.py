"""Settings of the InvoiceXpress connector (``billing.settings`` of a tenant billed in InvoiceXpress).

Kept apart from :mod:`connectors.invoicexpress.connector` so the pure mapper can read them without
importing the connector.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.sdk.invoice import LineKind
from connectors.sdk.settings import ConnectorSettings

#: Mainland Portugal VAT names of a default InvoiceXpress account (``settings.tax_names`` overrides them).
DEFAULT_TAX_NAMES: dict[str, str] = {"23": "IVA23", "13": "IVA13", "6": "IVA6", "0": "IVA0"}

#: AT VAT exemption codes ("motivos de isenção", M01–M99) accepted for ``tax_exemption``.
EXEMPTION_CODE_PATTERN = r"^M\d{2}$"


class InvoiceXpressSettings(ConnectorSettings):
    """``billing.settings`` of a tenant billed in InvoiceXpress.

    ``account_name`` (the subdomain), ``api_key_env`` (variable holding the API key), ``api_url``
    (a template with ``{account}``), ``sequence_id`` (the AT-registered series; the account default
    when unset), ``tax_names`` (VAT percentage text -> the account's tax name), ``tax_exemption``
    (AT code such as ``M07``/``M40``, required when any line is 0 %), ``item_names`` (our line kind
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


__all__ = ["DEFAULT_TAX_NAMES", "EXEMPTION_CODE_PATTERN", "InvoiceXpressSettings"]

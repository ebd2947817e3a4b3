"""Settings of the QuickBooks Online connector (``billing.settings`` of a tenant billing in ``quickbooks``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from connectors.sdk.invoice import LineKind
from connectors.sdk.settings import OAuthRefreshSettings
from connectors.sdk.tax import unmapped_rates

if TYPE_CHECKING:
    from connectors.sdk.tax import VatRate


class QboTaxCode(BaseModel):
    """One tax rate of the company: ``tax_code_id`` (for ``TaxCodeRef``) and ``tax_rate_id`` (for ``TaxRateRef``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tax_code_id: str = Field(min_length=1)
    tax_rate_id: str = Field(min_length=1)


class QuickBooksSettings(OAuthRefreshSettings):
    """Settings of a tenant whose ``billing.system`` is ``quickbooks``.

    Secrets are environment variable *names*: ``client_secret_env``, ``refresh_token_env`` (the
    first refresh token, from ``broker connectors authorize`` or Intuit's OAuth playground; later
    ones live in the token store). ``realm_id`` is the company id. ``tax_codes`` maps a tax-rate
    percentage (``"23"``, ``"0"``) to the company's tax code and rate ids: every rate the tenant bills
    needs an entry, 0 % included (the mapper reads the rate only, not the tenant's
    ``tax.exempt_tax_type``); ``item_ids`` maps our line kinds
    (``labour``, ``part``, ...) to QBO Item ids (``default_item_id`` otherwise). ``email_invoice``
    sends each new invoice to the customer; ``create_contacts`` lets the connector create a missing
    customer (otherwise a missing ``contact_id`` is a permanent error naming the client).
    """

    api_url: str = "https://quickbooks.api.intuit.com"
    token_url: str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    authorize_url: str = "https://appcenter.intuit.com/connect/oauth2"
    realm_id: str = Field(pattern=r"^\d{1,32}$")
    minor_version: int = Field(default=75, ge=1, le=999)
    default_item_id: str = Field(default="1", min_length=1)
    item_ids: dict[LineKind, str] = Field(default_factory=dict)
    tax_codes: dict[str, QboTaxCode] = Field(default_factory=dict)
    email_invoice: bool = False
    create_contacts: bool = False
    batch_size: int = Field(default=30, ge=1, le=30)

    def tax_mapping_problems(self, rates: Sequence[VatRate]) -> list[str]:
        """Rates without a ``tax_codes`` entry: QuickBooks books each line under a ``TaxCodeRef`` and its tax
        under a ``TaxRateRef`` (:func:`connectors.quickbooks.mapper.tax_lines`), both read by rate."""
        return [
            f'{rate.label} has no QuickBooks tax code: add billing.settings.tax_codes["{rate.key}"] '
            "with the company's tax_code_id (TaxCodeRef) and tax_rate_id (TaxRateRef)"
            for rate in unmapped_rates(rates, self.tax_codes, line_codes=False)
        ]


__all__ = ["QboTaxCode", "QuickBooksSettings"]

"""Settings of the Xero connector (``billing.settings`` of a tenant whose ``billing.system`` is ``xero``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field

from connectors.sdk.settings import OAuthRefreshSettings
from connectors.sdk.tax import unmapped_rates

if TYPE_CHECKING:
    from connectors.sdk.tax import VatRate


class XeroSettings(OAuthRefreshSettings):
    """Connector settings (``billing.settings`` of a tenant whose ``billing.system`` is ``xero``).

    Secrets are not stored here: ``client_secret_env`` and ``refresh_token_env`` name the
    environment variables that hold them. ``tax_types`` maps a tax-rate percentage text
    (``"23"``, ``"13"``, ``"0"``) to the organisation's Xero ``TaxType`` code (``GET /TaxRates``);
    every rate the tenant bills needs one (a 0 % line of an exempt / reverse-charge client may use
    the tenant's ``tax.exempt_tax_type`` / ``tax.reverse_charge_tax_type`` instead): there is no
    default code. ``timeout_seconds`` is the per-request HTTP timeout.
    ``create_contacts``: an invoice whose client has no ``contact_id`` mapping may create the contact
    (Xero matches an existing contact by name, else creates it); ``false``: the contact must exist
    (found by tax number, e-mail or name) or the invoice fails permanently naming the client.
    ``authorize_url``: Xero's authorization endpoint (``broker connectors authorize xero``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str = "https://api.xero.com"
    identity_url: str = "https://identity.xero.com"
    xero_tenant_id: str = Field(min_length=1)
    invoice_status: Literal["DRAFT", "AUTHORISED"] = "AUTHORISED"
    sales_account_code: str = "200"
    tax_types: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10.0, gt=0)
    create_contacts: bool = True
    authorize_url: str = "https://login.xero.com/identity/connect/authorize"
    #: Overrides of Xero's documented per-organisation limits used by the broker's rate limiter
    #: (``None`` = the declared capability: 60 calls / 60 s, 5 concurrent, 5,000 / day). Lower them
    #: when other apps share the organisation's quota; only emulators need a shorter window.
    rate_limit_per_minute: int | None = Field(default=None, gt=0)
    rate_limit_window_seconds: float = Field(default=60.0, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)
    daily_limit: int | None = Field(default=None, gt=0)

    def tax_mapping_problems(self, rates: Sequence[VatRate]) -> list[str]:
        """Rates with neither a tenant code (``rate.tax_type``) nor a ``tax_types`` entry: Xero books every
        line under a ``TaxType`` and the mapper guesses none (:func:`connectors.xero.mapper.tax_type_for`)."""
        return [
            f'{rate.label} has no Xero TaxType: add billing.settings.tax_types["{rate.key}"] '
            "(a TaxType of the organisation, GET /TaxRates)" + (f" or set {rate.code_field}" if rate.code_field else "")
            for rate in unmapped_rates(rates, self.tax_types)
        ]


__all__ = ["XeroSettings"]

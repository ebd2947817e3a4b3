"""Settings of the Moloni connector (``billing.settings`` of a tenant billed in Moloni).

Kept apart from :mod:`connectors.moloni.connector` so the pure mapper can read them without
importing the connector.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.sdk.invoice import LineKind
from connectors.sdk.money import lookup_rate
from connectors.sdk.settings import OAuthClientSettings

if TYPE_CHECKING:
    from connectors.sdk.tax import VatRate

#: Exemption reasons accepted by :class:`MoloniSettings` validation and the emulator
#: (AT "motivos de isenção" M01–M99 pattern; the list of valid codes changes with the law).
EXEMPTION_CODE_PATTERN = r"^M\d{2}$"


def exemption_code(tax_type: str | None) -> str | None:
    """``tax_type`` (a line's tenant code) when it is an AT exemption code such as ``M07``, else ``None``."""
    return tax_type if tax_type and re.match(EXEMPTION_CODE_PATTERN, tax_type) else None


#: The generic Portuguese NIF for an unidentified final consumer ("consumidor final").
FINAL_CONSUMER_VAT = "999999990"


class MoloniCustomerDefaults(BaseModel):
    """Values for the fields ``customers/insert`` requires that the broker does not know
    (https://moloni.pt/dev/entities/customers/insert): ids from ``languages/getAll``,
    ``countries/getAll``, ``maturityDates/getAll``, ``paymentMethods/getAll``; address and city
    (required by Moloni) are the tenant's choice of placeholder until the customer record is completed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language_id: int = Field(default=1, gt=0)
    country_id: int = Field(default=1, gt=0)
    maturity_date_id: int = Field(gt=0)
    payment_method_id: int = Field(gt=0)
    address: str = Field(min_length=1)
    city: str = Field(min_length=1)
    zip_code: str = ""


class MoloniSettings(OAuthClientSettings):
    """``billing.settings`` of a tenant billed in Moloni.

    Auth: ``client_id`` + ``client_secret_env`` (developer credentials) and either
    ``refresh_token_env`` (a refresh token, e.g. from ``broker connectors authorize moloni``) or
    ``username`` + ``password_env`` (the password grant). Secrets are environment-variable names.

    Document: ``company_id``, ``document_set_id`` (the AT-registered series), ``product_ids`` (our
    line kind -> Moloni ``product_id``; ``default_product_id`` for the rest), ``tax_ids`` (VAT
    percentage text ``"23"`` -> ``tax_id``; every non-zero rate the tenant bills needs one),
    ``exemption_reason`` (AT code, e.g. ``M07``, for 0 % lines; a tenant's ``tax.exempt_tax_type`` /
    ``tax.reverse_charge_tax_type`` that is an AT code, e.g. ``M40``, wins for those clients' lines;
    a 0 % rate with neither is refused when the configuration loads), ``invoice_status``
    (``closed`` = issued, ``draft`` = left for review), ``send_email`` (e-mail the customer when
    closing; ``email_message`` is the text),
    ``rounding_method`` — the company's *método de cálculo* in Moloni (Configurações > Empresa >
    Documentos > Método de cálculo): ``line`` (arredondamento à linha, which matches our per-line
    rule) or ``document`` (arredondamento ao documento, Moloni's default for new companies; the
    connector then refuses invoices whose total Moloni would compute differently from ours).

    Customers: an invoice's ``contact_id`` is the Moloni ``customer_id``; without one the customer
    is found by VAT number, e-mail or name, and created when ``create_customers`` (with
    ``customer_defaults`` for the fields Moloni requires; VAT ``999999990`` — consumidor final —
    when the client has no tax number; customer ``number`` = our client id).

    ``rate_limit_per_minute`` / ``max_concurrency``: optional limits the broker applies to this
    tenant (Moloni publishes none; a 429 is honoured either way).
    """

    api_url: str = "https://api.moloni.pt"
    api_version: Literal["v1", "v2"] = "v1"
    authorize_url: str = "https://api.moloni.pt/v1/authorize/"
    refresh_token_env: str | None = Field(default=None, min_length=1)
    username: str | None = Field(default=None, min_length=1)
    password_env: str | None = Field(default=None, min_length=1)
    company_id: int = Field(gt=0)
    document_set_id: int = Field(gt=0)
    product_ids: dict[LineKind, int] = Field(default_factory=dict)
    default_product_id: int | None = Field(default=None, gt=0)
    tax_ids: dict[str, int] = Field(default_factory=dict)
    exemption_reason: str | None = Field(default=None, pattern=EXEMPTION_CODE_PATTERN)
    invoice_status: Literal["closed", "draft"] = "closed"
    send_email: bool = False
    email_message: str = ""
    rounding_method: Literal["line", "document"] = "line"
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    maturity_date_id: int | None = Field(default=None, gt=0)
    eac_id: int | None = Field(default=None, gt=0)
    create_customers: bool = False
    customer_defaults: MoloniCustomerDefaults | None = None
    rate_limit_per_minute: int | None = Field(
        default=None, gt=0, description="Moloni publishes no rate limit; set one to throttle this tenant proactively."
    )
    max_concurrency: int | None = Field(default=None, gt=0, description="Calls in flight at most (none published).")

    def tax_id_of(self, rate: Decimal, tax_type: str | None = None) -> int | None:
        """The Moloni ``tax_id`` of a non-zero ``rate``: ``tax_type`` (the line's tenant code) when it is a
        number, else ``tax_ids[rate]``; ``None`` when neither maps it."""
        if tax_type and tax_type.strip().isdigit():
            return int(tax_type)
        tax_id = lookup_rate(self.tax_ids, rate)
        return None if tax_id is None else int(tax_id)

    def exemption_reason_of(self, tax_type: str | None = None) -> str | None:
        """The AT exemption reason of a 0 % line: ``tax_type`` when it is an AT code (:func:`exemption_code`),
        else ``exemption_reason``; ``None`` when neither is set."""
        return exemption_code(tax_type) or self.exemption_reason

    def tax_mapping_problems(self, rates: Sequence[VatRate]) -> list[str]:
        """Non-zero rates without a Moloni tax (:meth:`tax_id_of`) and 0 % rates without an AT exemption
        reason (:meth:`exemption_reason_of`): Moloni refuses both lines (``invoices/insert``)."""
        problems = []
        for rate in rates:
            if rate.rate != 0 and self.tax_id_of(rate.rate, rate.tax_type) is None:
                problems.append(
                    f'{rate.label} has no Moloni tax: add billing.settings.tax_ids["{rate.key}"] '
                    "(a tax_id of taxes/getAll)"
                )
            elif rate.rate == 0 and self.exemption_reason_of(rate.tax_type) is None:
                problems.append(
                    f"{rate.label} needs an AT exemption reason (M01-M99, e.g. M07): set "
                    "billing.settings.exemption_reason" + (f" or {rate.code_field}" if rate.code_field else "")
                )
        return problems

    @model_validator(mode="after")
    def _one_grant(self) -> MoloniSettings:
        if not self.refresh_token_env and not (self.username and self.password_env):
            raise ValueError("set refresh_token_env, or username and password_env (password grant)")
        if self.password_env and not self.username:
            raise ValueError("password_env needs username")
        if self.create_customers and self.customer_defaults is None:
            raise ValueError(
                "create_customers needs customer_defaults (maturity_date_id, payment_method_id, address, city)"
            )
        return self


__all__ = [
    "EXEMPTION_CODE_PATTERN",
    "FINAL_CONSUMER_VAT",
    "MoloniCustomerDefaults",
    "MoloniSettings",
    "exemption_code",
]

"""Settings of the Stripe connector (``billing.settings`` of a tenant whose ``billing.system`` is ``stripe``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from connectors.sdk.settings import ConnectorSettings

#: Stripe API version the connector is written against (``Stripe-Version`` header; the official
#: spec ``spec3.yaml`` of stripe/openapi at that version).
API_VERSION = "2023-08-16"


class StripeSettings(ConnectorSettings):
    """Connector settings (``billing.settings`` of a tenant whose ``billing.system`` is ``stripe``).

    ``secret_key_env`` names the environment variable holding the secret or restricted API key
    (never the key itself). ``invoice_status``: ``open`` finalises the invoice, ``draft`` leaves it
    for review. ``send_email`` emails it with ``POST /v1/invoices/{id}/send`` (needs ``open`` and
    ``collection_method=send_invoice``, and a customer with an email address in Stripe).
    ``tax_rate_ids`` maps a rate (``"23"``, or ``"23:inclusive"``) to an existing Tax Rate id; other
    rates are looked up among the account's active Tax Rates and created when missing, with
    ``tax_display_name`` (so no rate needs a mapping when the configuration loads).
    ``number_field_name`` is the custom field that shows our invoice number on
    the invoice (``None`` to omit). ``create_customers``: create a Stripe customer for a client with
    no mapped ``contact_id`` that is not found by its ``metadata['broker_client_id']``.
    ``livemode``: when set, :meth:`StripeConnector.check` refuses a key of the other mode.
    ``stripe_account``: a Connect account id (``acct_...``) to act on with the platform's key
    (``Stripe-Account`` header); ``None`` = the key's own account. ``lookup_max_pages`` pages of 100
    are listed when looking for an existing invoice, over invoices created since ``lookup_window_days``
    before the event. ``max_requests_per_second``: the connector paces its own requests (Stripe allows
    100/s live, 25/s in test mode, account-wide).
    """

    api_url: str = "https://api.stripe.com"
    secret_key_env: str = Field(min_length=1)
    api_version: str = API_VERSION
    stripe_account: str | None = Field(default=None, pattern=r"^acct_[A-Za-z0-9]+$")
    invoice_status: Literal["draft", "open"] = "open"
    send_email: bool = False
    collection_method: Literal["send_invoice", "charge_automatically"] = "send_invoice"
    tax_display_name: str = Field(default="VAT", min_length=1, max_length=50)
    tax_rate_ids: dict[str, str] = Field(default_factory=dict)
    number_field_name: str | None = Field(default="Invoice ref", min_length=1, max_length=30)
    create_customers: bool = True
    livemode: bool | None = None
    lookup_max_pages: int = Field(default=10, ge=1, le=100)
    lookup_window_days: int = Field(default=2, ge=0, le=3650)
    max_requests_per_second: float = Field(default=20, gt=0, le=100)
    timeout_seconds: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _email_needs_open_send_invoice(self) -> StripeSettings:
        if self.send_email and self.invoice_status != "open":
            raise ValueError("send_email requires invoice_status 'open' (Stripe only sends finalised invoices)")
        if self.send_email and self.collection_method != "send_invoice":
            raise ValueError("send_email requires collection_method 'send_invoice'")
        return self


__all__ = ["API_VERSION", "StripeSettings"]

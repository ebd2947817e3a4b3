"""Settings of the PayPal Invoicing v2 connector (``billing.settings`` of a tenant on ``paypal``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from connectors.sdk.settings import OAuthClientSettings


class PayPalSettings(OAuthClientSettings):
    """Connector settings (``billing.settings`` of a tenant whose ``billing.system`` is ``paypal``).

    * ``api_url``: ``https://api-m.paypal.com`` (live) or ``https://api-m.sandbox.paypal.com``.
    * ``client_id`` and ``client_secret_env`` (the NAME of the environment variable holding the secret).
    * ``invoice_status``: ``"SENT"`` (default: create the draft, then send it) or ``"DRAFT"`` (leave it
      for a human to review and send).
    * ``email_to_recipient``: send PayPal's invoice e-mail to the customer (``send_to_recipient``);
      false = PayPal only marks the invoice sent and it is shared by link. ``email_copy_to_invoicer``:
      ``send_to_invoicer``. ``email_subject`` / ``email_note``: the notification's subject and note.
    * ``no_email``: what happens to an invoice to send by e-mail whose customer has no e-mail address
      (PayPal refuses ``send_to_recipient: true`` without one, 422): ``mark_sent`` (default: sent with
      ``send_to_recipient: false``, so PayPal marks it ``SENT`` without e-mailing anyone and the customer
      gets the payer-view link, ``details["payer_view_url"]``) or ``leave_unsent`` (left as a ``DRAFT``
      on purpose, ``details["unsent_reason"]`` says why, for a person to add the address and send it).
      Either way ``details["no_email"]`` names the choice applied.
    * ``client_emails``: our client id -> the customer's e-mail (``billing_info.email_address``);
      otherwise the tenant's ``clients.<id>.email``, otherwise a ``contact_id`` that is an e-mail
      address. PayPal has no customer objects, so there is nothing to look up or create. The client's
      ``tax_number`` is printed as ``billing_info.additional_info`` (``"<tax_number_label> <number>"``).
    * ``invoicer_email`` / ``invoicer_business_name``: ``invoicer`` block (the e-mail must be the PayPal
      account's, or PayPal answers 422 ``USER_NOT_FOUND``); omitted when unset.
    * ``tax_name``: tax label, sent as ``"<tax_name> <rate>%"`` (a tax name may carry one rate per
      invoice); ``tax_names`` overrides per rate (``{"23": "IVA 23%"}``). A label with our percentage
      (``tax.percent``), no code: no rate needs a mapping when the configuration loads.
    * ``unit_of_measure``: ``QUANTITY`` | ``HOURS`` | ``AMOUNT`` (PayPal uses the first item's for the
      whole invoice). ``note`` / ``terms_and_conditions``: shown on the invoice.
    * ``long_descriptions``: ``truncate`` (default: a line text over 200 + 1000 characters is cut with
      "…") or ``reject`` (:class:`PermanentError` naming the item).
    * ``rate_limit_per_minute`` / ``rate_limit_window_seconds`` / ``daily_limit`` / ``max_concurrency``:
      PayPal publishes no limits (none are declared in the capabilities); when an account's limits are
      known, set them here and the delivery policy throttles to them.
    * ``timeout_seconds``: per-request HTTP timeout.
    """

    api_url: str = "https://api-m.paypal.com"
    invoice_status: Literal["DRAFT", "SENT"] = "SENT"
    email_to_recipient: bool = True
    email_copy_to_invoicer: bool = False
    no_email: Literal["mark_sent", "leave_unsent"] = "mark_sent"
    email_subject: str | None = Field(default=None, max_length=4000)
    email_note: str | None = Field(default=None, max_length=4000)
    client_emails: dict[str, str] = Field(default_factory=dict)
    invoicer_email: str | None = Field(default=None, min_length=3, max_length=254, pattern=r"^.+@[^\"\-].+$")
    invoicer_business_name: str | None = Field(default=None, min_length=1, max_length=300)
    tax_name: str = Field(default="VAT", min_length=1, max_length=90)
    tax_names: dict[str, str] = Field(default_factory=dict)
    unit_of_measure: Literal["QUANTITY", "HOURS", "AMOUNT"] = "QUANTITY"
    note: str | None = Field(default=None, max_length=4000)
    terms_and_conditions: str | None = Field(default=None, max_length=4000)
    tax_number_label: str = Field(default="VAT", max_length=15)
    long_descriptions: Literal["truncate", "reject"] = "truncate"
    rate_limit_per_minute: int | None = Field(default=None, ge=1)
    rate_limit_window_seconds: float | None = Field(default=None, gt=0)
    daily_limit: int | None = Field(default=None, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1)

    @field_validator("client_emails")
    @classmethod
    def _emails(cls, value: dict[str, str]) -> dict[str, str]:
        for client, email in value.items():
            if not (3 <= len(email) <= 254) or "@" not in email:
                raise ValueError(f"client {client!r}: {email!r} is not an e-mail address")
        return value

    @field_validator("tax_names")
    @classmethod
    def _tax_names(cls, value: dict[str, str]) -> dict[str, str]:
        for rate, name in value.items():
            if not (1 <= len(name) <= 100):
                raise ValueError(f"rate {rate!r}: tax name must be 1–100 characters (got {len(name)})")
        return value


__all__ = ["PayPalSettings"]

"""Settings of the FreshBooks connector (``billing.settings`` of a tenant whose ``billing.system`` is
``freshbooks``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.sdk.invoice import LineKind
from connectors.sdk.settings import OAuthRefreshSettings


class FreshBooksSettings(OAuthRefreshSettings):
    """Settings of a tenant whose ``billing.system`` is ``freshbooks``.

    Secrets are environment variable *names* (``client_secret_env``, ``refresh_token_env``).
    ``account_id`` is the accounting account (``business_memberships[].business.account_id`` of
    ``GET /auth/api/v1/users/me``). ``invoice_status``: ``draft`` leaves invoices as drafts,
    ``sent`` marks them sent; ``email_invoice`` e-mails them to the client (and so marks them sent).
    ``tax_names`` maps a tax-rate percentage (``"23"``) to the FreshBooks tax name (``"IVA"``;
    ``default_tax_name`` otherwise): a label only, FreshBooks taxes the line by the percentage we send
    (``taxAmount1``), so no rate needs a code when the configuration loads. ``line_names`` the line
    ``name`` per line kind.
    ``create_contacts`` lets the connector create a missing client.
    """

    api_url: str = "https://api.freshbooks.com"
    authorize_url: str = "https://auth.freshbooks.com/oauth/authorize"
    account_id: str = Field(pattern=r"^[A-Za-z0-9]{1,32}$")
    redirect_uri: str | None = None
    invoice_status: Literal["draft", "sent"] = "sent"
    email_invoice: bool = False
    tax_names: dict[str, str] = Field(default_factory=dict)
    default_tax_name: str = Field(default="VAT", min_length=1)
    line_names: dict[LineKind, str] = Field(default_factory=dict)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    create_contacts: bool = False

    @property
    def token_url(self) -> str:
        """The OAuth 2.0 token endpoint, ``<api_url>/auth/oauth/token``."""
        return self.api_url.rstrip("/") + "/auth/oauth/token"


__all__ = ["FreshBooksSettings"]

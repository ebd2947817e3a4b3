"""Settings of the Zoho Invoice connector (``billing.settings`` of a tenant whose ``billing.system`` is ``zoho``).

Data centres (``shared/billing-apis.md`` § 4, https://www.zoho.com/invoice/api/v3/): every account
lives in one; API base ``https://www.zohoapis.<dc>``, accounts server ``https://accounts.zoho.<dc>``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from connectors.sdk.settings import OAuthRefreshSettings

#: Zoho data centres: setting value -> domain suffix.
DATA_CENTERS: dict[str, str] = {
    "com": "com",
    "eu": "eu",
    "in": "in",
    "com.au": "com.au",
    "jp": "jp",
    "ca": "ca",
    "com.cn": "com.cn",
    "sa": "sa",
    "uk": "uk",
}
DataCenter = Literal["com", "eu", "in", "com.au", "jp", "ca", "com.cn", "sa", "uk"]


class ZohoSettings(OAuthRefreshSettings):
    """Connector settings (``billing.settings`` of a tenant whose ``billing.system`` is ``zoho``).

    ``data_center`` picks ``https://www.zohoapis.<dc>`` and ``https://accounts.zoho.<dc>`` (``api_url``
    / ``accounts_url`` override them, e.g. for the emulator). ``client_secret_env`` /
    ``refresh_token_env`` name the environment variables holding the secrets. ``tax_ids`` maps a
    rate (``"23"``) to the organisation's Zoho ``tax_id``; unmapped rates are looked up in
    ``GET /settings/taxes`` by percentage when delivering (a rate the organisation lacks is refused
    then, naming it), so no rate needs a mapping when the configuration loads. ``invoice_status``:
    ``sent`` marks the invoice as sent after creation, ``draft`` leaves it a draft; ``send_email``
    emails it (implies sent).
    ``create_contacts``: a client without ``contact_id`` that is not found by e-mail or name is created.
    ``max_requests_per_minute``: the connector paces its own calls (Zoho allows 100 per minute per
    organisation).
    """

    data_center: DataCenter = "com"
    api_url: str | None = None
    accounts_url: str | None = None
    organization_id: str = Field(min_length=1, pattern=r"^[0-9A-Za-z_-]+$")
    invoice_status: Literal["draft", "sent"] = "sent"
    send_email: bool = False
    email_subject: str | None = Field(default=None, max_length=1000)
    tax_ids: dict[str, str] = Field(default_factory=dict)
    create_contacts: bool = True
    max_requests_per_minute: int = Field(default=100, ge=1, le=10000)
    timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _email_needs_sent(self) -> ZohoSettings:
        if self.send_email and self.invoice_status != "sent":
            raise ValueError("send_email requires invoice_status 'sent' (emailing marks the invoice sent)")
        return self

    @property
    def api_base(self) -> str:
        """``https://www.zohoapis.<dc>`` (or ``api_url``), without a trailing slash."""
        return (self.api_url or f"https://www.zohoapis.{DATA_CENTERS[self.data_center]}").rstrip("/")

    @property
    def accounts_base(self) -> str:
        """``https://accounts.zoho.<dc>`` (or ``accounts_url``), without a trailing slash."""
        return (self.accounts_url or f"https://accounts.zoho.{DATA_CENTERS[self.data_center]}").rstrip("/")

    @property
    def token_url(self) -> str:
        """The OAuth 2.0 token endpoint, ``<accounts_base>/oauth/v2/token``."""
        return self.accounts_base + "/oauth/v2/token"


__all__ = ["DATA_CENTERS", "DataCenter", "ZohoSettings"]

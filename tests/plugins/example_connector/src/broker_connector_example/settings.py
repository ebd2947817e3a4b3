"""Settings of the Ledgerly connector (``billing.settings`` of a tenant billed in Ledgerly)."""

from __future__ import annotations

from pydantic import Field

from connectors.sdk import ConnectorSettings


class LedgerlySettings(ConnectorSettings):
    """``billing.settings`` of a tenant billed in Ledgerly."""

    api_url: str = "https://api.ledgerly.example"
    account_id: str = Field(min_length=1, description="Ledgerly account the invoices belong to.")
    api_key_env: str = Field(min_length=1, description="Environment variable holding the API key.")
    create_customers: bool = Field(default=False, description="Create a customer that cannot be found.")

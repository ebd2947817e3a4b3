"""Stripe Invoicing connector and its loopback emulator.

* :class:`StripeConnector` / :class:`StripeSettings` – the connector (``connectors.stripe.connector``).
* :mod:`connectors.stripe.mapper` – Invoice -> Stripe request params (pure), form encoding, idempotency keys.
* :mod:`connectors.stripe.emulator` – ``StripeEmulator``, a local HTTP server behaving like Stripe.
* :mod:`connectors.stripe.spec_check` – request validation against the official OpenAPI spec.
"""

from connectors.stripe.connector import StripeConnector, StripeSettings
from connectors.stripe.mapper import idempotency_key

__all__ = ["StripeConnector", "StripeSettings", "idempotency_key"]

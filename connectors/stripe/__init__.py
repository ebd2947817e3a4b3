"""Stripe Invoicing connector and its loopback emulator.

* :class:`StripeConnector` – the connector (``connectors.stripe.connector``), built on the SDK's ``HttpConnector``.
* :class:`StripeSettings` – its settings model (``connectors.stripe.settings``).
* :mod:`connectors.stripe.mapper` – Invoice -> Stripe request params and Stripe objects -> ours (pure),
  form encoding, idempotency keys.
* :mod:`connectors.stripe.emulator` – ``StripeEmulator``, a local HTTP server behaving like Stripe.
* :mod:`connectors.stripe.spec` – request validation against the official OpenAPI spec.
"""

from connectors.stripe.connector import StripeConnector
from connectors.stripe.mapper import idempotency_key
from connectors.stripe.settings import StripeSettings

__all__ = ["StripeConnector", "StripeSettings", "idempotency_key"]

"""Payments back from the billing systems (issue 12 item 1): ``broker payments``.

* :mod:`connectors.sdk.payments` — :class:`~connectors.sdk.payments.PaymentSource` (per system: webhook
  verification, the invoices a webhook names, the read of an invoice's state, the poll of what changed)
  and :class:`~connectors.sdk.payments.InvoiceState`;
* ``connectors/<system>/payments.py`` — the sources, beside their connectors and found through the
  registry (:func:`connectors.registry.payment_source_class`): Xero, Stripe, QuickBooks, PayPal,
  FreshBooks (webhooks), Moloni, InvoiceXpress, Zoho (polled);
* :mod:`broker.payments.recorder` — one CloudEvent on ``billing.payments`` per change, deduplicated
  against what the topic already holds;
* :mod:`broker.payments.service` — the ASGI service (webhooks, pollers, ``/healthz``, ``/readyz``,
  ``/metrics``); :mod:`broker.payments_cli` — the ``broker payments`` command.

``docs/payments.md`` describes the flow, the settings and each system's scheme.
"""

"""Payments back from the billing systems (issue 12 item 1): ``broker payments``.

* :mod:`broker.payments.source` — :class:`~broker.payments.source.PaymentSource` (per system: webhook
  verification, the invoices a webhook names, the read of an invoice's state, the poll of what changed)
  and :class:`~broker.payments.source.InvoiceState`;
* :mod:`broker.payments.xero`, :mod:`broker.payments.stripe` (webhooks), :mod:`broker.payments.moloni`
  (polled) — the sources, on the tenants' connectors;
* :mod:`broker.payments.recorder` — one CloudEvent on ``billing.payments`` per change, deduplicated
  against what the topic already holds;
* :mod:`broker.payments.service` — the ASGI service (webhooks, pollers, ``/healthz``, ``/readyz``,
  ``/metrics``); :mod:`broker.payments_cli` — the ``broker payments`` command.

``docs/payments.md`` describes the flow, the settings and each system's scheme.
"""

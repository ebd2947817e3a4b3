"""maintenance-billing-broker: maintenance events in, invoices out.

An event's path through the code:

1. ``broker.events``      – the CloudEvents models a platform publishes on ``maintenance.events``.
2. ``broker.app``         – the Faust app: the ``enrich`` agent decodes, prices and emits an invoice
                            on ``billing.invoices``; the ``deliver`` agent hands it to a connector
                            and records the outcome on ``billing.deliveries``.
3. ``broker.pricing``     – the pure pricing function (event + tenant config -> ``connectors.sdk.invoice.Invoice``).
4. ``connectors.<system>`` – the billing-system client that creates the invoice.
"""

__version__ = "0.1.0"

"""``broker payments``: serve the billing systems' payment webhooks and poll the others until stopped.

::

    broker payments [--config PATH] [--host H] [--port P]

Publishes to ``billing.payments`` on the Kafka cluster in ``KAFKA_BOOTSTRAP_SERVERS`` (without it, an
embedded in-memory Tansu broker is started and its address printed). ``--host`` / ``--port`` are also
``BROKER_PAYMENTS_HOST`` / ``BROKER_PAYMENTS_PORT`` (127.0.0.1, 8089). Exit status: 0 stopped by Ctrl-C or
SIGTERM, 2 bad configuration (a tenant's ``billing.payments`` naming a variable that is not set, a system
not read yet). ``docs/payments.md`` has the details.
"""

from __future__ import annotations

import click

from broker.cli_common import config_option
from broker.settings import TOPIC_PAYMENTS


@click.command("payments")
@config_option(
    "Tenant configuration YAML (or $BROKER_CONFIG); tenants' `billing.payments` say how payments are read.", exists=True
)
@click.option("--host", envvar="BROKER_PAYMENTS_HOST", default="127.0.0.1", help="Listen address.")
@click.option("--port", envvar="BROKER_PAYMENTS_PORT", type=int, default=8089, help="Listen port.")
def payments(config_path: str, host: str, port: int) -> None:
    """Run the payments service (POST /webhooks/payments/{system}/{tenant}, pollers) until Ctrl-C.

    Every payment, partial payment or void a billing system reports becomes one CloudEvent on
    billing.payments, keyed by the invoice key. docs/payments.md has the details.
    """
    from broker.cli_common import say, serve_asgi, start_command
    from broker.embedded import kafka_bootstrap
    from broker.intake import KafkaPublisher
    from broker.kafka import ensure_topics
    from broker.logs import configure as configure_logging
    from broker.logs import logging_config
    from broker.payments.recorder import Recorder
    from broker.payments.service import create_payments_app, payment_routes_of

    settings, routes = start_command(config_path, payment_routes_of)
    out = say(settings)
    if not routes:
        out.print("[yellow]no tenant has `billing.payments`: every webhook will be refused, nothing is polled[/]")
    configure_logging(settings.log_level, settings.log_format)
    with kafka_bootstrap(settings.bootstrap_servers, echo=lambda m: out.print(f"[yellow]{m}[/]")) as bootstrap:
        ensure_topics(bootstrap, settings.topic_partitions, [TOPIC_PAYMENTS])
        external = settings.bootstrap_servers is not None  # the embedded Tansu: batches of 1, no idempotence
        publisher = KafkaPublisher(
            bootstrap,
            timeout=settings.intake.publish_timeout,
            max_batch_size=settings.producer_max_batch_size if external else 1,
            idempotent=external and settings.producer_idempotence,
            topic=TOPIC_PAYMENTS,
        )
        app = create_payments_app(routes, Recorder(publisher), max_body_bytes=settings.intake.max_body_bytes)
        base = f"http://{host}:{port}"
        out.print(f"payments: -> {TOPIC_PAYMENTS} on {bootstrap}", highlight=False)
        for (system, tenant), route in sorted(routes.items()):
            how = (
                f"webhooks at {base}/webhooks/payments/{system}/{tenant}"
                if route.source.webhooks
                else f"polled every {route.poll_seconds:g} s"
            )
            out.print(f"  {tenant} ({system}): {how}", highlight=False)
        serve_asgi(
            app,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            log_config=logging_config(settings.log_level, settings.log_format),
            access_log=False,
        )

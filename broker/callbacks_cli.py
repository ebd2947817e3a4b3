"""``broker callbacks``: tell the tenants' maintenance platforms of their payments until stopped.

::

    broker callbacks --config PATH [--bootstrap-servers H:P] [--group G] [--host H] [--port P]

Reads ``billing.payments`` in the consumer group ``--group`` (``broker-callbacks``) and POSTs each record
of a tenant with ``callbacks`` to its platform, signed (:mod:`broker.callbacks_service`). ``/metrics``,
``/healthz`` and ``/readyz`` on ``--host``/``--port`` (``BROKER_CALLBACKS_HOST`` / ``BROKER_CALLBACKS_PORT``,
127.0.0.1:8091; port 0: none). Exit status: 0 stopped by SIGTERM or Ctrl-C, 2 bad configuration (a
``secret_env`` not set or not a Standard Webhooks secret), bad settings or Kafka unreachable.
``docs/payments.md``, "Callbacks to the platform", has the details.
"""

from __future__ import annotations

import click

from broker.cli_common import bootstrap_option, config_option
from broker.kafka import exits_when_kafka_is_unreachable


@click.command("callbacks")
@config_option(
    "Tenant configuration YAML (or $BROKER_CONFIG); tenants' `callbacks` say where payments are sent.", exists=True
)
@bootstrap_option()
@click.option("--group", default="broker-callbacks", show_default=True, help="Kafka consumer group.")
@click.option(
    "--host", envvar="BROKER_CALLBACKS_HOST", default="127.0.0.1", help="/metrics, /healthz, /readyz address."
)
@click.option("--port", envvar="BROKER_CALLBACKS_PORT", type=int, default=8091, help="Their port (0: none).")
@exits_when_kafka_is_unreachable
def callbacks(config_path: str, bootstrap_servers: str, group: str, host: str, port: int) -> None:
    """POST every billing.payments record of a tenant with `callbacks` to its platform until SIGTERM or Ctrl-C.

    Signed the Standard Webhooks way (Webhook-Id = the CloudEvent id, Webhook-Timestamp,
    Webhook-Signature), tried again on network errors, 408, 429 and 5xx; refused (other 4xx) or out of
    attempts: on billing.dlq. Offsets are committed once a record was answered or dead-lettered: at
    least once, idempotent by Webhook-Id. docs/payments.md has the details.
    """
    import signal
    import threading
    from types import FrameType

    from broker.callbacks import callback_targets_of, shown_url
    from broker.callbacks_service import CallbackService
    from broker.cli_common import err_console, say, start_command
    from broker.health import Health, KafkaProbe, PortInUse, serve
    from broker.kafka import ensure_topics
    from broker.logs import configure as configure_logging
    from broker.settings import TOPIC_DLQ, TOPIC_PAYMENTS

    settings, targets = start_command(config_path, callback_targets_of)
    out = say(settings)
    if not targets:
        out.print("[yellow]no tenant has `callbacks`: records are read and nothing is sent[/]")
    configure_logging(settings.log_level, settings.log_format)
    try:
        ensure_topics(bootstrap_servers, settings.topic_partitions, [TOPIC_PAYMENTS, TOPIC_DLQ])
    except RuntimeError as exc:  # no broker reachable
        err_console.print(f"[bold red]Kafka:[/] {exc}", highlight=False)
        raise SystemExit(2) from None
    health = Health(KafkaProbe(bootstrap_servers), tenants=len(targets))
    try:
        serve(host, port, health)
    except PortInUse:
        err_console.print(f"[red]{host}:{port} is in use: choose another --port (or 0 for none)[/]")
        raise SystemExit(2) from None

    def ready(partitions: int) -> None:
        health.observe(assigned=partitions, rebalancing=False, recovering=False)

    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    service = CallbackService(
        bootstrap_servers,
        targets,
        group=group,
        max_batch_size=settings.producer_max_batch_size,
        session_timeout=settings.session_timeout,
        rebalance_timeout=settings.rebalance_timeout,
        on_ready=ready,
    )
    out.print(f"callbacks: {TOPIC_PAYMENTS} on {bootstrap_servers} (group {group})", highlight=False)
    for tenant, target in sorted(targets.items()):
        events = ", ".join(target.settings.events)
        out.print(f"  {tenant}: {events} -> {shown_url(target.settings.url)}", highlight=False)
    if port:
        out.print(f"  health http://{host}:{port}/healthz /readyz /metrics", highlight=False)
    service.run_blocking(stop)
    out.print(f"callbacks stopped: {service.sent} sent, {service.dead_lettered} dead-lettered", highlight=False)

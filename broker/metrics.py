"""Prometheus metrics of the worker, served at ``http://BROKER_METRICS_HOST:BROKER_METRICS_PORT/metrics``.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` units); every label has a
bounded set of values (event types, outcomes, stages, error classes, billing-system names). The
``billing_system`` label is the tenant's configured system (``unknown`` for a tenant not in the
configuration), never a value read from a record.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "broker_events_consumed_total",
    "Records consumed from maintenance.events, by CloudEvent type ('invalid' when undecodable, 'ignored' when "
    "the tenant ignores its type).",
    ["type"],
)
EVENTS_IGNORED = Counter(
    "broker_events_ignored_total",
    "Events acknowledged without billing because their tenant lists the type in ignored_event_types, by type "
    "(only types some tenant lists).",
    ["type"],
)
INVOICES_BUILT = Counter(
    "broker_invoices_built_total",
    "Pricing results published on billing.invoices, by result (invoice, not_billable, change).",
    ["result"],
)
INVOICES_DELIVERED = Counter(
    "broker_invoices_delivered_total",
    "Delivery outcomes recorded on billing.deliveries, by billing system and outcome "
    "(created, already_delivered, not_billable, dead_lettered, superseded, amended, cancelled, held).",
    ["billing_system", "outcome"],
)
DELIVERY_ATTEMPTS = Counter(
    "broker_delivery_attempts_total",
    "Calls to a connector's deliver(), by billing system and result (ok or the error class).",
    ["billing_system", "result"],
)
DELIVERY_LATENCY = Histogram(
    "broker_delivery_latency_seconds",
    "Seconds from the event's CloudEvent time to the confirmed invoice in the billing system.",
    ["billing_system"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, float("inf")),
)
BATCH_SIZE = Histogram(
    "broker_delivery_batch_size",
    "Invoices per batched create call (deliver_many) to a billing system with a batch endpoint.",
    ["billing_system"],
    buckets=(1, 2, 5, 10, 20, 30, 50, 100),
)
RATE_LIMIT_WAIT = Counter(
    "broker_rate_limit_wait_seconds_total",
    "Seconds delivery waited for the per-tenant rate limiter or a server Retry-After.",
    ["billing_system"],
)
DEAD_LETTERS = Counter(
    "broker_dead_letters_total",
    "Records written to billing.dlq, by stage (decode, enrich, deliver) and error class.",
    ["stage", "error_class"],
)

# --------------------------------------------------------------------------- delivery (docs/delivery.md)
DELIVERY_RETRIES = Counter(
    "broker_delivery_retries_total",
    "In-line retries of a billing-system call, by billing system and reason (retryable, rate_limited, uncertain).",
    ["billing_system", "reason"],
)
LOOKUPS = Counter(
    "broker_delivery_lookups_total",
    "Look-ups of an invoice by our number before re-creating it (uncertain outcome or crash), "
    "by result (found, absent).",
    ["billing_system", "result"],
)
PARKED = Counter(
    "broker_invoices_parked_total",
    "Invoices parked on a retry topic (or queued behind a parked revision), by billing system and reason.",
    ["billing_system", "reason"],
)
IN_FLIGHT = Gauge(
    "broker_delivery_in_flight",
    "Invoices this worker holds in memory waiting for their tenant's rate limit, concurrency slot "
    "or an earlier revision.",
    ["billing_system"],
)
LEDGER_TRANSITIONS = Counter(
    "broker_ledger_transitions_total",
    "Delivery-ledger entries written with a new state "
    "(pending, delivered, not_billable, failed, parked, queued, superseded).",
    ["state"],
)
LEDGER_ENTRIES = Gauge(
    "broker_ledger_entries",
    "Delivery-ledger entries held by this worker's partitions, by state (refreshed every few seconds).",
    ["state"],
)
TENANT_AUTH = Gauge(
    "broker_tenants_auth_state",
    "Configured tenants by billing system and authorisation state as this worker last saw it: ok, or "
    "needs_reauth (the billing system refused the OAuth2 refresh token; the tenant's invoices are parked "
    "until `broker connectors authorize` stores new tokens).",
    ["billing_system", "state"],
)
AMENDMENTS = Counter(
    "broker_amendments_total",
    "Invoices replaced by a new revision, by billing system and action (credited, deleted, voided, replaced).",
    ["billing_system", "action"],
)
CANCELLATIONS = Counter(
    "broker_cancellations_total",
    "Billed invoices retired because their work order or quote was cancelled, by billing system and action "
    "(deleted, voided, credited, none: already retired).",
    ["billing_system", "action"],
)

DUPLICATES_SUPPRESSED = Counter(
    "broker_duplicates_suppressed_total",
    "Records not published a second time after a crash, by kind (outcome: a delivery outcome found "
    "already on billing.deliveries).",
    ["kind"],
)
OFFSET_HOLES = Counter(
    "broker_offset_holes_total",
    "Records that reached a delivery agent past the next offset it expected (records it never saw); "
    "the partition is sought back to the first missing offset and nothing after it is acknowledged "
    "until it arrives. Should stay 0; by topic.",
    ["topic"],
)
WEBHOOKS_RECEIVED = Counter(
    "broker_webhooks_received_total",
    "Requests to the HTTP intake by platform (`cloudevents` for POST /events; maintainx, atlas, erpnext, odoo, "
    "limble, infraspeak for their webhooks; `unknown` for another) and result: accepted, duplicate, ignored, "
    "bad_signature, stale, invalid, too_large, unsupported_media_type, forbidden, not_found, unavailable.",
    ["platform", "result"],
)
INTAKE_LATENCY = Histogram(
    "broker_intake_latency_seconds",
    "Time from a request's arrival at the intake to its answer (including Kafka's acknowledgement).",
    ["platform"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INTAKE_DUPLICATES = Counter(
    "broker_intake_duplicates_total",
    "Events the intake did not publish again: the same source and id accepted within the deduplication window.",
    ["platform"],
)
FENCED = Counter(
    "broker_fenced_total",
    "Times the group coordinator answered that this worker is not a current member while it was about "
    "to write a ledger entry or publish a record for its partitions: nothing was written, the records "
    "go to the partitions' next owner. Non-zero after a worker was frozen or cut off longer than the "
    "group's session or rebalance timeout.",
)
AGENT_CRASHES = Counter(
    "broker_agent_crashes_total",
    "Exceptions that escaped an agent's per-record handling (the agent restarts; should stay 0), by agent.",
    ["agent"],
)


async def agent_crashed(agent: object, exc: BaseException) -> None:
    """Faust ``on_error`` hook of every agent: count the crash (the agent restarts after it)."""
    AGENT_CRASHES.labels(str(getattr(agent, "name", "?")).rsplit(".", 1)[-1]).inc()
    logging.getLogger("broker.app").error("agent %s crashed: %s", getattr(agent, "name", "?"), repr(exc)[:300])


CONSUMER_LAG = Gauge(
    "broker_consumer_lag",
    "Messages of the worker group not yet committed (end offset - committed offset), by topic and partition; "
    "sampled every 15 s from Kafka (every worker exports the group's figure: take max by topic, partition).",
    ["topic", "partition"],
)
CONSUMER_LAG_ERRORS = Counter(
    "broker_consumer_lag_errors_total",
    "Consumer lag samples that failed (Kafka unreachable); the last lag values stay.",
)
REBALANCES = Counter(
    "broker_rebalances_total",
    "Consumer group rebalances this worker took part in.",
)
OLDEST_PARKED = Gauge(
    "broker_oldest_parked_seconds",
    "Age of the longest-parked invoice of this worker's partitions (since its first failed attempt), seconds; "
    "0 when none is parked.",
)
TENANTS = Gauge(
    "broker_tenants",
    "Configured tenants of this worker by condition: ok, throttled (circuit open after failures or 429s), parked "
    "(invoices waiting on a retry topic), needs_reauth, unavailable (cannot run: /readyz names it).",
    ["state"],
)
COMMIT_FAILURES = Counter(
    "broker_commit_failures_total",
    "Offset commits of this worker's consumer that did not happen (a rebalance took the partitions, or Kafka "
    "refused); the records are consumed again and the ledger turns them into already_delivered.",
)

# --------------------------------------------------------------------------- payments (docs/payments.md)
PAYMENT_RECORDS = Counter(
    "broker_payment_records_total",
    "Records `broker payments` published on billing.payments, by billing system and CloudEvent type "
    "(billing.invoice.paid, billing.invoice.partially_paid, billing.invoice.voided).",
    ["billing_system", "type"],
)
PAYMENT_WEBHOOKS_REFUSED = Counter(
    "broker_payment_webhooks_refused_total",
    "Billing-system webhooks `broker payments` refused, by billing system (`unknown` for another) and reason: "
    "bad_signature, stale, not_found, too_large, invalid, unavailable.",
    ["billing_system", "reason"],
)
PAYMENT_POLLS = Counter(
    "broker_payment_polls_total",
    "Polls of a billing system without webhooks by `broker payments`, by billing system and result (ok, failed).",
    ["billing_system", "result"],
)

# --------------------------------------------------------------------------- callbacks (docs/payments.md)
CALLBACKS = Counter(
    "broker_callbacks_total",
    "Payment callbacks of `broker callbacks` to the tenants' platforms, by result: sent (answered 2xx), retried "
    "(an attempt failed and is tried again), dead_lettered (refused with a 4xx, or out of attempts: on billing.dlq).",
    ["result"],
)

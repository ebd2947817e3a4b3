"""The :class:`Deliverer`: one invoice through its tenant's connector, following the ledger.

:meth:`Deliverer.process` decides from the ledger (already delivered, superseded, withheld by a
cancellation or a reopening, a correction to amend or reject, amend or create) and runs one attempt
cycle (:class:`AttemptCycle`, a :class:`CallCycle`): in-line retries of look-up / ledger write /
call under the tenant's concurrency slot and rate limiter, until the invoice is delivered, dead or
must be parked (:mod:`broker.delivery.policy`). Cancellations run the same cycle
(:mod:`broker.delivery.changes`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal, TypeVar

from pydantic import ValidationError

from broker import metrics
from broker.config import BrokerConfig
from broker.delivery.batching import BatchWindow, batch_size_of
from broker.delivery.fence import Fence
from broker.delivery.interrupt import Abandoned, Interrupt
from broker.delivery.ledger import (
    Amendment,
    CancelRef,
    DeliveredRef,
    InvoiceLedger,
    LedgerEntry,
    LedgerRecord,
    RecordMeta,
    WorkOrder,
)
from broker.delivery.limits import TenantState, new_tenant_state
from broker.delivery.policy import (
    AlreadyDelivered,
    CannotReconcile,
    Dead,
    Delivered,
    InlineRetry,
    Outcome,
    Park,
    Superseded,
    auth_state_counts,
    clear_needs_reauth,
    mark_needs_reauth,
    open_circuit,
    park_decision,
    reauth_pending,
)
from broker.dlq import ContentConflictError
from broker.settings import DeliverySettings
from connectors import registry
from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    DuplicateError,
    PermanentError,
    RateLimitedError,
    ReauthRequiredError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.sdk.idempotency import generation, idempotency_key
from connectors.sdk.interface import Connector, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import check_ours
from connectors.sdk.settings import format_validation_error

__all__ = [
    "AttemptCycle",
    "CallCycle",
    "Corrected",
    "Decision",
    "Deliverer",
    "Unapproved",
    "Withheld",
    "build_connector",
    "correction_of",
]

log = logging.getLogger("broker.delivery")

_T = TypeVar("_T")


@dataclass
class Corrected:
    """The invoice version arrived again with other content (a correction, tenant policy ``amend``):
    ``invoice`` is the correction delivered in its place (:func:`correction_of`), ``outcome`` what its
    delivery came to (``Delivered`` amends the billed document; it may be parked or dead too, or wait for an
    operator's approval: :class:`Unapproved`)."""

    outcome: Outcome | Unapproved
    invoice: Invoice


@dataclass
class Withheld:
    """Not billed because of a lifecycle change: ``kind`` ``cancelled`` (its revision is at most the
    cancelled one) or ``held`` (at most the reopened one); ``by``: the change key; ``billed``: what the
    billing system still bills for the document (``None``: nothing); ``cancel``: the document's
    cancellation record (``kind="cancelled"``)."""

    kind: Literal["cancelled", "held"]
    by: str
    revision: int
    billed: DeliveredRef | None
    cancel: CancelRef | None = None


@dataclass
class Unapproved:
    """Not sent because of the client's approval ``required`` (``docs/approval.md``): ``kind``
    ``awaiting_approval`` (no operator approved it yet: hold it in the ledger) or ``rejected`` (an operator
    rejected it: never sent); ``entry``: its ledger entry as it was."""

    kind: Literal["awaiting_approval", "rejected"]
    entry: LedgerEntry


#: What :meth:`Deliverer.process` returns.
Decision = Outcome | Corrected | Withheld | Unapproved


def correction_of(invoice: Invoice, billed: DeliveredRef) -> Invoice:
    """The correction that replaces ``billed`` (the document billed for ``invoice``'s key) with ``invoice``'s content.

    Correction ``n`` = ``billed``'s + 1 (the first is 1): key ``<invoice key>:c<n>``, number
    ``<invoice number>-C<n>`` (a new number: billing systems keep retired numbers, and the new
    document must not be taken for the retired one), ``corrects`` = the invoice key. Deterministic:
    the same ledger state gives the same correction, so a repeat after a crash continues it.
    """
    n = int(billed.get("correction") or 0) + 1
    key = invoice.corrects or invoice.invoice_key
    number = invoice.invoice_number.rsplit("-C", 1)[0] if invoice.corrects else invoice.invoice_number
    return invoice.model_copy(
        update={"invoice_key": f"{key}:c{n}", "invoice_number": f"{number}-C{n}", "corrects": key}
    )


def build_connector(config: BrokerConfig, tenant_id: str) -> Connector:
    """Instantiate the tenant's connector with validated settings.

    Raises :class:`broker.config.ConfigError` naming the tenant, the billing system and the
    field path (bad settings), or the environment variable (missing secret); ``KeyError`` for an
    unknown tenant.
    """
    tenant = config.tenant(tenant_id)
    system = tenant.billing.system
    try:
        cls = registry.load(system)
    except LookupError as exc:
        raise ConfigError(f"tenants.{tenant_id}.billing.system: {exc}") from None
    try:
        settings = cls.Settings.model_validate(tenant.billing.settings)
    except ValidationError as exc:
        raise ConfigError(
            "invalid connector settings:\n"
            + format_validation_error(exc, prefix=f"tenants.{tenant_id}.billing.settings")
        ) from None
    connector = cls(settings, tenant=tenant_id)
    clients = getattr(tenant, "clients", None)
    if clients and isinstance(getattr(connector, "clients", None), dict):
        connector.clients = dict(clients)
    return connector


class Deliverer:
    """Delivers invoices of any configured tenant through that tenant's connector (:mod:`broker.delivery`).

    ``policy``: retry and parking settings; ``interrupt``: stops every wait at a safe point
    (rebalance, shutdown); ``fence``: proves group membership after every billing-system call,
    before anything is written about it (:mod:`broker.delivery.fence`; ``None``: no group, as in
    unit tests and tools); ``max_retry_seconds``: older spelling of ``policy.retry_budget``;
    ``unavailable``: tenant id -> why it cannot run (``broker run`` found its connector or secrets
    missing): its invoices are dead-lettered (``config``) without a call, to be replayed once fixed.
    """

    def __init__(
        self,
        config: BrokerConfig,
        policy: DeliverySettings | None = None,
        *,
        interrupt: Interrupt | None = None,
        fence: Fence | None = None,
        max_retry_seconds: float | None = None,
        unavailable: Mapping[str, str] | None = None,
    ):
        self.config = config
        self.unavailable = dict(unavailable or {})
        self.policy = policy or DeliverySettings()
        if max_retry_seconds is not None:  # backwards-compatible keyword
            self.policy = replace(self.policy, retry_budget=max_retry_seconds)
        self.interrupt = interrupt or Interrupt()
        self.fence = fence
        self._tenants: dict[str, TenantState] = {}
        self._batches: dict[str, BatchWindow] = {}
        self._publish_auth_states()

    # -------------------------------------------------------------- tenants
    def state(self, tenant_id: str) -> TenantState:
        """The tenant's cached :class:`TenantState` (connector built on first use; ConfigError if it cannot be)."""
        state = self._tenants.get(tenant_id)
        if state is None:
            state = new_tenant_state(tenant_id, build_connector(self.config, tenant_id))
            self._tenants[tenant_id] = state
        return state

    def connector(self, tenant_id: str) -> Connector:
        """The (cached) connector of ``tenant_id``."""
        return self.state(tenant_id).connector

    def batch_window(self, state: TenantState) -> BatchWindow | None:
        """The tenant's window of batched creates (:mod:`broker.delivery.batching`); ``None`` when its
        connector creates one invoice per call or ``BROKER_BATCH_MAX`` is 1."""
        window = self._batches.get(state.tenant)
        if window is None:
            size = batch_size_of(state, self.policy.batch_max)
            if size < 2:
                return None
            window = BatchWindow(
                state, size=size, linger=self.policy.batch_linger, interrupt=self.interrupt, fence=self.fence
            )
            self._batches[state.tenant] = window
        return window

    def key_for(self, invoice: Invoice, operation: str = "create", replay_count: int = 0) -> str:
        """The idempotency key the tenant's connector uses for ``operation`` (for DLQ headers)."""
        with generation(replay_count):
            return self._key_for(invoice, operation)

    def _key_for(self, invoice: Invoice, operation: str) -> str:
        try:
            connector = self.connector(invoice.tenant)
            own = getattr(connector, "idempotency_key", None)
            if callable(own):
                return str(own(invoice, operation))
        except Exception:  # noqa: BLE001 - informative only
            pass
        return idempotency_key(invoice.tenant, invoice.billing_system, invoice.invoice_key, operation)

    # -------------------------------------------------------------- needs re-authorisation
    def reauth_refused(self, state: TenantState, error: ConnectorError) -> None:
        """The tenant's refresh token was refused: mark it ``needs_reauth`` (:func:`.policy.mark_needs_reauth`)."""
        mark_needs_reauth(state, error)
        self._publish_auth_states()

    def reauth_cleared(self, state: TenantState) -> None:
        """An attempt of the tenant got past the token: clear ``needs_reauth`` if it was set."""
        if clear_needs_reauth(state):
            self._publish_auth_states()

    def _publish_auth_states(self) -> None:
        """Set ``broker_tenants_auth_state`` from the configured tenants (labels: their billing systems)."""
        configured = getattr(self.config, "tenants", None)  # None: a deliverer built without a config (tests)
        if configured is not None:
            systems = {tid: tenant.billing.system for tid, tenant in configured.items()}
        else:
            systems = {tid: state.system for tid, state in self._tenants.items()}
        for (system, auth), count in auth_state_counts(systems, self._tenants).items():
            metrics.TENANT_AUTH.labels(system, auth).set(count)

    def tenant_conditions(self, parked: set[str]) -> dict[str, str]:
        """Each configured tenant's condition for ``broker_tenants{state}``: ``needs_reauth`` (its
        refresh token was refused), ``parked`` (in ``parked``: it has invoices waiting on a retry
        topic), ``throttled`` (its circuit is open after repeated failures or 429s), ``unavailable``
        (it cannot run: :attr:`unavailable`) or ``ok``."""
        out = {}
        for tenant_id in getattr(self.config, "tenants", {}) or {}:
            state = self._tenants.get(tenant_id)
            if tenant_id in self.unavailable:
                out[tenant_id] = "unavailable"
            elif state is not None and state.needs_reauth is not None:
                out[tenant_id] = "needs_reauth"
            elif tenant_id in parked:
                out[tenant_id] = "parked"
            elif state is not None and state.circuit_open():
                out[tenant_id] = "throttled"
            else:
                out[tenant_id] = "ok"
        return out

    def backlog_delay(self, tenant_id: str, queued: int) -> float:
        """Rough seconds until ``queued`` more invoices fit the tenant's rate limit (one call each, or one
        per batch of :func:`~broker.delivery.batching.batch_size_of` for a connector with a batch endpoint)."""
        try:
            state = self.state(tenant_id)
        except Exception:  # noqa: BLE001 - an estimate: a tenant that cannot be built gets the first delay
            return self.policy.park_delays[0]
        limiter = state.limiter
        if limiter is None:
            return self.policy.park_delays[0]
        calls = -(-queued // batch_size_of(state, self.policy.batch_max))
        return limiter.delay() + calls * limiter.backlog_seconds_per_call

    # -------------------------------------------------------------- parking policy
    def park_decision(
        self,
        state: TenantState | None,
        meta: RecordMeta,
        reason: str,
        *,
        retry_after: float | None = None,
        error: BaseException | None = None,
        attempted: bool = True,
        min_wait: float = 0.0,
    ) -> Park | Dead:
        """Where and until when to park (or :class:`Dead` once ``park_max_seconds`` is exceeded);
        :func:`broker.delivery.policy.park_decision` with this deliverer's policy."""
        return park_decision(
            self.policy,
            state,
            meta,
            reason,
            retry_after=retry_after,
            error=error,
            attempted=attempted,
            min_wait=min_wait,
        )

    # -------------------------------------------------------------- one invoice
    def ready(self, tenant_id: str, meta: RecordMeta, *, retry_now: bool = False) -> TenantState | Park | Dead:
        """The tenant's state when a call may be made now; else :class:`Dead` (configuration, a fatal
        error) or :class:`Park` (needs re-authorisation, circuit open), without calling. ``retry_now``: an
        operator asked for this attempt, so an open circuit does not stop it."""
        if tenant_id in self.unavailable:
            why = f"tenant {tenant_id} is not running: {self.unavailable[tenant_id]}"
            return Dead("config", ConfigError(why), meta.attempts, meta)
        try:
            state = self.state(tenant_id)
        except (ConfigError, KeyError) as exc:  # broker.config.ConfigError is the SDK's
            return Dead(
                "config",
                ConfigError(f"tenant {tenant_id}: {exc}") if isinstance(exc, KeyError) else exc,
                meta.attempts,
                meta,
            )
        if state.fatal is not None:
            return Dead(state.fatal.error_class, state.fatal, meta.attempts, meta)
        refused = reauth_pending(state)
        if refused is not None:  # no new tokens since the refusal: park without calling
            return self.park_decision(state, meta, "needs_reauth", error=refused, attempted=False)
        if state.circuit_open() and not retry_now:
            return self.park_decision(state, meta, state.circuit_reason or "retryable", attempted=False)
        return state

    def approval(self, invoice: Invoice) -> str:
        """``none``, ``draft`` or ``required``: the approval of ``invoice``'s client
        (:meth:`broker.config.Tenant.approval_of`; ``none`` for a tenant not configured)."""
        tenant = self.config.tenants.get(invoice.tenant) if self.config is not None else None
        return tenant.approval_of(invoice.client_id) if tenant is not None else "none"

    def unapproved(self, invoice: Invoice, entry: LedgerEntry) -> Unapproved | None:
        """:class:`Unapproved` when ``invoice`` (its ledger ``entry``) may not be sent: rejected by an operator, or
        its client's approval is ``required`` and no operator approved it yet; ``None`` when it may."""
        if entry.get("state") == "rejected":
            return Unapproved("rejected", entry)
        if not entry.get("approval") and self.approval(invoice) == "required":
            return Unapproved("awaiting_approval", entry)
        return None

    def corrections(self, tenant_id: str) -> str:
        """The tenant's ``corrections`` policy (``amend`` or ``reject``; ``amend`` without a configuration)."""
        tenant = self.config.tenants.get(tenant_id) if self.config is not None else None
        return str(getattr(tenant, "corrections", "amend"))

    async def process(
        self, invoice: Invoice, ledger: InvoiceLedger, meta: RecordMeta, *, retry_now: bool = False
    ) -> Decision:
        """Deliver ``invoice`` once, following the ledger (:mod:`broker.delivery`). Never raises a ConnectorError.

        In order: a revision up to the document's cancelled one is :class:`Withheld` (``cancelled``); a
        delivered invoice key is :class:`AlreadyDelivered` unless its content changed (a correction:
        :meth:`_delivered_again`); a newer billed revision supersedes it; a revision up to the
        reopened one is :class:`Withheld` (``held``); one an operator must approve first (or rejected) is
        :class:`Unapproved`; otherwise it is amended over the billed revision or created. Raises
        :class:`~broker.delivery.Abandoned` when interrupted at a safe point. ``retry_now``: an operator asked
        to try this parked invoice now: the tenant's open circuit does not park it, and delivering it closes
        the circuit.
        """
        entry = ledger.entry(invoice.invoice_key)
        order = ledger.order(invoice.order_key)
        cancelled = order.get("cancelled")
        if cancelled is not None and invoice.revision <= cancelled["revision"]:
            billed = None if cancelled["state"] == "done" else cancelled.get("billed")
            return Withheld("cancelled", cancelled["change_key"], cancelled["revision"], billed, cancelled)
        if entry.get("state") == "delivered":
            return await self._delivered_again(invoice, entry, order, ledger, meta, retry_now=retry_now)
        previous = ledger.latest_delivered(invoice)
        if previous is not None and int(previous.get("revision", 0)) > invoice.revision:
            return Superseded(previous)
        held = order.get("held")
        if held is not None and invoice.revision <= held["revision"]:
            return Withheld("held", held["change_key"], held["revision"], order["delivered"])
        return self.unapproved(invoice, entry) or await self._deliver(
            invoice, previous, ledger, meta, retry_now=retry_now
        )

    async def _deliver(
        self,
        invoice: Invoice,
        previous: DeliveredRef | None,
        ledger: InvoiceLedger,
        meta: RecordMeta,
        *,
        retry_now: bool = False,
    ) -> Outcome:
        """Create ``invoice``, or amend ``previous`` (the billed document of its work order) with it."""
        ready = self.ready(invoice.tenant, meta, retry_now=retry_now)
        if not isinstance(ready, TenantState):
            return ready
        state = ready
        amend_from = None
        if previous is not None and previous.get("external_number"):
            if not state.connector.capabilities.amendments:
                # never two invoices for one document: a connector that cannot retire the billed
                # revision must not create the new one alongside it
                what = f"a correction of {invoice.corrects}" if invoice.corrects else f"revision {invoice.revision}"
                return Dead(
                    "permanent",
                    PermanentError(
                        f"{invoice.invoice_number}: {what} of {invoice.order_key} while revision "
                        f"{previous.get('revision')} is billed as {previous.get('external_number')}; "
                        f"the {state.system} connector cannot retire invoices (capabilities.amendments is false), "
                        "so the new revision is not created alongside it: replace it by hand, then drop this record"
                    ),
                    meta.attempts,
                    meta,
                )
            amend_from = previous
        with generation(meta.replay_count):  # a replay must not get the cached answer of the failed try
            outcome = await AttemptCycle(self, state, invoice, ledger=ledger, meta=meta, previous=amend_from).run()
        if retry_now and isinstance(outcome, Delivered):
            state.circuit_until = 0.0  # the operator's try went through: the tenant's other invoices may flow
        return outcome

    async def _delivered_again(
        self,
        invoice: Invoice,
        entry: LedgerEntry,
        order: WorkOrder,
        ledger: InvoiceLedger,
        meta: RecordMeta,
        *,
        retry_now: bool = False,
    ) -> Decision:
        """A record of an invoice key already delivered (``entry``): the same content (or one we cannot
        compare: no fingerprint on either side, or a record older than the billed content's) is
        :class:`AlreadyDelivered` with the entry of the document billed for it; other content is a
        correction, :class:`Superseded` when a newer revision is billed, :class:`Withheld` when the work
        order was reopened at its revision, else per the tenant's ``corrections`` policy: ``reject`` is
        :class:`Dead` (``content_conflict``, naming both totals), ``amend`` delivers :func:`correction_of`."""
        billed = order["delivered"]
        if billed is None or int(billed["revision"]) != invoice.revision:
            changed = invoice.fingerprint is not None and invoice.fingerprint != entry.get("fingerprint")
            if billed is not None and int(billed["revision"]) > invoice.revision and changed:
                return Superseded(billed)
            return AlreadyDelivered(entry)
        current = (
            entry if billed["invoice_key"] == invoice.invoice_key else ledger.entry(billed["invoice_key"]) or entry
        )
        known = billed.get("fingerprint")
        if invoice.fingerprint is None or known is None or invoice.fingerprint == known:
            return AlreadyDelivered(current)
        if meta.is_before(billed.get("source")):
            return AlreadyDelivered(current)  # consumed again after a crash: an older record than the billed content
        held = order.get("held")
        if held is not None and invoice.revision <= held["revision"]:
            return Withheld("held", held["change_key"], held["revision"], billed)
        if self.corrections(invoice.tenant) == "reject":
            return Dead(
                "content_conflict",
                ContentConflictError(
                    f"{invoice.invoice_key} ({invoice.invoice_number}) arrived again with other content: total "
                    f"{invoice.total} {invoice.currency} ({invoice.fingerprint[:19]}…), while {invoice.billing_system} "
                    f"bills it as {billed.get('external_number')} with total {billed.get('total')} "
                    f"{billed.get('currency') or invoice.currency} ({known[:19]}…). The tenant's corrections policy is "
                    "'reject': nothing was changed. Issue a new revision, or set corrections: amend and replay"
                ),
                meta.attempts,
                meta,
            )
        correction = correction_of(invoice, billed)
        done = ledger.entry(correction.invoice_key)
        if done.get("state") == "delivered":  # pragma: no cover - the work-order entry names it once delivered
            return Corrected(AlreadyDelivered(done), correction)
        waits = self.unapproved(correction, done)  # a correction of an approved invoice is approved anew
        return Corrected(
            waits or await self._deliver(correction, billed, ledger, meta, retry_now=retry_now), correction
        )

    async def aclose(self) -> None:
        """Stop the batched creates, close every connector's HTTP client (errors are ignored: shutting down)."""
        for window in self._batches.values():
            with contextlib.suppress(Exception):  # shutting down
                await window.aclose()
        for state in self._tenants.values():
            with contextlib.suppress(Exception):  # shutting down
                await state.connector.aclose()


class CallCycle:
    """One record's cycle of calls to its tenant's billing system: in-line retries until done, dead or
    to be parked, with the tenant's concurrency slots and rate limiter, errors classified by the
    policy. Subclasses say what one attempt does (:meth:`_step`): :class:`AttemptCycle` delivers an
    invoice, :class:`broker.delivery.changes.CancelCycle` retires a cancelled document.

    ``invoice``: the ledger record (an invoice, or a document change); ``previous``: the delivered
    document the step replaces or retires (``None``: none). Each attempt holds one of the tenant's
    concurrency slots for its calls (:meth:`_slot`); every call waits for the tenant's rate limiter.
    ``attempts`` counts calls that may change the billing system (not look-ups); ``uncertain`` is
    True while an earlier request may have done so.
    """

    invoice: LedgerRecord

    def __init__(
        self,
        deliverer: Deliverer,
        state: TenantState,
        invoice: LedgerRecord,
        *,
        ledger: InvoiceLedger,
        meta: RecordMeta,
        previous: DeliveredRef | None,
    ) -> None:
        self.deliverer = deliverer
        self.interrupt = deliverer.interrupt
        self.state = state
        self.connector = state.connector
        self.system = state.system
        self.invoice = invoice
        self.ledger = ledger
        self.meta = meta
        self.previous = previous
        self.attempts = meta.attempts
        self.uncertain = ledger.is_uncertain(invoice.invoice_key)
        self.retry = InlineRetry(deliverer.policy, state, deliverer.interrupt)

    async def run(self) -> Outcome:
        """Attempt in line as the policy allows; the outcome. Raises only :class:`~broker.delivery.Abandoned`."""
        policy = self.deliverer.policy
        state = self.state
        try:
            async for attempt in self.retry.retrying():
                with attempt:
                    delivered = await self._attempt()
        except Abandoned:
            raise
        except RetryableError as exc:
            self.ledger.note_attempts(self.invoice, self.attempts, exc)
            meta = replace(self.meta, attempts=self.attempts)
            if isinstance(exc, RateLimitedError):
                open_circuit(policy, state, "rate_limited", exc.retry_after)
                return self.deliverer.park_decision(state, meta, "rate_limited", retry_after=exc.retry_after, error=exc)
            if not state.circuit_open():
                open_circuit(policy, state, exc.error_class)
            return self.deliverer.park_decision(state, meta, exc.error_class, error=exc)
        except ReauthRequiredError as exc:
            # the refresh token is dead: park the tenant's invoices (no call until new tokens are stored)
            self.ledger.note_attempts(self.invoice, self.attempts, exc)
            self.deliverer.reauth_refused(state, exc)
            meta = replace(self.meta, attempts=self.attempts)
            return self.deliverer.park_decision(state, meta, "needs_reauth", error=exc)
        except (AuthError, ConfigError) as exc:
            self.deliverer.reauth_cleared(state)  # another verdict governs the tenant now
            state.fatal = exc
            log.error(
                "tenant %s (%s): %s; its invoices are dead-lettered until this is fixed and the worker restarted",
                state.tenant,
                self.system,
                exc.error_class,
            )
            return Dead(exc.error_class, exc, self.attempts, replace(self.meta, attempts=self.attempts))
        except ConnectorError as exc:
            self.deliverer.reauth_cleared(state)  # not a token refusal: the stored tokens are not known dead
            return Dead(exc.error_class, exc, self.attempts, replace(self.meta, attempts=self.attempts))
        state.failures = 0
        self.deliverer.reauth_cleared(state)
        delivered.amendment = self._amendment(delivered)
        return delivered

    def _amendment(self, delivered: Delivered) -> Amendment | None:
        """How ``delivered`` replaced the previous revision (counted in ``broker_amendments_total``)."""
        if self.previous is None:
            return None
        details = delivered.result.details or {}
        amendment: Amendment = {
            "previous_invoice_key": self.previous.get("invoice_key"),
            "previous_number": self.previous.get("external_number"),
            "action": details.get("amendment", "replaced"),
            "credit_note_number": details.get("credit_note_number"),
            "credit_note_id": details.get("credit_note_id"),
        }
        metrics.AMENDMENTS.labels(self.system, str(amendment["action"])).inc()
        return amendment

    # -------------------------------------------------------------- one attempt
    async def _attempt(self) -> Delivered:
        """One attempt under a concurrency slot; a retryable failure is noted for the policy."""
        async with self._slot():
            self.interrupt.check()
            try:
                return await self._step()
            except RetryableError as exc:
                self.retry.failed(exc)
                raise

    async def _step(self) -> Delivered:
        """One attempt's calls (under a concurrency slot); subclasses implement it."""
        raise NotImplementedError

    # -------------------------------------------------------------- limits
    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of the tenant's concurrent slots, for an attempt's calls (a look-up, the ledger write and
        call(s) after it; a fresh attempt's ``pending`` entry is written before: :meth:`AttemptCycle._attempt`)."""
        semaphore = self.state.semaphore
        if semaphore is None:
            yield
            return
        await self.interrupt.acquire(semaphore)
        try:
            yield
        finally:
            semaphore.release()

    async def _io(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """One billing-system call under the tenant's rate limiter (the caller holds a :meth:`_slot`).
        After the call (answer or error) the deliverer's fence must prove that this worker still
        owns the record before anything is written about it (:class:`~broker.delivery.fence.Fenced`)."""
        limiter = self.state.limiter
        slot = None
        called = False
        try:
            if limiter is not None:
                slot = await limiter.acquire(self.interrupt)
                if slot.waited:
                    metrics.RATE_LIMIT_WAIT.labels(self.system).inc(slot.waited)
            self.interrupt.check()
            called = True
            return await make()
        finally:
            if limiter is not None and slot is not None:
                limiter.release(slot)
            if called and self.deliverer.fence is not None:
                await self.deliverer.fence.ensure()


class AttemptCycle(CallCycle):
    """One invoice's attempt cycle (:class:`CallCycle`): create it, or amend ``previous`` with it; an
    earlier request that may have created it is looked up first.

    A first create (no ``previous``, no earlier request in doubt) of a tenant whose connector has a
    batch endpoint goes through the tenant's :class:`~broker.delivery.batching.BatchWindow`, and the
    batched call takes the slot and the rate-limiter slot for all of its invoices. A create or
    amendment with nothing to look up first writes its ``pending`` entry before taking a slot, so a
    slot is held for billing-system calls, not for the changelog's acknowledgement."""

    invoice: Invoice
    _window: BatchWindow | None = None
    #: the ``pending`` entry of the next call is written already (before the slot was taken)
    _begun: bool = False

    async def _attempt(self) -> Delivered:
        window = None if self.previous is not None or self.uncertain else self.deliverer.batch_window(self.state)
        if window is None:
            self._window = None
            if not self.uncertain:
                # nothing to look up first: the call comes next, so its pending entry is written now,
                # before a concurrency slot is taken (the slot covers the billing-system call only)
                await self.ledger.begin_attempt(self.invoice)
                self._begun = True
            return await super()._attempt()
        self._window = window
        self.interrupt.check()
        try:
            return await self._create()
        except RetryableError as exc:
            self.retry.failed(exc)
            raise

    async def _step(self) -> Delivered:
        return await self._reconcile_or_create()

    async def _reconcile_or_create(self) -> Delivered:
        caps = self.connector.capabilities
        if self.uncertain and not caps.lookup_by_reference:
            if not caps.native_idempotency:
                raise CannotReconcile(
                    f"{self.invoice.invoice_number}: an earlier request may have created it and {self.system} "
                    "offers neither a look-up by our number nor an idempotency key: check the billing system, "
                    "then replay"
                )
            self.uncertain = False  # the same idempotency key makes the repeat a replay of the first request
        if self.uncertain and self.previous is not None:
            # an amendment is retire + create, both idempotent: repeating it completes whichever step
            # a crash or a lost answer left undone (a look-up of the new number alone could not tell)
            self.uncertain = False
        if self.uncertain:
            reconciled = await self._reconcile()
            if reconciled is not None:
                return reconciled
            self.uncertain = False
        return await self._create()

    async def _reconcile(self) -> Delivered | None:
        """An earlier request may have created the invoice: look it up by our number (``None``: absent)."""
        invoice = self.invoice
        caps = self.connector.capabilities
        found = await self._io(partial(self.connector.find, invoice.invoice_number))
        metrics.LOOKUPS.labels(self.system, "found" if found else "absent").inc()
        if found is None:
            return None
        if caps.native_idempotency:
            check_ours(invoice, found, what="found by our number after an uncertain call")
            details = {"reconciled_by_lookup": True, "Total": str(found.total), "Status": found.status}
            return Delivered(
                DeliveryResult(
                    invoice.invoice_key,
                    found.external_id,
                    found.number,
                    created=True,
                    attempts=self.attempts,
                    details=details,
                ),
                self.attempts,
                reconciled=True,
            )
        # Multi-step systems without an idempotency key (draft -> finalise/send): the lost request
        # may have left the document half done. Their deliver() looks up by our reference first and
        # only completes the missing steps, so call it once more.
        await self.ledger.begin_attempt(invoice)
        self.attempts += 1
        result = await self._io(partial(self.connector.deliver, invoice))
        metrics.DELIVERY_ATTEMPTS.labels(self.system, "ok").inc()
        return Delivered(
            DeliveryResult(
                invoice.invoice_key,
                result.external_id,
                result.external_number,
                created=True,
                attempts=self.attempts,
                details={**result.details, "reconciled_by_lookup": True},
            ),
            self.attempts,
            reconciled=True,
        )

    async def _create(self) -> Delivered:
        """``pending`` durably (unless :meth:`_attempt` wrote it), then create (or amend ``previous``);
        errors are classified."""
        invoice = self.invoice
        if not self._begun:
            await self.ledger.begin_attempt(invoice)
        self._begun = False
        self.uncertain = True
        self.attempts += 1
        try:
            result = await self._call()
        except UncertainOutcomeError:
            metrics.DELIVERY_ATTEMPTS.labels(self.system, "uncertain").inc()
            raise
        except DuplicateError as exc:
            metrics.DELIVERY_ATTEMPTS.labels(self.system, "duplicate").inc()
            return await self._duplicate(exc)
        except ConnectorError as exc:
            self.uncertain = False
            self.ledger.settle(invoice, self.attempts, exc)
            metrics.DELIVERY_ATTEMPTS.labels(self.system, exc.error_class).inc()
            raise
        metrics.DELIVERY_ATTEMPTS.labels(self.system, "ok").inc()
        return Delivered(result, self.attempts)

    async def _call(self) -> DeliveryResult:
        """The create call: ``amend`` when a previous revision is billed, else ``deliver`` (or the
        tenant's batched create)."""
        if self._window is not None:
            return await self._window.create(self.invoice)
        if self.previous is not None:
            prev = ExternalInvoice(str(self.previous.get("external_id") or ""), str(self.previous["external_number"]))
            return await self._io(partial(self.connector.amend, self.invoice, prev))
        return await self._io(partial(self.connector.deliver, self.invoice))

    async def _duplicate(self, exc: DuplicateError) -> Delivered:
        """The billing system already holds our number: success with the existing document."""
        invoice = self.invoice
        found = exc.existing
        if found is None:
            async with self._slot() if self._window is not None else contextlib.nullcontext():
                found = await self._io(partial(self.connector.find, invoice.invoice_number))
        if found is None:
            raise UncertainOutcomeError(f"{exc} (but looking {invoice.invoice_number} up found nothing yet)") from None
        check_ours(invoice, found, what="the billing system reported our number as taken")
        return Delivered(
            DeliveryResult(
                invoice.invoice_key,
                found.external_id,
                found.number,
                created=False,
                attempts=self.attempts,
                details={"duplicate": True},
            ),
            self.attempts,
        )

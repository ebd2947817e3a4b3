"""The ``deliver`` stage on Faust: per-tenant lanes, in-order acknowledgements and retry topics.

::

    billing.invoices ──► deliver ──► lane per tenant ──► Deliverer.process ──► connector
                            ▲            │ (ordered per work order,          │
                            │            │  rate limit + concurrency cap)    ├─► billing.deliveries
    billing.invoices.retry.N ◄───────────┴── parked (outage, long Retry-After)└─► billing.dlq
         (deliver-retry-N: waits until each record is due, then the same lanes)

* **Lanes.** The agents never wait for a billing system themselves: each record is handed to a
  task of its tenant's lane, so a slow, throttled or failing tenant does not hold up the others on
  the same partitions. Within a lane, records of one work order run one after the other (revision
  order); different work orders run concurrently up to the tenant's concurrency cap.
* **Offsets.** The agents consume without automatic acknowledgement. A record is acknowledged
  only when it is finished — delivered (or found already delivered / superseded / not billable),
  dead-lettered, or parked on a retry topic — and only in offset order per partition, so the
  committed offset never passes a record that is still in a lane. (Faust commits the run of
  acknowledged offsets after the committed one; acknowledging in order keeps that exact.)
* **Offset check.** Each partition's records must reach the agent without a hole, starting where
  the consumer positioned it for the current assignment: the committed offset, or the log start
  when the group has none (:func:`~broker.faust_compat.start_offset`). Records that arrive before
  that seek (Faust resumes partitions before it seeks them) are not taken: they come again after
  it. Then (:func:`offset_sequence`): a record past the next expected offset means the
  records in between never reached the agent (a fetch that skipped them): it is not taken, the
  partition is sought back to the first missing offset and nothing after it is acknowledged until
  it arrives (counted in ``broker_offset_holes_total``), because Faust's commit would otherwise
  pass a single missing record right after the committed offset. A record before the next
  expected offset (a repeat after such a seek) is not taken twice.
* **Rebalance and shutdown.** When Faust suspends the flow (partitions about to be revoked, worker
  stopping) every waiting task stops at its next safe point without acknowledging; the records are
  consumed again from the committed offset by whoever owns the partition next, and the ledger says
  what was already done. A call already sent is allowed to finish.
* **Fencing.** A worker frozen longer than the group allows (session or rebalance timeout) has lost
  its partitions without noticing. Before every ledger write and every record it publishes, and
  after every billing-system call and long wait, the stage proves its group membership
  (:mod:`broker.delivery.fence`: a heartbeat answered by the coordinator, valid for a lease of
  ``FENCE_LEASE_FACTOR`` × the shorter timeout); a "not a member" answer leaves the record to the
  partition's next owner and writes nothing (``broker_fenced_total``).
* **Parking.** A parked invoice goes to ``billing.invoices.retry.<level>`` with its due time in
  headers and heads its work order's queue in the ledger; later revisions of that work order are
  kept in the ledger behind it (``queued``) and delivered in order once it is resolved. Its outcome
  ``parked`` (or ``needs_reauth``: why, ``next_attempt_at``) is published once when it becomes parked, not
  on every retry. An operator's ``billing.invoice.retry_requested`` on ``billing.approvals`` has the
  ``deliver-approvals`` agent attempt a parked head once, at once (``docs/delivery.md`` §4, *Retry now*).
* **Lifecycle changes.** A :class:`~connectors.sdk.invoice.DocumentChange` on ``billing.invoices``
  (work order reopened or cancelled, quote cancelled) runs in its document's lane like an invoice
  (:func:`broker.delivery.apply_change`): a reopening holds the billed invoice, a cancellation
  retires it (parked like an invoice when the billing system is unreachable); both drop the
  document's queued revisions they cover, each with its outcome (``held`` / ``cancelled``). A
  correction (a delivered invoice key with other content) is delivered as its own invoice version
  (``<key>:c<n>``) and reported under the corrected key (``amended``).
* **Approval.** An invoice whose client's approval is ``required`` is not sent: the ledger keeps it
  ``awaiting_approval`` with its payload (outcome ``awaiting_approval``). Agent ``deliver-approvals``
  consumes operators' decisions from ``billing.approvals`` (keyed and partitioned like
  ``billing.invoices``, so co-partitioned with the ledger) into the document's lane: an approval starts
  the invoice's delivery from the kept payload, exactly once; a rejection settles it ``rejected``
  (``docs/approval.md``).

The delivery rules are :mod:`broker.delivery` (which does not import this module); what this stage
needs of Faust beyond its public API goes through :mod:`broker.faust_compat`. Details and the
knobs: ``docs/delivery.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, cast

import faust
from faust.types import TP, AgentT, EventT, StreamT, TableT, TopicT
from pydantic import TypeAdapter, ValidationError

from broker import metrics
from broker.approvals import ApprovalDecision, order_key_of
from broker.config import BrokerConfig
from broker.delivery import (
    Abandoned,
    AlreadyDelivered,
    Cancelled,
    Corrected,
    Dead,
    Decision,
    Delivered,
    DeliveredRef,
    Deliverer,
    Fence,
    Held,
    Interrupt,
    InvoiceLedger,
    LedgerEntry,
    Park,
    PendingOutcome,
    RecordMeta,
    StoredEntry,
    Superseded,
    Unapproved,
    Withheld,
    apply_change,
    entry_state,
)
from broker.dlq import DeadLetterLog, bounded_copy, dlq_headers, headers_to_dict
from broker.events import describe_validation_error, tenant_hint
from broker.faust_compat import (
    acknowledge,
    confirm_membership,
    forget_unacked,
    hook_flow_control,
    set_current_event,
    set_with_changelog,
    start_offset,
)
from broker.logs import log_outcome
from broker.outcomes import OutcomeLog, bootstrap_of
from broker.settings import TOPIC_APPROVALS, Settings
from connectors.sdk.invoice import DeliveryOutcome, DocumentChange, Invoice, NotBillable

log = logging.getLogger("broker.deliver")

#: A record of ``billing.invoices`` (and of its retry topics).
Priced = Invoice | NotBillable | DocumentChange
_PRICED: TypeAdapter[Priced] = TypeAdapter(Priced)

#: An agent function of this stage: consumes a stream of raw records (key and value bytes).
AgentFun = Callable[[StreamT[bytes]], Coroutine[Any, Any, None]]


def _now() -> datetime:
    return datetime.now(UTC)


def _outcome_key(record: Priced) -> str:
    """The key of ``record``'s outcomes on ``billing.deliveries``: its invoice key (a correction's: the key it
    corrects; a document change's: the invoice version it concerns, ``tenant:doc:id:rN``)."""
    if isinstance(record, DocumentChange):
        return record.subject_key
    if isinstance(record, Invoice) and record.corrects:
        return record.corrects
    return record.invoice_key


def _total(billed: DeliveredRef | None) -> Decimal | None:
    """The total of a billed document as the ledger recorded it (``None``: not recorded, older entries)."""
    total = billed.get("total") if billed else None
    return Decimal(total) if total else None


# --------------------------------------------------------------------------- ledger store on a Faust table
class TableStore:
    """:class:`broker.delivery.LedgerStore` over the ``delivery-ledger`` table (JSON keys and values).

    Writes must run in a lane task whose current event is set (:func:`broker.faust_compat.set_current_event`).
    ``fence``: a write after a "not a member" answer raises :class:`~broker.delivery.Fenced`; a
    durable write first proves membership (:mod:`broker.delivery.fence`).
    """

    def __init__(self, table: TableT[str, LedgerEntry], app: faust.App, fence: Fence | None = None):
        self.table = table
        self.app = app
        self.fence = fence

    def get(self, key: str) -> StoredEntry | None:
        """The entry at ``key`` or ``None``."""
        return self.table.get(key)

    def put(self, key: str, value: StoredEntry) -> None:
        """Set ``key`` (its changelog record is sent with the producer's next batch)."""
        if self.fence is not None:
            self.fence.check()
        self.table[key] = value  # type: ignore[assignment]  # the table's values: any StoredEntry

    async def put_durable(self, key: str, value: StoredEntry) -> None:
        """Set ``key`` and wait for the broker's acknowledgement of its changelog record (only that one)."""
        if self.fence is not None:
            await self.fence.ensure()
        sent = set_with_changelog(self.table, key, cast(LedgerEntry, value))  # any StoredEntry, as JSON
        if sent is not None:
            await sent
        else:  # pragma: no cover - a Faust without send_changelog on set
            await self.app.producer.flush()


# --------------------------------------------------------------------------- in-order acknowledgement
class _Entry:
    __slots__ = ("abandoned", "done", "event", "stream")

    def __init__(self, event: EventT[bytes], stream: StreamT[bytes]):
        self.event = event
        self.stream = stream
        self.done = False
        self.abandoned = False


class _Partition:
    """Records of one topic-partition in consumption order; acknowledged strictly in that order."""

    def __init__(self) -> None:
        self.entries: deque[_Entry] = deque()
        self.blocked = False  # an entry was abandoned: nothing after it may be acknowledged
        self.next_offset: int | None = None  # the offset the next record must have (None: start offset not read yet)
        self.sought: tuple[int, float] | None = None  # (offset, monotonic time) of the last seek back


#: The fence's lease as a share of ``min(session timeout, rebalance timeout)``: how long after a
#: membership round was sent the worker writes without a new one (:mod:`broker.delivery.fence`).
FENCE_LEASE_FACTOR = 0.5

#: Seconds after a seek back to a missing offset before the partition is sought again (while it has
#: not arrived).
SEEK_AGAIN_AFTER = 5.0


def offset_sequence(expected: int, offset: int) -> Literal["next", "repeat", "hole"]:
    """Where a record at ``offset`` stands against the ``expected`` next offset of its partition.

    ``"next"``: it is the expected record; ``"repeat"``: it is before the expected offset (already
    taken, consumed again after a seek back); ``"hole"``: it is after the expected offset, so the
    records ``expected .. offset - 1`` never reached the agent."""
    if offset == expected:
        return "next"
    return "repeat" if offset < expected else "hole"


#: ``_Ctx.level`` of a record released from the ledger (a queued revision, behind its resolved head).
_RELEASED = -1
#: ``_Ctx.level`` of a decision of ``billing.approvals`` (and of the approved invoice it releases).
_APPROVALS = -2


@dataclass
class _Ctx:
    event: EventT[bytes]
    record: Priced | ApprovalDecision
    payload: bytes
    order_key: str
    meta: RecordMeta
    level: int  # 0 = billing.invoices, N = retry topic N, _RELEASED, _APPROVALS


class DeliverStage:
    """Installs the ``deliver`` agent, one ``deliver-retry-N`` agent per retry topic, the ``deliver-approvals``
    agent (``billing.approvals``, created here with the same partition count) and a gauge timer."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        config: BrokerConfig,
        *,
        invoices_topic: TopicT,
        deliveries_topic: TopicT,
        dlq_topic: TopicT,
        ledger_table: TableT[str, LedgerEntry],
        unavailable: Mapping[str, str] | None = None,
    ):
        self.app = app
        self.settings = settings
        self.policy = settings.delivery
        self.interrupt = Interrupt()
        self.fence = Fence(
            lambda: confirm_membership(app),
            lease=FENCE_LEASE_FACTOR * min(settings.session_timeout, settings.rebalance_timeout),
            interrupt=self.interrupt,
        )
        self.deliverer = Deliverer(
            config, self.policy, interrupt=self.interrupt, fence=self.fence, unavailable=unavailable
        )
        #: the ``billing_system`` metric label of each tenant, from the configuration (never from a record,
        #: whose field anyone producing to the topic chooses: the label's values stay bounded)
        self.systems = {tenant_id: tenant.billing.system for tenant_id, tenant in config.tenants.items()}
        self.ledger = InvoiceLedger(TableStore(ledger_table, app, self.fence))
        self.ledger_table = ledger_table
        self.deliveries_topic = deliveries_topic
        self.outcomes = OutcomeLog(deliveries_topic, bootstrap_of(app))
        self.dlq_topic = dlq_topic
        self.dead_letters = DeadLetterLog(log)
        n = settings.topic_partitions
        self.retry_topics = [
            app.topic(name, partitions=n, key_type=bytes, value_type=bytes) for name in self.policy.retry_topics
        ]
        self._partitions: dict[TP, _Partition] = {}
        self._order_tails: dict[str, asyncio.Future[None]] = {}
        self._lanes: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._suspended = False
        hook_flow_control(app, after_suspend=self._on_suspend, before_resume=self._on_resume)

        stage = self

        async def deliver(stream: StreamT[bytes]) -> None:
            """billing.invoices -> tenant lanes -> billing system (billing.deliveries, retry topics, billing.dlq)."""
            await stage.consume(stream, 0)

        self.deliver_agent: AgentT[bytes] = app.agent(invoices_topic, name="deliver")(deliver)
        self.retry_agents: list[AgentT[bytes]] = []
        for level, topic in enumerate(self.retry_topics, start=1):
            agent = app.agent(topic, name=f"deliver-retry-{level}")
            self.retry_agents.append(agent(self._retry_agent(level)))
        self.approvals_topic = app.topic(TOPIC_APPROVALS, partitions=n, key_type=bytes, value_type=bytes)

        async def deliver_approvals(stream: StreamT[bytes]) -> None:
            """billing.approvals -> the document's lane: deliver an approved invoice, settle a rejected one."""
            await stage.consume(stream, _APPROVALS)

        self.approvals_agent: AgentT[bytes] = app.agent(self.approvals_topic, name="deliver-approvals")(
            deliver_approvals
        )
        app.timer(5.0)(self._refresh_gauges)
        app.timer(1.0)(self._seek_holes_again)

    def _retry_agent(self, level: int) -> AgentFun:
        """The agent function of retry topic ``level`` (1-based)."""
        stage = self

        async def deliver_retry(stream: StreamT[bytes]) -> None:
            """billing.invoices.retry.N -> (when due) tenant lanes, like ``deliver``."""
            await stage.consume(stream, level)

        deliver_retry.__name__ = f"deliver_retry_{level}"
        return deliver_retry

    async def consume(self, stream: StreamT[bytes], level: int) -> None:
        """Consume ``stream`` without automatic acknowledgement, handing every record to :meth:`submit`."""
        manual = stream.noack()  # type: ignore[attr-defined]  # public Stream.noack, missing from faust.types.StreamT
        async for event in manual.events():
            await self.submit(manual, event, level)

    # ------------------------------------------------------------------ flow control (rebalance / stop)
    def _on_suspend(self) -> None:
        self._suspended = True
        self.interrupt.set()
        for part in list(self._partitions.values()):
            self._drain(part)

    def _on_resume(self) -> None:
        # Faust resumes (possibly more than once) after a rebalance, before stream records flow
        # again from the committed offsets: start fresh bookkeeping once per suspension.
        if not self._suspended:
            return
        self._suspended = False
        self.fence.reset()
        self._partitions = {}
        self._order_tails = {}
        self.interrupt.clear()

    # ------------------------------------------------------------------ acknowledgement
    def _partition(self, tp: TP) -> _Partition:
        part = self._partitions.get(tp)
        if part is None:
            part = self._partitions[tp] = _Partition()
        return part

    def _discard(self, event: EventT[bytes]) -> None:
        forget_unacked(self.app, event.message)

    def _drain(self, part: _Partition) -> None:
        while part.entries:
            head = part.entries[0]
            if head.abandoned:
                part.blocked = True
                part.entries.popleft()
                self._discard(head.event)
                continue
            if not head.done:
                if part.blocked or self.interrupt.is_set:
                    # behind an abandoned record, or stopping: do not ack later ones
                    pass
                break
            part.entries.popleft()
            if part.blocked or self._partitions.get(head.event.message.tp) is not part:
                self._discard(head.event)
            else:
                self._ack(head)
        if self.interrupt.is_set:
            # everything not yet finished will stop at its next safe point; finished ones behind an
            # unfinished head cannot be acknowledged before it: let go of them too
            for entry in list(part.entries)[1:] if part.entries else []:
                if entry.done:
                    self._discard(entry.event)

    @staticmethod
    def _ack(entry: _Entry) -> None:
        """What ``Stream.ack`` does, synchronously (so acknowledgements keep their order)."""
        acknowledge(entry.stream, entry.event)

    def _complete(self, part: _Partition, entry: _Entry) -> None:
        entry.done = True
        self._drain(part)

    def _abandon(self, part: _Partition, entry: _Entry) -> None:
        entry.abandoned = True
        entry.done = True
        self._drain(part)

    # ------------------------------------------------------------------ intake
    async def submit(self, stream: StreamT[bytes], event: EventT[bytes], level: int) -> None:
        """Take one consumed record of ``stream`` (without automatic acknowledgement): finish it inline
        or hand it to its tenant's lane. ``level``: 0 for ``billing.invoices``, N for retry topic N,
        ``_APPROVALS`` for ``billing.approvals``."""
        part = self._partition(event.message.tp)
        if not await self._in_sequence(part, event):
            self._discard(event)
            return
        entry = _Entry(event, stream)
        part.entries.append(entry)
        try:
            self.interrupt.check()
            if level > 0 and not await self._until_due(event, level):
                self._complete(part, entry)
                return
            ctx = await self._context(event, level)
            if ctx is None:
                self._complete(part, entry)
                return
            if await self._overflow(ctx):
                self._complete(part, entry)
                return
        except Abandoned:
            self._abandon(part, entry)
            return
        tenant = ctx.record.tenant
        self._lanes[tenant] += 1
        system = self._system(tenant)
        metrics.IN_FLIGHT.labels(system).inc()
        task = asyncio.ensure_future(self._run(part, entry, ctx, system))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_sequence(self, part: _Partition, event: EventT[bytes]) -> bool:
        """True when ``event`` is the next record of its partition (module docstring, offset check);
        False before the partition's start offset is known; on a new hole, seeks the partition back
        to the first missing offset (:meth:`_seek_holes_again` repeats the seek while it stays
        open) and returns False."""
        msg = event.message
        if part.next_offset is None:
            part.next_offset = start_offset(self.app, msg.tp)
            if part.next_offset is None:
                # consumed before the partition was positioned for this assignment: it comes again
                log.debug("%s[%d]@%d: before the seek to the start offset, not taken", *msg.tp, msg.offset)
                return False
        expected = part.next_offset
        where = offset_sequence(expected, msg.offset)
        if where == "next":
            part.next_offset = msg.offset + 1
            return True
        if where == "repeat":
            return False
        if part.sought is None or part.sought[0] != expected:
            metrics.OFFSET_HOLES.labels(msg.topic).inc()
            log.error(
                "%s[%d]: record at offset %d reached the agent before offset %d: seeking back to it, "
                "nothing after it is acknowledged until it arrives",
                msg.topic,
                msg.partition,
                msg.offset,
                expected,
            )
            await self._seek_back(msg.tp, part, expected)
        return False

    async def _seek_back(self, tp: TP, part: _Partition, offset: int) -> None:
        """Seek ``tp`` back to ``offset``, the first record its agent has not seen yet."""
        part.sought = (offset, time.monotonic())
        await self.app.consumer.seek(tp, offset)

    async def _seek_holes_again(self) -> None:
        """Seek again every partition still waiting :data:`SEEK_AGAIN_AFTER` seconds after its last seek
        back: the records it waits for can be dropped on their way (Faust drops records below the read
        offset it keeps, and records of a batch fetched before the seek still move that offset), and
        no later record may come to notice it."""
        if self._suspended:
            return
        now = time.monotonic()
        for tp, part in list(self._partitions.items()):
            sought = part.sought
            if sought is None or part.next_offset != sought[0] or now - sought[1] < SEEK_AGAIN_AFTER:
                continue
            log.warning("%s[%d]: offset %d has still not arrived: seeking back to it again", *tp, sought[0])
            try:
                await self._seek_back(tp, part, sought[0])
            except Exception as exc:  # noqa: BLE001 - the partition may be going away in a rebalance
                log.warning("%s[%d]: could not seek back to %d: %r", *tp, sought[0], exc)

    async def _context(self, event: EventT[bytes], level: int) -> _Ctx | None:
        headers = headers_to_dict(event.headers)
        msg = event.message
        meta = RecordMeta.from_headers(headers, topic=msg.topic, partition=msg.partition, offset=msg.offset)
        if level == _APPROVALS:
            try:
                decision = ApprovalDecision.model_validate_json(event.value)
            except ValidationError as exc:  # not for the DLQ: its replay would go to billing.invoices
                log.error(
                    "%s[%d]@%d: not an approval decision, skipped: %s",
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    describe_validation_error(exc),
                )
                return None
            return _Ctx(event, decision, bytes(event.value), decision.order_key, meta, level)
        try:
            record = _PRICED.validate_json(event.value)
        except ValidationError as exc:
            await self._dead_letter_raw(event, meta, "invalid", ValueError(describe_validation_error(exc)))
            return None
        order_key = record.order_key
        return _Ctx(event, record, bytes(event.value), order_key, meta, level)

    async def _until_due(self, event: EventT[bytes], level: int) -> bool:
        """Wait until a retry record is due; False when it was re-parked for later instead."""
        headers = headers_to_dict(event.headers)
        try:
            due = float(headers.get("retry.due") or 0.0)
        except ValueError:
            due = 0.0
        delay = self.policy.park_delays[min(level, len(self.policy.park_delays)) - 1]
        published = event.message.timestamp
        deadline = min(due, published + delay + 1.0) if published else due
        while True:
            now = time.time()
            if now >= deadline:
                break
            await self.interrupt.sleep(min(deadline - now, 1.0))
        if time.time() < due - 0.05:  # due later than this level holds records: go round again
            await self.fence.ensure()
            await self.retry_topics[level - 1].send(
                key=event.key, value=event.value, headers=[(k, v.encode()) for k, v in headers.items()]
            )
            return False
        return True

    async def _overflow(self, ctx: _Ctx) -> bool:
        """A tenant with too many invoices in memory: park new work orders' invoices durably instead."""
        record = ctx.record
        if ctx.level != 0 or not isinstance(record, Invoice):
            return False
        if self._lanes[record.tenant] < self.policy.lane_max_queued or ctx.order_key in self._order_tails:
            return False
        if self.ledger.parked(ctx.order_key) or self.ledger.entry(record.invoice_key).get("state") == "delivered":
            return False
        wait = self.deliverer.backlog_delay(record.tenant, self._lanes[record.tenant])
        decision = self.deliverer.park_decision(None, ctx.meta, "backlog", attempted=False, min_wait=wait)
        await self._apply(ctx, record, decision)
        return True

    # ------------------------------------------------------------------ lanes
    async def _run(self, part: _Partition, entry: _Entry, ctx: _Ctx, system: str) -> None:
        key = ctx.order_key
        previous = self._order_tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._order_tails[key] = mine
        try:
            if previous is not None and not previous.done():
                await self.interrupt.wait_for(previous)
            self.interrupt.check()
            await self.fence.ensure()  # the lane and retry waits can be long
            set_current_event(ctx.event)
            await self._handle(ctx)
            self._complete(part, entry)
        except Abandoned:
            self._abandon(part, entry)
        except Exception as exc:  # a bug: dead-letter the record rather than stall the partition
            log.exception("deliver stage crashed on %s", getattr(ctx.record, "invoice_key", ctx.order_key))
            if isinstance(ctx.record, ApprovalDecision):  # no DLQ stage for decisions: decide again
                self._complete(part, entry)
                return
            try:
                await self._dead_letter(ctx, Dead("internal", exc, ctx.meta.attempts, ctx.meta))
                self._complete(part, entry)
            except Abandoned:
                self._abandon(part, entry)
            except Exception:  # noqa: BLE001 - cannot even dead-letter: let the worker restart
                self._abandon(part, entry)
                await self.app.crash(exc)
        finally:
            mine.set_result(None)
            if self._order_tails.get(key) is mine:
                del self._order_tails[key]
            self._lanes[ctx.record.tenant] -= 1
            metrics.IN_FLIGHT.labels(system).dec()

    async def _handle(self, ctx: _Ctx) -> None:
        record = ctx.record
        if isinstance(record, ApprovalDecision):
            await self._decided(ctx, record)
            return
        if isinstance(record, NotBillable):
            self.ledger.not_billable(record)
            await self._record(
                DeliveryOutcome(
                    invoice_key=record.invoice_key,
                    event_id=record.event_id,
                    tenant=record.tenant,
                    billing_system=None,
                    outcome="not_billable",
                    error=record.reason,
                    at=_now(),
                )
            )
            return
        if isinstance(record, DocumentChange):
            await self._handle_change(ctx, record)
            return
        key = record.invoice_key
        parked = self.ledger.parked(ctx.order_key)
        if ctx.level == 0:
            if key in parked:
                return  # parked or queued by an earlier run that was not acknowledged; the queue owns it
            if parked and self.ledger.entry(key).get("state") != "delivered":
                self.ledger.queue_behind(record, ctx.payload, ctx.meta)
                metrics.PARKED.labels(self._system(record.tenant), "behind_revision").inc()
                log.info("%s waits behind parked %s", key, parked[0])
                return
            await self._attempt(ctx, record)
            return
        if key not in parked or parked[0] != key:
            return  # resolved already, or a later revision: the head releases it
        if ctx.meta.parks < int((self.ledger.entry(key).get("meta") or {}).get("parks") or 0):
            return  # parked again since (an operator's retry request failed): the newer retry record owns it
        if await self._attempt(ctx, record):
            await self._release(ctx)

    async def _attempt(self, ctx: _Ctx, invoice: Invoice, *, retry_now: bool = False) -> bool:
        outcome = await self.deliverer.process(invoice, self.ledger, ctx.meta, retry_now=retry_now)
        return await self._apply(ctx, invoice, outcome)

    async def _release(self, ctx: _Ctx) -> None:
        """The head of a work order's queue is resolved: deliver the revisions waiting behind it, in order."""
        while True:
            self.interrupt.check()
            parked = self.ledger.parked(ctx.order_key)
            if not parked:
                return
            entry = self.ledger.entry(parked[0])
            payload = entry.get("payload")
            try:
                record = _PRICED.validate_json(payload) if payload else None
            except ValidationError:
                record = None
            if not isinstance(record, Invoice | DocumentChange) or not isinstance(payload, str):
                log.error("queued %s has no readable payload; dropping it from the queue", parked[0])
                self.ledger.drop_queued(ctx.order_key, parked[0])
                continue
            follower = _Ctx(
                ctx.event,
                record,
                payload.encode(),
                ctx.order_key,
                RecordMeta.from_dict(entry.get("meta") or {}),
                _RELEASED,
            )
            done = (
                await self._change(follower, record)
                if isinstance(record, DocumentChange)
                else await self._attempt(follower, record)
            )
            if not done:
                return

    # ------------------------------------------------------------------ lifecycle changes
    async def _handle_change(self, ctx: _Ctx, change: DocumentChange) -> None:
        """A reopening or cancellation consumed from ``billing.invoices`` (level 0) or a retry topic: applied
        now, or (behind another parked change of the document) queued; the queue is released once resolved."""
        parked = self.ledger.parked(ctx.order_key)
        if ctx.level == 0:
            if change.change_key in parked:
                return  # parked or queued by an earlier run that was not acknowledged; the queue owns it
            if parked and parked[0] != change.change_key and self.ledger.entry(parked[0]).get("action"):
                self.ledger.queue_behind(change, ctx.payload, ctx.meta)  # after the parked change, in order
                metrics.PARKED.labels(self._system(change.tenant), "behind_revision").inc()
                return
        elif not parked or parked[0] != change.change_key:
            return  # resolved already, or queued: the head releases it
        if not await self._change(ctx, change):
            return
        parked = self.ledger.parked(ctx.order_key)
        if parked and self.ledger.entry(parked[0]).get("state") == "queued":
            await self._release(ctx)  # what waited behind the dropped or resolved head

    async def _change(self, ctx: _Ctx, change: DocumentChange) -> bool:
        """Apply ``change`` and record its outcomes; True when resolved (not parked)."""
        decision = await apply_change(self.deliverer, change, self.ledger, ctx.meta)
        if isinstance(decision, Park):
            await self._park(ctx, change, decision)
            return False
        if isinstance(decision, Dead):
            await self._dead_letter(ctx, decision)
            return True
        kind: Literal["held", "cancelled"] = "held" if isinstance(decision, Held) else "cancelled"
        for entry in decision.dropped:
            await self._record(_dropped_outcome(entry, change, kind))
        await self._record(_change_outcome(change, decision))
        return True

    # ------------------------------------------------------------------ approval (docs/approval.md)
    def _decided_key(self, invoice_key: str) -> str:
        """The ledger key an operator's decision on ``invoice_key`` (as ``billing.deliveries`` keys it) is about:
        itself, or when it is delivered and a correction of it was held for approval, that correction
        (``<key>:c<n>``, the next one, or the last delivered one when that is done already)."""
        if self.ledger.entry(invoice_key).get("state") != "delivered":
            return invoice_key
        billed = self.ledger.order(order_key_of(invoice_key))["delivered"]
        if not billed or (billed.get("corrects") or billed["invoice_key"]) != invoice_key:
            return invoice_key
        following = f"{invoice_key}:c{int(billed.get('correction') or 0) + 1}"
        return following if self.ledger.entry(following) else billed["invoice_key"]

    async def _decided(self, ctx: _Ctx, decision: ApprovalDecision) -> None:
        """An operator's decision (``billing.approvals``), in its document's lane. An approval of a version
        awaiting approval (or approved before, its delivery not finished: consumed again after a crash)
        delivers it from its kept payload; a rejection settles it ``rejected`` (outcome ``rejected``).
        A decision on a version that does not await approval (unknown, delivered, superseded, decided
        already) changes nothing; a lost ``created`` outcome of the version it delivered is published.
        A retry request goes to :meth:`_retry_requested`."""
        if decision.retry_requested:
            await self._retry_requested(ctx, decision)
            return
        key = self._decided_key(decision.invoice_key)
        data = decision.data
        what = {"id": decision.id, "by": data.operator, "at": decision.time.isoformat(), "reason": data.reason}
        entry = self.ledger.approve(key, what) if decision.approved else self.ledger.reject(key, what)
        if entry is None:
            current = self.ledger.entry(key)
            if current.get("state") == "delivered":
                await self._settle_outcome(ctx, key, decision.tenant, current)
            log.info(
                "%s by %s of %s: it is %s, not awaiting approval: nothing to do",
                "approval" if decision.approved else "rejection",
                data.operator,
                key,
                current.get("state") or "unknown",
            )
            return
        if not decision.approved:
            await self._record(
                DeliveryOutcome(
                    invoice_key=str(entry.get("corrects") or key),
                    tenant=decision.tenant,
                    billing_system=self._system(decision.tenant),
                    outcome="rejected",
                    error=f"rejected by {data.operator}"
                    + (f": {data.reason}" if data.reason else "")
                    + "; nothing was sent",
                    billed_total=self._billed_total(str(entry.get("order_key") or ctx.order_key)),
                    at=_now(),
                )
            )
            return
        kept = self._kept(ctx, key, entry, "approved")
        if kept is not None:
            log.info("%s approved by %s: delivering it", key, data.operator)
            await self._attempt(kept, cast(Invoice, kept.record))

    def _kept(self, ctx: _Ctx, key: str, entry: LedgerEntry, what: str) -> _Ctx | None:
        """The context of the invoice kept in ledger ``entry`` (an approved or parked one), to attempt it in the lane
        of decision ``ctx``; ``None`` (logged) when its payload is not a readable invoice."""
        payload = entry.get("payload")
        try:
            record = _PRICED.validate_json(payload) if isinstance(payload, str) else None
        except ValidationError:
            record = None
        if not isinstance(record, Invoice) or not isinstance(payload, str):
            log.error("%s %s has no readable invoice payload: not delivered", what, key)
            return None
        meta = RecordMeta.from_dict(entry.get("meta") or {})
        return _Ctx(ctx.event, record, payload.encode(), ctx.order_key, meta, _APPROVALS)

    async def _retry_requested(self, ctx: _Ctx, request: ApprovalDecision) -> None:
        """An operator asked to try a parked invoice version now (``billing.invoice.retry_requested``): attempted
        once, at once (the tenant's open circuit does not stop it), then delivered, parked again by the policy
        (a new retry record; the older one is then skipped) or dead-lettered; what waited behind it follows
        when it is resolved. Anything not parked (delivered, queued, unknown), or a request taken before (a
        replay after a crash), changes nothing."""
        key = self._decided_key(request.invoice_key)
        entry = self.ledger.retry_now(key, request.id)
        if entry is None:
            log.info(
                "retry request by %s of %s: it is %s, not parked at the head of its queue (or this request was taken "
                "already): nothing to do",
                request.data.operator,
                key,
                self.ledger.entry(key).get("state") or "unknown",
            )
            return
        kept = self._kept(ctx, key, entry, "parked")
        if kept is None:
            return
        log.info("%s: retry requested by %s: attempting it now", key, request.data.operator)
        if await self._attempt(kept, cast(Invoice, kept.record), retry_now=True):
            await self._release(kept)

    def _billed_total(self, order_key: str) -> Decimal:
        """What the billing system bills for the document of ``order_key`` (0: nothing), as the ledger knows it."""
        billed = self.ledger.order(order_key)["delivered"]
        return (_total(billed) or Decimal(0)) if billed else Decimal(0)

    async def _unapproved(self, ctx: _Ctx, inv: Invoice, unapproved: Unapproved) -> None:
        """``inv`` is not sent (:class:`~broker.delivery.Unapproved`): hold it for approval (durably, before its
        outcome: the operator acts on the outcome) and supersede the document's older versions still
        awaiting approval, or repeat that it was rejected."""
        billed = self.ledger.order(inv.order_key)["delivered"]
        holds = f"{billed.get('external_number')} stays billed" if billed else "nothing is billed"
        if unapproved.kind == "awaiting_approval":
            for older in await self.ledger.await_approval(inv, ctx.payload, ctx.meta):
                await self._record(
                    DeliveryOutcome(
                        invoice_key=str(older.get("corrects") or older.get("invoice_key")),
                        tenant=inv.tenant,
                        billing_system=self._system(inv.tenant),
                        outcome="superseded",
                        error=f"{inv.invoice_key} replaced it while it awaited approval: it is never sent",
                        billed_total=self._billed_total(inv.order_key),
                        at=_now(),
                    )
                )
            error = f"client {inv.client_id} requires approval: held until an operator approves or rejects it; {holds}"
        else:
            rejection = unapproved.entry.get("rejection") or {}
            error = f"rejected by {rejection.get('by', 'an operator')}: it is never sent; {holds}"
        billed_total = (_total(billed) or Decimal(0)) if billed else Decimal(0)
        await self._record(self._not_sent(inv, unapproved.kind, error, billed, billed_total=billed_total))

    def _not_sent(
        self,
        inv: Invoice,
        outcome: Literal["held", "cancelled", "awaiting_approval", "rejected", "parked", "needs_reauth"],
        error: str,
        shown: DeliveredRef | None,
        **fields: Any,
    ) -> DeliveryOutcome:
        """The outcome ``outcome`` of ``inv``, not sent (``error`` says why), naming the document ``shown``
        (what the billing system bills for it, or retired; ``None``: none) and any other ``fields``."""
        return DeliveryOutcome(
            invoice_key=_outcome_key(inv),
            event_id=inv.event_id,
            tenant=inv.tenant,
            billing_system=self._system(inv.tenant),
            outcome=outcome,
            error=error,
            external_id=shown.get("external_id") if shown else None,
            external_number=shown.get("external_number") if shown else None,
            total=inv.total,
            currency=inv.currency,
            at=_now(),
            **fields,
        )

    async def _withheld(self, inv: Invoice, withheld: Withheld) -> None:
        """``inv`` is not billed: its document is cancelled or reopened at a revision at least its own."""
        self.ledger.withheld(inv, withheld.kind, withheld.by)
        cancel = withheld.cancel
        billed = withheld.billed
        shown = billed or (cancel.get("retired") if cancel else None)
        what = "cancelled" if withheld.kind == "cancelled" else "reopened"
        holds = (
            f"{billed.get('external_number')} stays billed"
            if billed
            else f"{shown.get('external_number')} is retired"
            if shown
            else "nothing is billed"
        )
        await self._record(
            self._not_sent(
                inv,
                withheld.kind,
                f"{inv.order_key} was {what} at revision {withheld.revision} ({withheld.by}): revision "
                f"{inv.revision} is not billed; {holds}",
                shown,
                amendment=cancel.get("action") if cancel and not billed else None,
                credit_note_number=cancel.get("credit_note_number") if cancel and not billed else None,
                billed_total=_total(billed) if billed else Decimal(0),
            )
        )

    def _system(self, tenant: str) -> str:
        """The metric label of ``tenant``'s billing system (``unknown`` for a tenant not configured)."""
        return self.systems.get(tenant, "unknown")

    # ------------------------------------------------------------------ outcomes
    async def _apply(self, ctx: _Ctx, inv: Invoice, outcome: Decision) -> bool:
        """Record ``outcome`` of invoice ``inv`` (the record of ``ctx``); True when it is resolved (not parked)."""
        system = self._system(inv.tenant)
        if isinstance(outcome, Corrected):  # the correction goes on as an invoice version of its own
            fixed = outcome.invoice
            sub = _Ctx(ctx.event, fixed, fixed.model_dump_json().encode(), ctx.order_key, ctx.meta, ctx.level)
            return await self._apply(sub, fixed, outcome.outcome)
        if isinstance(outcome, Withheld):
            await self._withheld(inv, outcome)
            return True
        if isinstance(outcome, Unapproved):
            await self._unapproved(ctx, inv, outcome)
            return True
        if isinstance(outcome, Delivered):
            await self._delivered(ctx, inv, outcome)
            return True
        if isinstance(outcome, AlreadyDelivered):
            entry = outcome.entry
            if inv.invoice_key in self.ledger.parked(ctx.order_key):
                self.ledger.unqueue(inv)
            if not await self._settle_outcome(ctx, inv.invoice_key, inv.tenant, entry):
                return True  # this very record was consumed before a crash: its outcome is out already
            billed = self.ledger.order(ctx.order_key)["delivered"]
            await self._record(
                DeliveryOutcome(
                    invoice_key=_outcome_key(inv),
                    event_id=inv.event_id,
                    tenant=inv.tenant,
                    billing_system=system,
                    outcome="already_delivered",
                    external_id=entry.get("external_id"),
                    external_number=entry.get("external_number"),
                    total=inv.total,
                    currency=inv.currency,
                    attempts=0,
                    billed_total=_total(billed) if billed else inv.total,
                    at=_now(),
                )
            )
            return True
        if isinstance(outcome, Superseded):
            self.ledger.superseded(inv, outcome.by)
            await self._record(
                DeliveryOutcome(
                    invoice_key=inv.invoice_key,
                    event_id=inv.event_id,
                    tenant=inv.tenant,
                    billing_system=system,
                    outcome="superseded",
                    error=f"revision {outcome.by.get('revision')} is already billed",
                    external_number=outcome.by.get("external_number"),
                    billed_total=_total(outcome.by),
                    at=_now(),
                )
            )
            return True
        if isinstance(outcome, Dead):
            await self._dead_letter(ctx, outcome)
            return True
        if isinstance(outcome, Park):
            await self._park(ctx, inv, outcome)
            return False
        raise TypeError(f"unknown delivery outcome {outcome!r}")

    @staticmethod
    def _source(ctx: _Ctx) -> str | None:
        """``topic:partition:offset`` of the consumed record behind ``ctx`` (None when released from the ledger)."""
        if ctx.level == _RELEASED:
            return None
        msg = ctx.event.message
        return f"{msg.topic}:{msg.partition}:{msg.offset}"

    async def _delivered(self, ctx: _Ctx, inv: Invoice, outcome: Delivered) -> None:
        """Ledger ``delivered`` durably (with the outcome to publish), then the outcome, exactly once."""
        result = outcome.result
        now = _now()
        latency = (now - inv.event_time).total_seconds()
        amendment = outcome.amendment
        outcome_key = _outcome_key(inv)  # a correction is reported under the key it corrects
        record = DeliveryOutcome(
            invoice_key=outcome_key,
            event_id=inv.event_id,
            tenant=inv.tenant,
            billing_system=self._system(inv.tenant),
            outcome="amended" if inv.corrects else "created" if result.created else "already_delivered",
            external_id=result.external_id,
            external_number=result.external_number,
            total=inv.total,
            currency=inv.currency,
            attempts=outcome.attempts,
            latency_seconds=latency,
            reconciled=outcome.reconciled,
            amendment=amendment.get("action") if amendment else None,
            replaced=amendment.get("previous_invoice_key") if amendment else None,
            credit_note_number=amendment.get("credit_note_number") if amendment else None,
            billed_total=inv.total,
            at=now,
        )
        key = outcome_key.encode()
        value = record.model_dump_json().encode()
        partition = await self.outcomes.partition_for(key)
        pending: PendingOutcome = {
            "published": False,
            "partition": partition,
            "scan_from": await self.outcomes.low_water(partition),
            "value": value.decode(),
            "source": self._source(ctx),
        }
        if outcome_key != inv.invoice_key:
            pending["key"] = outcome_key
        await self.ledger.delivered_durably(
            inv,
            result,
            outcome.attempts,
            reconciled=outcome.reconciled,
            amendment=outcome.amendment,
            outcome=pending,
            origin=ctx.meta.origin,
        )
        if result.created:
            metrics.DELIVERY_LATENCY.labels(self._system(inv.tenant)).observe(max(0.0, latency))
        await self.fence.ensure()
        await self.outcomes.publish(key, value, partition)
        metrics.INVOICES_DELIVERED.labels(self._system(inv.tenant), record.outcome).inc()
        log_outcome(record)
        self.ledger.outcome_published(inv.invoice_key)

    async def _settle_outcome(self, ctx: _Ctx, invoice_key: str, tenant: str, entry: LedgerEntry) -> bool:
        """A delivered invoice's record (``invoice_key`` of ``tenant``; or a decision that approved it) is
        consumed again: publish its kept outcome if a crash lost it.

        Returns False when this is the record that delivered it, or the record an approval delivered
        (nothing more to tell), True when it is another record of the same invoice (a re-published
        event: ``already_delivered`` follows)."""
        pending = entry.get("outcome")
        if not isinstance(pending, dict):
            return True
        if not pending.get("published"):
            key = str(pending.get("key") or invoice_key).encode()
            value = str(pending["value"]).encode()
            partition = int(pending["partition"])
            if await self.outcomes.contains(partition, int(pending.get("scan_from") or 0), key, value):
                metrics.DUPLICATES_SUPPRESSED.labels("outcome").inc()
                log.info("%s: its outcome was published before a crash; not publishing it again", invoice_key)
            else:
                await self.fence.ensure()
                await self.outcomes.publish(key, value, partition)
                metrics.INVOICES_DELIVERED.labels(self._system(tenant), json.loads(value)["outcome"]).inc()
                log.info("%s: published the outcome a crash kept from going out", invoice_key)
            self.ledger.outcome_published(str(entry.get("invoice_key") or invoice_key))
        source = pending.get("source")
        if entry.get("approval") and entry.get("origin") == self._source(ctx):
            return False  # the record held for approval, consumed again after a crash: its approval delivered it
        return source is None or source != self._source(ctx)

    async def _park(self, ctx: _Ctx, inv: Invoice | DocumentChange, park: Park) -> None:
        """Send the record to retry topic ``park.level`` and make it the head of its work order's queue."""
        topic = self.retry_topics[park.level - 1]
        headers = [
            *park.meta.to_headers(),
            ("retry.due", repr(park.due).encode()),
            ("retry.level", str(park.level).encode()),
            ("retry.reason", park.reason.encode()),
        ]
        await self.fence.ensure()
        await topic.send(key=ctx.order_key.encode(), value=ctx.payload, headers=headers)
        report = self.ledger.parked_at(inv, ctx.payload, park.meta, due=park.due, reason=park.reason, level=park.level)
        if report is not None and isinstance(inv, Invoice):
            await self._record(self._parked_outcome(inv, park, report))
        metrics.PARKED.labels(self._system(inv.tenant), park.reason).inc()
        log.info(
            "parked %s on %s for %.1f s (%s)",
            inv.invoice_key,
            topic.get_topic_name(),
            park.due - time.time(),
            park.reason,
        )

    def _parked_outcome(self, inv: Invoice, park: Park, kind: str) -> DeliveryOutcome:
        """The outcome ``parked`` (or ``needs_reauth``) of ``inv``, just parked: why, and when it is tried again."""
        due = datetime.fromtimestamp(park.due, UTC)
        if kind == "needs_reauth":
            system = self._system(inv.tenant)
            why = (
                f"needs_reauth: {system} refused {inv.tenant}'s refresh token; re-authorise the connection "
                f"(broker connectors authorize {system} --tenant {inv.tenant})"
            )
        else:
            why = park.reason + (": " + str(park.error) if park.error is not None else ": not called (circuit open)")
        return self._not_sent(
            inv,
            "needs_reauth" if kind == "needs_reauth" else "parked",
            f"{why[:400]}; next attempt at {due.isoformat(timespec='seconds')}",
            self.ledger.order(inv.order_key)["delivered"],
            attempts=park.meta.attempts,
            next_attempt_at=due,
            billed_total=self._billed_total(inv.order_key),
        )

    async def _dead_letter(self, ctx: _Ctx, dead: Dead) -> None:
        inv = ctx.record
        if isinstance(inv, ApprovalDecision):  # pragma: no cover - _run never dead-letters a decision
            raise TypeError("an approval decision is not dead-lettered")
        meta = dead.meta
        system = self._system(inv.tenant) if hasattr(inv, "tenant") else None
        first = datetime.fromtimestamp(meta.first_failure, UTC) if meta.first_failure else _now()
        key = self.deliverer.key_for(inv, replay_count=meta.replay_count) if isinstance(inv, Invoice) else None
        headers = dlq_headers(
            topic=meta.origin_topic,
            partition=meta.origin_partition,
            offset=meta.origin_offset,
            stage="deliver",
            error_class=dead.error_class,
            exc=dead.error,
            tenant=inv.tenant,
            connector=system,
            http_status=dead.http_status,
            attempts=dead.attempts,
            first_failure=first,
            idempotency_key=key,
            replay_count=meta.replay_count,
        )
        await self.fence.ensure()
        await self.dlq_topic.send(key=ctx.order_key.encode(), value=ctx.payload, headers=headers)
        metrics.DEAD_LETTERS.labels("deliver", dead.error_class).inc()
        self.dead_letters.dead_lettered(
            f"{meta.origin_topic}:{meta.origin_partition}:{meta.origin_offset}",
            "deliver",
            dead.error_class,
            dead.error,
            inv.invoice_key,
        )
        if isinstance(inv, Invoice | DocumentChange):
            self.ledger.failed(inv, dead.error_class, dead.error, dead.attempts)
        billed = self.ledger.order(ctx.order_key)["delivered"]
        await self._record(
            DeliveryOutcome(
                invoice_key=_outcome_key(inv),
                event_id=inv.event_id,
                tenant=inv.tenant,
                billing_system=system,
                outcome="dead_lettered",
                error=f"{dead.error_class}: {dead.error}"[:500],
                attempts=dead.attempts,
                external_number=billed.get("external_number") if billed else None,
                billed_total=_total(billed) if billed else None,
                at=_now(),
            )
        )

    async def _dead_letter_raw(
        self, event: EventT[bytes], meta: RecordMeta, error_class: str, exc: BaseException
    ) -> None:
        headers = dlq_headers(
            topic=meta.origin_topic,
            partition=meta.origin_partition,
            offset=meta.origin_offset,
            stage="deliver",
            error_class=error_class,
            exc=exc,
            replay_count=meta.replay_count,
            tenant=tenant_hint(event.value),
        )
        key, value, extra = bounded_copy(event.key, event.value)
        await self.fence.ensure()
        await self.dlq_topic.send(key=key, value=value, headers=headers + extra)
        metrics.DEAD_LETTERS.labels("deliver", error_class).inc()
        self.dead_letters.dead_lettered(
            f"{meta.origin_topic}:{meta.origin_partition}:{meta.origin_offset}", "deliver", error_class, exc, key
        )

    async def _record(self, outcome: DeliveryOutcome) -> None:
        await self.fence.ensure()
        await self.deliveries_topic.send(key=outcome.invoice_key.encode(), value=outcome.model_dump_json().encode())
        metrics.INVOICES_DELIVERED.labels(self._system(outcome.tenant), outcome.outcome).inc()
        log_outcome(outcome)

    # ------------------------------------------------------------------ gauges, shutdown
    async def _refresh_gauges(self) -> None:
        counts: Counter[str] = Counter()
        parked_tenants: set[str] = set()
        oldest: float | None = None  # epoch seconds of the first failure of the longest-parked invoice
        try:
            for key, value in list(self.ledger_table.items()):
                if isinstance(key, str) and not key.startswith("order:") and isinstance(value, dict | str):
                    state = entry_state(value) or "unknown"  # settled entries are compact text
                    counts[state] += 1
                    meta = value.get("meta") if isinstance(value, dict) else None
                    first = meta.get("first_failure") if state == "parked" and isinstance(meta, dict) else None
                    if isinstance(first, (int, float)) and (oldest is None or first < oldest):
                        oldest = float(first)
                    if state == "parked":
                        parked_tenants.add(key.split(":", 1)[0])  # invoice keys start with the tenant
        except RuntimeError:  # table changed while iterating; next tick
            return
        for state in InvoiceLedger.STATES:
            metrics.LEDGER_ENTRIES.labels(state).set(counts.get(state, 0))
        metrics.OLDEST_PARKED.set(0.0 if oldest is None else max(0.0, time.time() - oldest))
        conditions = Counter(self.deliverer.tenant_conditions(parked_tenants).values())
        for condition in TENANT_CONDITIONS:
            metrics.TENANTS.labels(condition).set(conditions.get(condition, 0))

    async def aclose(self) -> None:
        """Log the last dead letters' summary (:class:`~broker.dlq.DeadLetterLog`), close the connectors and
        the outcome reader."""
        self.dead_letters.flush()
        await self.deliverer.aclose()
        await self.outcomes.aclose()


#: The values of ``broker_tenants{state}`` (:meth:`~broker.delivery.Deliverer.tenant_conditions`).
TENANT_CONDITIONS = ("ok", "throttled", "parked", "needs_reauth", "unavailable")


def _dropped_outcome(entry: LedgerEntry, change: DocumentChange, kind: Literal["held", "cancelled"]) -> DeliveryOutcome:
    """The outcome of a queued or parked revision (its ledger ``entry``) that ``change`` took out of the queue."""
    what = "cancelled" if kind == "cancelled" else "reopened"
    key = str(entry.get("corrects") or entry.get("invoice_key"))
    return DeliveryOutcome(
        invoice_key=key,
        tenant=change.tenant,
        billing_system=change.billing_system,
        outcome=kind,
        error=f"{change.order_key} was {what} at revision {change.revision} ({change.change_key}) while revision "
        f"{entry.get('revision')} waited to be delivered: it is not billed",
        at=_now(),
    )


def _change_outcome(change: DocumentChange, decision: Held | Cancelled) -> DeliveryOutcome:
    """The outcome of ``change`` itself, keyed by the invoice version it concerns: what the billing system holds."""
    document = decision.billed if isinstance(decision, Held) else decision.cancel.get("retired")
    fields: dict[str, Any] = {
        "external_id": document.get("external_id") if document else None,
        "external_number": document.get("external_number") if document else None,
    }
    if isinstance(decision, Held):
        holds = f"{fields['external_number']} stays billed" if document else "nothing is billed"
        fields |= {
            "outcome": "held",
            "error": f"{change.order_key} reopened at revision {change.revision}: {holds} until a later revision "
            "completes",
            "billed_total": _total(document) if document else Decimal(0),
        }
    else:
        cancel = decision.cancel
        fields |= {
            "outcome": "cancelled",
            "error": None
            if document
            else f"{change.order_key} cancelled at revision {cancel['revision']}: nothing was billed",
            "total": _total(document),
            "currency": document.get("currency") if document else None,
            "attempts": decision.attempts,
            "amendment": cancel.get("action"),
            "replaced": document.get("invoice_key") if document else None,
            "credit_note_number": cancel.get("credit_note_number"),
            "billed_total": Decimal(0),
        }
    return DeliveryOutcome(
        invoice_key=change.subject_key,
        event_id=change.event_id,
        tenant=change.tenant,
        billing_system=change.billing_system,
        at=_now(),
        **fields,
    )


def install_deliver_stage(
    app: faust.App,
    settings: Settings,
    config: BrokerConfig,
    *,
    invoices_topic: TopicT,
    deliveries_topic: TopicT,
    dlq_topic: TopicT,
    ledger_table: TableT[str, LedgerEntry],
    unavailable: Mapping[str, str] | None = None,
) -> DeliverStage:
    """Create the stage on ``app`` (see :class:`DeliverStage` for the keyword arguments;
    ``unavailable``: :class:`~broker.delivery.Deliverer`'s)."""
    return DeliverStage(
        app,
        settings,
        config,
        invoices_topic=invoices_topic,
        deliveries_topic=deliveries_topic,
        dlq_topic=dlq_topic,
        ledger_table=ledger_table,
        unavailable=unavailable,
    )


__all__ = ["DeliverStage", "TableStore", "install_deliver_stage"]

"""Batched creates: one tenant's new invoices grouped into :meth:`Connector.deliver_many` calls.

Xero takes up to 50 invoices per ``PUT Invoices?summarizeErrors=false`` and QuickBooks up to 30
per ``POST /batch``, each with a result per invoice; both count one call against the tenant's
rate limit (Xero: 60 calls a minute). Calling them once per invoice uses 1/50 of what Xero allows.

A :class:`BatchWindow` per tenant collects the creates of the tenant's invoices that are ready —
each one's ``pending`` ledger entry already durable (:meth:`InvoiceLedger.begin_attempt`), so each
invoice keeps its own attempt cycle — and sends them in one call of at most ``size`` invoices:

* **When.** A call is sent ``linger`` seconds after the first invoice waiting for it — longer while
  more keep arriving in each ``linger``, up to :data:`LINGER_ROUNDS` of them — or at once when
  ``size`` invoices wait; then it waits for one of the tenant's concurrency slots and a
  rate-limiter slot, while more invoices join the next chunk. So a lone invoice waits ``linger``,
  and a backlog behind a throttled system goes out ``size`` invoices per allowed call.
* **Per item.** Each invoice gets its own answer (:class:`~connectors.sdk.interface.BatchItem`):
  its :class:`~connectors.sdk.interface.DeliveryResult`, or its error, raised into its own cycle,
  which classifies it as for a single create — a rejected item is dead-lettered alone, the others
  are delivered. An error of the whole call (429, 5xx, a lost answer) is every item's error: each
  is retried or parked, and one whose answer was lost is looked up by its number first (the
  cycle's reconciliation), never created twice.
* **Order.** Only first creates are batched (an amendment replaces a billed document: it goes
  alone), and the deliver stage runs one record of a document at a time, so two revisions of one
  document are never in one call.
* **Interruptions.** A rebalance or shutdown while invoices wait fails them with
  :class:`~broker.delivery.interrupt.Abandoned` (not sent; their records come again). A call
  already sent finishes; then the fence must prove that this worker still owns the records before
  any answer is handed back (:class:`~broker.delivery.fence.Fenced` otherwise), as after any call.

Used by :class:`broker.delivery.deliverer.AttemptCycle` when the tenant's connector declares
``capabilities.batch_size > 1`` and ``BROKER_BATCH_MAX`` is not 1 (``docs/delivery.md``, "Batched
delivery").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import cast

from broker import metrics
from broker.delivery.fence import Fence
from broker.delivery.interrupt import Abandoned, Interrupt
from broker.delivery.limits import Slot, TenantState
from connectors.sdk.errors import UncertainOutcomeError
from connectors.sdk.interface import BatchItem, DeliveryResult
from connectors.sdk.invoice import Invoice

__all__ = ["BatchWindow", "batch_size_of"]

log = logging.getLogger("broker.delivery")

_Waiting = tuple[Invoice, "asyncio.Future[DeliveryResult]"]

#: A call waits at most this many ``linger`` periods for a full batch while invoices keep arriving.
LINGER_ROUNDS = 4


def batch_size_of(state: TenantState, configured: int) -> int:
    """Invoices per create call for ``state``'s tenant: the connector's ``capabilities.batch_size``,
    capped by ``configured`` (``BROKER_BATCH_MAX``; 0 = no cap). 1 means no batching."""
    size = max(1, int(state.connector.capabilities.batch_size))
    return min(size, configured) if configured > 0 else size


class BatchWindow:
    """The batched creates of one tenant (module docstring).

    ``size``: most invoices per call (≥ 2); ``linger``: seconds a call waits for more invoices after
    the first (0: send what is waiting as soon as a slot is free); ``interrupt``: the deliver stage's;
    ``fence``: proves ownership after each call (``None``: no group, as in unit tests).
    """

    def __init__(
        self, state: TenantState, *, size: int, linger: float, interrupt: Interrupt, fence: Fence | None = None
    ) -> None:
        if size < 2:
            raise ValueError(f"a batch window needs size >= 2, got {size}")
        self.state = state
        self.size = size
        self.linger = max(0.0, linger)
        self.interrupt = interrupt
        self.fence = fence
        self._waiting: deque[_Waiting] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()

    async def create(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` in the tenant's next call; its result. Raises its
        :class:`~connectors.sdk.errors.ConnectorError`, :class:`Abandoned` when interrupted before the
        call was sent, :class:`~broker.delivery.fence.Fenced` when ownership is lost during it."""
        self.interrupt.check()
        future: asyncio.Future[DeliveryResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((invoice, future))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.ensure_future(self._run())
        return await future

    # ------------------------------------------------------------------ the pump
    async def _run(self) -> None:
        """Send chunks while invoices wait; on an interruption fail every waiting one with :class:`Abandoned`."""
        try:
            while self._live():
                await self._linger()
                await self._send_next()
        except Abandoned as exc:
            self._fail_waiting(exc)
        except Exception as exc:  # a bug: every waiting invoice gets it (dead-lettered as internal)
            log.exception("batched creates of tenant %s failed", self.state.tenant)
            self._fail_waiting(exc)

    async def _linger(self) -> None:
        """Wait ``linger`` for more invoices while fewer than ``size`` wait; again while they keep
        coming (records still arriving from Kafka), up to :data:`LINGER_ROUNDS` × ``linger``."""
        waiting = self._live()
        for _ in range(LINGER_ROUNDS):
            if not self.linger or waiting >= self.size:
                return
            await self.interrupt.sleep(self.linger)
            before, waiting = waiting, self._live()
            if waiting == before:
                return

    def _live(self) -> int:
        """Invoices still waiting (dropping those whose cycle has gone: a cancelled task)."""
        while self._waiting and self._waiting[0][1].done():
            self._waiting.popleft()
        return sum(1 for _, future in self._waiting if not future.done())

    def _fail_waiting(self, exc: BaseException) -> None:
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(exc)

    async def _send_next(self) -> None:
        """Take a concurrency slot and a rate-limiter slot, then send up to ``size`` waiting invoices in a task."""
        semaphore = self.state.semaphore
        if semaphore is not None:
            await self.interrupt.acquire(semaphore)
        rate: Slot | None = None
        try:
            if self.state.limiter is not None:
                rate = await self.state.limiter.acquire(self.interrupt)
                if rate.waited:
                    metrics.RATE_LIMIT_WAIT.labels(self.state.system).inc(rate.waited)
            self.interrupt.check()
            chunk: list[_Waiting] = []
            while self._waiting and len(chunk) < self.size:
                waiting = self._waiting.popleft()
                if not waiting[1].done():
                    chunk.append(waiting)
        except BaseException:
            self._release(rate)
            raise
        if not chunk:
            self._release(rate)
            return
        task = asyncio.ensure_future(self._call(chunk, rate))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    def _release(self, rate: Slot | None) -> None:
        if rate is not None and self.state.limiter is not None:
            self.state.limiter.release(rate)
        if self.state.semaphore is not None:
            self.state.semaphore.release()

    async def _call(self, chunk: list[_Waiting], rate: Slot | None) -> None:
        """One ``deliver_many`` call for ``chunk``; each invoice's answer to its waiting cycle."""
        invoices = [invoice for invoice, _ in chunk]
        metrics.BATCH_SIZE.labels(self.state.system).observe(len(invoices))
        items: list[BatchItem] = []
        failure: BaseException | None = None
        try:
            items = await self.state.connector.deliver_many(invoices)
        except Exception as exc:  # noqa: BLE001 - deliver_many reports item errors in items; this is a bug
            failure = exc
        finally:
            self._release(rate)
        if failure is None and [item.invoice_key for item in items] != [invoice.invoice_key for invoice in invoices]:
            failure = UncertainOutcomeError(
                f"{self.state.system} deliver_many answered {len(items)} items for {len(invoices)} invoices "
                "(not one per invoice, in order): each is looked up before any new create"
            )
        if failure is None and self.fence is not None:
            try:
                await self.fence.ensure()
            except Exception as exc:  # noqa: BLE001 - Fenced / Abandoned: nothing is written about the answers
                failure = exc
        for index, (_, future) in enumerate(chunk):
            if future.done():
                continue
            result = items[index].result if failure is None else None
            if failure is not None:
                future.set_exception(failure)
            elif result is not None:
                future.set_result(result)
            else:  # a BatchItem holds exactly one of result and error
                future.set_exception(cast(BaseException, items[index].error))

    async def aclose(self) -> None:
        """Stop the pump and wait for calls in flight (their answers still reach their cycles)."""
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        self._fail_waiting(Abandoned())
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)

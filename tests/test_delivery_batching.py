"""Batched creates (broker/delivery/batching.py) without Kafka: the window's chunks, per-item answers,
whole-call errors, interruptions and the slots; and the Deliverer's cycles through it (pending
durably before the call, one rejected item dead alone, a lost answer reconciled by look-up)."""

from __future__ import annotations

import asyncio

import pytest

from broker.delivery import Dead, Delivered, Deliverer, DictLedgerStore, InvoiceLedger, RateLimiter, RecordMeta
from broker.delivery.batching import BatchWindow, batch_size_of
from broker.delivery.interrupt import Abandoned, Interrupt
from broker.delivery.limits import TenantState
from broker.settings import DeliverySettings, Settings
from connectors.sdk.errors import PermanentError, RateLimitedError, UncertainOutcomeError
from connectors.sdk.interface import BatchItem, Capabilities, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice
from tests.test_xero_connector import make_invoice

META = RecordMeta("billing.invoices", 0, 7)


class BatchConnector:
    """A connector with a batch endpoint of ``size``: ``deliver_many`` records each call's numbers (and the
    ledger state of each invoice at that moment); ``reject``: numbers answered with a PermanentError;
    ``fail``: exceptions raised by the next whole calls; ``existing``: what ``find`` returns by number."""

    name = "fake"

    def __init__(self, size: int = 3, ledger: InvoiceLedger | None = None, delay: float = 0.0):
        self.capabilities = Capabilities(native_idempotency=True, batch_size=size)
        self.settings = None
        self.ledger = ledger
        self.delay = delay
        self.reject: set[str] = set()
        self.fail: list[BaseException] = []
        self.existing: dict[str, ExternalInvoice] = {}
        self.calls: list[list[str]] = []
        self.states: list[list[str | None]] = []
        self.finds: list[str] = []
        self.singles: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def deliver_many(self, invoices):
        self.calls.append([inv.invoice_number for inv in invoices])
        if self.ledger is not None:
            self.states.append([self.ledger.entry(inv.invoice_key).get("state") for inv in invoices])
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.fail:
            raise self.fail.pop(0)
        items = []
        for inv in invoices:
            if inv.invoice_number in self.reject:
                items.append(BatchItem(inv.invoice_key, error=PermanentError(f"{inv.invoice_number}: bad contact")))
            else:
                result = DeliveryResult(inv.invoice_key, f"id-{inv.invoice_number}", inv.invoice_number, True)
                self.existing[inv.invoice_number] = ExternalInvoice(
                    result.external_id, inv.invoice_number, inv.total, "AUTHORISED", marker=inv.invoice_key
                )
                items.append(BatchItem(inv.invoice_key, result=result))
        return items

    async def deliver(self, invoice):
        self.singles.append(invoice.invoice_number)
        return DeliveryResult(invoice.invoice_key, f"id-{invoice.invoice_number}", invoice.invoice_number, True)

    async def find(self, number):
        self.finds.append(number)
        return self.existing.get(number)

    async def aclose(self):
        pass


def _state(connector, concurrency: int = 5, limiter: RateLimiter | None = None) -> TenantState:
    return TenantState("acme", "fake", connector, limiter, asyncio.Semaphore(concurrency))


def _invoices(n: int):
    return [make_invoice(f"ACME-WO-{i}-R1") for i in range(1, n + 1)]


def test_batch_size_is_the_connectors_capped_by_the_setting():
    state = _state(BatchConnector(size=50))
    assert (batch_size_of(state, 0), batch_size_of(state, 20), batch_size_of(state, 1)) == (50, 20, 1)
    assert batch_size_of(_state(BatchConnector(size=1)), 0) == 1
    with pytest.raises(ValueError, match="size >= 2, got 1"):
        BatchWindow(state, size=1, linger=0.0, interrupt=Interrupt())
    env = {"BROKER_BATCH_MAX": "30", "BROKER_BATCH_LINGER_MS": "120"}
    delivery = Settings.from_env(env).delivery
    assert (delivery.batch_max, delivery.batch_linger) == (30, 0.12)
    assert (DeliverySettings().batch_max, DeliverySettings().batch_linger) == (0, 0.05)
    with pytest.raises(ValueError, match=r"BROKER_BATCH_MAX='many' is not an integer"):
        Settings.from_env({"BROKER_BATCH_MAX": "many"})


def test_waiting_creates_go_in_chunks_of_size_each_with_its_own_answer():
    conn = BatchConnector(size=3)

    async def go():
        window = BatchWindow(_state(conn), size=3, linger=0.05, interrupt=Interrupt())
        return await asyncio.gather(*(window.create(inv) for inv in _invoices(7)))

    results = asyncio.run(go())
    assert conn.calls == [
        ["ACME-WO-1-R1", "ACME-WO-2-R1", "ACME-WO-3-R1"],
        ["ACME-WO-4-R1", "ACME-WO-5-R1", "ACME-WO-6-R1"],
        ["ACME-WO-7-R1"],
    ]
    assert [r.external_id for r in results] == [f"id-ACME-WO-{i}-R1" for i in range(1, 8)]


def test_invoices_arriving_while_the_slots_are_busy_join_the_next_call():
    """One concurrency slot, a 0.2 s call: what arrives during the first call goes in one second call."""
    conn = BatchConnector(size=50, delay=0.2)

    async def go():
        window = BatchWindow(_state(conn, concurrency=1), size=50, linger=0.0, interrupt=Interrupt())
        first = asyncio.ensure_future(window.create(make_invoice("ACME-WO-1-R1")))
        await asyncio.sleep(0.05)  # the first call is in flight
        rest = [asyncio.ensure_future(window.create(inv)) for inv in _invoices(6)[1:]]
        await asyncio.gather(first, *rest)

    asyncio.run(go())
    assert [len(call) for call in conn.calls] == [1, 5]
    assert conn.most_in_flight == 1


def test_a_rejected_item_fails_alone_and_a_whole_call_error_fails_every_item():
    conn = BatchConnector(size=3)
    conn.reject = {"ACME-WO-2-R1"}

    async def go():
        window = BatchWindow(_state(conn), size=3, linger=0.02, interrupt=Interrupt())
        first = await asyncio.gather(*(window.create(inv) for inv in _invoices(3)), return_exceptions=True)
        conn.fail = [RateLimitedError("429", retry_after=2.0)]
        second = await asyncio.gather(*(window.create(inv) for inv in _invoices(5)[3:]), return_exceptions=True)
        return first, second

    first, second = asyncio.run(go())
    assert [type(r).__name__ for r in first] == ["DeliveryResult", "PermanentError", "DeliveryResult"]
    assert str(first[1]) == "ACME-WO-2-R1: bad contact"
    assert [type(r).__name__ for r in second] == ["RateLimitedError", "RateLimitedError"]


def test_an_answer_without_one_item_per_invoice_is_uncertain_for_all():
    conn = BatchConnector(size=3)
    original = conn.deliver_many

    async def short(invoices):
        return (await original(invoices))[:-1]

    conn.deliver_many = short  # type: ignore[method-assign]

    async def go():
        window = BatchWindow(_state(conn), size=3, linger=0.02, interrupt=Interrupt())
        return await asyncio.gather(*(window.create(inv) for inv in _invoices(2)), return_exceptions=True)

    out = asyncio.run(go())
    assert [type(r) for r in out] == [UncertainOutcomeError, UncertainOutcomeError]
    assert "answered 1 items for 2 invoices" in str(out[0])


def test_an_interruption_while_waiting_sends_nothing_and_abandons_every_waiting_create():
    conn = BatchConnector(size=50)

    async def go():
        interrupt = Interrupt()
        window = BatchWindow(_state(conn), size=50, linger=0.5, interrupt=interrupt)
        waiting = [asyncio.ensure_future(window.create(inv)) for inv in _invoices(3)]
        await asyncio.sleep(0.05)
        interrupt.set()
        out = await asyncio.gather(*waiting, return_exceptions=True)
        with pytest.raises(Abandoned):
            await window.create(make_invoice("ACME-WO-9-R1"))
        interrupt.clear()
        again = await window.create(make_invoice("ACME-WO-9-R1"))  # a new pump once the stage resumes
        return out, again

    out, again = asyncio.run(go())
    assert [type(r) for r in out] == [Abandoned] * 3
    assert conn.calls == [["ACME-WO-9-R1"]] and again.external_number == "ACME-WO-9-R1"


def test_a_call_waits_for_the_rate_limiter_once_for_all_of_its_invoices():
    conn = BatchConnector(size=50)
    limiter = RateLimiter(2, 0.4, margin=0.0)

    async def go():
        window = BatchWindow(_state(conn, limiter=limiter), size=50, linger=0.0, interrupt=Interrupt())
        for inv in _invoices(2):  # two calls take the window's two slots
            await window.create(inv)
        return await asyncio.gather(*(window.create(inv) for inv in _invoices(40)[2:]))

    asyncio.run(go())
    assert [len(call) for call in conn.calls] == [1, 1, 38]


# =========================================================================== through the Deliverer
def _deliverer(conn, **policy) -> Deliverer:
    d = Deliverer(
        config=None,
        policy=DeliverySettings(
            **{
                "retry_budget": 0.5,
                "retry_initial": 0.01,
                "retry_max": 0.02,
                "park_delays": (1.0, 5.0),
                "batch_linger": 0.02,
                **policy,
            }
        ),
    )
    d._tenants["acme"] = TenantState("acme", "fake", conn, RateLimiter(1000, 60.0), asyncio.Semaphore(5))
    return d


def _process_all(deliverer, invoices, ledger):
    async def go():
        return await asyncio.gather(*(deliverer.process(inv, ledger, META) for inv in invoices))

    return asyncio.run(go())


def test_each_invoice_is_pending_durably_before_its_batch_and_settles_alone():
    ledger = InvoiceLedger(DictLedgerStore())
    conn = BatchConnector(size=3, ledger=ledger)
    conn.reject = {"ACME-WO-2-R1"}
    out = _process_all(_deliverer(conn), _invoices(3), ledger)
    assert (conn.calls, conn.singles) == ([["ACME-WO-1-R1", "ACME-WO-2-R1", "ACME-WO-3-R1"]], [])
    assert conn.states == [["pending", "pending", "pending"]]
    assert ledger.store.flushes == 3
    assert [type(o).__name__ for o in out] == ["Delivered", "Dead", "Delivered"]
    assert isinstance(out[1], Dead) and out[1].error_class == "permanent" and out[1].attempts == 1
    assert [o.result.external_id for o in out if isinstance(o, Delivered)] == ["id-ACME-WO-1-R1", "id-ACME-WO-3-R1"]


def test_a_lost_batch_answer_is_reconciled_by_looking_each_number_up():
    """The billing system created all three, the answer was lost: each is found by its number, none re-created."""
    ledger = InvoiceLedger(DictLedgerStore())
    conn = BatchConnector(size=3, ledger=ledger)
    original = conn.deliver_many

    async def lost_once(invoices):
        await original(invoices)
        conn.deliver_many = original  # type: ignore[method-assign]
        raise UncertainOutcomeError("read timeout after the request was sent")

    conn.deliver_many = lost_once  # type: ignore[method-assign]
    out = _process_all(_deliverer(conn), _invoices(3), ledger)
    assert [type(o).__name__ for o in out] == ["Delivered"] * 3
    assert all(isinstance(o, Delivered) and o.reconciled for o in out)
    assert conn.calls == [["ACME-WO-1-R1", "ACME-WO-2-R1", "ACME-WO-3-R1"]]
    assert sorted(conn.finds) == ["ACME-WO-1-R1", "ACME-WO-2-R1", "ACME-WO-3-R1"]


def test_batch_max_1_creates_one_by_one():
    ledger = InvoiceLedger(DictLedgerStore())
    conn = BatchConnector(size=3, ledger=ledger)
    deliverer = _deliverer(conn, batch_max=1)
    assert deliverer.batch_window(deliverer.state("acme")) is None
    out = _process_all(deliverer, _invoices(3), ledger)
    assert [type(o).__name__ for o in out] == ["Delivered"] * 3
    assert (conn.calls, sorted(conn.singles)) == ([], ["ACME-WO-1-R1", "ACME-WO-2-R1", "ACME-WO-3-R1"])


def test_the_backlog_estimate_counts_calls_of_a_full_batch():
    """Invoices beyond the lane's in-memory limit are parked for about the time the limiter needs for
    those before them: 1,000 invoices at 10 calls per 10 s are 20 calls of 50 (20 s), not 1,000 calls."""
    conn = BatchConnector(size=50)
    for batch_max, expected in ((0, 20.0), (1, 1000.0)):
        deliverer = _deliverer(conn, batch_max=batch_max)
        deliverer._tenants["acme"] = TenantState("acme", "fake", conn, RateLimiter(10, 10.0), asyncio.Semaphore(5))
        assert deliverer.backlog_delay("acme", 1000) == expected

"""The deliver stage's fence (:mod:`broker.delivery.fence`): leases, shared rounds, "not a member"."""

from __future__ import annotations

import asyncio

import pytest

from broker import metrics
from broker.delivery import Abandoned, Fence, Fenced, Interrupt


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Coordinator:
    """A scripted ``confirm``: each round takes the next answer; ``gate`` holds rounds until set."""

    def __init__(self, clock: Clock, *answers: bool | Exception | None) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.asked_at: list[float] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> bool | None:
        self.asked_at.append(self.clock.now)
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _fence(coordinator: Coordinator, clock: Clock, interrupt: Interrupt | None = None) -> Fence:
    return Fence(coordinator, lease=2.0, interrupt=interrupt or Interrupt(), retry_after=0.01, clock=clock)


def test_a_confirmed_round_is_a_lease_from_when_it_was_sent():
    clock = Clock()
    coordinator = Coordinator(clock, True, True)
    fence = _fence(coordinator, clock)

    async def go() -> None:
        await fence.ensure()  # round 1 at 100.0: valid until 102.0
        clock.now = 101.9
        await fence.ensure()  # within the lease: no round
        fence.check()
        clock.now = 102.0
        await fence.ensure()  # lease over: round 2 at 102.0

    asyncio.run(go())
    assert coordinator.asked_at == [100.0, 102.0]
    assert fence.rounds == 2


def test_callers_waiting_together_share_one_round():
    clock = Clock()
    coordinator = Coordinator(clock, True)
    fence = _fence(coordinator, clock)

    async def go() -> None:
        coordinator.gate = asyncio.Event()
        waiters = [asyncio.ensure_future(fence.ensure()) for _ in range(5)]
        await asyncio.sleep(0)
        coordinator.gate.set()
        await asyncio.gather(*waiters)

    asyncio.run(go())
    assert coordinator.asked_at == [100.0]


def test_not_a_member_fences_every_write_until_reset():
    clock = Clock()
    coordinator = Coordinator(clock, False, True)
    fence = _fence(coordinator, clock)
    before = metrics.FENCED._value.get()

    async def go() -> None:
        with pytest.raises(Fenced):
            await fence.ensure()
        with pytest.raises(Fenced):
            await fence.ensure()  # no new round: fenced until reset
        with pytest.raises(Fenced):
            fence.check()
        fence.reset()
        fence.check()
        await fence.ensure()

    asyncio.run(go())
    assert coordinator.asked_at == [100.0, 100.0]
    assert metrics.FENCED._value.get() - before == 1
    assert issubclass(Fenced, Abandoned)


def test_rounds_that_cannot_ask_are_retried():
    clock = Clock()
    coordinator = Coordinator(clock, None, RuntimeError("connection reset"), True)
    fence = _fence(coordinator, clock)
    asyncio.run(fence.ensure())
    assert fence.rounds == 3
    assert not fence.fenced


def test_a_round_answered_after_its_lease_ran_out_proves_nothing():
    clock = Clock()
    coordinator = Coordinator(clock, True, True)

    async def slow() -> bool | None:
        answer = await coordinator()
        if len(coordinator.asked_at) == 1:
            clock.now += 2.5  # the first answer comes after its own lease
        return answer

    fence = Fence(slow, lease=2.0, interrupt=Interrupt(), retry_after=0.01, clock=clock)
    asyncio.run(fence.ensure())
    assert coordinator.asked_at == [100.0, 102.5]


def test_an_interrupt_stops_the_wait_for_a_round():
    clock = Clock()
    coordinator = Coordinator(clock, True)
    interrupt = Interrupt()
    fence = _fence(coordinator, clock, interrupt)

    async def go() -> None:
        coordinator.gate = asyncio.Event()
        waiter = asyncio.ensure_future(fence.ensure())
        await asyncio.sleep(0)
        interrupt.set()
        with pytest.raises(Abandoned):
            await waiter
        coordinator.gate.set()
        await asyncio.sleep(0)

    asyncio.run(go())


def test_the_lease_must_be_positive():
    with pytest.raises(ValueError, match="lease must be positive seconds, got 0"):
        Fence(Coordinator(Clock()), lease=0, interrupt=Interrupt())

"""Fencing: a worker writes ledger entries and publishes outcomes only while it provably owns them.

A worker that is frozen (a stopped process, a long pause, a lost network) while it waits for a
billing system can be expelled from its consumer group; another member then takes its partitions
and handles the same records. When the frozen worker runs again, the answer it was waiting for is
there: without a fence it would write its ledger entry and publish a second outcome for an invoice
the new owner already handled.

The group coordinator keeps a member at least ``session timeout`` after the last heartbeat it
received from it, and, once a rebalance begins, waits ``rebalance timeout`` for it to rejoin before
giving its partitions to anyone else (Kafka's group membership protocol: JoinGroup / Heartbeat;
`KIP-62 <https://cwiki.apache.org/confluence/display/KAFKA/KIP-62>`_). So a heartbeat that the
coordinator answered without error proves ownership until ``min(session, rebalance)`` seconds after
it was **sent**. :class:`Fence` keeps such a proof as a lease (a safety factor below that bound) and
runs a new confirmation round when the lease has run out; concurrent callers share one round.

The deliver stage asks :meth:`Fence.ensure` after every billing-system call, after every long
wait, before every durable ledger write and before every record it publishes; a definite "not a
member" (the coordinator answers that the generation or member id is not current) raises
:class:`Fenced`, an :class:`~broker.delivery.interrupt.Abandoned`: the
record is left unacknowledged, and the group's next owner handles it with the ledger it
recovered. The fence stays closed until :meth:`Fence.reset` (the stage calls it when records flow
again after a rebalance). "A rebalance is in progress" proves nothing either way: the member keeps
its partitions until it rejoins (its own heartbeat sees the same answer, and the rejoin suspends
the stage, which interrupts the wait) or is expelled (then a later answer says so); the round is
repeated meanwhile.

What it cannot cover: a write handed to the Kafka producer right before the worker freezes is sent
when it runs again (only transactional producers are fenced by the brokers themselves). The window
is the time between the check and the producer's send, not the time of a billing-system call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from broker import metrics
from broker.delivery.interrupt import Abandoned, Interrupt

__all__ = ["Fence", "Fenced"]

log = logging.getLogger(__name__)

#: ``confirm()``: True when the coordinator answered that this member is current, False when it answered
#: that it is not (or no longer), None when it could not be asked (no coordinator, a network error).
Confirm = Callable[[], Awaitable[bool | None]]


class Fenced(Abandoned):
    """This worker is not (or no longer) a current member of its consumer group: it must not write
    for its partitions. The record is left unacknowledged for the partition's next owner."""


class Fence:
    """Ownership proof for the deliver stage's writes (module docstring).

    ``confirm``: one confirmation round (:data:`Confirm`); ``lease``: seconds after a confirmed
    round's start during which ownership counts as proven (the caller passes a safety factor times
    ``min(session timeout, rebalance timeout)``); ``interrupt``: stops the wait for a round
    (:class:`Abandoned`); ``retry_after``: seconds between rounds that could not ask the
    coordinator; ``clock``: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        confirm: Confirm,
        *,
        lease: float,
        interrupt: Interrupt,
        retry_after: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if lease <= 0:
            raise ValueError(f"lease must be positive seconds, got {lease!r}")
        self._confirm = confirm
        self.lease = lease
        self.interrupt = interrupt
        self.retry_after = retry_after
        self._clock = clock
        self._valid_until = -math.inf
        self._fenced = False
        self._round: asyncio.Future[bool | None] | None = None
        self.rounds = 0  # confirmation rounds run (for tests and the debug log)

    @property
    def fenced(self) -> bool:
        """True after a definite "not a member" answer, until :meth:`reset`."""
        return self._fenced

    def reset(self) -> None:
        """Forget the proof and the fenced state (records flow again after a rebalance: a new
        generation must be proven anew)."""
        self._valid_until = -math.inf
        self._fenced = False

    def check(self) -> None:
        """Raise :class:`Fenced` when a round answered "not a member" (synchronous writes)."""
        if self._fenced:
            raise Fenced

    async def ensure(self) -> None:
        """Return when ownership is proven now (a lease still running, or a new round confirmed it).

        Raises :class:`Fenced` on a "not a member" answer, :class:`Abandoned` when the stage is
        interrupted while waiting; retries every ``retry_after`` seconds while the coordinator
        cannot be asked."""
        while True:
            self.check()
            if self._clock() < self._valid_until:
                return
            if self._round is None:
                self._round = asyncio.ensure_future(self._run_round())
            current = self._round
            await self.interrupt.wait_for(current)
            self.check()
            if self._clock() < self._valid_until:
                return
            if current.result() is None:
                await self.interrupt.sleep(self.retry_after)

    async def _run_round(self) -> bool | None:
        sent = self._clock()
        self.rounds += 1
        try:
            answer = await self._confirm()
        except Exception as exc:  # noqa: BLE001 - a failed round is "could not ask"; the next one retries
            log.debug("group membership could not be confirmed: %r", exc)
            answer = None
        finally:
            self._round = None
        if answer is True:
            self._valid_until = max(self._valid_until, sent + self.lease)
            if self._clock() >= self._valid_until:
                log.warning("a group membership round took %.1f s, longer than the lease", self._clock() - sent)
        elif answer is False and not self._fenced:
            self._fenced = True
            metrics.FENCED.inc()
            log.warning(
                "this worker is no longer a current member of its consumer group: no ledger write and no "
                "published record for its partitions until the group has reassigned them"
            )
        return answer

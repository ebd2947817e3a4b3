"""Stopping the deliver stage's waits at a safe point when the worker lets go of its records."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

__all__ = ["Abandoned", "Interrupt"]


class Abandoned(Exception):  # noqa: N818 - public name used by the deliver stage
    """The worker is rebalancing or stopping: stop at this safe point without acknowledging.

    Nothing is lost: the record's offset is not committed, so it is delivered again (to this or
    another worker) and the ledger tells what already happened.
    """


class Interrupt:
    """Raised into every wait of the stage when the worker must let go of its records.

    :meth:`set` interrupts every current and later wait (:class:`Abandoned`) until :meth:`clear`.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def is_set(self) -> bool:
        """True while waits are interrupted."""
        return self._event.is_set()

    def set(self) -> None:
        """Interrupt every current and later wait."""
        self._event.set()

    def clear(self) -> None:
        """Let waits run again."""
        self._event.clear()

    def check(self) -> None:
        """Raise :class:`Abandoned` when interrupted."""
        if self._event.is_set():
            raise Abandoned

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` unless interrupted (then :class:`Abandoned`)."""
        self.check()
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        try:
            await asyncio.wait_for(self._event.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Abandoned

    async def wait_for(self, future: Awaitable[object]) -> None:
        """Wait until ``future`` is done (it is not cancelled on interruption: :class:`Abandoned`)."""
        self.check()
        fut = asyncio.ensure_future(future)
        if fut.done():
            return
        stopper = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({fut, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not fut.done():
            raise Abandoned

    async def acquire(self, semaphore: asyncio.Semaphore) -> None:
        """Acquire ``semaphore`` unless interrupted first (then :class:`Abandoned`, holding nothing: a
        grant that arrived meanwhile is released, a pending one cancelled)."""
        grant = asyncio.ensure_future(semaphore.acquire())
        try:
            await self.wait_for(grant)
        except Abandoned:
            if grant.done() and not grant.cancelled() and grant.exception() is None:
                semaphore.release()
            else:
                grant.cancel()
            raise

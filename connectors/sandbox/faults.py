"""Injectable faults: a queue of :class:`Fault` entries taken by the calls they match.

Kinds every emulator understands (each lists the ones it offers): ``"503"``/``"500"`` answer that
status without processing, ``"429"`` a rate limit with ``Retry-After``, ``"reset"`` a TCP reset before
processing, ``"timeout_after_commit"`` processes, then holds the socket ``hang_seconds`` and closes it
unanswered, ``"drop_after_commit"`` processes, then closes the connection unanswered.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from dataclasses import dataclass

from connectors.sandbox.http import Response

FAULT_KINDS = ("503", "500", "429", "reset", "timeout_after_commit", "drop_after_commit")
AFTER_COMMIT = frozenset({"timeout_after_commit", "drop_after_commit"})
BEFORE_PROCESSING = frozenset({"503", "500", "429", "reset"})
WRITE_METHODS = frozenset({"POST", "PUT"})


@dataclass
class Fault:
    kind: str
    #: only calls with this HTTP method
    method: str | None = None
    #: only calls whose path matches this glob (``/v1/invoices/*/finalize``)
    path: str | None = None
    #: only calls of this operation (the emulator's name for it)
    operation: str | None = None
    #: matching calls let through before the fault hits
    after: int = 0
    #: ``Retry-After`` seconds of a ``"429"``
    retry_after: int | None = None

    def matches(self, method: str, path: str, operation: str | None) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.path is not None and not fnmatch.fnmatchcase(path, self.path):
            return False
        return self.operation is None or self.operation == operation


class FaultQueue:
    """Pending faults, in the order they were injected (callers hold the emulator's lock).

    ``in_order``: only the oldest fault is considered (a fault that does not match holds the others
    back); ``after_commit_on_writes``: after-commit faults wait for the next write (``POST``/``PUT``), so
    a lookup before the create does not consume them; ``targeted_first``: faults aimed at the call's
    operation win over untargeted ones injected earlier.
    """

    def __init__(
        self,
        kinds: tuple[str, ...] = FAULT_KINDS,
        *,
        in_order: bool = False,
        after_commit_on_writes: bool = False,
        targeted_first: bool = False,
    ) -> None:
        self.kinds = kinds
        self.in_order = in_order
        self.after_commit_on_writes = after_commit_on_writes
        self.targeted_first = targeted_first
        self._entries: deque[Fault] = deque()

    def check(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(self.kinds)}")

    def add(self, fault: Fault, times: int = 1, *, after_each: bool = True) -> None:
        """Queue ``times`` copies of ``fault``; ``after_each=False``: only the first waits ``fault.after`` calls."""
        self.check(fault.kind)
        for i in range(int(times)):
            after = fault.after if after_each or i == 0 else 0
            self._entries.append(Fault(fault.kind, fault.method, fault.path, fault.operation, after, fault.retry_after))

    def take(self, method: str = "", path: str = "", operation: str | None = None) -> Fault | None:
        """The fault that hits this call (removed from the queue), or ``None``."""
        entries: list[Fault] = list(self._entries)
        if self.targeted_first and operation is not None:
            aimed = [f for f in entries if f.operation == operation]
            entries = aimed or [f for f in entries if f.operation is None]
        for fault in entries:
            if not fault.matches(method, path, operation):
                if self.in_order:
                    return None
                continue
            if self.after_commit_on_writes and fault.kind in AFTER_COMMIT and method not in WRITE_METHODS:
                return None
            if fault.after > 0:
                fault.after -= 1
                return None
            self._entries.remove(fault)
            return fault
        return None

    def entries(self) -> list[Fault]:
        return list(self._entries)

    def kinds_pending(self) -> list[str]:
        return [f.kind for f in self._entries]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def after_commit(resp: Response, kind: str | None) -> Response:
    """``resp`` with the action of an after-commit fault (the request was processed; no answer is sent)."""
    if kind == "timeout_after_commit":
        resp.action = "hang"
    elif kind == "drop_after_commit":
        resp.action = "drop"
    return resp

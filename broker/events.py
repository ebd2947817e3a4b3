"""Canonical maintenance events: CloudEvents 1.0, structured JSON mode.

A maintenance platform (or its adapter) publishes one of these on the ``maintenance.events``
topic. The envelope follows the CloudEvents 1.0 spec (https://github.com/cloudevents/spec,
``spec.md`` and ``formats/json-format.md``): ``specversion``, ``id``, ``source``, ``type``,
``time``, ``subject``, ``datacontenttype`` and ``data``, plus the extension attribute ``tenant``
(the maintenance company whose billing system receives the invoice).

Types:

* ``maintenance.work_order.completed`` – a work order's completion was confirmed (data:
  :class:`WorkOrderCompletedData`).
* ``maintenance.scheduled_job.closed`` – a scheduled (preventive) job was closed
  (data: :class:`ScheduledJobClosedData`).
* ``maintenance.quote.approved`` – a quote was approved by the client (data: :class:`QuoteApprovedData`).

Money and quantities are :class:`decimal.Decimal`; in JSON write them as strings (``"24.00"``).
Times must carry a UTC offset (``2026-03-14T09:05:00+00:00``); naive times are refused.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

WORK_ORDER_COMPLETED = "maintenance.work_order.completed"
SCHEDULED_JOB_CLOSED = "maintenance.scheduled_job.closed"
QUOTE_APPROVED = "maintenance.quote.approved"
EVENT_TYPES = (WORK_ORDER_COMPLETED, SCHEDULED_JOB_CLOSED, QUOTE_APPROVED)

Id = Annotated[str, Field(min_length=1, max_length=128)]
PositiveDecimal = Annotated[Decimal, Field(gt=0)]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeEntry(_Strict):
    """Time a technician clocked on the job.

    Either ``start`` and ``end`` (both with UTC offset) or ``duration_seconds`` must be given
    (``start`` + ``duration_seconds`` is accepted too). ``break_minutes`` is unpaid break time
    inside the entry and is subtracted (for time bands, from the end of the entry). ``kind``
    ``travel`` is time on the road, billed at the travel rate (or by ``distance_km`` when the
    tenant bills mileage). ``outside_quote`` marks extra work on a work order that executes a quote.
    """

    id: Id
    technician_id: Id
    skill: str | None = Field(default=None, description="Overrides the technician's skill for this entry.")
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    duration_seconds: Annotated[int, Field(gt=0)] | None = None
    break_minutes: Annotated[int, Field(ge=0)] = 0
    kind: Literal["work", "travel"] = "work"
    visit_id: str | None = Field(default=None, description="Groups entries into one visit; defaults to the event.")
    distance_km: NonNegativeDecimal | None = Field(
        default=None, description="Distance driven (travel entries only); billed when the tenant bills travel by mileage.")
    outside_quote: bool = Field(
        default=False, description="On a work order executing a quote: this time is an extra, billed on top of the quote.")

    @model_validator(mode="after")
    def _start_end_or_duration(self) -> "TimeEntry":
        if self.distance_km is not None and self.kind != "travel":
            raise ValueError("distance_km is only allowed on travel entries (kind 'travel')")
        if self.start is None and self.duration_seconds is None:
            raise ValueError("time entry needs start and end, or duration_seconds")
        if self.start is not None and self.end is None and self.duration_seconds is None:
            raise ValueError("time entry has start but neither end nor duration_seconds")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        return self

    @property
    def seconds(self) -> int:
        """Worked seconds: ``end - start`` (or ``duration_seconds``) minus breaks, never below 0."""
        if self.start is not None and self.end is not None:
            total = int((self.end - self.start).total_seconds())
        else:
            total = int(self.duration_seconds or 0)
        return max(0, total - self.break_minutes * 60)


class PartUsage(_Strict):
    """A part (or consumable) used on the job. ``quantity`` may be fractional (``"2.5"`` kg).

    ``category`` selects the tenant's markup for that category; ``client_supplied`` parts are
    neither billed nor costed; ``outside_quote`` marks an extra on a work order executing a quote.
    """

    id: Id
    sku: Id
    description: str = Field(min_length=1, max_length=500)
    quantity: PositiveDecimal
    unit: str = "un"
    unit_cost: NonNegativeDecimal | None = Field(default=None, description="Our purchase cost per unit, when known.")
    unit_price: NonNegativeDecimal | None = Field(default=None, description="Sell price per unit from the platform's catalogue, when known.")
    category: str | None = Field(default=None, description="Part category (selects the markup); default the tenant catalogue's.")
    client_supplied: bool = Field(default=False, description="The client supplied the part: not billed, not costed.")
    outside_quote: bool = Field(
        default=False, description="On a work order executing a quote: this part is an extra, billed on top of the quote.")


class Expense(_Strict):
    """An expense incurred on the job (parking, tolls, ...). ``amount`` is net of VAT, in the tenant currency."""

    id: Id
    description: str = Field(min_length=1, max_length=500)
    amount: NonNegativeDecimal
    billable: bool = True
    outside_quote: bool = Field(
        default=False, description="On a work order executing a quote: this expense is billed on top of the quote.")


class QuoteLine(_Strict):
    """An approved quote line: fixed price. ``tax_rate`` is a percentage (``"23"``); default the tenant's VAT."""

    id: Id
    description: str = Field(min_length=1, max_length=500)
    quantity: PositiveDecimal
    unit_price: NonNegativeDecimal
    tax_rate: NonNegativeDecimal | None = None
    sku: str | None = None


class _WorkData(_Strict):
    revision: Annotated[int, Field(ge=1)] = 1
    client_id: Id
    site_id: Id
    contract_ref: str | None = None
    time_entries: list[TimeEntry] = Field(default_factory=list)
    parts: list[PartUsage] = Field(default_factory=list)
    expenses: list[Expense] = Field(default_factory=list)
    summary: str | None = Field(default=None, max_length=500, description="Short description shown on the invoice.")


class WorkOrderCompletedData(_WorkData):
    """Data of ``maintenance.work_order.completed``."""

    work_order_id: Id
    kind: Literal["corrective", "preventive"] = "corrective"
    quote_id: str | None = Field(default=None, description="Approved quote this work order executes, if any.")


class ScheduledJobClosedData(_WorkData):
    """Data of ``maintenance.scheduled_job.closed`` (preventive maintenance visit)."""

    scheduled_job_id: Id
    kind: Literal["preventive"] = "preventive"


class QuoteApprovedData(_Strict):
    """Data of ``maintenance.quote.approved``."""

    quote_id: Id
    revision: Annotated[int, Field(ge=1)] = 1
    client_id: Id
    site_id: Id
    work_order_id: str | None = None
    contract_ref: str | None = None
    lines: list[QuoteLine] = Field(min_length=1)
    summary: str | None = Field(default=None, max_length=500)


class _CloudEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"]
    id: Id
    source: str = Field(min_length=1, description="URI-reference of the publishing platform.")
    time: AwareDatetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    tenant: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]

    # -- identity ---------------------------------------------------------------------------
    @property
    def document(self) -> str:
        """Short document kind: ``wo`` (work order), ``sj`` (scheduled job) or ``qt`` (quote)."""
        raise NotImplementedError

    @property
    def business_id(self) -> str:
        """The platform id of the work order / scheduled job / quote."""
        raise NotImplementedError

    @property
    def revision(self) -> int:
        return self.data.revision  # type: ignore[attr-defined]

    @property
    def partition_key(self) -> str:
        """Kafka key on ``maintenance.events``: ``tenant:doc:id`` keeps one document's events ordered."""
        return f"{self.tenant}:{self.document}:{self.business_id}"

    @property
    def invoice_key(self) -> str:
        """Identity of the invoice this event produces: ``tenant:doc:id:rN``."""
        return f"{self.partition_key}:r{self.revision}"


class WorkOrderCompleted(_CloudEvent):
    """CloudEvent ``maintenance.work_order.completed``."""

    type: Literal["maintenance.work_order.completed"]
    data: WorkOrderCompletedData

    document = property(lambda self: "wo")  # type: ignore[assignment]
    business_id = property(lambda self: self.data.work_order_id)  # type: ignore[assignment]


class ScheduledJobClosed(_CloudEvent):
    """CloudEvent ``maintenance.scheduled_job.closed``."""

    type: Literal["maintenance.scheduled_job.closed"]
    data: ScheduledJobClosedData

    document = property(lambda self: "sj")  # type: ignore[assignment]
    business_id = property(lambda self: self.data.scheduled_job_id)  # type: ignore[assignment]


class QuoteApproved(_CloudEvent):
    """CloudEvent ``maintenance.quote.approved``."""

    type: Literal["maintenance.quote.approved"]
    data: QuoteApprovedData

    document = property(lambda self: "qt")  # type: ignore[assignment]
    business_id = property(lambda self: self.data.quote_id)  # type: ignore[assignment]


MaintenanceEvent = Annotated[
    Union[WorkOrderCompleted, ScheduledJobClosed, QuoteApproved], Field(discriminator="type")
]
_ADAPTER: TypeAdapter[MaintenanceEvent] = TypeAdapter(MaintenanceEvent)


class EventDecodeError(ValueError):
    """Raised when bytes are not a valid maintenance CloudEvent.

    ``error_class`` is one of ``not_json``, ``not_cloudevent``, ``unknown_type``, ``invalid``;
    the message names the offending field path and value.
    """

    def __init__(self, error_class: str, message: str):
        super().__init__(message)
        self.error_class = error_class


def parse_event(raw: bytes | str | dict) -> WorkOrderCompleted | ScheduledJobClosed | QuoteApproved:
    """Decode and validate one event.

    ``raw`` is JSON bytes/str or an already-decoded dict. Raises :class:`EventDecodeError`
    with an ``error_class`` and a message naming the field path and the bad value.
    """
    import json

    if isinstance(raw, (bytes, str)):
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventDecodeError("not_json", f"value is not JSON: {exc}") from None
    else:
        obj = raw
    if not isinstance(obj, dict) or "specversion" not in obj or "type" not in obj:
        missing = "specversion" if not isinstance(obj, dict) or "specversion" not in obj else "type"
        raise EventDecodeError("not_cloudevent", f"not a CloudEvent: field '{missing}' is missing")
    if obj["type"] not in EVENT_TYPES:
        raise EventDecodeError(
            "unknown_type", f"field 'type': unknown event type {obj['type']!r}; expected one of {', '.join(EVENT_TYPES)}"
        )
    from pydantic import ValidationError

    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise EventDecodeError("invalid", describe_validation_error(exc, strip_first=True)) from None


def describe_validation_error(exc: "ValidationError", strip_first: bool = False) -> str:  # noqa: F821
    """One line per error: ``field.path: message (got 'value')``.

    ``strip_first`` drops the union tag pydantic puts first in discriminated unions.
    """
    parts = []
    for err in exc.errors():
        loc = list(err["loc"])
        if strip_first and loc:
            loc = loc[1:]
        path = ".".join(str(p) for p in loc) or "(root)"
        msg = err["msg"]
        if err["type"] == "missing":
            parts.append(f"field '{path}': is required")
        else:
            parts.append(f"field '{path}': {msg} (got {err.get('input')!r})")
    return "; ".join(parts)


def event_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of any maintenance event (the discriminated union)."""
    return _ADAPTER.json_schema()


def event_time(event: WorkOrderCompleted | ScheduledJobClosed | QuoteApproved) -> datetime:
    """The CloudEvent ``time`` attribute (aware datetime)."""
    return event.time

"""CloudEvents protocol bindings: binary and batched content modes, turned into structured events.

The broker's own form of an event is the structured JSON mode (:mod:`broker.events`). A platform
may also send a CloudEvent in *binary* mode, its attributes in headers and its ``data`` as the body,
or several events as a *batch*. These pure functions (no I/O) turn both into structured events, so
that one parser (:func:`broker.events.parse_event`) validates every event the same way.

Sources (CloudEvents 1.0.2, https://github.com/cloudevents/spec):

* HTTP protocol binding (``cloudevents/bindings/http-protocol-binding.md``): §3.1.3 binary mode,
  every attribute in a ``ce-<name>`` header (header names are case-insensitive), the values
  percent-encoded (§3.1.3.2: ``%`` followed by two hex digits for bytes outside printable ASCII, and
  for ``"`` and ``%``); ``Content-Type`` is ``datacontenttype``. §3.2 structured mode,
  ``application/cloudevents+json``; §3.3 batched mode, ``application/cloudevents-batch+json``, a
  JSON array of structured events.
* Kafka protocol binding (``cloudevents/bindings/kafka-protocol-binding.md``): §3.2 binary mode,
  every attribute in a ``ce_<name>`` header as UTF-8 text, ``content-type`` header for
  ``datacontenttype``; a record without ``ce_specversion`` is in structured mode.

Every failure is an :class:`~broker.events.EventDecodeError` naming the header or the batch item.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from broker.events import MAX_EVENT_BYTES, EventDecodeError, json_media_type_problem, show_value

__all__ = [
    "BATCH",
    "STRUCTURED",
    "http_binary_attributes",
    "kafka_structured",
    "media_type",
    "split_batch",
    "structured_from_binary",
]

#: Media type of one event in structured mode (HTTP binding §3.2).
STRUCTURED = "application/cloudevents+json"
#: Media type of a batch of structured events (HTTP binding §3.3).
BATCH = "application/cloudevents-batch+json"

_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def media_type(content_type: str | None) -> str:
    """``type/subtype`` of a ``Content-Type`` value, lower-cased, without parameters (``""`` for none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _json(raw: bytes, what: str) -> Any:
    """``raw`` decoded as UTF-8 JSON (a leading BOM ignored); :class:`EventDecodeError` ``not_json``
    naming ``what`` otherwise."""
    try:
        return json.loads(raw.decode("utf-8").removeprefix("\ufeff"))
    except UnicodeDecodeError as exc:
        raise EventDecodeError(
            "not_json", f"{what} is not JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise EventDecodeError("not_json", f"{what} is not JSON: {str(exc)[:200]}") from None


def structured_from_binary(attributes: Mapping[str, str], content_type: str | None, data: bytes) -> bytes:
    """A structured event (UTF-8 JSON) from binary mode: ``attributes`` (``{name: value}``, names
    without the ``ce-``/``ce_`` prefix, lower-case), the ``Content-Type`` (``datacontenttype``;
    ``None``: ``application/json``) and the body ``data`` (JSON). Raises :class:`EventDecodeError`:
    ``too_large`` over :data:`~broker.events.MAX_EVENT_BYTES`, ``not_json`` when ``data`` is not UTF-8
    JSON, ``invalid`` for a content type other than JSON or ``data`` given as an attribute too."""
    if len(data) > MAX_EVENT_BYTES:
        raise EventDecodeError(
            "too_large",
            f"data is {len(data)} bytes; the limit is {MAX_EVENT_BYTES} bytes ({MAX_EVENT_BYTES // 1024} KiB)",
        )
    if "data" in attributes or "data_base64" in attributes:
        raise EventDecodeError("invalid", "header 'ce-data': in binary mode the data is the body, not a header")
    if content_type is not None and (problem := json_media_type_problem(content_type)) is not None:
        raise EventDecodeError("invalid", f"header 'content-type': {show_value(content_type)}: {problem}")
    value = _json(data, "data")
    event: dict[str, Any] = dict(attributes)
    event["datacontenttype"] = content_type if content_type is not None else "application/json"
    event["data"] = value
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def http_binary_attributes(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The CloudEvents attributes of HTTP binary mode: every ``ce-<name>`` header (any case) as
    ``{name: value}``, the value percent-decoded as UTF-8 (HTTP binding §3.1.3.2). Raises
    :class:`EventDecodeError` (``invalid``) naming a header given twice, a bad ``%`` escape or a
    value that is not UTF-8 once decoded."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if not name.startswith("ce-"):
            continue
        attribute = name[3:]
        if attribute in out:
            raise EventDecodeError("invalid", f"header {show_value(raw_name)} is given more than once")
        if _PERCENT.search(raw_value):
            raise EventDecodeError(
                "invalid",
                f"header {show_value(raw_name)}: {show_value(raw_value)} has a '%' not followed by two hex digits",
            )
        try:
            out[attribute] = unquote_to_bytes(raw_value).decode("utf-8")
        except UnicodeDecodeError:
            raise EventDecodeError(
                "invalid", f"header {show_value(raw_name)}: {show_value(raw_value)} is not UTF-8 once percent-decoded"
            ) from None
    return out


def kafka_structured(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None, value: bytes) -> bytes:
    """The structured form of a record on ``maintenance.events``: ``value`` itself in structured mode,
    the event built from the ``ce_*`` and ``content-type`` headers and ``value`` in binary mode
    (Kafka binding §3.2: a record with a ``ce_specversion`` header). Raises :class:`EventDecodeError`
    like :func:`structured_from_binary`, and ``invalid`` naming a header that is not UTF-8."""
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    if not any(name == "ce_specversion" for name, _ in pairs):
        return value
    attributes: dict[str, str] = {}
    content_type: str | None = None
    for name, raw in pairs:
        if name != "content-type" and not name.startswith("ce_"):
            continue
        try:
            text = bytes(raw).decode("utf-8") if raw is not None else ""
        except UnicodeDecodeError:
            raise EventDecodeError("invalid", f"header {show_value(name)} is not UTF-8") from None
        if name == "content-type":
            content_type = text
        else:
            attributes[name[3:]] = text
    return structured_from_binary(attributes, content_type, value)


def split_batch(body: bytes) -> list[bytes]:
    """The events of a batch (a JSON array of structured events, HTTP binding §3.3), each re-encoded
    as UTF-8 JSON for :func:`~broker.events.parse_event`. Raises :class:`EventDecodeError`
    (``not_json``) when the body is not a JSON array, naming the first item that is not an object."""
    value = _json(body, "batch")
    if not isinstance(value, list):
        raise EventDecodeError("not_json", "a batch is a JSON array of CloudEvents")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise EventDecodeError("not_cloudevent", f"batch item {index}: not a JSON object")
    return [json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8") for item in value]

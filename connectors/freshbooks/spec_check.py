"""Validate requests to the FreshBooks emulator against the field reference (community OpenAPI file).

FreshBooks publishes no OpenAPI description. The file used here is the community (WSO2/Ballerina)
``openapi.yaml`` copied byte-for-byte to ``tests/specs/freshbooks/`` (provenance in
``tests/specs/README.md``). It is partial, so it is used as a *field reference*:

* ``POST .../invoices/invoices`` bodies against ``InvoiceCreateObject`` (``{"invoice": InvoiceCreate}``)
  and ``PUT .../invoices/invoices/{id}`` against ``InvoiceUpdateObject``, ``POST .../users/clients``
  against ``ClientCreateObject`` — with **unknown property names refused** (catches typos such as
  ``taxamount1`` that FreshBooks would silently ignore);
* deviations from the community file, each backed by an official source: line ``qty`` may be any
  JSON number (the file says integer; FreshBooks bills fractional hours), and the update actions of
  the official SDK example ``create_invoice_extended.py`` (``action_email``, ``email_recipients``,
  ``email_include_pdf``, ``invoice_customized_email``) plus ``action_mark_as_sent``
  (billing-apis.md §5) are allowed on updates;
* money objects must carry string amounts (``{"amount": "27.00", "code": "CAD"}``, as in the SDK examples).

:func:`make_request_validator` returns ``validate(method, path, query, headers, body)`` raising
:class:`SpecValidationError` (a ``ValueError``) listing the first problems.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator

RequestValidator = Callable[[str, str, dict, dict, bytes], None]

#: Update actions allowed beyond the community file (official SDK example / billing-apis.md §5).
UPDATE_ACTIONS: dict[str, Any] = {
    "action_email": {"type": "boolean"},
    "action_mark_as_sent": {"type": "boolean"},
    "email_recipients": {"type": "array", "items": {"type": "string"}},
    "email_include_pdf": {"type": "boolean"},
    "invoice_customized_email": {
        "type": "object",
        "properties": {"subject": {"type": "string"}, "body": {"type": "string"}},
        "additionalProperties": False,
    },
}


class SpecValidationError(ValueError):
    """A request does not match the FreshBooks field reference."""


def _forbid_unknown(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _forbid_unknown(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_unknown(value)


@functools.lru_cache(maxsize=4)
def _validators(spec_path: str) -> dict[str, Draft4Validator]:
    spec = yaml.safe_load(Path(spec_path).read_text(encoding="utf-8"))
    schemas = copy.deepcopy(spec["components"]["schemas"])
    for name in ("InvoiceCreateObject", "InvoiceUpdateObject", "ClientCreateObject", "InvoiceLinesWritable"):
        if name not in schemas:
            raise ValueError(f"{spec_path}: components/schemas/{name} not found")
    schemas["InvoiceLinesWritable"]["properties"]["qty"] = {"type": "number"}
    for money_field in ("amount",):
        schemas["InvoiceLinesWritable"]["properties"]["unit_cost"]["properties"][money_field]["pattern"] = (
            r"^-?\d+(\.\d+)?$"
        )
    schemas["InvoiceUpdate"]["properties"].update(copy.deepcopy(UPDATE_ACTIONS))
    _forbid_unknown(schemas)
    root = {"schemas": schemas}
    return {
        name: Draft4Validator({"components": root, "$ref": f"#/components/schemas/{name}"})
        for name in ("InvoiceCreateObject", "InvoiceUpdateObject", "ClientCreateObject")
    }


def _describe(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "<body>"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{where}: {message}"


def body_problems(spec_path: str | Path, schema: str, document: Any) -> list[str]:
    """Problems of a parsed body against ``InvoiceCreateObject``/``InvoiceUpdateObject``/``ClientCreateObject``."""
    validator = _validators(str(Path(spec_path).resolve()))[schema]
    return [
        _describe(e) for e in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    ]


_ROUTES = [
    ("POST", re.compile(r"^/accounting/account/[^/]+/invoices/invoices/?$"), "InvoiceCreateObject"),
    ("PUT", re.compile(r"^/accounting/account/[^/]+/invoices/invoices/\d+/?$"), "InvoiceUpdateObject"),
    ("POST", re.compile(r"^/accounting/account/[^/]+/users/clients/?$"), "ClientCreateObject"),
]


def make_request_validator(spec_path: str | Path) -> RequestValidator:
    """Build (once) and return ``validate(method, path, query, headers, body) -> None`` for the routes above."""
    spec_path = str(Path(spec_path).resolve())
    validators = _validators(spec_path)

    def validate(method: str, path: str, query: dict, headers: dict, body: bytes) -> None:
        schema = next((name for m, pattern, name in _ROUTES if m == method.upper() and pattern.match(path)), None)
        if schema is None:
            return
        problems: list[str] = []
        content_type = str({k.lower(): v for k, v in (headers or {}).items()}.get("content-type", ""))
        if "json" not in content_type:
            problems.append(f"header Content-Type: {content_type!r}, expected application/json")
        try:
            document = json.loads(body or b"", parse_float=Decimal)
        except ValueError as exc:
            problems.append(f"<body>: not JSON ({exc})")
        else:
            problems.extend(
                _describe(e)
                for e in sorted(
                    validators[schema].iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
                )
            )
        if problems:
            shown = problems[:5]
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            raise SpecValidationError(
                f"{method.upper()} {path} does not match components/schemas/{schema}: " + "; ".join(shown) + more
            )

    return validate


__all__ = ["UPDATE_ACTIONS", "SpecValidationError", "body_problems", "make_request_validator"]

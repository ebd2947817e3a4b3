"""Validate requests to the QuickBooks emulator against the field reference (community OpenAPI file).

Intuit publishes no OpenAPI description of the QBO Accounting API. The file used here is the
community (WSO2/Ballerina) ``openapi.yaml`` copied byte-for-byte to ``tests/specs/quickbooks/``
(provenance in ``tests/specs/README.md``). It is *partial* and *not valid strict YAML* (literal TAB
characters inside two description blocks), so:

* it is parsed with every TAB replaced by two spaces, in memory only (the file is never edited);
* request bodies of ``POST .../invoice`` (and each ``Invoice`` of ``POST .../batch``) are checked
  against ``components/schemas/InvoiceCreateObject`` with **unknown property names refused**
  (QBO itself answers error 2010 for them), and ``POST .../customer`` against ``CustomerCreateObject``;
* where the community file leaves a field open (``Line`` is ``items: {}``, ``TxnTaxDetail`` is a
  bare ``object``), :data:`SUPPLEMENT` adds the shape from Intuit's entity reference
  (https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/invoice):
  ``SalesItemLine`` and ``TxnTaxDetail``/``TaxLine``;
* query parameters: ``minorversion`` an integer, ``requestid`` ≤ 50 characters (≤ 36 on ``/batch``),
  per billing-apis.md §3 (the community file lacks both).

:func:`make_request_validator` returns ``validate(method, path, query, headers, body)`` raising
:class:`SpecValidationError` (a ``ValueError``) that lists the first problems.
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

_REF = {
    "type": "object",
    "properties": {"value": {"type": "string", "minLength": 1}, "name": {"type": "string"}},
    "required": ["value"],
    "additionalProperties": False,
}
_NUMBER = {"type": "number"}

#: Shapes the community file leaves open, from Intuit's Invoice entity reference.
SUPPLEMENT: dict[str, Any] = {
    "SalesItemLine": {
        "type": "object",
        "required": ["DetailType", "Amount", "SalesItemLineDetail"],
        "additionalProperties": False,
        "properties": {
            "Id": {"type": "string"},
            "LineNum": {"type": "integer", "minimum": 1},
            "Description": {"type": "string", "maxLength": 4000},
            "Amount": _NUMBER,
            "DetailType": {"enum": ["SalesItemLineDetail"]},
            "SalesItemLineDetail": {
                "type": "object",
                "additionalProperties": False,
                "required": ["ItemRef"],
                "properties": {
                    "ItemRef": _REF,
                    "Qty": _NUMBER,
                    "UnitPrice": _NUMBER,
                    "TaxCodeRef": _REF,
                    "ClassRef": _REF,
                    "ServiceDate": {"type": "string"},
                    "TaxInclusiveAmt": _NUMBER,
                },
            },
        },
    },
    "TxnTaxDetail": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "TxnTaxCodeRef": _REF,
            "TotalTax": _NUMBER,
            "TaxLine": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["Amount", "DetailType", "TaxLineDetail"],
                    "properties": {
                        "Amount": _NUMBER,
                        "DetailType": {"enum": ["TaxLineDetail"]},
                        "TaxLineDetail": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["TaxRateRef"],
                            "properties": {
                                "TaxRateRef": _REF,
                                "PercentBased": {"type": "boolean"},
                                "TaxPercent": _NUMBER,
                                "NetAmountTaxable": _NUMBER,
                                "TaxInclusiveAmount": _NUMBER,
                                "OverrideDeltaAmount": _NUMBER,
                            },
                        },
                    },
                },
            },
        },
    },
}


class SpecValidationError(ValueError):
    """A request does not match the QuickBooks field reference; the message lists the first problems."""


def load_spec(spec_path: str | Path) -> dict[str, Any]:
    """The community spec as a dict (TABs replaced by two spaces in memory; see the module docstring)."""
    text = Path(spec_path).read_text(encoding="utf-8")
    return yaml.safe_load(text.replace("\t", "  "))


@functools.lru_cache(maxsize=4)
def _validators(spec_path: str) -> dict[str, Draft4Validator]:
    spec = load_spec(spec_path)
    schemas = copy.deepcopy(spec["components"]["schemas"])
    for name in ("InvoiceCreateObject", "CustomerCreateObject"):
        if name not in schemas:
            raise ValueError(f"{spec_path}: components/schemas/{name} not found")
    invoice = schemas["InvoiceCreateObject"]
    invoice["additionalProperties"] = False
    invoice["properties"]["Line"]["items"] = {"$ref": "#/components/schemas/SalesItemLine"}
    invoice["properties"]["TxnTaxDetail"] = {"$ref": "#/components/schemas/TxnTaxDetail"}
    schemas["CustomerCreateObject"]["additionalProperties"] = False
    schemas.update(copy.deepcopy(SUPPLEMENT))
    # ReferenceType: value is the id (required in a reference we send)
    schemas["ReferenceType"] = copy.deepcopy(_REF)
    components = {"schemas": schemas}
    return {
        name: Draft4Validator({"components": components, "$ref": f"#/components/schemas/{name}"})
        for name in ("InvoiceCreateObject", "CustomerCreateObject")
    }


def _describe(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "<body>"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{where}: {message}"


def invoice_problems(spec_path: str | Path, document: Any) -> list[str]:
    """Problems of one parsed invoice body (empty list when it matches the field reference)."""
    validator = _validators(str(Path(spec_path).resolve()))["InvoiceCreateObject"]
    return [
        _describe(e) for e in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    ]


_COMPANY = re.compile(r"^/v3/company/[^/]+/(?P<resource>[^?]+?)/?$")


def make_request_validator(spec_path: str | Path) -> RequestValidator:
    """Build (once) and return ``validate(method, path, query, headers, body) -> None``.

    Checks ``POST`` bodies of ``invoice``, ``customer`` and ``batch`` (each ``Invoice`` item) and the
    ``minorversion``/``requestid`` query parameters of every company call.
    """
    spec_path = str(Path(spec_path).resolve())
    validators = _validators(spec_path)

    def validate(method: str, path: str, query: dict, headers: dict, body: bytes) -> None:
        m = _COMPANY.match(path)
        if m is None:
            return
        resource = m.group("resource").lower()
        problems: list[str] = []
        minor = (query or {}).get("minorversion")
        if minor is not None and not str(minor).isdigit():
            problems.append(f"query minorversion: {minor!r} is not an integer")
        rid = (query or {}).get("requestid")
        limit = 36 if resource == "batch" else 50
        if rid is not None and len(rid) > limit:
            problems.append(f"query requestid: {len(rid)} characters, {limit} max")
        if method.upper() == "POST" and resource in ("invoice", "customer", "batch"):
            content_type = str({k.lower(): v for k, v in (headers or {}).items()}.get("content-type", ""))
            if "json" not in content_type:
                problems.append(f"header Content-Type: {content_type!r}, expected application/json")
            try:
                document = json.loads(body or b"", parse_float=Decimal)
            except ValueError as exc:
                problems.append(f"<body>: not JSON ({exc})")
            else:
                if resource == "invoice":
                    problems.extend(_describe(e) for e in validators["InvoiceCreateObject"].iter_errors(document))
                elif resource == "customer":
                    problems.extend(_describe(e) for e in validators["CustomerCreateObject"].iter_errors(document))
                else:
                    items = document.get("BatchItemRequest") if isinstance(document, dict) else None
                    if not isinstance(items, list):
                        problems.append("<body>: BatchItemRequest array required")
                    for index, item in enumerate(items or []):
                        if isinstance(item, dict) and "Invoice" in item:
                            for e in validators["InvoiceCreateObject"].iter_errors(item["Invoice"]):
                                problems.append(f"BatchItemRequest/{index}/Invoice/" + _describe(e))
                        bid = item.get("bId") if isinstance(item, dict) else None
                        if not isinstance(bid, str) or not bid:
                            problems.append(f"BatchItemRequest/{index}/bId: required")
        if problems:
            shown = problems[:5]
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            raise SpecValidationError(
                f"{method.upper()} {path} does not match the QuickBooks field reference: " + "; ".join(shown) + more
            )

    return validate


__all__ = ["SUPPLEMENT", "SpecValidationError", "invoice_problems", "load_spec", "make_request_validator"]

"""The QuickBooks emulator's request validation against the field reference (:mod:`connectors.sandbox.spec`).

Intuit publishes no OpenAPI description of the QBO Accounting API. The file used is the community
(WSO2/Ballerina) ``openapi.yaml`` copied byte-for-byte to ``tests/specs/quickbooks/`` (provenance in
``tests/specs/README.md``). It is *partial* and *not valid strict YAML* (literal TABs inside two description
blocks), so, in memory only:

* it is parsed with every TAB replaced by two spaces;
* ``InvoiceCreateObject`` and ``CustomerCreateObject`` refuse unknown property names (QBO answers error 2010
  for them) and their bodies are required; where the file leaves a field open (``Line`` is ``items: {}``,
  ``TxnTaxDetail`` a bare ``object``), :data:`SUPPLEMENT` adds the shape from Intuit's entity reference
  (https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/invoice), and a
  ``ReferenceType`` needs its ``value`` (the id);
* ``POST .../batch`` (not in the file): each ``Invoice`` item against ``InvoiceCreateObject``, ``bId`` required;
* every company call: ``minorversion`` an integer, ``requestid`` ≤ 50 characters (≤ 36 on ``/batch``), per
  billing-apis.md §3 (the file lacks both).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.sandbox.http import loads_decimal
from connectors.sandbox.spec import (
    JSON,
    Problem,
    SpecRequest,
    SpecRequestValidator,
    SpecValidationError,
    load_document,
    load_openapi,
)

_REF = {
    "type": "object",
    "properties": {"value": {"type": "string", "minLength": 1}, "name": {"type": "string"}},
    "required": ["value"],
    "additionalProperties": False,
}
_ID, _NUMBER = {"$ref": "#/components/schemas/ReferenceType"}, {"type": "number"}


def _closed(required: list[str], **properties: Any) -> dict[str, Any]:
    shape = {"type": "object", "additionalProperties": False, "properties": properties}
    return {**shape, "required": list(required)} if required else shape


#: Shapes the community file leaves open, from Intuit's Invoice entity reference.
SUPPLEMENT: dict[str, Any] = {
    "SalesItemLine": _closed(
        ["DetailType", "Amount", "SalesItemLineDetail"],
        Id={"type": "string"},
        LineNum={"type": "integer", "minimum": 1},
        Description={"type": "string", "maxLength": 4000},
        Amount=_NUMBER,
        DetailType={"enum": ["SalesItemLineDetail"]},
        SalesItemLineDetail=_closed(
            ["ItemRef"],
            ItemRef=_ID,
            Qty=_NUMBER,
            UnitPrice=_NUMBER,
            TaxCodeRef=_ID,
            ClassRef=_ID,
            ServiceDate={"type": "string"},
            TaxInclusiveAmt=_NUMBER,
        ),
    ),
    "TxnTaxDetail": _closed(
        [],
        TxnTaxCodeRef=_ID,
        TotalTax=_NUMBER,
        TaxLine={
            "type": "array",
            "items": _closed(
                ["Amount", "DetailType", "TaxLineDetail"],
                Amount=_NUMBER,
                DetailType={"enum": ["TaxLineDetail"]},
                TaxLineDetail=_closed(
                    ["TaxRateRef"],
                    TaxRateRef=_ID,
                    PercentBased={"type": "boolean"},
                    TaxPercent=_NUMBER,
                    NetAmountTaxable=_NUMBER,
                    TaxInclusiveAmount=_NUMBER,
                    OverrideDeltaAmount=_NUMBER,
                ),
            ),
        },
    ),
}
OPERATIONS = ("Create or Update Invoice", "Create or Update Customer")
_COMPANY = re.compile(r"^/v3/company/[^/]+/(?P<resource>[^?]+?)/?$")


def _untab(text: str) -> str:
    return text.replace("\t", "  ")


def _patch(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    invoice = schemas["InvoiceCreateObject"]
    invoice["additionalProperties"] = False
    invoice["properties"]["Line"]["items"] = {"$ref": "#/components/schemas/SalesItemLine"}
    invoice["properties"]["TxnTaxDetail"] = {"$ref": "#/components/schemas/TxnTaxDetail"}
    schemas["CustomerCreateObject"]["additionalProperties"] = False
    schemas.update(copy.deepcopy(SUPPLEMENT))
    schemas["ReferenceType"] = copy.deepcopy(_REF)
    for resource in ("invoice", "customer"):
        spec["paths"][f"/v3/company/{{realm-id}}/{resource}"]["post"]["requestBody"]["required"] = True


def _company_call(request: SpecRequest) -> Iterator[Problem | str]:
    m = _COMPANY.match(request.path)
    if m is None:
        return
    resource = m.group("resource").lower()
    minor, rid = request.query.get("minorversion"), request.query.get("requestid")
    if minor is not None and not str(minor).isdigit():
        yield Problem("query", ("minorversion",), f"{minor!r} is not an integer")
    limit = 36 if resource == "batch" else 50
    if rid is not None and len(rid) > limit:
        yield Problem("query", ("requestid",), f"{len(rid)} characters, {limit} max")
    if request.method != "POST" or resource != "batch":
        return
    if "json" not in request.headers.get("content-type", ""):
        yield Problem("header", ("Content-Type",), f"{request.headers.get('content-type')!r}, expected {JSON}")
    try:
        document = loads_decimal(request.body)
    except ValueError as exc:
        yield Problem("body", (), f"not JSON ({exc})")
        return
    items = document.get("BatchItemRequest") if isinstance(document, dict) else None
    if not isinstance(items, list):
        yield Problem("body", ("BatchItemRequest",), "array required")
    for index, item in enumerate(items or []):
        if isinstance(item, dict) and "Invoice" in item:
            for problem in request.validator.schema_problems("InvoiceCreateObject", item["Invoice"]):
                yield problem.under("BatchItemRequest", index, "Invoice")
        if not isinstance(item, dict) or not isinstance(item.get("bId"), str) or not item["bId"]:
            yield Problem("body", ("BatchItemRequest", index, "bId"), "missing (required)")


def load_spec(spec_path: str | Path) -> dict[str, Any]:
    """The community spec as a dict (TABs replaced by two spaces in memory; shared, do not modify)."""
    return load_document(spec_path, _untab)


def make_request_validator(spec_path: str | Path) -> SpecRequestValidator:
    """The emulator's ``request_validator``: raises :class:`SpecValidationError` listing the first problems."""
    return SpecRequestValidator(
        load_openapi(spec_path, preprocess=_untab, patch=_patch),
        operations=OPERATIONS,
        checks=(_company_call,),
        title="the QuickBooks field reference",
    )


def invoice_problems(spec_path: str | Path, document: Any) -> list[str]:
    """Problems of one parsed invoice body (empty list when it matches the field reference)."""
    return [str(p) for p in make_request_validator(spec_path).schema_problems("InvoiceCreateObject", document)]


__all__ = ["SUPPLEMENT", "SpecValidationError", "invoice_problems", "load_spec", "make_request_validator"]

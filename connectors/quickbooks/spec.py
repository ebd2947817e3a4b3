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
* ``POST .../invoice?operation=void`` (the file declares the ``operation`` query parameter on the same
  operation, but its body schema requires ``Line`` and ``CustomerRef``): the invoice body is checked against
  ``InvoiceCreateObject`` without ``required`` and, by :func:`_invoice_call`, a void body (``operation=void``
  or ``delete``) must be exactly ``{"Id", "SyncToken"}`` (Intuit's invoice reference, "Void an invoice"),
  any other needs ``Line`` and ``CustomerRef``;
* ``POST .../creditmemo`` (not in the file): added as "Create or Update CreditMemo" with
  ``CreditMemoCreateObject`` (:data:`CREDIT_MEMO`, from Intuit's CreditMemo entity reference,
  https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/creditmemo), closed;
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
#: ``CreditMemoCreateObject``: the create fields of Intuit's CreditMemo entity reference (lines and tax lines as
#: on invoices).
CREDIT_MEMO: dict[str, Any] = _closed(
    ["Line", "CustomerRef"],
    Id={"type": "string"},
    SyncToken={"type": "string"},
    DocNumber={"type": "string", "maxLength": 21},
    TxnDate={"type": "string"},
    CustomerRef=_ID,
    CurrencyRef=_ID,
    ExchangeRate=_NUMBER,
    GlobalTaxCalculation={"enum": ["TaxExcluded", "TaxInclusive", "NotApplicable"]},
    PrivateNote={"type": "string", "maxLength": 4000},
    CustomerMemo=_closed([], value={"type": "string", "maxLength": 1000}),
    Line={"type": "array", "items": {"$ref": "#/components/schemas/SalesItemLine"}},
    TxnTaxDetail={"$ref": "#/components/schemas/TxnTaxDetail"},
    BillEmail=_closed([], Address={"type": "string"}),
    EmailStatus={"enum": ["NotSet", "NeedToSend", "EmailSent"]},
    PrintStatus={"enum": ["NotSet", "NeedToPrint", "PrintComplete"]},
    ClassRef=_ID,
    DepartmentRef=_ID,
    SalesTermRef=_ID,
    ApplyTaxAfterDiscount={"type": "boolean"},
    TransactionLocationType={"type": "string"},
)
#: The body of a void (or delete) of a transaction: its id and current ``SyncToken`` only.
TXN_OPERATION: dict[str, Any] = _closed(
    ["Id", "SyncToken"], Id={"type": "string", "minLength": 1}, SyncToken={"type": "string", "minLength": 1}
)
OPERATIONS = ("Create or Update Invoice", "Create or Update Customer", "Create or Update CreditMemo")
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
    # the invoice operation also voids (operation=void): its body is checked by _invoice_call
    schemas["InvoiceWriteObject"] = {k: v for k, v in copy.deepcopy(invoice).items() if k != "required"}
    schemas["CreditMemoCreateObject"] = copy.deepcopy(CREDIT_MEMO)
    schemas["TxnOperationObject"] = copy.deepcopy(TXN_OPERATION)
    paths = spec["paths"]
    invoice_body = paths["/v3/company/{realm-id}/invoice"]["post"]["requestBody"]
    invoice_body["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/InvoiceWriteObject"}
    realm = {"in": "path", "name": "realm-id", "required": True, "schema": {"type": "string"}}
    paths["/v3/company/{realm-id}/creditmemo"] = {
        "post": {
            "operationId": "Create or Update CreditMemo",
            "parameters": [realm, {"in": "query", "name": "operation", "schema": {"type": "string"}}],
            "requestBody": {
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreditMemoCreateObject"}}}
            },
            "responses": {"200": {"description": "Success"}},
        }
    }
    for resource in ("invoice", "customer", "creditmemo"):
        paths[f"/v3/company/{{realm-id}}/{resource}"]["post"]["requestBody"]["required"] = True


def _invoice_call(request: SpecRequest) -> Iterator[Problem | str]:
    """A void (``operation=void``/``delete``) body is ``{"Id", "SyncToken"}``; any other invoice write needs
    ``Line`` and ``CustomerRef`` (the file's ``required``)."""
    if request.operation is None or request.operation.id != "Create or Update Invoice":
        return
    try:
        document = loads_decimal(request.body)
    except ValueError:
        return  # the body check reports it
    operation = str(request.query.get("operation") or "").lower()
    if operation in ("void", "delete"):
        yield from request.validator.schema_problems("TxnOperationObject", document)
        return
    for name in ("Line", "CustomerRef"):
        if isinstance(document, dict) and name not in document:
            yield Problem("body", (name,), "missing (required)", "required")


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
        checks=(_company_call, _invoice_call),
        title="the QuickBooks field reference",
    )


def invoice_problems(spec_path: str | Path, document: Any) -> list[str]:
    """Problems of one parsed invoice body (empty list when it matches the field reference)."""
    return [str(p) for p in make_request_validator(spec_path).schema_problems("InvoiceCreateObject", document)]


__all__ = [
    "CREDIT_MEMO",
    "SUPPLEMENT",
    "TXN_OPERATION",
    "SpecValidationError",
    "invoice_problems",
    "load_spec",
    "make_request_validator",
]

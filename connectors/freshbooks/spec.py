"""Request validation of the FreshBooks emulator against the field reference (on the sandbox kit).

FreshBooks publishes no OpenAPI description. The file used is the community (WSO2/Ballerina) ``openapi.yaml``
copied byte-for-byte to ``tests/specs/freshbooks/`` (provenance in ``tests/specs/README.md``). It is partial,
so it serves as a *field reference*:

* ``POST .../invoices/invoices`` bodies against ``InvoiceCreateObject`` (``{"invoice": InvoiceCreate}``),
  ``PUT .../invoices/invoices/{id}`` against ``InvoiceUpdateObject``, ``POST .../users/clients`` against
  ``ClientCreateObject`` — bodies required, **unknown property names refused** (catches typos such as
  ``taxamount1`` that FreshBooks would silently ignore);
* deviations from the file (in memory), each backed by an official source: line ``qty`` may be any JSON number
  (the file says integer; FreshBooks bills fractional hours), and the update actions of the official SDK
  example ``create_invoice_extended.py`` (``action_email``, ``email_recipients``, ``email_include_pdf``,
  ``invoice_customized_email``) plus ``action_mark_as_sent`` (billing-apis.md §5) are allowed on updates;
* money objects must carry string amounts (``{"amount": "27.00", "code": "CAD"}``, as in the SDK examples);
* credit notes (not in the file): ``POST`` / ``GET .../credit_notes/credit_notes`` and ``GET`` / ``PUT
  .../credit_notes/credit_notes/{credit-ID}`` added ("Create Credit Note", "Update Credit Note"), with
  :data:`CREDIT_NOTE_CREATE` (``{"credit_note": {...}}``, the create fields and credit lines of the official
  reference https://www.freshbooks.com/api/credits) and ``{"credit_note": {"vis_state"}}`` for updates.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from connectors.sandbox.spec import SpecRequestValidator, SpecValidationError, load_openapi

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
_STRING = {"type": "string"}
#: ``CreditNoteCreate``: the fields of "Create Credit Note or Prepayment" and "Credit Lines" (official reference).
CREDIT_NOTE_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "credit_number": _STRING,
        "currency_code": _STRING,
        "create_date": _STRING,
        "notes": _STRING,
        "credit_type": {"type": "string", "enum": ["goodwill", "prepayment"]},
        "terms": _STRING,
        "language": _STRING,
        "clientid": {"type": "integer"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": _STRING,
                    "description": _STRING,
                    "taxName1": _STRING,
                    "taxAmount1": _STRING,
                    "taxName2": _STRING,
                    "taxAmount2": _STRING,
                    "compounded_tax": {"type": "boolean"},
                    "qty": {"type": "number"},
                    "unit_cost": {
                        "type": "object",
                        "properties": {"amount": {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}, "code": _STRING},
                    },
                },
            },
        },
    },
    "required": ["clientid", "lines"],
}
CREDIT_NOTE_UPDATE: dict[str, Any] = {
    "type": "object",
    "properties": {"vis_state": {"type": "integer", "enum": [0, 1, 2]}},
}
OPERATIONS = ("Create Invoice", "Update Invoice", "Create Client", "Create Credit Note", "Update Credit Note")


def _patch(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    line = schemas["InvoiceLinesWritable"]["properties"]
    line["qty"] = {"type": "number"}
    line["unit_cost"]["properties"]["amount"]["pattern"] = r"^-?\d+(\.\d+)?$"
    schemas["InvoiceUpdate"]["properties"].update(copy.deepcopy(UPDATE_ACTIONS))
    schemas["CreditNoteCreate"] = copy.deepcopy(CREDIT_NOTE_CREATE)
    schemas["CreditNoteUpdate"] = copy.deepcopy(CREDIT_NOTE_UPDATE)
    for name in ("Create", "Update"):
        schemas[f"CreditNote{name}Object"] = {
            "type": "object",
            "properties": {"credit_note": {"$ref": f"#/components/schemas/CreditNote{name}"}},
            "required": ["credit_note"],
        }
    account = {"in": "path", "name": "account-ID", "required": True, "schema": _STRING}
    credit = {"in": "path", "name": "credit-ID", "required": True, "schema": _STRING}

    def body(name: str) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}

    ok = {"200": {"description": "Success"}}
    spec["paths"]["/accounting/account/{account-ID}/credit_notes/credit_notes"] = {
        "get": {"operationId": "List Credit Notes", "parameters": [account], "responses": ok},
        "post": {
            "operationId": "Create Credit Note",
            "parameters": [account],
            "requestBody": body("CreditNoteCreateObject"),
            "responses": ok,
        },
    }
    spec["paths"]["/accounting/account/{account-ID}/credit_notes/credit_notes/{credit-ID}"] = {
        "get": {"operationId": "Get Credit Note", "parameters": [account, credit], "responses": ok},
        "put": {
            "operationId": "Update Credit Note",
            "parameters": [account, credit],
            "requestBody": body("CreditNoteUpdateObject"),
            "responses": ok,
        },
    }
    for item in spec["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and op.get("operationId") in OPERATIONS:
                op["requestBody"]["required"] = True


def make_request_validator(spec_path: str | Path) -> SpecRequestValidator:
    """The emulator's ``request_validator``: raises :class:`SpecValidationError` listing the first problems."""
    return SpecRequestValidator(
        load_openapi(spec_path, patch=_patch),
        operations=OPERATIONS,
        strict_properties=True,
        title="the FreshBooks field reference",
    )


def body_problems(spec_path: str | Path, schema: str, document: Any) -> list[str]:
    """Problems of a parsed body against ``InvoiceCreateObject``/``InvoiceUpdateObject``/``ClientCreateObject``."""
    return [str(p) for p in make_request_validator(spec_path).schema_problems(schema, document)]


__all__ = [
    "CREDIT_NOTE_CREATE",
    "CREDIT_NOTE_UPDATE",
    "OPERATIONS",
    "UPDATE_ACTIONS",
    "SpecValidationError",
    "body_problems",
    "make_request_validator",
]

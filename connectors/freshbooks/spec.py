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
* money objects must carry string amounts (``{"amount": "27.00", "code": "CAD"}``, as in the SDK examples).
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
OPERATIONS = ("Create Invoice", "Update Invoice", "Create Client")


def _patch(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    line = schemas["InvoiceLinesWritable"]["properties"]
    line["qty"] = {"type": "number"}
    line["unit_cost"]["properties"]["amount"]["pattern"] = r"^-?\d+(\.\d+)?$"
    schemas["InvoiceUpdate"]["properties"].update(copy.deepcopy(UPDATE_ACTIONS))
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


__all__ = ["OPERATIONS", "UPDATE_ACTIONS", "SpecValidationError", "body_problems", "make_request_validator"]

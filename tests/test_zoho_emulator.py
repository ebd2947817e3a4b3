"""The Zoho Invoice emulator on its own (raw HTTP with httpx)."""

from __future__ import annotations

from decimal import Decimal as D

import httpx
import pytest

from connectors.sdk.money import dumps, loads
from connectors.zoho.emulator import DEFAULT_ORG, ZohoEmulator

ORG_HEADER = "X-com-zoho-invoice-organizationid"


@pytest.fixture
def emu():
    emulator = ZohoEmulator(
        client_id="1000.T",
        client_secret="s3cret",
        refresh_token="1000.r",
        contacts={"C1": {"contact_name": "A, Lda", "email": "a@example.com"}},
    ).start()
    yield emulator
    emulator.stop()
    assert emulator.server_errors == []


def token(emu, **form) -> httpx.Response:
    data = {
        "grant_type": "refresh_token",
        "client_id": "1000.T",
        "client_secret": "s3cret",
        "refresh_token": "1000.r",
        **form,
    }
    return httpx.post(f"{emu.url}/oauth/v2/token", data=data)


@pytest.fixture
def api(emu):
    access = token(emu).json()["access_token"]
    with httpx.Client(
        base_url=f"{emu.url}/invoice/v3",
        timeout=5,
        headers={"Authorization": f"Zoho-oauthtoken {access}", ORG_HEADER: DEFAULT_ORG},
    ) as client:
        yield client


def create(api, body, **params):
    return api.post(
        "/invoices",
        params={"ignore_auto_number_generation": "true", **params},
        content=dumps(body),
        headers={"Content-Type": "application/json"},
    )


def body(number="INV-T-1", lines=None, **extra):
    return {
        "customer_id": "C1",
        "invoice_number": number,
        "date": "2026-03-02",
        "line_items": lines or [{"name": "Labour", "rate": D("42.00"), "quantity": D("3.25"), "tax_id": "T23"}],
        **extra,
    }


def test_token_endpoint_quirks(emu):
    good = token(emu).json()
    assert good["expires_in"] == 3600 and "refresh_token" not in good and good["api_domain"] == emu.url
    assert token(emu, client_secret="wrong").json() == {"error": "invalid_client"}  # HTTP 200 with an error
    assert token(emu, refresh_token="1000.x").json() == {"error": "invalid_code"}
    emu.token_limit = 2
    assert token(emu).status_code == 200
    denied = token(emu)
    assert denied.status_code == 400 and denied.json()["error"] == "Access Denied"


def test_per_tax_rounding_uniqueness_and_envelope(emu, api):
    t23 = emu.tax_id("23")
    lines = [{"name": f"Part {n}", "rate": D("1.05"), "quantity": 1, "tax_id": t23} for n in range(5)]
    lines.append({"name": "Exempt fee", "rate": D("12.50"), "quantity": 1})
    resp = create(api, body(lines=lines, adjustment=D("-0.01")))
    assert resp.status_code == 201
    doc = loads(resp.content)
    assert (doc["code"], doc["message"]) == (0, "The invoice has been created.")
    inv = doc["invoice"]
    # item totals 5 x 1.05 + 12.50 = 17.75; one 23 % tax on 5.25 = 1.2075 -> 1.21 (not 5 x 0.24 = 1.20); -0.01 adjustment
    assert (inv["sub_total"], inv["tax_total"], inv["total"], inv["status"]) == (
        D("17.75"),
        D("1.21"),
        D("18.95"),
        "draft",
    )
    dup = create(api, body(lines=lines))
    assert dup.status_code == 400 and dup.json() == {"code": 1001, "message": "Invoice Number already exist"}
    listed = api.get("/invoices", params={"invoice_number": "INV-T-1"}).json()
    assert [i["invoice_id"] for i in listed["invoices"]] == [inv["invoice_id"]] and listed["page_context"][
        "has_more_page"
    ] is False
    assert api.get("/invoices", params={"invoice_number": "INV-T"}).json()["invoices"] == []  # exact match
    assert api.post(f"/invoices/{inv['invoice_id']}/status/sent").json()["code"] == 0
    assert api.post(f"/invoices/{inv['invoice_id']}/status/sent").status_code == 400


def test_rules_auto_numbering_rounding_of_lines_and_taxes(emu, api):
    t23 = emu.tax_id("23")
    # a custom number needs ignore_auto_number_generation=true while auto-numbering is on
    resp = api.post(
        "/invoices",
        content=dumps(body("X-1", [{"name": "a", "rate": 1, "quantity": 1}])),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400 and "ignore_auto_number_generation" in resp.json()["message"]
    # item_total rounds half up: 0.333 x 3 = 0.999 -> 1.00; inclusive 23 %: 1.00 x 23 / 123 = 0.187 -> 0.19
    inv = loads(
        create(
            api, body("X-2", [{"name": "a", "rate": D("0.333"), "quantity": 3, "tax_id": t23}], is_inclusive_tax=True)
        ).content
    )["invoice"]
    assert (inv["line_items"][0]["item_total"], inv["tax_total"], inv["total"], inv["sub_total"]) == (
        D("1.00"),
        D("0.19"),
        D("1.00"),
        D("0.81"),
    )
    assert (
        create(api, body("X-3", [{"name": "a", "rate": 1, "tax_id": "nope"}]))
        .json()["message"]
        .endswith("does not exist.")
    )
    assert create(api, dict(body("X-4"), customer_id="zzz")).json()["message"] == "Contact does not exist."
    assert create(api, body("X-5", [{"rate": 1}])).status_code == 400


def test_auth_org_rate_limit_and_faults(emu, api):
    assert httpx.get(f"{emu.url}/invoice/v3/invoices", headers={ORG_HEADER: DEFAULT_ORG}).json()["code"] == 14
    assert api.get("/invoices", headers={ORG_HEADER: "1"}).json()["code"] == 6041
    assert api.get("/invoices", headers={ORG_HEADER: ""}, params={"organization_id": DEFAULT_ORG}).status_code == 200
    emu.expire_access_tokens()
    assert api.get("/invoices").status_code == 401
    access = token(emu).json()["access_token"]
    api.headers["Authorization"] = f"Zoho-oauthtoken {access}"
    emu.rate_limit_per_minute = 2
    emu.reset_state()
    assert [api.get("/invoices").status_code for _ in range(3)] == [200, 200, 429]
    limited = api.get("/invoices")
    assert limited.headers["X-Rate-Limit-Limit"] == "2" and limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    emu.rate_limit_per_minute = 100
    emu.reset_state()
    emu.inject_fault("503", path="/contacts")
    assert api.get("/invoices").status_code == 200 and api.get("/contacts").status_code == 503
    emu.inject_fault("drop_after_commit", method="POST")
    with pytest.raises(httpx.RemoteProtocolError):
        create(api, body("D-1", [{"name": "a", "rate": 1, "quantity": 1}]))
    assert [i["invoice_number"] for i in emu.invoices()] == ["D-1"]  # processed before the connection was dropped
    control = httpx.Client(base_url=emu.url)
    try:
        assert control.get("/_emulator/stats").json()["invoice_count"] == 1
        assert control.post("/_emulator/faults", json={"kind": "nope"}).status_code == 400
        assert control.post("/_emulator/reset").json() == {"ok": True} and emu.invoices() == []
    finally:
        control.close()

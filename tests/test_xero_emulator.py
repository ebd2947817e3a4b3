"""The Xero emulator over real loopback HTTP: OAuth, tenancy, totals, errors, idempotency, limits, faults.

Requests are made with plain httpx (no connector) so each Xero behaviour is checked on the wire.
Every emulator validates requests against the official spec; tests assert no request was invalid
(except the one test that checks the validator itself). Expected amounts are hand-computed.
"""

from __future__ import annotations

import base64
import json
import threading
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest

from connectors.sdk.money import dumps, loads
from connectors.xero.emulator import XeroEmulator
from connectors.xero.spec import make_request_validator

SPEC = Path(__file__).resolve().parent / "specs" / "xero" / "xero_accounting.yaml"
ORG = "00000000-0000-0000-0000-000000000001"
ORG2 = "00000000-0000-0000-0000-000000000002"
CONTACT = "3f1c2a10-5b1e-4c7a-9d01-00000000c001"
INVOICES = "/api.xro/2.0/Invoices"


@pytest.fixture(scope="module")
def validator():
    return make_request_validator(SPEC)


@pytest.fixture
def emulators(validator):
    started: list[XeroEmulator] = []

    def make(**kwargs) -> XeroEmulator:
        kwargs.setdefault("tenant_ids", (ORG, ORG2))
        kwargs.setdefault("contacts", {ORG: {CONTACT: "Hotel Atlântico Lisboa, S.A."}})
        emu = XeroEmulator(request_validator=validator, **kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
        assert emu.server_errors == []


@pytest.fixture
def emu(emulators):
    e = emulators()
    yield e
    assert e.validation_failures == []


class Api:
    """A tiny Xero client over httpx for the tests."""

    def __init__(self, emu: XeroEmulator, tenant: str | None = ORG):
        self.emu = emu
        self.http = httpx.Client(base_url=emu.url, timeout=5)
        self.tenant = tenant
        self.refresh_token = emu.initial_refresh_token
        self.access = self.token()["access_token"]

    def token(self, refresh_token: str | None = None, *, secret: str = "demo-secret") -> dict:
        basic = base64.b64encode(f"demo-client:{secret}".encode()).decode()
        resp = self.http.post(
            "/connect/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token or self.refresh_token},
            headers={"Authorization": f"Basic {basic}"},
        )
        body = resp.json()
        if resp.status_code == 200:
            self.refresh_token = body["refresh_token"]
        body["_status"] = resp.status_code
        return body

    def headers(self, **extra) -> dict:
        h = {"Authorization": f"Bearer {self.access}", "Accept": "application/json"}
        if self.tenant:
            h["xero-tenant-id"] = self.tenant
        h.update(extra)
        return h

    def put_invoices(
        self, elements: list[dict], *, summarize: bool | None = False, key: str | None = None, unitdp=None
    ) -> httpx.Response:
        params = {}
        if summarize is not None:
            params["summarizeErrors"] = str(summarize).lower()
        if unitdp:
            params["unitdp"] = str(unitdp)
        extra = {"Content-Type": "application/json"}
        if key:
            extra["Idempotency-Key"] = key
        return self.http.put(
            INVOICES, params=params, content=dumps({"Invoices": elements}), headers=self.headers(**extra)
        )

    def get(self, path: str, **params) -> httpx.Response:
        return self.http.get(path, params=params, headers=self.headers())

    def close(self):
        self.http.close()


def body(resp: httpx.Response):
    return loads(resp.content)


def element(number="INV-T-1", **overrides) -> dict:
    el = {
        "Type": "ACCREC",
        "Contact": {"ContactID": CONTACT},
        "Date": "2026-03-02",
        "DueDate": "2026-04-01",
        "LineAmountTypes": "Exclusive",
        "InvoiceNumber": number,
        "Reference": "WO 1",
        "CurrencyCode": "EUR",
        "Status": "AUTHORISED",
        "LineItems": [
            {
                "Description": "Labour",
                "Quantity": D("3.25"),
                "UnitAmount": D("42.00"),
                "AccountCode": "200",
                "TaxType": "OUTPUT2",
            },
        ],
    }
    el.update(overrides)
    return el


@pytest.fixture
def api(emu):
    client = Api(emu)
    yield client
    client.close()


# --------------------------------------------------------------------------- identity
def test_token_endpoint_checks_client_and_rotates_refresh_tokens(emulators):
    emu = emulators(refresh_grace_seconds=0.3)
    api = Api(emu)  # one refresh done: initial token now in its grace period
    try:
        assert api.token(secret="nope")["error"] == "invalid_client"
        assert api.token(refresh_token="never-issued")["error"] == "invalid_grant"
        first_rotated = api.refresh_token
        assert first_rotated != emu.initial_refresh_token and first_rotated == emu.current_refresh_token
        # the old token still works during the grace period ...
        again = api.token(refresh_token=emu.initial_refresh_token)
        assert again["_status"] == 200 and again["token_type"] == "Bearer" and again["expires_in"] == 1800
        threading.Event().wait(0.35)
        # ... and not after it
        assert api.token(refresh_token=emu.initial_refresh_token)["error"] == "invalid_grant"
        assert api.token()["_status"] == 200  # the newest one is fine
        resp = api.http.post(
            "/connect/token",
            data={"grant_type": "password", "refresh_token": api.refresh_token},
            auth=("demo-client", "demo-secret"),
        )
        assert resp.status_code == 400 and resp.json()["error"] == "unsupported_grant_type"
    finally:
        api.close()
    assert emu.validation_failures == []


def test_bearer_and_tenant_are_required(emu, api):
    resp = api.http.get(INVOICES, headers={"xero-tenant-id": ORG})
    assert resp.status_code == 401 and "WWW-Authenticate" in resp.headers
    assert resp.json()["Title"] == "Unauthorized" and resp.json()["Detail"] == "AuthenticationUnsuccessful"
    assert resp.json()["Type"] is None and resp.json()["Status"] == 401

    emu.expire_access_tokens()
    resp = api.get(INVOICES)
    assert resp.status_code == 401 and resp.json()["Detail"].startswith("TokenExpired: token expired at ")
    api.access = api.token()["access_token"]

    api.tenant = None
    resp = api.get(INVOICES)
    assert resp.status_code == 403 and resp.json()["Detail"] == "AuthorizationUnsuccessful"
    api.tenant = "99999999-9999-9999-9999-999999999999"
    assert api.get(INVOICES).status_code == 403
    api.tenant = ORG2
    assert api.get(INVOICES).status_code == 200

    resp = api.http.get("/connections", headers={"Authorization": f"Bearer {api.access}"})
    assert resp.status_code == 200
    assert [c["tenantId"] for c in resp.json()] == [ORG, ORG2]
    assert all(c["tenantType"] == "ORGANISATION" for c in resp.json())


# --------------------------------------------------------------------------- totals
def test_totals_computed_like_xero(emu, api):
    lines = [
        # 3.25 x 42.00 = 136.50; OUTPUT2 23 % -> 31.395 -> 31.40
        {
            "Description": "Labour",
            "Quantity": D("3.25"),
            "UnitAmount": D("42.00"),
            "AccountCode": "200",
            "TaxType": "OUTPUT2",
        },
        # 1 x 10.00 = 10.00; OUTPUT 20 % -> 2.00
        {"Description": "Fee", "Quantity": D("1"), "UnitAmount": D("10.00"), "AccountCode": "200", "TaxType": "OUTPUT"},
        # UnitAmount 0.333 kept to 2 dp without unitdp=4 -> 0.33; 3 x 0.33 = 0.99; no tax
        {
            "Description": "Washers",
            "Quantity": D("3"),
            "UnitAmount": D("0.333"),
            "AccountCode": "200",
            "TaxType": "NONE",
        },
        # 2 x 18.75 = 37.50, 10 % discount -> 33.75; our TaxAmount 7.76 is kept (23 % = 7.7625)
        {
            "Description": "Contactor",
            "Quantity": D("2"),
            "UnitAmount": D("18.75"),
            "DiscountRate": D("10"),
            "LineAmount": D("33.75"),
            "AccountCode": "200",
            "TaxType": "OUTPUT2",
            "TaxAmount": D("7.76"),
        },
    ]
    resp = api.put_invoices([element(LineItems=lines)])
    assert resp.status_code == 200
    doc = body(resp)
    assert doc["Status"] == "OK" and doc["ProviderName"] and doc["DateTimeUTC"].startswith("/Date(")
    [inv] = doc["Invoices"]
    assert inv["HasErrors"] is False and inv["InvoiceID"]
    assert [li["LineAmount"] for li in inv["LineItems"]] == [D("136.50"), D("10.00"), D("0.99"), D("33.75")]
    assert [li["TaxAmount"] for li in inv["LineItems"]] == [D("31.40"), D("2.00"), D("0.00"), D("7.76")]
    assert inv["LineItems"][2]["UnitAmount"] == D("0.33")
    assert all(li["LineItemID"] for li in inv["LineItems"])
    # 136.50 + 10.00 + 0.99 + 33.75 = 181.24; 31.40 + 2.00 + 0 + 7.76 = 41.16; total 222.40
    assert (inv["SubTotal"], inv["TotalTax"], inv["Total"]) == (D("181.24"), D("41.16"), D("222.40"))
    assert inv["TotalDiscount"] == D("3.75") and inv["IsDiscounted"] is True
    assert inv["Date"] == "/Date(1772409600000+0000)/" and inv["DueDateString"] == "2026-04-01T00:00:00"
    assert emu.invoices(ORG)[0]["Total"] == D("222.40") and emu.invoices(ORG2) == []

    # with unitdp=4 the unit amount keeps 4 decimals: 3 x 0.3333 = 0.9999 -> 1.00
    resp = api.put_invoices(
        [
            element(
                "INV-T-2",
                LineItems=[
                    {
                        "Description": "Washers",
                        "Quantity": D("3"),
                        "UnitAmount": D("0.3333"),
                        "AccountCode": "200",
                        "TaxType": "NONE",
                    }
                ],
            )
        ],
        unitdp=4,
    )
    [inv2] = body(resp)["Invoices"]
    assert inv2["LineItems"][0]["UnitAmount"] == D("0.3333") and inv2["Total"] == D("1.00")


def test_inclusive_amounts_derive_tax_from_the_gross(emu, api):
    lines = [
        # gross 123.00 at 23 % -> tax 123 x 23/123 = 23.00
        {
            "Description": "Service",
            "Quantity": D("1"),
            "UnitAmount": D("123.00"),
            "AccountCode": "200",
            "TaxType": "OUTPUT2",
        },
        # gross 22.50 -> tax 22.50 x 23/123 = 4.2073 -> 4.21
        {
            "Description": "Travel",
            "Quantity": D("0.5"),
            "UnitAmount": D("45.00"),
            "AccountCode": "200",
            "TaxType": "OUTPUT2",
        },
    ]
    [inv] = body(api.put_invoices([element(LineAmountTypes="Inclusive", LineItems=lines)]))["Invoices"]
    assert (inv["SubTotal"], inv["TotalTax"], inv["Total"]) == (D("118.29"), D("27.21"), D("145.50"))


# --------------------------------------------------------------------------- validation errors
def test_duplicate_number_per_element_and_summarized(emu, api):
    assert api.put_invoices([element()]).status_code == 200

    resp = api.put_invoices([element()], summarize=False)
    assert resp.status_code == 200
    [el] = body(resp)["Invoices"]
    assert el["HasErrors"] is True and el["ValidationErrors"] == [{"Message": "Invoice # must be unique."}]

    # the same number in the other organisation is fine
    api.tenant = ORG2
    ok = api.put_invoices([element(Contact={"Name": "New Client Ltd"})])
    assert ok.status_code == 200 and body(ok)["Invoices"][0]["Contact"]["Name"] == "New Client Ltd"
    api.tenant = ORG

    # summarizeErrors absent: 400 ValidationException and nothing of the batch is stored
    resp = api.put_invoices([element("INV-T-NEW"), element()], summarize=None)
    assert resp.status_code == 400
    err = body(resp)
    assert (err["ErrorNumber"], err["Type"], err["Message"]) == (
        10,
        "ValidationException",
        "A validation exception occurred",
    )
    assert [e["ValidationErrors"] for e in err["Elements"]] == [[{"Message": "Invoice # must be unique."}]]
    assert [i["InvoiceNumber"] for i in emu.invoices(ORG)] == ["INV-T-1"]

    # summarizeErrors=false: the good one is created, the bad one reported
    resp = api.put_invoices([element("INV-T-NEW"), element()], summarize=False)
    assert [e["HasErrors"] for e in body(resp)["Invoices"]] == [False, True]
    assert sorted(i["InvoiceNumber"] for i in emu.invoices(ORG)) == ["INV-T-1", "INV-T-NEW"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Contact": {}}, "A Contact must be specified for this type of transaction"),
        (
            {"Contact": {"ContactID": "12345678-1234-1234-1234-123456789abc"}},
            "ContactID (12345678-1234-1234-1234-123456789abc) does not exist",
        ),
        ({"LineItems": []}, "At least one line item must be specified"),
        (
            {
                "LineItems": [
                    {
                        "Description": "x",
                        "Quantity": D("1"),
                        "UnitAmount": D("5"),
                        "AccountCode": "200",
                        "TaxType": "BOGUS",
                    }
                ]
            },
            "The TaxType code 'BOGUS' does not exist or cannot be used for this type of transaction.",
        ),
        (
            {
                "LineItems": [
                    {
                        "Description": "x",
                        "Quantity": D("1"),
                        "UnitAmount": D("5"),
                        "AccountCode": "999",
                        "TaxType": "NONE",
                    }
                ]
            },
            "Account code '999' is not a valid code for this document.",
        ),
        (
            {
                "LineItems": [
                    {
                        "Description": "x",
                        "Quantity": D("2"),
                        "UnitAmount": D("5"),
                        "LineAmount": D("10.01"),
                        "AccountCode": "200",
                    }
                ]
            },
            "The line total 10.01 does not match the expected line total 10.00",
        ),
        ({"DueDate": None}, "Due Date is required for an approved invoice"),
    ],
)
def test_validation_errors(emu, api, overrides, message):
    el = {k: v for k, v in element(**overrides).items() if v is not None}
    resp = api.put_invoices([el], summarize=None)
    assert resp.status_code == 400
    err = body(resp)
    assert err["Type"] == "ValidationException"
    messages = [v["Message"] for e in err["Elements"] for v in e["ValidationErrors"]]
    assert any(message in m for m in messages), messages
    assert emu.invoices() == []


def test_spec_validator_rejects_non_conforming_requests(emulators):
    emu = emulators()
    api = Api(emu)
    try:
        resp = api.put_invoices([element(Total=D("1.00"))])  # Total is read-only in the spec
        assert resp.status_code == 400
        assert emu.invoices() == []
        assert len(emu.validation_failures) == 1 and "read-only" in emu.validation_failures[0]
    finally:
        api.close()


# --------------------------------------------------------------------------- idempotency
def test_idempotency_key_replays_and_rejects_a_different_body(emu, api):
    first = api.put_invoices([element()], key="k-1")
    replay = api.put_invoices([element()], key="k-1")
    assert first.status_code == replay.status_code == 200
    assert first.content == replay.content  # the stored response, byte for byte
    assert len(emu.invoices()) == 1

    other = api.put_invoices([element("INV-T-2")], key="k-1")
    assert other.status_code == 400 and "Idempotency-Key" in body(other)["Message"]
    assert len(emu.invoices()) == 1

    # another organisation has its own keys
    api.tenant = ORG2
    assert api.put_invoices([element(Contact={"Name": "X"})], key="k-1").status_code == 200
    assert len(emu.invoices(ORG2)) == 1


def test_rate_limit_is_checked_before_the_idempotency_cache(emulators):
    emu = emulators(rate_limit_per_minute=2)
    api = Api(emu)
    try:
        assert api.put_invoices([element()], key="k-1").status_code == 200
        assert api.put_invoices([element()], key="k-1").status_code == 200  # replay, counts as a call
        limited = api.put_invoices([element()], key="k-1")
        assert limited.status_code == 429
        assert limited.headers["X-Rate-Limit-Problem"] == "minute"
    finally:
        api.close()
    assert emu.validation_failures == []


# --------------------------------------------------------------------------- limits
def test_minute_limit_remaining_headers_and_retry_after(emulators):
    emu = emulators(rate_limit_per_minute=3, daily_limit=100)
    api = Api(emu)
    try:
        seen = []
        for _ in range(3):
            resp = api.get(INVOICES)
            assert resp.status_code == 200
            seen.append((resp.headers["X-MinLimit-Remaining"], resp.headers["X-DayLimit-Remaining"]))
            assert int(resp.headers["X-AppMinLimit-Remaining"]) > 0
        assert seen == [("2", "99"), ("1", "98"), ("0", "97")]
        resp = api.get(INVOICES)
        assert resp.status_code == 429
        assert resp.headers["X-Rate-Limit-Problem"] == "minute"
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert resp.headers["X-MinLimit-Remaining"] == "0"
        assert emu.count_429 == 1
        # limits are per organisation
        api.tenant = ORG2
        assert api.get(INVOICES).status_code == 200
    finally:
        api.close()
    assert emu.validation_failures == []


def test_daily_limit(emulators):
    emu = emulators(daily_limit=2)
    api = Api(emu)
    try:
        assert [api.get(INVOICES).status_code for _ in range(2)] == [200, 200]
        resp = api.get(INVOICES)
        assert resp.status_code == 429 and resp.headers["X-Rate-Limit-Problem"] == "day"
        assert int(resp.headers["Retry-After"]) > 80000
    finally:
        api.close()


def test_concurrency_limit(emulators):
    emu = emulators(max_concurrency=1, response_delay=0.3)
    api = Api(emu)
    statuses: list[int] = []
    problems: list[str] = []

    def call():
        with httpx.Client(base_url=emu.url, timeout=5) as http:
            resp = http.get(INVOICES, headers=api.headers())
            statuses.append(resp.status_code)
            problems.append(resp.headers.get("X-Rate-Limit-Problem", ""))

    try:
        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        api.close()
    assert sorted(statuses) == [200, 429, 429]
    assert problems.count("concurrent") == 2


# --------------------------------------------------------------------------- reads
def test_get_invoices_filters_and_single_invoice(emu, api):
    created = [body(api.put_invoices([element(f"INV-T-{n}")]))["Invoices"][0] for n in (1, 2, 3)]
    found = body(api.get(INVOICES, InvoiceNumbers="INV-T-2,INV-T-3"))["Invoices"]
    assert [i["InvoiceNumber"] for i in found] == ["INV-T-2", "INV-T-3"]
    assert body(api.get(INVOICES, InvoiceNumbers="INV-T-404"))["Invoices"] == []
    by_where = body(api.get(INVOICES, where='InvoiceNumber=="INV-T-1"'))["Invoices"]
    assert [i["InvoiceID"] for i in by_where] == [created[0]["InvoiceID"]]
    by_id = body(api.get(f"{INVOICES}/{created[1]['InvoiceID']}"))["Invoices"]
    assert by_id[0]["InvoiceNumber"] == "INV-T-2" and by_id[0]["Total"] == D("167.90")
    assert body(api.get(f"{INVOICES}/INV-T-3"))["Invoices"][0]["InvoiceID"] == created[2]["InvoiceID"]
    assert api.get(f"{INVOICES}/00000000-0000-0000-0000-00000000dead").status_code == 404
    summary = body(api.get(INVOICES, IDs=created[0]["InvoiceID"], summaryOnly="true"))["Invoices"]
    assert "LineItems" not in summary[0] and summary[0]["Total"] == D("167.90")


def test_contacts(emu, api):
    resp = api.http.put(
        "/api.xro/2.0/Contacts",
        params={"summarizeErrors": "false"},
        content=dumps({"Contacts": [{"Name": "Clínica do Parque, S.A.", "EmailAddress": "f@example.com"}]}),
        headers=api.headers(**{"Content-Type": "application/json"}),
    )
    assert resp.status_code == 200
    [contact] = body(resp)["Contacts"]
    assert contact["ContactStatus"] == "ACTIVE" and contact["ContactID"]
    dup = api.http.put(
        "/api.xro/2.0/Contacts",
        content=dumps({"Contacts": [{"Name": "Clínica do Parque, S.A."}]}),
        headers=api.headers(**{"Content-Type": "application/json"}),
    )
    assert dup.status_code == 400
    assert "must be unique across all active contacts" in body(dup)["Elements"][0]["ValidationErrors"][0]["Message"]
    listed = body(api.get("/api.xro/2.0/Contacts"))["Contacts"]
    assert {c["Name"] for c in listed} == {"Hotel Atlântico Lisboa, S.A.", "Clínica do Parque, S.A."}
    one = body(api.get(f"/api.xro/2.0/Contacts/{contact['ContactID']}"))["Contacts"]
    assert one[0]["EmailAddress"] == "f@example.com"
    # an invoice can now use it
    assert api.put_invoices([element(Contact={"ContactID": contact["ContactID"]})]).status_code == 200


# --------------------------------------------------------------------------- faults + control API
def test_faults_and_control_api(emu, api):
    control = httpx.Client(base_url=emu.url, timeout=5)
    try:
        assert control.post("/_emulator/faults", json={"kind": "503", "times": 2}).status_code == 200
        assert [api.put_invoices([element()]).status_code for _ in range(3)] == [503, 503, 200]
        assert len(emu.invoices()) == 1

        control.post("/_emulator/faults", json={"kind": "500"})
        assert api.get(INVOICES).status_code == 500

        emu.inject_fault("reset")
        with pytest.raises(httpx.TransportError):
            api.put_invoices([element("INV-T-2")])
        emu.inject_fault("drop_after_commit")
        with pytest.raises(httpx.RemoteProtocolError):
            api.put_invoices([element("INV-T-3")])
        assert sorted(i["InvoiceNumber"] for i in emu.invoices()) == [
            "INV-T-1",
            "INV-T-3",
        ]  # reset: before; drop: after

        listing = json.loads(control.get("/_emulator/invoices").content, parse_float=D)
        assert sorted(i["InvoiceNumber"] for i in listing) == ["INV-T-1", "INV-T-3"]
        assert {i["TenantID"] for i in listing} == {ORG} and listing[0]["Total"] == D("167.90")
        stats = control.get("/_emulator/stats").json()
        assert stats["count_429"] == 0 and stats["validation_failures"] == [] and stats["invoice_count"] == 2
        assert ["PUT", INVOICES, 503] in stats["calls"] and ["PUT", INVOICES, 0] in stats["calls"]
        assert control.post("/_emulator/faults", json={"kind": "meteor"}).status_code == 400
        with pytest.raises(ValueError):
            emu.inject_fault("meteor")

        assert control.post("/_emulator/reset").status_code == 200
        assert emu.invoices() == [] and emu.calls == [("POST", "/_emulator/reset", 200)]
        assert api.get(INVOICES).status_code == 200  # tokens survive a reset
        assert len(emu.contacts(ORG)) == 1  # seeded contacts come back
    finally:
        control.close()


def test_default_emulator_seeds_the_demo_contacts():
    emu = XeroEmulator(tenant_ids=(ORG, ORG2))
    names = {c["Name"] for c in emu.contacts(ORG)}
    assert "Hotel Atlântico Lisboa, S.A." in names
    assert XeroEmulator(tenant_ids=(ORG,), contacts={}).contacts() == []


# --------------------------------------------------------------------------- lifecycle: lines, payments, status rules
def _post_status(api: Api, invoice_id: str, status: str) -> httpx.Response:
    return api.http.post(
        f"{INVOICES}/{invoice_id}",
        content=dumps({"Invoices": [{"InvoiceID": invoice_id, "Status": status}]}),
        headers=api.headers(**{"Content-Type": "application/json"}),
    )


def _messages(resp: httpx.Response) -> list[str]:
    return [m["Message"] for el in body(resp)["Elements"] for m in el["ValidationErrors"]]


def test_description_only_line_has_no_amount_and_prints(emu, api):
    lines = [*element()["LineItems"], {"Description": "Reverse charge: VAT due by the recipient"}]
    [inv] = body(api.put_invoices([element(LineItems=lines)]))["Invoices"]
    # 3.25 x 42.00 = 136.50; 23 % = 31.395 -> 31.40; the note adds nothing
    assert (inv["SubTotal"], inv["TotalTax"], inv["Total"]) == (D("136.50"), D("31.40"), D("167.90"))
    note = inv["LineItems"][1]
    assert note["Description"] == "Reverse charge: VAT due by the recipient"
    assert (note["LineAmount"], note["TaxAmount"], "Quantity" in note, "UnitAmount" in note) == (
        D("0.00"),
        D("0.00"),
        False,
        False,
    )
    # read back with 2-decimal unit amounts: the note line has none to round
    [again] = body(api.get(f"{INVOICES}/{inv['InvoiceID']}"))["Invoices"]
    assert again["LineItems"][1] == note


def test_payments_status_rules_and_balance(emu, api):
    created = body(api.put_invoices([element("INV-P-1"), element("INV-P-2"), element("INV-P-3")]))["Invoices"]
    paid, partial, open_ = (i["InvoiceID"] for i in created)
    assert emu.balance(ORG) == D("503.70")  # 3 x 167.90

    emu.mark_paid(paid, tenant_id=ORG)
    after = emu.mark_paid(partial, D("67.90"), ORG)
    assert (after["Status"], after["AmountPaid"], after["AmountDue"]) == ("AUTHORISED", D("67.90"), D("100.00"))
    assert [p["Amount"] for p in after["Payments"]] == [D("67.90")]
    [full] = [i for i in emu.invoices(ORG) if i["InvoiceID"] == paid]
    assert (full["Status"], full["AmountPaid"], full["AmountDue"]) == ("PAID", D("167.90"), D("0.00"))
    assert emu.balance(ORG) == D("267.90")  # 0 + 100.00 + 167.90

    with pytest.raises(ValueError, match="exceeds the amount outstanding"):
        emu.mark_paid(partial, D("100.01"), ORG)
    with pytest.raises(ValueError, match="Authorised documents"):
        emu.mark_paid(paid, D("1.00"), ORG)

    # a paid or part-paid invoice can be neither voided nor deleted; an unpaid one is voided
    for ident, status, message in (
        (paid, "VOIDED", "Invoice of status PAID cannot be changed to VOIDED"),
        (paid, "DELETED", "Invoice of status PAID cannot be changed to DELETED"),
        (partial, "VOIDED", "This document cannot be edited as it has a payment or credit note allocated to it."),
        (partial, "DELETED", "Invoice of status AUTHORISED cannot be changed to DELETED"),
    ):
        resp = _post_status(api, ident, status)
        assert (resp.status_code, _messages(resp)) == (400, [message])
    resp = _post_status(api, open_, "VOIDED")
    assert resp.status_code == 200 and body(resp)["Invoices"][0]["Status"] == "VOIDED"
    assert emu.balance(ORG) == D("100.00")
    assert [(h[1], h[3], h[4]) for h in emu.history if h[1] != "invoice.created"] == [
        ("invoice.paid", "INV-P-1", "167.90"),
        ("invoice.paid", "INV-P-2", "67.90"),
        ("invoice.status", "INV-P-3", "AUTHORISED->VOIDED"),
    ]


def put_credit_note(api: Api, lines: list[dict], number: str) -> httpx.Response:
    """``PUT /CreditNotes?summarizeErrors=false`` of one AUTHORISED sales credit note for ``CONTACT``."""
    note = {
        "Type": "ACCRECCREDIT",
        "Contact": {"ContactID": CONTACT},
        "Date": "2026-03-09",
        "CreditNoteNumber": number,
        "Status": "AUTHORISED",
        "LineItems": lines,
    }
    return api.http.put(
        "/api.xro/2.0/CreditNotes",
        params={"summarizeErrors": "false"},
        content=dumps({"CreditNotes": [note]}),
        headers=api.headers(**{"Content-Type": "application/json"}),
    )


def test_credit_notes_take_no_discounts_and_unallocated_credit_lowers_the_balance(emu, api):
    api.put_invoices([element("INV-C-1")])
    discounted = [{"Description": "Part", "Quantity": 2, "UnitAmount": D("10.00"), "DiscountRate": 10}]
    [refused] = body(put_credit_note(api, discounted, "CN-X"))["CreditNotes"]
    assert refused["HasErrors"] is True
    assert [m["Message"] for m in refused["ValidationErrors"]] == [
        "Line 1: discounts are not supported on credit notes"
    ]
    assert emu.credit_notes(ORG) == []

    plain = [{"Description": "Part", "Quantity": 1, "UnitAmount": D("18.00"), "TaxType": "OUTPUT2"}]
    [note] = body(put_credit_note(api, plain, "CN-1"))["CreditNotes"]
    # 18.00 + 23 % (4.14) = 22.14 of unallocated credit
    assert (note["Total"], note["RemainingCredit"]) == (D("22.14"), D("22.14"))
    assert emu.balance(ORG) == D("145.76")  # 167.90 - 22.14
    assert emu.balance(ORG, CONTACT) == D("145.76")
    assert emu.balance(ORG, "00000000-0000-0000-0000-0000000000ff") == D("0.00")  # another contact owes nothing


def test_add_invoice_and_the_payment_and_balance_control_api(emu, api):
    ident = emu.add_invoice(element("INV-M-1", Reference="typed by hand"), ORG)
    [stored] = emu.invoices(ORG)
    assert (stored["InvoiceID"], stored["Reference"], stored["Total"]) == (ident, "typed by hand", D("167.90"))
    with pytest.raises(ValueError, match=r"Invoice # must be unique\."):
        emu.add_invoice(element("INV-M-1"), ORG)

    control = httpx.Client(base_url=emu.url, timeout=5)
    try:
        resp = control.post("/_emulator/payments", json={"InvoiceID": ident, "Amount": "7.90", "tenant_id": ORG})
        assert resp.status_code == 200 and loads(resp.content)["Invoices"][0]["AmountDue"] == D("160.00")
        assert control.get("/_emulator/balance", params={"tenant_id": ORG}).json() == {"balance": "160.00"}
        refused = control.post("/_emulator/payments", json={"InvoiceID": ident, "Amount": "500"})
        assert refused.status_code == 400 and "exceeds the amount outstanding" in refused.json()["error"]
    finally:
        control.close()


# --------------------------------------------------------------------------- archived contacts
ARCHIVED = (
    "The contact with the specified contact details has been archived. "
    "The contact must be un-archived before creating new invoices or credit notes."
)


def test_an_archived_contact_gets_no_invoice_or_credit_note(emu, api):
    control = httpx.Client(base_url=emu.url, timeout=5)
    try:
        archived = control.post("/_emulator/archive-contact", json={"ContactID": CONTACT.upper(), "tenant_id": ORG})
        [contact] = loads(archived.content)["Contacts"]
        assert archived.status_code == 200 and (contact["ContactID"], contact["ContactStatus"]) == (CONTACT, "ARCHIVED")
        unknown = control.post("/_emulator/archive-contact", json={"ContactID": "nope"})
        assert unknown.status_code == 400
        assert unknown.json() == {"error": f"archive refused: ValueError: no contact nope in organisation {ORG}"}
        assert control.post("/_emulator/archive-contact", json=[CONTACT]).json() == {
            "error": "archive refused: TypeError: the body must be a JSON object, got list"
        }
    finally:
        control.close()

    [refused] = body(api.put_invoices([element("INV-A-1")]))["Invoices"]  # summarizeErrors=false
    assert refused["HasErrors"] is True and [m["Message"] for m in refused["ValidationErrors"]] == [ARCHIVED]
    summarized = api.put_invoices([element("INV-A-2")], summarize=None)
    assert summarized.status_code == 400 and body(summarized)["Type"] == "ValidationException"
    assert [m["Message"] for m in body(summarized)["Elements"][0]["ValidationErrors"]] == [ARCHIVED]
    part = [{"Description": "Part", "Quantity": 1, "UnitAmount": D("18.00"), "TaxType": "OUTPUT2"}]
    [refused_note] = body(put_credit_note(api, part, "CN-A-1"))["CreditNotes"]
    assert [m["Message"] for m in refused_note["ValidationErrors"]] == [ARCHIVED]
    assert emu.invoices(ORG) == [] and emu.credit_notes(ORG) == []
    # GET /Contacts leaves it out unless includeArchived=true (spec); by id it is still there
    assert body(api.get("/api.xro/2.0/Contacts"))["Contacts"] == []
    [listed] = body(api.get("/api.xro/2.0/Contacts", includeArchived="true"))["Contacts"]
    assert (listed["ContactID"], listed["ContactStatus"]) == (CONTACT, "ARCHIVED")
    assert body(api.get(f"/api.xro/2.0/Contacts/{CONTACT}"))["Contacts"][0]["ContactStatus"] == "ARCHIVED"
    # another contact of the organisation is not affected
    other = emu.add_contact("Clínica do Parque, S.A.", ORG)
    [created] = body(api.put_invoices([element("INV-A-3", Contact={"ContactID": other})]))["Invoices"]
    assert created["HasErrors"] is False and created["Total"] == D("167.90")

"""The operator console's API (``broker console``): access, tenant scoping, filters, a document's history,
problem documents, the OpenAPI document and the audit log, over a status database filled by the real
mapping (``tests/console_support.py`` describes the scenario)."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from broker.console.actions import Replayed, ReplayRefusedError
from broker.console.auth import (
    Operator,
    OperatorsError,
    SessionSigner,
    hash_password,
    load_operators,
    parse_operators,
    verify_password,
)
from broker.statusdb.schema import AUDIT_LOG
from tests.console_support import console_client, filled_database

ALICE, BOB, CAROL = ("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw")


@pytest.fixture
def engine(tmp_path):
    engine = filled_database(tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine):
    return console_client(engine)


def problem(response, status: int) -> dict:
    """The body of an RFC 9457 problem answer with ``status`` (asserting its shape)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["title"] and body["detail"]
    return body


def audit_rows(engine) -> list[tuple]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                AUDIT_LOG.c.operator, AUDIT_LOG.c.action, AUDIT_LOG.c.target, AUDIT_LOG.c.tenant, AUDIT_LOG.c.outcome
            ).order_by(AUDIT_LOG.c.id)
        )
        return [tuple(row) for row in rows]


def keys(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["invoice_key"] for item in response.json()["items"]]


# --------------------------------------------------------------------------- access
API_ROUTES = [
    ("GET", "/api/me"),
    ("GET", "/api/invoices"),
    ("GET", "/api/documents/acme-fm:wo:1001"),
    ("GET", "/api/dead-letters/billing.dlq:0:0"),
    ("POST", "/api/dead-letters/billing.dlq:0:0/replay"),
    ("POST", "/api/documents/acme-fm:wo:1001/approve"),
    ("POST", "/api/documents/acme-fm:wo:1001/reject"),
    ("POST", "/api/documents/acme-fm:wo:1001/retry"),
    ("POST", "/api/tenants/acme-fm/reauthorise"),
    ("GET", "/api/audit"),
    ("GET", "/openapi.json"),
]


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_the_api_refuses_anonymous_requests(client, engine, method, path):
    body = problem(client.request(method, path), 401)
    assert body["detail"].startswith("log in: HTTP Basic")
    forged = client.request(method, path, headers={"Authorization": "Bearer not.a-token"})
    assert forged.status_code == 401
    client.cookies.set("broker_console_session", "x.y")
    assert client.request(method, path).status_code == 401
    assert audit_rows(engine) == []  # nothing was done


@pytest.mark.parametrize("path", ["/", "/?status=paid&q=1001", "/documents/acme-fm:wo:1001"])
def test_pages_send_anonymous_visitors_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=%2F")
    login = client.get(response.headers["location"])
    assert login.status_code == 200 and 'name="password"' in login.text


def test_wrong_passwords_and_unknown_operators_are_401_and_audited(client, engine):
    response = client.get("/api/invoices", auth=("bob", "alice-pw"))
    problem(response, 401)
    assert response.headers["www-authenticate"] == 'Basic realm="broker console", charset="UTF-8"'
    problem(client.get("/api/invoices", auth=("mallory", "x")), 401)
    problem(client.post("/api/sessions", json={"username": "bob", "password": "nope"}), 401)
    page = client.post("/login", content=b"username=bob&password=nope&next=%2F", headers=_FORM)
    assert page.status_code == 401 and "Wrong operator name or password." in page.text
    assert "set-cookie" not in page.headers
    assert audit_rows(engine) == [
        ("bob", "login", None, None, "refused"),
        ("mallory", "login", None, None, "refused"),
        ("bob", "login", None, None, "refused"),
        ("bob", "login", None, None, "refused"),
    ]


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_the_login_page_sets_a_signed_httponly_samesite_cookie(client, engine):
    response = client.post("/login", content=b"username=bob&password=bob-pw&next=%2F%3Fq%3D1003", headers=_FORM)
    assert response.status_code == 303 and response.headers["location"] == "/?q=1003"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("broker_console_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie and "Max-Age=28800" in cookie
    page = client.get("/?q=1003")
    assert page.status_code == 200
    assert "ACME-WO-1003-R1" in page.text and "bob-pw" not in page.text and "scrypt$" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    # an open redirect is not followed
    outside = client.post("/login", content=b"username=bob&password=bob-pw&next=https%3A%2F%2Fevil", headers=_FORM)
    assert outside.headers["location"] == "/"
    logout = client.post("/logout")
    assert logout.status_code == 303 and 'broker_console_session=""' in logout.headers["set-cookie"]
    assert audit_rows(engine) == [
        ("bob", "login", None, None, "ok"),
        ("bob", "login", None, None, "ok"),
        ("bob", "logout", None, None, "ok"),
    ]


def test_a_bearer_token_for_scripts(client, engine):
    answer = client.post("/api/sessions", json={"username": "carol", "password": "carol-pw"})
    assert answer.status_code == 201
    body = answer.json()
    assert (body["operator"], body["tenants"]) == ("carol", ["nordic-hvac"])
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/me", headers=bearer).json() == {"operator": "carol", "tenants": ["nordic-hvac"]}
    payload, signature = body["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "alice"  # a token rewritten for another operator: the signature no longer matches
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + "." + signature
    problem(client.get("/api/me", headers={"Authorization": f"Bearer {forged}"}), 401)
    assert audit_rows(engine) == [("carol", "login", None, None, "ok")]


def test_session_tokens_expire_and_end_with_a_new_password():
    now = [1_000_000.0]
    signer = SessionSigner(b"k" * 32, lifetime=60, clock=lambda: now[0])
    dave = Operator("dave", hash_password("one", n=2**10), frozenset({"acme-fm"}))
    token, expires = signer.issue(dave)
    assert expires == 1_000_060
    assert signer.check(token, {"dave": dave}) == dave
    assert signer.check(token, {}) is None  # no longer an operator
    renewed = Operator("dave", hash_password("two", n=2**10), dave.tenants)
    assert signer.check(token, {"dave": renewed}) is None
    now[0] += 60
    assert signer.check(token, {"dave": dave}) is None
    with pytest.raises(ValueError, match="at least 32 bytes, not 5"):
        SessionSigner(b"short")


# --------------------------------------------------------------------------- listing
def test_the_list_with_its_counts(client):
    response = client.get("/api/invoices", auth=ALICE)
    body = response.json()
    assert keys(response) == [  # the most recently changed first
        "nordic-hvac:wo:2001:r1",
        "acme-fm:wo:1004:r1",
        "acme-fm:wo:1003:r1",
        "acme-fm:wo:1002:r1",
        "acme-fm:wo:1001:r1",
    ]
    assert (body["total"], body["limit"], body["offset"], body["overdue"]) == (5, 50, 0, 2)
    assert body["status_counts"] == {
        "dead_lettered": 1,
        "delivered": 1,
        "not_billable": 1,
        "paid": 1,
        "partially_paid": 1,
    }
    shown = {
        item["invoice_key"]: (
            item["status"],
            item["total"],
            item["amount_paid"],
            item["amount_due"],
            item["overdue"],
            item["status_reason"],
        )
        for item in body["items"]
    }
    assert shown == {
        "nordic-hvac:wo:2001:r1": ("dead_lettered", "492.00", None, None, False, "permanent: 400"),
        "acme-fm:wo:1004:r1": ("partially_paid", "246.00", "100.00", "146.00", True, None),
        "acme-fm:wo:1003:r1": ("delivered", "49.20", None, None, True, None),
        "acme-fm:wo:1002:r1": ("not_billable", None, None, None, False, "everything is covered by contract C-1"),
        "acme-fm:wo:1001:r1": ("paid", "123.00", "123.00", "0.00", False, None),
    }
    first = body["items"][0]
    assert (first["dead_letter"], first["dead_letter_class"], first["due_date"], first["updated_at"]) == (
        "billing.dlq:0:0",
        "permanent",
        "2026-04-01",
        "2026-03-02T10:00:00.120000+00:00",
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tenant=acme-fm", ["acme-fm:wo:1004:r1", "acme-fm:wo:1003:r1", "acme-fm:wo:1002:r1", "acme-fm:wo:1001:r1"]),
        ("client=CLI-MON", ["acme-fm:wo:1003:r1"]),
        ("billing_system=stripe", ["acme-fm:wo:1003:r1"]),
        ("billing_system=xero&status=paid", ["acme-fm:wo:1001:r1"]),
        ("status=dead_lettered", ["nordic-hvac:wo:2001:r1"]),
        ("status=paid,partially_paid", ["acme-fm:wo:1004:r1", "acme-fm:wo:1001:r1"]),
        ("status=overdue", ["acme-fm:wo:1004:r1", "acme-fm:wo:1003:r1"]),
        ("q=1003", ["acme-fm:wo:1003:r1"]),
        ("q=acme-wo-1001", ["acme-fm:wo:1001:r1"]),  # our number, any case
        ("q=%25", []),  # a LIKE wildcard is searched for
        ("q=  2001 ", ["nordic-hvac:wo:2001:r1"]),
        ("limit=2&offset=1", ["acme-fm:wo:1004:r1", "acme-fm:wo:1003:r1"]),
        ("tenant=&client=&status=&q=", None),  # empty filters are no filters
    ],
)
def test_filters_and_search(client, query, expected):
    everything = keys(client.get("/api/invoices", auth=ALICE))
    assert keys(client.get(f"/api/invoices?{query}", auth=ALICE)) == (everything if expected is None else expected)


def test_an_operator_sees_only_their_tenants(client):
    assert keys(client.get("/api/invoices", auth=BOB)) == [
        "acme-fm:wo:1004:r1",
        "acme-fm:wo:1003:r1",
        "acme-fm:wo:1002:r1",
        "acme-fm:wo:1001:r1",
    ]
    assert keys(client.get("/api/invoices?tenant=nordic-hvac", auth=BOB)) == []
    assert keys(client.get("/api/invoices?q=2001", auth=BOB)) == []
    body = client.get("/api/invoices?status=dead_lettered", auth=BOB).json()
    assert body["total"] == 0  # the counts per status are of the other filters: nordic-hvac's are not there
    assert body["status_counts"] == {"delivered": 1, "not_billable": 1, "paid": 1, "partially_paid": 1}
    assert keys(client.get("/api/invoices", auth=CAROL)) == ["nordic-hvac:wo:2001:r1"]
    assert client.get("/api/invoices", auth=CAROL).json()["status_counts"] == {"dead_lettered": 1}
    # a document, or a dead letter, of another tenant is exactly as absent as one that does not exist
    other = problem(client.get("/api/documents/nordic-hvac:wo:2001", auth=BOB), 404)
    missing = problem(client.get("/api/documents/nordic-hvac:wo:9999", auth=BOB), 404)
    assert other["detail"] == "no document 'nordic-hvac:wo:2001' (or not one of your tenants')"
    assert missing["detail"] == "no document 'nordic-hvac:wo:9999' (or not one of your tenants')"
    problem(client.get("/api/dead-letters/billing.dlq:0:0", auth=BOB), 404)
    problem(client.post("/api/dead-letters/billing.dlq:0:0/replay", auth=BOB), 404)
    problem(client.post("/api/tenants/nordic-hvac/reauthorise", auth=BOB), 404)
    assert client.get("/api/dead-letters/billing.dlq:0:0", auth=CAROL).status_code == 200
    _login(client, "bob")
    page = client.get("/documents/nordic-hvac:wo:2001")
    assert page.status_code == 404 and "ACME-WO-2001-R1" not in page.text


def _login(client, name: str) -> None:
    """Log in through the login page: the client keeps the session cookie."""
    response = client.post("/login", content=f"username={name}&password={name}-pw&next=%2F".encode(), headers=_FORM)
    assert response.status_code == 303 and "broker_console_session" in client.cookies


# --------------------------------------------------------------------------- a document
def test_a_documents_history(client):
    response = client.get("/api/documents/acme-fm:wo:1004", auth=BOB)
    assert response.status_code == 200
    doc = response.json()
    assert (doc["order_key"], doc["tenant"]) == ("acme-fm:wo:1004", "acme-fm")
    (version,) = doc["versions"]
    assert {k: version[k] for k in (
        "invoice_key", "invoice_number", "status", "net_total", "tax_total", "total", "currency", "outcome",
        "attempts", "external_id", "external_number", "billed_total", "payment_state", "amount_paid", "amount_due",
        "overdue",
    )} == {
        "invoice_key": "acme-fm:wo:1004:r1",
        "invoice_number": "ACME-WO-1004-R1",
        "status": "partially_paid",
        "net_total": "200.00",
        "tax_total": "46.00",
        "total": "246.00",
        "currency": "EUR",
        "outcome": "created",
        "attempts": 1,
        "external_id": "X-ACME-WO-1004-R1",
        "external_number": "ACME-WO-1004-R1",
        "billed_total": "246.00",
        "payment_state": "partially_paid",
        "amount_paid": "100.00",
        "amount_due": "146.00",
        "overdue": True,
    }  # fmt: skip
    (line,) = version["lines"]
    assert {k: line[k] for k in ("kind", "quantity", "unit_price", "net", "tax_rate", "tax", "total", "rule")} == {
        "kind": "labour",
        "quantity": "5",
        "unit_price": "40.00",
        "net": "200.00",
        "tax_rate": "23",
        "tax": "46.00",
        "total": "246.00",
        "rule": "rate:skill:hvac",
    }
    assert [(e["id"], e["kind"], e["name"], e["at"]) for e in doc["events"]] == [
        ("billing.invoices:0:3", "invoice", "r1", "2026-03-02T10:00:00.070000+00:00"),
        ("billing.deliveries:0:2", "outcome", "created", "2026-03-02T10:00:00.080000+00:00"),
        ("billing.payments:0:1", "payment", "billing.invoice.partially_paid", "2026-03-02T10:00:00.090000+00:00"),
    ]
    (pay,) = doc["payments"]
    assert {
        k: pay[k] for k in ("id", "type", "state", "amount", "amount_paid", "amount_due", "currency", "paid_at")
    } == {
        "id": "billing.payments:0:1",
        "type": "billing.invoice.partially_paid",
        "state": "partially_paid",
        "amount": "100.00",
        "amount_paid": "100.00",
        "amount_due": "146.00",
        "currency": "EUR",
        "paid_at": "2026-03-10T09:30:00+00:00",
    }
    assert doc["dead_letters"] == []


def test_a_dead_lettered_documents_reason(client):
    doc = client.get("/api/documents/nordic-hvac:wo:2001", auth=CAROL).json()
    assert [(e["kind"], e["name"]) for e in doc["events"]] == [
        ("invoice", "r1"),
        ("dead_letter", "permanent"),
        ("outcome", "dead_lettered"),
    ]
    (dead,) = doc["dead_letters"]
    assert {k: dead[k] for k in (
        "id", "stage", "error_class", "message", "connector", "http_status", "attempts", "replay_count",
        "original_topic", "original_partition", "original_offset", "invoice_key", "replayable",
    )} == {
        "id": "billing.dlq:0:0",
        "stage": "deliver",
        "error_class": "permanent",
        "message": "Xero 400: field 'Contact.ContactID': 'C-404' does not exist",
        "connector": "xero",
        "http_status": 400,
        "attempts": 1,
        "replay_count": 0,
        "original_topic": "billing.invoices",
        "original_partition": 0,
        "original_offset": 5,
        "invoice_key": "nordic-hvac:wo:2001:r1",
        "replayable": True,
    }  # fmt: skip
    assert client.get("/api/dead-letters/billing.dlq:0:0", auth=CAROL).json()["message"] == dead["message"]
    problem(client.get("/api/dead-letters/billing.dlq:0:9", auth=CAROL), 404)
    problem(client.get("/api/dead-letters/not-an-id", auth=CAROL), 404)


# --------------------------------------------------------------------------- problems
ALL_STATUSES = (
    "built, delivered, not_billable, dead_lettered, superseded, cancelled, held, awaiting_approval, rejected, parked, "
    "needs_reauth, paid, partially_paid, voided, credited, replaced, overdue"
)


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("limit=abc", "should be a valid integer, unable to parse string as an integer"),
        ("limit=0", "should be greater than or equal to 1"),
        ("limit=1001", "should be less than or equal to 1000"),
        ("offset=-1", "should be greater than or equal to 0"),
        ("status=parking", f"is not one of {ALL_STATUSES}"),
        ("status=paid,overdue", "combines overdue with other statuses: give overdue alone"),
    ],
)
def test_a_bad_parameter_is_a_problem_document_naming_it(client, query, why):
    parameter, value = query.split("=")
    body = problem(client.get(f"/api/invoices?{query}", auth=ALICE), 400)
    assert (body["parameter"], body["value"]) == (parameter, value)
    assert body["detail"] == f"query parameter {parameter!r}: {value!r} {why}"


def test_other_errors_are_problem_documents(client):
    assert problem(client.get("/api/nothing", auth=ALICE), 404)["detail"] == "GET /api/nothing: Not Found"
    assert problem(client.delete("/api/invoices", auth=ALICE), 405)["title"] == "Method Not Allowed"
    body = problem(client.get("/api/audit?action=delete", auth=ALICE), 400)
    assert (body["parameter"], body["value"]) == ("action", "delete")
    assert problem(client.post("/api/sessions", json={"username": "bob"}), 422)["detail"] == (
        "body field password: Field required"
    )


# --------------------------------------------------------------------------- OpenAPI
def test_the_openapi_document_is_valid_and_lists_every_route(client):
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json", auth=ALICE).json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    listed = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    routes = {
        (method, route.path) for route in client.app.routes if isinstance(route, APIRoute) for method in route.methods
    }
    assert routes == listed
    assert {"/api/invoices", "/api/documents/{order_key}", "/api/dead-letters/{dead_letter_id}/replay",
            "/api/audit", "/openapi.json", "/api/sessions"} <= {path for _, path in routes}  # fmt: skip
    assert set(doc["components"]["securitySchemes"]) == {"HTTPBasic", "HTTPBearer", "APIKeyCookie"}
    params = {p["name"] for p in doc["paths"]["/api/invoices"]["get"]["parameters"]}
    assert params == {"tenant", "client", "billing_system", "status", "q", "limit", "offset"}


# --------------------------------------------------------------------------- replay
def test_a_replay_is_done_once_and_audited(engine):
    calls = []

    def replayer(bootstrap, record_id, limit):
        calls.append((bootstrap, record_id, limit))
        return Replayed(record_id, "billing.invoices", 0, 6, 1)

    client = console_client(engine, bootstrap="kafka:9092", replayer=replayer, replay_limit=3)
    answer = client.post("/api/dead-letters/billing.dlq:0:0/replay", auth=CAROL)
    assert answer.status_code == 200
    assert answer.json() == {"replayed": "billing.dlq:0:0", "to": "billing.invoices:0:6", "replay_count": 1}
    again = problem(client.post("/api/dead-letters/billing.dlq:0:0/replay", auth=ALICE), 409)
    assert again["detail"].startswith("dead letter billing.dlq:0:0 was replayed by carol at 20")
    assert calls == [("kafka:9092", "billing.dlq:0:0", 3)]
    assert audit_rows(engine) == [
        ("carol", "replay_dead_letter", "billing.dlq:0:0", "nordic-hvac", "ok"),
        ("alice", "replay_dead_letter", "billing.dlq:0:0", "nordic-hvac", "refused"),
    ]
    audit = client.get("/api/audit?action=replay_dead_letter", auth=CAROL).json()
    assert [(row["operator"], row["outcome"], row["detail"]) for row in audit["items"]] == [
        ("alice", "refused", f"already replayed by carol at {audit['items'][1]['at']}"),
        ("carol", "ok", "replayed to billing.invoices:0:6 (replay 1)"),
    ]


def test_a_replay_without_kafka_or_refused_by_the_limit(engine):
    problem(console_client(engine).post("/api/dead-letters/billing.dlq:0:0/replay", auth=CAROL), 503)

    def refuse(bootstrap, record_id, limit):
        raise ReplayRefusedError(f"{record_id} was replayed 3 times (limit {limit})")

    client = console_client(engine, bootstrap="kafka:9092", replayer=refuse)
    body = problem(client.post("/api/dead-letters/billing.dlq:0:0/replay", auth=CAROL), 409)
    assert body["detail"] == "billing.dlq:0:0 was replayed 3 times (limit 3)"
    assert [row[4] for row in audit_rows(engine)] == ["failed", "refused"]


def test_the_audit_log_an_operator_may_read(client, engine):
    client.post("/api/tenants/nordic-hvac/reauthorise", auth=CAROL)
    client.post("/api/tenants/acme-fm/reauthorise", auth=BOB)
    client.get("/api/me", auth=("bob", "wrong"))
    everything = client.get("/api/audit", auth=ALICE).json()
    assert [(r["operator"], r["action"], r["tenant"], r["outcome"]) for r in everything["items"]] == [
        ("bob", "login", None, "refused"),
        ("bob", "reauthorise", "acme-fm", "refused"),  # the console runs without --config
        ("carol", "reauthorise", "nordic-hvac", "refused"),
    ]
    assert everything["total"] == 3 and everything["items"][0]["remote"] == "testclient"
    bobs = client.get("/api/audit", auth=BOB).json()  # acme-fm's rows and his own, not carol's
    assert [(r["operator"], r["action"]) for r in bobs["items"]] == [("bob", "login"), ("bob", "reauthorise")]
    assert client.get("/api/audit?operator=carol", auth=ALICE).json()["items"][0]["target"] == "nordic-hvac"


# --------------------------------------------------------------------------- pages
def test_the_pages_show_the_list_and_a_document(client):
    _login(client, "alice")
    page = client.get("/?status=overdue")
    assert page.status_code == 200
    assert "ACME-WO-1003-R1" in page.text and "ACME-WO-1004-R1" in page.text and "ACME-WO-1001-R1" not in page.text
    assert "49.20 EUR" in page.text and "Monthly Client Lda" in page.text
    doc = client.get("/documents/nordic-hvac:wo:2001")
    assert doc.status_code == 200
    assert "Xero 400: field &#x27;Contact.ContactID&#x27;: &#x27;C-404&#x27; does not exist" in doc.text
    assert 'action="/dead-letters/billing.dlq:0:0/replay"' in doc.text
    bad = client.get("/?status=parking")
    assert bad.status_code == 400 and "is not one of" in bad.text


# --------------------------------------------------------------------------- operators
def test_password_hashes():
    encoded = hash_password("correct horse")
    scheme, n, r, p, salt, key = encoded.split("$")
    assert (scheme, n, r, p, len(salt), len(key)) == ("scrypt", "16384", "8", "1", 22, 43)
    assert verify_password("correct horse", encoded) and not verify_password("correct horse!", encoded)
    assert hash_password("correct horse") != encoded  # a fresh salt each time
    assert not verify_password("x", "plain-text") and not verify_password("x", "scrypt$3$8$1$AAAA$AAAA")
    with pytest.raises(ValueError, match="the password is empty"):
        hash_password("")


def test_the_operators_document(tmp_path):
    alice = hash_password("a", n=2**10)
    path = tmp_path / "operators.yaml"
    path.write_text(f"operators:\n  alice:\n    password_hash: '{alice}'\n    tenants: ['*']\n", encoding="utf-8")
    found = load_operators(path)
    assert list(found) == ["alice"] and found["alice"].all_tenants and found["alice"].visible() is None
    assert alice not in repr(found["alice"])
    as_json = json.dumps({"operators": {"bob": {"password_hash": alice, "tenants": ["acme-fm"]}}})
    bob = load_operators(None, {"BROKER_CONSOLE_OPERATORS": as_json})["bob"]
    assert bob.visible() == frozenset({"acme-fm"}) and bob.may_see("acme-fm") and not bob.may_see("nordic-hvac")
    with pytest.raises(OperatorsError, match=r"no operators: give --operators FILE or set BROKER_CONSOLE_OPERATORS"):
        load_operators(None, {})
    with pytest.raises(OperatorsError, match=r"x.yaml: operators.bob.password_hash: is not of the form scrypt\$N"):
        parse_operators("operators: {bob: {password_hash: hunter2, tenants: [acme-fm]}}", where="x.yaml")
    with pytest.raises(OperatorsError, match=r"x.yaml: operators.bob.tenants: expected a non-empty list"):
        parse_operators(f"operators: {{bob: {{password_hash: '{alice}', tenants: []}}}}", where="x.yaml")
    with pytest.raises(OperatorsError, match=r"x.yaml: operators.bob: unknown field\(s\) password"):
        parse_operators(f"operators: {{bob: {{password_hash: '{alice}', tenants: [a], password: x}}}}", where="x.yaml")
    with pytest.raises(OperatorsError, match=r"missing.yaml: cannot read it"):
        load_operators(tmp_path / "missing.yaml")


def test_the_commands(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from broker.cli import main

    runner = CliRunner()
    made = runner.invoke(main, ["console", "hash-password"], input="s3cret\ns3cret\n")
    assert made.exit_code == 0, made.output
    assert verify_password("s3cret", made.output.strip().splitlines()[-1])
    monkeypatch.delenv("BROKER_CONSOLE_OPERATORS", raising=False)
    monkeypatch.delenv("BROKER_CONSOLE_OPERATORS_FILE", raising=False)
    refused = runner.invoke(main, ["console", "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert refused.exit_code == 2
    assert "no operators: give --operators FILE" in refused.output


def test_the_same_on_postgresql(tmp_path):
    from tests.postgres_support import fresh_database, temporary_postgres

    with temporary_postgres() as server:
        engine = filled_database(tmp_path, url=fresh_database(server, "console"))
        try:
            client = console_client(engine)
            assert keys(client.get("/api/invoices?status=overdue", auth=BOB)) == [
                "acme-fm:wo:1004:r1",
                "acme-fm:wo:1003:r1",
            ]
            doc = client.get("/api/documents/acme-fm:wo:1004", auth=BOB).json()
            assert [p["amount_due"] for p in doc["payments"]] == ["146.00"]
            problem(client.post("/api/tenants/acme-fm/reauthorise", auth=BOB), 404)  # without --config
            problem(client.get("/api/me", auth=("bob", "wrong")), 401)
            assert [r[1:] for r in audit_rows(engine)] == [
                ("reauthorise", "acme-fm", "acme-fm", "refused"),
                ("login", None, None, "refused"),
            ]
            assert [r["id"] for r in client.get("/api/audit", auth=ALICE).json()["items"]] == [2, 1]
        finally:
            engine.dispose()

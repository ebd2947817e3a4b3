"""The operator console's ASGI app (FastAPI): the REST API, its OpenAPI document and the web pages.

:func:`create_console_app` reads the status database through :mod:`broker.statusdb.read`. Every route
needs an operator (:mod:`broker.console.auth`): the API answers 401 without one (HTTP Basic, a bearer
token from ``POST /api/sessions``, or the session cookie), a page redirects to ``/login``. An operator
sees only the tenants they may: lists are filtered in the query and a document, dead letter or
tenant they may not see is 404, exactly as one that does not exist.

API (``/openapi.json`` describes it):

* ``POST /api/sessions`` — log in (``{"username", "password"}``) -> ``{"token", "expires_at", ...}``;
* ``GET /api/me`` — the operator and their tenants;
* ``GET /api/invoices`` — invoice versions, filters ``tenant``, ``client``, ``billing_system``,
  ``status`` (comma-separated; or ``overdue``), ``q`` (work order, order key, invoice or billing-system
  number), ``limit``/``offset``; with the total and the count per status;
* ``GET /api/documents/{order_key}`` — a document's versions (prices, lines, attempts, billing-system
  ids and numbers, payment state), its history (every record, in order), payments and dead letters;
* ``GET /api/dead-letters/{id}`` and ``POST /api/dead-letters/{id}/replay`` (needs Kafka);
* ``POST /api/documents/{order_key}/approve | reject`` — decide on the document's version awaiting approval
  (optional body ``{"invoice_key", "reason"}``): the decision goes to ``billing.approvals`` (needs Kafka),
  202 with its id (``docs/approval.md``);
* ``POST /api/documents/{order_key}/retry`` — try the document's parked version now (optional body
  ``{"invoice_key"}``): a ``billing.invoice.retry_requested`` request goes to ``billing.approvals`` (needs
  Kafka), 202 with its id (``docs/delivery.md`` §4);
* ``POST /api/tenants/{tenant}/reauthorise`` — start re-authorising a tenant's OAuth2 connection
  (:mod:`broker.console.oauth`);
* ``GET /api/audit`` — the audit log rows the operator may read.

Errors are RFC 9457 problem documents (``application/problem+json``); a bad parameter's names it in
``detail`` and in the members ``parameter`` and ``value``. Amounts are the stored decimal strings.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasicCredentials
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker import __version__
from broker.approvals import (
    ApprovalDecision,
    PublishedDecision,
    decision_event,
    publish_decision,
    retry_request_event,
)
from broker.console import audit, pages
from broker.console.actions import Replayed, ReplayRefusedError
from broker.console.auth import Operator, SessionSigner, verify_password
from broker.console.web import (
    COOKIE,
    ApiOperator,
    LoginRequiredError,
    PageOperator,
    Problem,
    bad_parameter,
    not_found,
    remote,
)
from broker.statusdb.mapping import STATUSES
from broker.statusdb.read import (
    MAX_LIMIT,
    DeadLetterRow,
    InvoiceFilter,
    InvoiceRow,
    count_invoices,
    document_dead_letters,
    document_history,
    document_payments,
    get_dead_letter,
    list_invoices,
    status_counts,
)
from broker.statusdb.schema import INVOICES

if TYPE_CHECKING:
    from broker.console.oauth import Reauthoriser

__all__ = ["COOKIE", "ConsoleFilter", "Problem", "create_console_app", "to_json"]

log = logging.getLogger(__name__)

#: Statuses whose invoice is still owed: past its due date it is ``overdue``.
OPEN_STATUSES = ("delivered", "partially_paid")
#: Values of the ``status`` filter: every stored status, and ``overdue``.
STATUS_FILTERS = (*(s for s in STATUSES if s != "unknown"), "overdue")

#: Replays a dead letter with the id, a Kafka bootstrap and the replay limit (``broker.console.actions``).
Replayer = Callable[[str, str, int], Replayed | None]
#: Publishes an approval decision to a Kafka bootstrap (:func:`broker.approvals.publish_decision`).
Decider = Callable[[str, ApprovalDecision], PublishedDecision]
#: The status of an invoice version an operator can approve or reject.
AWAITING = "awaiting_approval"
#: The statuses of an invoice version an operator can ask to retry now (parked on a retry topic).
PARKED = ("parked", "needs_reauth")


@dataclass(frozen=True)
class ConsoleFilter(InvoiceFilter):
    """:class:`~broker.statusdb.read.InvoiceFilter` and, with ``overdue_on`` set, only invoices still owed
    (:data:`OPEN_STATUSES`) whose due date is before that day."""

    overdue_on: date | None = None

    def where(self) -> list[ColumnElement[bool]]:
        """The SQL conditions of the filters that are set."""
        out = super().where()
        if self.overdue_on is not None:
            out += [INVOICES.c.status.in_(OPEN_STATUSES), INVOICES.c.due_date < self.overdue_on]
        return out


def to_json(value: Any) -> Any:
    """``value`` made JSON-ready: ``Decimal`` as its exact string (``"123.40"``), dates and times ISO 8601,
    dataclasses as objects (their properties ``id`` included), containers recursively."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(getattr(type(value), "id", None), property):
            out = {"id": value.id, **out}  # type: ignore[attr-defined]
        return out
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def is_overdue(row: InvoiceRow, today: date) -> bool:
    """Whether ``row`` is still owed (:data:`OPEN_STATUSES`) past its due date."""
    return row.status in OPEN_STATUSES and row.due_date is not None and row.due_date < today


def _reason(row: InvoiceRow) -> str | None:
    """Why an invoice version is where it is: the error, the dead letter's class or the not-billable reason."""
    if row.status == "dead_lettered":
        return row.error or row.dead_letter_class
    if row.status == "not_billable":
        return row.reason
    shown = ("held", "cancelled", "awaiting_approval", "rejected", "parked", "needs_reauth")
    return row.error if row.status in shown else None


def invoice_json(row: InvoiceRow, today: date) -> dict[str, Any]:
    """An invoice version as the API shows it: its columns, ``overdue`` and ``reason``."""
    return {**to_json(row), "overdue": is_overdue(row, today), "status_reason": _reason(row)}


class DecisionBody(BaseModel):
    """``POST /api/documents/{order_key}/approve | reject``: which version (default: the document's one
    awaiting approval) and why (optional, at most 500 characters)."""

    invoice_key: str | None = None
    reason: str | None = None


class LoginBody(BaseModel):
    """``POST /api/sessions``: an operator's name and password."""

    username: str
    password: str


def create_console_app(
    engine: Engine,
    operators: dict[str, Operator],
    signer: SessionSigner,
    *,
    bootstrap: str | None = None,
    replay_limit: int = 3,
    replayer: Replayer | None = None,
    decider: Decider | None = None,
    today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    reauthoriser: Reauthoriser | None = None,
) -> FastAPI:
    """The console on ``engine`` (a migrated status database) for ``operators``, sessions signed by
    ``signer``. ``bootstrap`` is the Kafka cluster replays and approval decisions go to (``None``: they
    answer 503); ``replayer`` replaces :func:`broker.console.actions.replay_dead_letter` and ``decider``
    :func:`broker.approvals.publish_decision` (tests); ``today`` is the day ``overdue`` is judged on (UTC)."""
    if replayer is None:
        from broker.console.actions import replay_dead_letter

        def replayer(boot: str, record_id: str, limit: int) -> Replayed | None:
            return replay_dead_letter(boot, record_id, limit=limit)

    publish: Decider = decider if decider is not None else publish_decision

    app = FastAPI(
        title="maintenance-billing-broker operator console",
        version=__version__,
        description="Invoices by tenant, client, billing system and status; each document's history; "
        "actions. Every route needs an operator (HTTP Basic, a bearer token from POST /api/sessions, or "
        "the session cookie). Errors are RFC 9457 problem documents.",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: none here
        redoc_url=None,
        openapi_url=None,  # served below, behind the login
    )

    def audit_write(request: Request, operator: str, action: str, outcome: str, **kw: Any) -> None:
        audit.record(engine, operator=operator, action=action, outcome=outcome, remote=remote(request), **kw)

    def check_password(name: str, password: str) -> Operator | None:
        found = operators.get(name)
        if found is None:
            verify_password(password, _DUMMY_HASH)  # the same time whether the name exists or not
            return None
        return found if verify_password(password, found.password_hash) else None

    def who(
        request: Request,
        credentials: HTTPBasicCredentials | None,
        token: HTTPAuthorizationCredentials | None,
        session: str | None,
    ) -> Operator | None:
        if credentials is not None:
            found = check_password(credentials.username, credentials.password)
            if found is None:
                audit_write(request, credentials.username, "login", "refused", detail="HTTP Basic: bad credentials")
            return found
        if token is not None:
            return signer.check(token.credentials, operators)
        return signer.check(session, operators) if session else None

    def api_operator(
        request: Request,
        credentials: HTTPBasicCredentials | None,
        token: HTTPAuthorizationCredentials | None,
        session: str | None,
    ) -> Operator:
        found = who(request, credentials, token, session)
        if found is None:
            raise Problem(
                401,
                "unauthorized",
                "Missing or bad credentials",
                "log in: HTTP Basic, Authorization: Bearer <token from POST /api/sessions>, or the session cookie",
                headers={"WWW-Authenticate": 'Basic realm="broker console", charset="UTF-8"'},
            )
        return found

    def page_operator(request: Request, session: str | None) -> Operator:
        found = signer.check(session, operators) if session else None
        if found is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequiredError(target)
        return found

    app.state.api_operator, app.state.page_operator = api_operator, page_operator

    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> Response:
        return exc.response()

    @app.exception_handler(LoginRequiredError)
    async def _login(_request: Request, exc: LoginRequiredError) -> Response:
        return RedirectResponse("/login?" + urlencode({"next": exc.target}), status_code=303)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        error = exc.errors()[0]
        where, name = [*error.get("loc", ()), "?", "?"][:2]
        if where == "body":
            detail = f"body field {'.'.join(map(str, error['loc'][1:])) or '(body)'}: {error.get('msg')}"
            return Problem(422, "invalid-body", "Invalid request body", detail).response()
        why = str(error.get("msg", "is invalid")).replace("Input should be", "should be")
        return bad_parameter(str(name), error.get("input"), f"{why[0].lower()}{why[1:]}", where=str(where)).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        return Problem(exc.status_code, slug, str(exc.detail), detail).response()

    # ------------------------------------------------------------------ reading
    def parse_status(status: str | None) -> tuple[list[str] | None, bool]:
        if status is None or not status.strip():
            return None, False
        wanted = [s.strip() for s in status.split(",") if s.strip()]
        for value in wanted:
            if value not in STATUS_FILTERS:
                raise bad_parameter("status", value, f"is not one of {', '.join(STATUS_FILTERS)}")
        if "overdue" in wanted and len(wanted) > 1:
            raise bad_parameter("status", status, "combines overdue with other statuses: give overdue alone")
        return (None, True) if wanted == ["overdue"] else (wanted, False)

    def invoice_filter(
        operator: Operator,
        tenant: str | None,
        client: str | None,
        billing_system: str | None,
        status: str | None,
        q: str | None,
    ) -> ConsoleFilter:
        statuses, overdue = parse_status(status)
        return ConsoleFilter(
            tenant=tenant or None,
            tenants=operator.visible(),
            client_id=client or None,
            billing_system=billing_system or None,
            status=statuses,
            search=q.strip() if q and q.strip() else None,
            overdue_on=today() if overdue else None,
        )

    def invoices_page(flt: ConsoleFilter, limit: int, offset: int) -> dict[str, Any]:
        day = today()
        counts_filter = dataclasses.replace(flt, status=None, overdue_on=None)
        return {
            "items": [invoice_json(row, day) for row in list_invoices(engine, flt, limit=limit, offset=offset)],
            "total": count_invoices(engine, flt),
            "limit": limit,
            "offset": offset,
            "status_counts": status_counts(engine, counts_filter),
            "overdue": count_invoices(engine, dataclasses.replace(counts_filter, overdue_on=day)),
        }

    def document(operator: Operator, order_key: str) -> dict[str, Any]:
        tenant = order_key.split(":", 1)[0]
        if not operator.may_see(tenant):
            raise not_found(f"document {order_key!r}")
        history = document_history(engine, order_key)
        if not history.versions and not history.events:
            raise not_found(f"document {order_key!r}")
        day = today()
        lines: dict[str, Any] = {}
        for event in history.events:  # the latest priced record of each version holds its lines
            if event.kind == "invoice" and event.invoice_key and isinstance(event.detail, dict):
                lines[event.invoice_key] = event.detail.get("lines", [])
        versions = [{**invoice_json(v, day), "lines": lines.get(v.invoice_key, [])} for v in history.versions]
        return {
            "order_key": order_key,
            "tenant": tenant,
            "versions": versions,
            "events": [{"id": e.id, **to_json(e)} for e in history.events],
            "payments": to_json(document_payments(engine, order_key)),
            "dead_letters": [dead_letter_json(d) for d in document_dead_letters(engine, order_key)],
        }

    def dead_letter_json(row: DeadLetterRow) -> dict[str, Any]:
        return {**to_json(row), "replayable": not row.truncated and row.replay_count < replay_limit}

    def visible_dead_letter(operator: Operator, record_id: str) -> DeadLetterRow:
        row = get_dead_letter(engine, record_id)
        if row is None or not operator.may_see(row.tenant):
            raise not_found(f"dead letter {record_id!r}")
        return row

    def kafka_for(what: str, done: Callable[[str, str], None]) -> str:
        """The Kafka cluster to publish to; without one, ``done("failed", …)`` and a 503 saying ``what`` needs it."""
        if bootstrap is None:
            done("failed", "no Kafka cluster configured")
            raise Problem(
                503,
                "kafka-unavailable",
                "Kafka not configured",
                f"{what} needs Kafka: start the console with KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-servers)",
            )
        return bootstrap

    def replay(request: Request, operator: Operator, record_id: str) -> dict[str, Any]:
        row = visible_dead_letter(operator, record_id)

        def done(outcome: str, detail: str) -> None:
            audit_write(
                request, operator.name, "replay_dead_letter", outcome, target=row.id, tenant=row.tenant, detail=detail
            )

        previous = audit.first_success(engine, "replay_dead_letter", row.id)
        if previous is not None:
            done("refused", f"already replayed by {previous.operator} at {previous.at.isoformat()}")
            raise Problem(
                409,
                "already-replayed",
                "Already replayed",
                f"dead letter {row.id} was replayed by {previous.operator} at {previous.at.isoformat()}; "
                "if it fails again it is dead-lettered anew, under a new id",
            )
        target = kafka_for("replaying", done)
        try:
            replayed = replayer(target, row.id, replay_limit)
        except ReplayRefusedError as exc:
            done("refused", str(exc))
            raise Problem(409, "replay-refused", "Replay refused", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - Kafka's errors, whatever their class: a 503 naming it
            done("failed", f"{type(exc).__name__}: {str(exc)[:300]}")
            raise Problem(503, "kafka-unavailable", "Kafka unavailable", f"{type(exc).__name__}: {exc}") from None
        if replayed is None:
            done("failed", "not on Kafka any more")
            raise not_found(f"dead letter {row.id!r} on Kafka (past its retention?)")
        where = f"{replayed.topic}:{replayed.partition}:{replayed.offset}"
        done("ok", f"replayed to {where} (replay {replayed.replay_count})")
        return {"replayed": row.id, "to": where, "replay_count": replayed.replay_count}

    def awaiting_version(
        operator: Operator,
        order_key: str,
        invoice_key: str | None,
        statuses: tuple[str, ...] = (AWAITING,),
        *,
        slug: str = "not-awaiting-approval",
        waits: tuple[str, str] = ("awaits approval", "await approval"),
    ) -> InvoiceRow:
        """The version of ``order_key`` an action is about: ``invoice_key``, or the one in ``statuses`` (awaiting
        approval); 409 ``slug`` when none or several are (``waits``: what they do, singular and plural)."""
        if not operator.may_see(order_key.split(":", 1)[0]):
            raise not_found(f"document {order_key!r}")
        versions = document_history(engine, order_key).versions
        if invoice_key is not None:
            chosen = [v for v in versions if v.invoice_key == invoice_key]
            if not chosen:
                raise not_found(f"version {invoice_key!r} of document {order_key!r}")
            return chosen[0]
        awaiting = [v for v in versions if v.status in statuses]
        if len(awaiting) == 1:
            return awaiting[0]
        if not versions:
            raise not_found(f"document {order_key!r}")
        one, several = waits
        raise Problem(
            409,
            slug,
            f"Nothing {one}" if not awaiting else "Which version?",
            f"no version of {order_key} {one}"
            if not awaiting
            else f"{len(awaiting)} versions of {order_key} {several}: name one in invoice_key",
        )

    def publish_request(request: ApprovalDecision, done: Callable[[str, str], None], what: str) -> PublishedDecision:
        """Publish ``request`` on ``billing.approvals`` (``what`` needs Kafka); a 503 (audited by ``done``) when
        Kafka is not configured or does not take it."""
        target = kafka_for(what, done)
        try:
            return publish(target, request)
        except Exception as exc:  # noqa: BLE001 - Kafka's errors, whatever their class: a 503 naming it
            done("failed", f"{type(exc).__name__}: {str(exc)[:300]}")
            raise Problem(503, "kafka-unavailable", "Kafka unavailable", f"{type(exc).__name__}: {exc}") from None

    def decide(
        request: Request, operator: Operator, order_key: str, approved: bool, body: DecisionBody | None
    ) -> dict[str, Any]:
        action = "approve" if approved else "reject"
        body = body or DecisionBody()
        if body.reason is not None and len(body.reason) > 500:
            raise bad_parameter("reason", body.reason[:40] + "…", "is longer than 500 characters", where="body")
        version = awaiting_version(operator, order_key, body.invoice_key)
        key = version.invoice_key

        def done(outcome: str, detail: str) -> None:
            audit_write(request, operator.name, action, outcome, target=key, tenant=version.tenant, detail=detail)

        earlier = [e for e in (audit.first_success(engine, a, key) for a in ("approve", "reject")) if e is not None]
        if earlier:
            first = min(earlier, key=lambda e: e.id)
            what = "approved" if first.action == "approve" else "rejected"
            done("refused", f"already {what} by {first.operator} at {first.at.isoformat()}")
            raise Problem(
                409,
                "already-decided",
                "Already decided",
                f"{key} was {what} by {first.operator} at {first.at.isoformat()}; the status follows once the "
                "worker has acted on it",
            )
        if version.status != AWAITING:
            done("refused", f"status {version.status}, not awaiting approval")
            raise Problem(
                409,
                "not-awaiting-approval",
                "Not awaiting approval",
                f"{key} is {version.status.replace('_', ' ')}, not awaiting approval: nothing was changed",
            )
        decision = decision_event(approved, key, operator.name, body.reason)
        published = publish_request(decision, done, "deciding on an approval")
        why = f": {body.reason}" if body.reason else ""
        done("ok", f"decision {decision.id} ({decision.type}) to {published.where}{why}")
        return {
            "decision": decision.id,
            "type": decision.type,
            "invoice_key": key,
            "operator": operator.name,
            "reason": body.reason,
            "to": published.where,
        }

    def retry(request: Request, operator: Operator, order_key: str, body: DecisionBody | None) -> dict[str, Any]:
        """Ask the worker to try the document's parked version now (``billing.invoice.retry_requested``)."""
        body = body or DecisionBody()
        if body.reason is not None and len(body.reason) > 500:
            raise bad_parameter("reason", body.reason[:40] + "…", "is longer than 500 characters", where="body")
        version = awaiting_version(
            operator, order_key, body.invoice_key, PARKED, slug="not-parked", waits=("is parked", "are parked")
        )
        key = version.invoice_key

        def done(outcome: str, detail: str) -> None:
            audit_write(request, operator.name, "retry_now", outcome, target=key, tenant=version.tenant, detail=detail)

        if version.status not in PARKED:
            done("refused", f"status {version.status}, not parked")
            raise Problem(
                409,
                "not-parked",
                "Not parked",
                f"{key} is {version.status.replace('_', ' ')}, not parked: nothing was changed",
            )
        retry_request = retry_request_event(key, operator.name, body.reason)
        published = publish_request(retry_request, done, "retrying now")
        done("ok", f"request {retry_request.id} ({retry_request.type}) to {published.where}")
        return {
            "request": retry_request.id,
            "type": retry_request.type,
            "invoice_key": key,
            "operator": operator.name,
            "to": published.where,
        }

    # ------------------------------------------------------------------ API
    limit_q = Query(50, ge=1, le=MAX_LIMIT, description=f"Rows to return (1 to {MAX_LIMIT})")
    offset_q = Query(0, ge=0, description="Rows to skip")

    @app.get("/openapi.json", tags=["api"], summary="This API's OpenAPI document")
    def openapi_json(_operator: ApiOperator) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.post("/api/sessions", tags=["api"], status_code=201, summary="Log in: a bearer token for scripts")
    def create_session(body: LoginBody, request: Request) -> dict[str, Any]:
        found = check_password(body.username, body.password)
        if found is None:
            audit_write(request, body.username, "login", "refused", detail="POST /api/sessions: bad credentials")
            raise Problem(401, "unauthorized", "Missing or bad credentials", "wrong operator name or password")
        token, expires = signer.issue(found)
        audit_write(request, found.name, "login", "ok", detail="POST /api/sessions")
        return {
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
            "operator": found.name,
            "tenants": sorted(found.tenants),
        }

    @app.get("/api/me", tags=["api"], summary="The operator and the tenants they may see")
    def me(operator: ApiOperator) -> dict[str, Any]:
        return {"operator": operator.name, "tenants": sorted(operator.tenants)}

    @app.get("/api/invoices", tags=["api"], summary="Invoice versions, filtered, the most recently changed first")
    def api_invoices(
        operator: ApiOperator,
        tenant: Annotated[str | None, Query(description="A tenant id")] = None,
        client: Annotated[str | None, Query(description="A client id")] = None,
        billing_system: Annotated[str | None, Query(description="xero, stripe, …")] = None,
        status: Annotated[
            str | None, Query(description=f"Comma-separated: {', '.join(STATUS_FILTERS)} (overdue alone)")
        ] = None,
        q: Annotated[str | None, Query(description="Work order / document id, invoice or their number")] = None,
        limit: int = limit_q,
        offset: int = offset_q,
    ) -> dict[str, Any]:
        return invoices_page(invoice_filter(operator, tenant, client, billing_system, status, q), limit, offset)

    order_key_p = Path(description="The document: tenant:doc:id (e.g. acme-fm:wo:1001)")
    dead_letter_p = Path(description="The dead letter: billing.dlq:PARTITION:OFFSET")

    @app.get("/api/documents/{order_key}", tags=["api"], summary="A document's versions, history and payments")
    def api_document(operator: ApiOperator, order_key: str = order_key_p) -> dict[str, Any]:
        return document(operator, order_key)

    @app.get("/api/dead-letters/{dead_letter_id}", tags=["api"], summary="One dead letter")
    def api_dead_letter(operator: ApiOperator, dead_letter_id: str = dead_letter_p) -> dict[str, Any]:
        return dead_letter_json(visible_dead_letter(operator, dead_letter_id))

    @app.post(
        "/api/dead-letters/{dead_letter_id}/replay",
        tags=["api"],
        summary="Replay one dead letter to its stage's input topic",
        responses={
            404: {"description": "No such dead letter (or not one of your tenants')"},
            409: {"description": "Already replayed, a bounded copy, or past the replay limit"},
            503: {"description": "Kafka not configured or unavailable"},
        },
    )
    def api_replay(request: Request, operator: ApiOperator, dead_letter_id: str = dead_letter_p) -> dict[str, Any]:
        return replay(request, operator, dead_letter_id)

    decision_doc: dict[int | str, dict[str, Any]] = {
        202: {"description": "The decision is on billing.approvals: its id and where"},
        404: {"description": "No such document or version (or not one of your tenants')"},
        409: {"description": "Not awaiting approval, already decided, or several versions await (name one)"},
        503: {"description": "Kafka not configured or unavailable"},
    }

    def decision_route(approved: bool) -> Callable[..., dict[str, Any]]:
        def route(
            request: Request, operator: ApiOperator, body: DecisionBody | None = None, order_key: str = order_key_p
        ) -> dict[str, Any]:
            return decide(request, operator, order_key, approved, body)

        return route

    for action, approved, summary in (
        ("approve", True, "Approve the version awaiting approval: the worker delivers it once"),
        ("reject", False, "Reject the version awaiting approval: it is never sent"),
    ):
        app.post(
            f"/api/documents/{{order_key}}/{action}",
            tags=["api"],
            status_code=202,
            summary=summary,
            responses=decision_doc,
            name=f"api_{action}",
        )(decision_route(approved))

    @app.post(
        "/api/documents/{order_key}/retry",
        tags=["api"],
        status_code=202,
        summary="Retry now: the worker tries the document's parked version once, at once",
        responses=decision_doc | {409: {"description": "Not parked, or several versions are parked (name one)"}},
    )
    def api_retry(
        request: Request, operator: ApiOperator, body: DecisionBody | None = None, order_key: str = order_key_p
    ) -> dict[str, Any]:
        return retry(request, operator, order_key, body)

    from broker.console.oauth import oauth_router  # it imports this module

    app.router.routes.extend(oauth_router(engine, reauthoriser).routes)  # re-authorising a connection

    @app.get("/api/audit", tags=["api"], summary="The audit log: logins and actions, newest first")
    def api_audit(
        operator: ApiOperator,
        action: Annotated[str | None, Query(description=", ".join(audit.ACTIONS))] = None,
        operator_name: Annotated[str | None, Query(alias="operator", description="Whose rows")] = None,
        limit: int = limit_q,
        offset: int = offset_q,
    ) -> dict[str, Any]:
        if action is not None and action not in audit.ACTIONS:
            raise bad_parameter("action", action, f"is not one of {', '.join(audit.ACTIONS)}")
        rows = audit.list_audit(
            engine,
            operator=operator.name,
            tenants=operator.visible(),
            limit=limit,
            offset=offset,
            action=action,
            who=operator_name,
        )
        total = audit.count_audit(engine, operator=operator.name, tenants=operator.visible())
        return {"items": to_json(rows), "total": total, "limit": limit, "offset": offset}

    # ------------------------------------------------------------------ pages
    def html(text: str, status_code: int = 200) -> HTMLResponse:
        headers = {"Content-Security-Policy": pages.CSP, "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
        return HTMLResponse(text, status_code=status_code, headers=headers)

    @app.get("/login", tags=["pages"], summary="The login page", response_class=HTMLResponse)
    def login_page(next_: Annotated[str, Query(alias="next")] = "/") -> HTMLResponse:
        return html(pages.login(_safe_next(next_)))

    @app.post("/login", tags=["pages"], summary="Log in (form: username, password, next)", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        name, target = form.get("username", ""), _safe_next(form.get("next", "/"))
        found = check_password(name, form.get("password", ""))
        if found is None:
            audit_write(request, name or "(none)", "login", "refused", detail="login page: bad credentials")
            return html(pages.login(target, error="Wrong operator name or password."), status_code=401)
        token, _ = signer.issue(found)
        audit_write(request, found.name, "login", "ok", detail="login page")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=signer.lifetime,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout", tags=["pages"], summary="Log out (ends the browser's session)")
    def logout(request: Request, operator: PageOperator) -> Response:
        audit_write(request, operator.name, "logout", "ok")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
        return response

    @app.get("/", tags=["pages"], summary="Invoices, with filters and search", response_class=HTMLResponse)
    def list_page(
        operator: PageOperator,
        tenant: str | None = None,
        client: str | None = None,
        billing_system: str | None = None,
        status: str | None = None,
        q: str | None = None,
        page: Annotated[int, Query(ge=1)] = 1,
    ) -> HTMLResponse:
        params = {"tenant": tenant, "client": client, "billing_system": billing_system, "status": status, "q": q}
        try:
            flt = invoice_filter(operator, tenant, client, billing_system, status, q)
        except Problem as problem:
            return html(pages.error_page(operator, problem.title, problem.detail), status_code=problem.status)
        per_page = 50
        data = invoices_page(flt, per_page, (page - 1) * per_page)
        return html(pages.invoice_list(operator, params, data, page, per_page, STATUS_FILTERS))

    @app.get("/documents/{order_key}", tags=["pages"], summary="A document's history", response_class=HTMLResponse)
    def document_page(operator: PageOperator, order_key: str, notice: str | None = None) -> HTMLResponse:
        try:
            data = document(operator, order_key)
        except Problem as problem:
            return html(pages.error_page(operator, problem.title, problem.detail), status_code=problem.status)
        return html(pages.document(operator, data, notice))

    @app.post(
        "/dead-letters/{dead_letter_id}/replay",
        tags=["pages"],
        summary="Replay a dead letter from its document's page (then back to it)",
    )
    def replay_form(request: Request, operator: PageOperator, dead_letter_id: str) -> Response:
        try:
            result = replay(request, operator, dead_letter_id)
            notice = f"Replayed {result['replayed']} to {result['to']}."
        except Problem as problem:
            if problem.status == 404:
                return html(pages.error_page(operator, problem.title, problem.detail), status_code=404)
            notice = f"Not replayed: {problem.detail}"
        row = get_dead_letter(engine, dead_letter_id)
        back = f"/documents/{quote(row.order_key, safe=':')}" if row and row.order_key else "/"
        return RedirectResponse(f"{back}?{urlencode({'notice': notice})}", status_code=303)

    @app.post(
        "/documents/{order_key}/{decision}",
        tags=["pages"],
        summary="Approve or reject a version from its document's page (form: invoice_key, reason)",
    )
    async def decision_form(request: Request, operator: PageOperator, order_key: str, decision: str) -> Response:
        if decision not in ("approve", "reject", "retry"):
            return html(pages.error_page(operator, "Not found", f"no action {decision!r}"), status_code=404)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        body = DecisionBody(invoice_key=form.get("invoice_key") or None, reason=form.get("reason") or None)
        back = f"/documents/{quote(order_key, safe=':')}"
        if decision == "retry":
            try:
                result = retry(request, operator, order_key, body)
                notice = (
                    f"Retry of {result['invoice_key']} requested (request {result['request']}); the status follows."
                )
            except Problem as problem:
                if problem.status == 404:
                    return html(pages.error_page(operator, problem.title, problem.detail), status_code=404)
                notice = f"Not retried: {problem.detail}"
            return RedirectResponse(f"{back}?{urlencode({'notice': notice})}", status_code=303)
        try:
            result = decide(request, operator, order_key, decision == "approve", body)
            verb = "Approved" if decision == "approve" else "Rejected"
            notice = f"{verb} {result['invoice_key']} (decision {result['decision']}); the status follows shortly."
        except Problem as problem:
            if problem.status == 404:
                return html(pages.error_page(operator, problem.title, problem.detail), status_code=404)
            notice = f"Not {'approved' if decision == 'approve' else 'rejected'}: {problem.detail}"
        return RedirectResponse(f"{back}?{urlencode({'notice': notice})}", status_code=303)

    return app


def _safe_next(target: str) -> str:
    """A same-site path to go to after logging in (``/`` for anything else: no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


# a valid hash of a random password: checked for an unknown operator, so that the answer takes as long
_DUMMY_HASH = "scrypt$16384$8$1$" + "A" * 22 + "$" + "A" * 43

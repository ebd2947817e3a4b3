"""The console's web pages: server-rendered HTML, self-contained (the stylesheet inline, no script, nothing
fetched from elsewhere: :data:`CSP` forbids it), every value escaped (:func:`html.escape`).

The pages take what the API returns (:mod:`broker.console.app`): the list of invoices with its filters,
a document's history, the login form, an error. Amounts are the stored decimal strings, as in the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from broker.console.auth import Operator

__all__ = ["CSP", "document", "error_page", "invoice_list", "login"]

#: The pages' Content-Security-Policy: only the inline stylesheet; forms post to this site only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"

_STYLE = """
:root { --ink:#1d2430; --muted:#5c6675; --line:#d9dee6; --bg:#f6f7f9; --accent:#1f5fbf; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--ink);
       background:var(--bg); }
header { display:flex; align-items:center; gap:1rem; padding:.6rem 1.2rem; background:#17202e; color:#fff; }
header a { color:#fff; text-decoration:none; font-weight:600; }
header .who { margin-left:auto; color:#c8d0dc; }
header form { margin:0; }
main { padding:1rem 1.2rem; max-width:1500px; }
h1 { font-size:1.3rem; margin:.2rem 0 1rem; } h2 { font-size:1.05rem; margin:1.4rem 0 .5rem; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); }
th, td { padding:.35rem .55rem; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#eef1f5; font-weight:600; white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
form.filters { display:flex; flex-wrap:wrap; gap:.5rem; align-items:end; margin-bottom:1rem; }
form.filters label { display:flex; flex-direction:column; font-size:.8rem; color:var(--muted); }
input, select, button { font:inherit; padding:.3rem .45rem; border:1px solid #b9c1cc; border-radius:4px; }
button { background:var(--accent); color:#fff; border-color:var(--accent); cursor:pointer; }
button.plain { background:transparent; color:#fff; border-color:#8894a5; }
.badge { display:inline-block; padding:0 .45rem; border-radius:9px; font-size:.8rem; background:#e4e8ee; }
.s-delivered, .s-paid { background:#d7f0dd; } .s-dead_lettered { background:#f9d6d5; }
.s-partially_paid, .s-held, .s-built, .s-awaiting_approval, .s-parked { background:#fbeccb; }
.s-needs_reauth { background:#f9d6d5; } .s-overdue { background:#f3c2bf; }
.s-replaced, .s-superseded, .s-cancelled, .s-voided, .s-credited, .s-not_billable, .s-rejected { background:#e4e8ee; }
form.decision { display:flex; flex-wrap:wrap; gap:.5rem; align-items:center; margin:.4rem 0 .8rem; }
button.reject { background:#a33a32; border-color:#a33a32; }
.counts { display:flex; flex-wrap:wrap; gap:.4rem; margin:.2rem 0 1rem; }
.counts a { text-decoration:none; color:inherit; }
.notice { padding:.5rem .8rem; background:#e8f0fe; border:1px solid #b6cdf5; border-radius:4px; margin-bottom:1rem; }
.error { padding:.5rem .8rem; background:#fde8e7; border:1px solid #f1b6b3; border-radius:4px; margin-bottom:1rem; }
.muted { color:var(--muted); } .pager { margin-top:.8rem; display:flex; gap:1rem; }
pre { white-space:pre-wrap; word-break:break-word; margin:0; font-size:.8rem; max-height:14rem; overflow:auto; }
details summary { cursor:pointer; color:var(--accent); }
.login { max-width:22rem; margin:12vh auto; background:#fff; padding:1.5rem; border:1px solid var(--line);
         border-radius:6px; }
.login label { display:block; margin:.6rem 0; } .login input { width:100%; }
"""


def _e(value: object) -> str:
    """``value`` escaped for HTML (``None`` as an empty string)."""
    return "" if value is None else escape(str(value), quote=True)


def _layout(title: str, body: str, operator: Operator | None = None) -> str:
    who = ""
    if operator is not None:
        tenants = "all tenants" if operator.all_tenants else ", ".join(sorted(operator.tenants))
        who = (
            f'<span class="who">{_e(operator.name)} · {_e(tenants)}</span>'
            '<form method="post" action="/logout"><button class="plain" type="submit">Log out</button></form>'
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f'<header><a href="/">Billing broker · operator console</a>{who}</header>'
        f"<main>{body}</main></body></html>"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Iterable[int] = (), cls: str = "") -> str:
    """A table; cells are HTML already (escape them first), columns ``numeric`` right-aligned."""
    right = set(numeric)
    head = "".join(f"<th{' class=num' if i in right else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in right else ''}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table class="{_e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _badge(status: str) -> str:
    return f'<span class="badge s-{_e(status)}">{_e(status.replace("_", " "))}</span>'


def _money(amount: str | None, currency: str | None = None) -> str:
    return "" if amount is None else _e(f"{amount} {currency or ''}".strip())


def _doc_link(order_key: str, text: str | None = None) -> str:
    return f'<a href="/documents/{quote(order_key, safe=":")}">{_e(text or order_key)}</a>'


def login(next_path: str, *, error: str | None = None) -> str:
    """The login page (a form posting ``username``, ``password`` and ``next`` to ``/login``)."""
    problem = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    body = (
        '<form class="login" method="post" action="/login"><h1>Operator console</h1>'
        f"{problem}"
        '<label>Operator <input name="username" id="username" autocomplete="username" required autofocus></label>'
        '<label>Password <input name="password" id="password" type="password" autocomplete="current-password" '
        "required></label>"
        f'<input type="hidden" name="next" value="{_e(next_path)}">'
        '<button type="submit" id="login">Log in</button></form>'
    )
    return _layout("Log in · operator console", body)


def error_page(operator: Operator, title: str, detail: str) -> str:
    """A page saying what went wrong (a bad filter, a document not found)."""
    return _layout(
        title, f"<h1>{_e(title)}</h1><p class=error>{_e(detail)}</p><p><a href='/'>Invoices</a></p>", operator
    )


def tenant_connection(operator: Operator, info: Mapping[str, Any], notice: str | None = None) -> str:
    """A tenant's billing-system connection (``broker.console.oauth``): its state, where its tokens are stored,
    the tenants sharing it, and a Re-authorise button when ``info["reauthorise"]``."""
    tenant = info["tenant"]
    rows = [["Billing system", _e(info["billing_system"])], ["Connection", _e(info["state"])]]
    if info.get("stored_in"):
        rows += [["Tokens stored in", _e(info["stored_in"])], ["Shared by", _e(", ".join(info["shared_with"]))]]
    button = (
        f'<form class="decision" method="post" action="/tenants/{quote(tenant, safe="")}/reauthorise">'
        '<button type="submit" id="reauthorise">Re-authorise</button></form>'
        "<p class=muted>Opens the billing system's consent page; it sends you back here.</p>"
        if info.get("reauthorise")
        else ""
    )
    shown = f'<p class="notice" role="status">{_e(notice)}</p>' if notice else ""
    body = f"<h1>Tenant {_e(tenant)}</h1>{shown}{_table(['', ''], rows, cls='connection')}{button}"
    return _layout(f"{tenant} · operator console", body, operator)


def _select(name: str, label: str, options: Sequence[str], chosen: str | None) -> str:
    items = ['<option value="">any</option>'] + [
        f'<option value="{_e(o)}"{" selected" if o == chosen else ""}>{_e(o.replace("_", " "))}</option>'
        for o in options
    ]
    return f'<label>{_e(label)}<select name="{_e(name)}" id="f-{_e(name)}">{"".join(items)}</select></label>'


def _text(name: str, label: str, value: str | None, placeholder: str = "") -> str:
    return (
        f'<label>{_e(label)}<input name="{_e(name)}" id="f-{_e(name)}" value="{_e(value)}" '
        f'placeholder="{_e(placeholder)}"></label>'
    )


def invoice_list(
    operator: Operator,
    params: Mapping[str, str | None],
    data: Mapping[str, Any],
    page: int,
    per_page: int,
    statuses: Sequence[str],
) -> str:
    """The invoice list: the filter form (``params`` as given), the count per status, the page of rows
    ``data`` (:func:`broker.console.app.create_console_app`'s ``/api/invoices`` answer) and paging links."""
    tenants = sorted(operator.tenants - {"*"})
    tenant_field = (
        _text("tenant", "Tenant", params.get("tenant"), "any")
        if operator.all_tenants
        else _select("tenant", "Tenant", tenants, params.get("tenant"))
    )
    form = (
        '<form class="filters" method="get" action="/" id="filters">'
        f"{tenant_field}{_text('client', 'Client', params.get('client'), 'client id')}"
        f"{_text('billing_system', 'Billing system', params.get('billing_system'), 'xero, stripe…')}"
        f"{_select('status', 'Status', statuses, params.get('status'))}"
        f"{_text('q', 'Work order / number', params.get('q'), 'search')}"
        '<button type="submit" id="apply">Filter</button> <a href="/">clear</a></form>'
    )
    kept = {k: v for k, v in params.items() if v and k != "status"}
    counts = "".join(
        f'<a href="/?{_e(urlencode({**kept, "status": s}))}">{_badge(s)} {n}</a>'
        for s, n in sorted(data["status_counts"].items())
    )
    if data.get("overdue"):
        counts += (
            f'<a href="/?{_e(urlencode({**kept, "status": "overdue"}))}">{_badge("overdue")} {data["overdue"]}</a>'
        )
    rows = []
    for item in data["items"]:
        status = _badge(item["status"]) + (" " + _badge("overdue") if item["overdue"] else "")
        rows.append(
            [
                _doc_link(item["order_key"], item["document_id"] or item["order_key"]),
                _e(item["revision"]),
                _e(item["invoice_number"]),
                _e(item["tenant"]),
                _e(item["client_name"] or item["client_id"]),
                _e(item["billing_system"]),
                _money(item["total"], item["currency"]),
                _money(item["amount_paid"], item["currency"]),
                _money(item["amount_due"], item["currency"]),
                status,
                _e(item["status_reason"]),
                _e(item["external_number"]),
                _e(item["due_date"]),
                _e((item["updated_at"] or "")[:19].replace("T", " ")),
            ]
        )
    headers = [
        "Document", "Rev.", "Invoice", "Tenant", "Client", "Billing system", "Total", "Paid", "Still due", "Status",
        "Reason", "Their number", "Due date", "Updated (UTC)",
    ]  # fmt: skip
    table = (
        _table(headers, rows, numeric=[6, 7, 8], cls="invoices") if rows else "<p class=muted>No invoice matches.</p>"
    )
    pager = []
    query = {k: v for k, v in params.items() if v}
    if page > 1:
        pager.append(f'<a href="/?{_e(urlencode({**query, "page": page - 1}))}">← previous</a>')
    shown_to = (page - 1) * per_page + len(data["items"])
    pager.append(f"<span class=muted>{(page - 1) * per_page + (1 if rows else 0)}–{shown_to} of {data['total']}</span>")
    if shown_to < data["total"]:
        pager.append(f'<a href="/?{_e(urlencode({**query, "page": page + 1}))}">next →</a>')
    body = f'<h1>Invoices</h1>{form}<div class=counts>{counts}</div>{table}<div class="pager">{"".join(pager)}</div>'
    return _layout("Invoices · operator console", body, operator)


def _version_rows(versions: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            _e(v["invoice_key"]),
            _e(v["invoice_number"]),
            _badge(v["status"]) + (" " + _badge("overdue") if v["overdue"] else ""),
            _money(v["net_total"]),
            _money(v["tax_total"]),
            _money(v["total"], v["currency"]),
            _e(v["outcome"]),
            _e(v["attempts"]),
            _e(" / ".join(x for x in (v["external_id"], v["external_number"]) if x)),
            _money(v["billed_total"]),
            _e(" ".join(x for x in (v["amendment"], v["credit_note_number"]) if x)),
            _e(v["replaced_by"] or v["replaces"]),
            _badge(v["payment_state"]) if v["payment_state"] else "",
            _money(v["amount_paid"], v["currency"]),
            _money(v["amount_due"], v["currency"]),
            _e(v["status_reason"]),
        ]
        for v in versions
    ]


#: The fields of an invoice line shown, in order (``connectors.sdk.invoice.InvoiceLine``).
_LINE_FIELDS = (
    "kind",
    "description",
    "quantity",
    "unit",
    "unit_price",
    "net",
    "tax_rate",
    "tax",
    "total",
    "source",
    "rule",
)


def _lines(version: Mapping[str, Any]) -> str:
    lines = version.get("lines") or []
    if not lines:
        return ""
    rows = [[_e(line.get(k)) for k in _LINE_FIELDS] for line in lines]
    headers = ["Kind", "Description", "Qty", "Unit", "Unit price", "Net", "VAT %", "VAT", "Total", "Source", "Rule"]
    return f"<h2>Lines of {_e(version['invoice_key'])}</h2>" + _table(headers, rows, numeric=[2, 4, 5, 6, 7, 8])


def _dead_letter_rows(dead_letters: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for d in dead_letters:
        action = (
            f'<form method="post" action="/dead-letters/{quote(d["id"], safe=":")}/replay">'
            f'<button type="submit" class="replay">Replay</button></form>'
            if d["replayable"]
            else '<span class="muted">not replayable</span>'
        )
        rows.append(
            [
                _e(d["id"]),
                _e((d["dead_lettered_at"] or "")[:19].replace("T", " ")),
                _e(d["stage"]),
                _e(d["error_class"]),
                _e(d["message"]),
                _e(d["http_status"]),
                _e(d["attempts"]),
                _e(d["replay_count"]),
                action,
            ]
        )
    return rows


def _approval_forms(order_key: str, versions: Sequence[Mapping[str, Any]]) -> str:
    """Approve / Reject forms for each version awaiting approval (posting to ``/documents/{order_key}/approve``
    or ``/reject`` with its ``invoice_key`` and, for a rejection, an optional ``reason``)."""
    parts = []
    target = quote(order_key, safe=":")
    for v in versions:
        if v["status"] != "awaiting_approval":
            continue
        key = _e(v["invoice_key"])
        hidden = f'<input type="hidden" name="invoice_key" value="{key}">'
        parts.append(
            f"<p>{key} ({_e(v['invoice_number'])}, {_money(v['total'], v['currency'])}) awaits approval.</p>"
            f'<form class="decision" method="post" action="/documents/{target}/approve">{hidden}'
            '<button type="submit" class="approve" id="approve">Approve and deliver</button></form>'
            f'<form class="decision" method="post" action="/documents/{target}/reject">{hidden}'
            '<input name="reason" id="reject-reason" maxlength="500" placeholder="reason (optional)">'
            '<button type="submit" class="reject" id="reject">Reject</button></form>'
        )
    return "<h2>Approval</h2>" + "".join(parts) if parts else ""


def _retry_forms(order_key: str, versions: Sequence[Mapping[str, Any]]) -> str:
    """A Retry now form for each parked version (``parked`` or ``needs_reauth``: why, and the next attempt),
    posting to ``/documents/{order_key}/retry`` with its ``invoice_key``."""
    target = quote(order_key, safe=":")
    parts = [
        f"<p>{_e(v['invoice_key'])} ({_e(v['invoice_number'])}) is {_e(v['status'].replace('_', ' '))}: "
        f"{_e(v['status_reason'])}</p>"
        f'<form class="decision" method="post" action="/documents/{target}/retry">'
        f'<input type="hidden" name="invoice_key" value="{_e(v["invoice_key"])}">'
        '<button type="submit" class="retry" id="retry">Retry now</button></form>'
        for v in versions
        if v["status"] in ("parked", "needs_reauth")
    ]
    return "<h2>Parked</h2>" + "".join(parts) if parts else ""


def document(operator: Operator, data: Mapping[str, Any], notice: str | None = None) -> str:
    """A document's page: its versions (prices, outcome, billing-system ids, payment), Approve / Reject for a
    version awaiting approval, each version's lines, its payments, its dead letters (with a replay button)
    and its history, in order."""
    order_key = data["order_key"]
    parts = [f"<h1>Document {_e(order_key)}</h1>"]
    if notice:
        parts.append(f'<p class="notice" role="status">{_e(notice)}</p>')
    first = data["versions"][0] if data["versions"] else {}
    parts.append(
        f"<p class=muted>Tenant <a href='/tenants/{quote(data['tenant'], safe='')}'>{_e(data['tenant'])}</a>"
        f" · client {_e(first.get('client_name') or first.get('client_id'))}"
        f" · billing system {_e(first.get('billing_system'))}</p>"
    )
    headers = [
        "Version", "Invoice", "Status", "Net", "VAT", "Total", "Outcome", "Attempts", "Their id / number",
        "Billed", "Amendment", "Replaced by / replaces", "Payment", "Paid", "Still due", "Reason",
    ]  # fmt: skip
    versions = _version_rows(data["versions"])
    parts.append("<h2>Versions</h2>" + _table(headers, versions, numeric=[3, 4, 5, 9, 13, 14], cls="versions"))
    parts.append(_approval_forms(order_key, data["versions"]))
    parts.append(_retry_forms(order_key, data["versions"]))
    parts += [_lines(v) for v in data["versions"]]
    if data["payments"]:
        rows = [
            [
                _e(p["id"]),
                _e(p["invoice_key"]),
                _e(p["type"]),
                _badge(p["state"]) if p["state"] else "",
                _money(p["amount"], p["currency"]),
                _money(p["amount_paid"], p["currency"]),
                _money(p["amount_due"], p["currency"]),
                _e(p["paid_at"]),
            ]
            for p in data["payments"]
        ]
        headers = ["Record", "Version", "Type", "State", "Amount", "Paid so far", "Still due", "Paid at"]
        parts.append("<h2>Payments</h2>" + _table(headers, rows, numeric=[4, 5, 6], cls="payments"))
    if data["dead_letters"]:
        headers = ["Dead letter", "At (UTC)", "Stage", "Class", "Reason", "HTTP", "Attempts", "Replays", ""]
        parts.append(
            "<h2>Dead letters</h2>" + _table(headers, _dead_letter_rows(data["dead_letters"]), cls="dead-letters")
        )
    events = [
        [
            _e((e["at"] or "")[:23].replace("T", " ")),
            _e(e["kind"]),
            _e(e["name"]),
            _e(e["invoice_key"]),
            _e(e["id"]),
            "<details><summary>record</summary><pre>"
            + _e(json.dumps(e["detail"], indent=1, ensure_ascii=False, sort_keys=True))
            + "</pre></details>",
        ]
        for e in data["events"]
    ]
    headers = ["At (UTC)", "Kind", "What", "Version", "Record", ""]
    parts.append("<h2>History</h2>" + _table(headers, events, cls="history"))
    return _layout(f"{order_key} · operator console", "".join(parts), operator)

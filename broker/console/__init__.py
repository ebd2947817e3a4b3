"""The operator console (``broker console``, issue 12 items 3 and 5): a web page and a REST API over the
status database for the back office, with per-operator access and an audit log.

* :mod:`broker.console.app` — the ASGI app (FastAPI): API, OpenAPI document, pages;
* :mod:`broker.console.auth` — operators, scrypt password hashes, signed sessions;
* :mod:`broker.console.audit` — the ``audit_log`` table's rows;
* :mod:`broker.console.actions` — replaying a dead letter;
* :mod:`broker.console.pages` — the HTML;
* :mod:`broker.console.cli` — ``broker console`` and ``broker console hash-password``.

``docs/console.md`` has the details.
"""

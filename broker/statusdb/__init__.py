"""The status view: ``billing.invoices``, ``billing.deliveries``, ``billing.payments`` and ``billing.dlq``
materialised into a database (SQLite by default, PostgreSQL by URL), for the operator console.

* :mod:`broker.statusdb.schema` — the tables (SQLAlchemy Core); migrations in ``migrations/`` (Alembic);
* :mod:`broker.statusdb.mapping` — records to rows, and an invoice version's ``status`` (pure);
* :mod:`broker.statusdb.store` — opening and migrating the database, writing a batch with its offsets
  in one transaction;
* :mod:`broker.statusdb.service` — the consumer behind ``broker status-view``;
* :mod:`broker.statusdb.read` — the queries the console runs.

``docs/status-view.md`` describes it for operators.
"""

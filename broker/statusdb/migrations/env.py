"""Alembic's environment for the status database.

Run through :func:`broker.statusdb.store.migrate`, which hands over an open connection in
``config.attributes["connection"]`` (no ``alembic.ini``, no URL here; the alembic command line may
give one with ``-x url=...``). A new revision, from the repository's root::

    .venv/bin/python -c "from alembic import command; from alembic.config import Config; \
    c = Config(); c.set_main_option('script_location', 'broker/statusdb/migrations'); \
    command.revision(c, message='what changes', rev_id='0002')"

then write its ``upgrade`` / ``downgrade`` by hand, next to the change in ``broker/statusdb/schema.py``
(``tests/test_status_view_db.py`` checks that the migrated database equals the schema), and run
``ruff format`` on it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from broker.statusdb.schema import METADATA


def run() -> None:
    """Run the migrations on the connection given (or on ``-x url=...`` from the alembic command line)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        url = context.get_x_argument(as_dictionary=True).get("url")
        if not url:
            raise SystemExit("give the database: -x url=sqlite:///status.db")
        with create_engine(url).begin() as own:
            _migrate(own)
        return
    _migrate(connection)


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        render_as_batch=True,  # SQLite alters tables by copying them
        transactional_ddl=True,  # SQLite too (broker.statusdb.store begins its transactions): all or nothing
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()

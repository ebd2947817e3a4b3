"""A throwaway PostgreSQL server for the status view's tests (Debian's ``postgresql`` package).

:func:`temporary_postgres` runs ``initdb`` and ``pg_ctl`` from the server's binaries (as the
``postgres`` user when the tests run as root, which PostgreSQL refuses to run as) in a fresh folder,
on a free loopback port, with trust authentication and fsync off, and stops it afterwards. Without
the binaries the tests that need it are skipped, saying what to install, and fail when ``CI`` is set
(``.ci/run`` installs the package).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL = "PostgreSQL is missing: apt-get install postgresql (its initdb and pg_ctl)"


def server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (Debian keeps them in /usr/lib/postgresql/<v>/bin), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(versions[-1]).parent if versions else None


def require_postgres() -> Path:
    """:func:`server_binaries`, or skip (fail in CI) saying what to install."""
    binaries = server_binaries()
    if binaries is None or not (binaries / "pg_ctl").exists():
        if os.environ.get("CI"):
            pytest.fail(INSTALL)
        pytest.skip(INSTALL)
    return binaries


@contextlib.contextmanager
def temporary_postgres() -> Iterator[str]:
    """Start a PostgreSQL server; yield the SQLAlchemy URL of its ``postgres`` database (user ``broker``)."""
    from broker.embedded import free_port

    binaries = require_postgres()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="status-view-pg-"))
    if as_postgres:
        shutil.chown(home, "postgres", "postgres")
    data, log = home / "data", home / "server.log"
    port = free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_postgres, *args], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "broker", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        yield f"postgresql+psycopg://broker@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_postgres, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(home, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url`` (dropping an older one); its URL."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name

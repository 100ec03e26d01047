"""A throwaway PostgreSQL cluster for the test session, on 127.0.0.1 and a free port.

Started on first use by `postgres_url`; each test that asks for `pg_database` gets a fresh,
empty database. Without PostgreSQL installed the tests are skipped with the reason, except
under CI=true, where a missing server is a failure. ARCHIVER_TEST_POSTGRES_URL (an admin URL)
uses an existing server instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Admin URL of a running server (the 'postgres' database)."""
    if existing := os.environ.get("ARCHIVER_TEST_POSTGRES_URL"):
        yield existing
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        _unavailable("initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    assert initdb and pg_ctl
    # initdb refuses to run as root: run the cluster as the 'postgres' system user then.
    user = "postgres" if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="archiver-pg-"))
    if user:
        shutil.chown(workdir, user)
    data, log, port = workdir / "data", workdir / "server.log", _free_port()
    run = dict(check=True, user=user, capture_output=True, text=True)
    try:
        subprocess.run([initdb, "-D", str(data), "-A", "trust", "-U", "archiver", "--no-sync"], **run)  # type: ignore[call-overload]
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"], **run
        )  # type: ignore[call-overload]
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        shutil.rmtree(workdir, ignore_errors=True)
        _unavailable(f"could not start a throwaway cluster: {detail.strip()[:300]}")
    try:
        yield f"postgresql+psycopg://archiver@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], user=user, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    """URL of a fresh, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

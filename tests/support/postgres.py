"""A PostgreSQL server for the multi-worker tests: ``$PICACO_TEST_POSTGRES_URL``, or a throwaway one started here.

The throwaway server lives in a temporary folder, listens on loopback only, trusts local connections and is stopped
when the test process exits. It needs Debian's ``postgresql`` package (``.ci/run`` installs it). Without a server the
tests are skipped with the reason, except when ``PICACO_REQUIRE_POSTGRES=1`` (set by ``.ci/run``): then they fail.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from functools import cache

import pytest


def postgres_url() -> str:
    """A SQLAlchemy URL of a reachable server (admin rights), or skip/fail the test with the reason."""
    try:
        url = _server()
        _check(url)
        return url
    except Exception as exc:  # noqa: BLE001 - every reason is reported to the user
        reason = f"no PostgreSQL server: {exc}"
        if os.environ.get("PICACO_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (PICACO_REQUIRE_POSTGRES=1: CI must test against PostgreSQL)")
        pytest.skip(reason + "; install Debian's postgresql package or set PICACO_TEST_POSTGRES_URL")


@cache
def _server() -> str:
    if os.environ.get("PICACO_TEST_POSTGRES_URL"):
        return os.environ["PICACO_TEST_POSTGRES_URL"]
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = binaries[-1] if binaries else shutil.which("initdb")
    if not initdb:
        raise RuntimeError("initdb not found")
    pg_ctl = os.path.join(os.path.dirname(initdb), "pg_ctl")
    folder = tempfile.mkdtemp(prefix="picaco-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, user="postgres")
    port = _free_port()
    data = os.path.join(folder, "data")
    _run([*as_user, initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"])
    _run(
        [
            *as_user,
            pg_ctl,
            "-D",
            data,
            "-l",
            os.path.join(folder, "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off",
            "start",
        ]
    )
    atexit.register(
        lambda: subprocess.run(
            [*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True, check=False
        )
    )
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


def _check(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}... failed: {(done.stderr or done.stdout).strip()[-300:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

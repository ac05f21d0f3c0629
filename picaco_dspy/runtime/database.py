"""The run storage's SQL tables (runs, results, spend, calls, claims, workers) and the engine that reaches them."""

from __future__ import annotations

import tempfile
import time

import sqlalchemy as sa

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.runtime.storage_url import check_storage_url, redact_url

METADATA = sa.MetaData()
RUNS = sa.Table(
    "picaco_runs",
    METADATA,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("spec", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)


def _usage_columns() -> list[sa.Column]:
    """What a paid job or call cost (fresh Column objects: a Column belongs to one table)."""
    return [
        sa.Column("calls", sa.Integer, nullable=False, default=0),
        sa.Column("input_tokens", sa.Integer, nullable=False, default=0),
        sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
        sa.Column("cost_usd", sa.Float, nullable=False, default=0.0),
    ]


RESULTS = sa.Table(
    "picaco_results",
    METADATA,
    sa.Column("run", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("failed", sa.Boolean, nullable=False, default=False),
    sa.Column("role", sa.String(16), nullable=True),
    *_usage_columns(),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
SPEND = sa.Table(  # one row per paid LM call (or reference-model batch), written when the call returns
    "picaco_spend",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    *_usage_columns(),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
CALLS = sa.Table(  # the LM answers a run paid for, as DSPy's plain-data cache records (runtime/call_cache.py)
    "picaco_calls",
    METADATA,
    sa.Column("run", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
CLAIMS = sa.Table(
    "picaco_claims",
    METADATA,
    sa.Column("run", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)
WORKERS = sa.Table(
    "picaco_workers",
    METADATA,
    sa.Column("run", sa.String(200), primary_key=True),
    sa.Column("worker", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
)


def create_tables(engine: sa.Engine, url: str | None, attempts: int = 5) -> None:
    """Create the tables if missing; workers starting together may race to create them, so a clash is retried."""
    for attempt in range(attempts):
        try:
            METADATA.create_all(engine)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as exc:
            if "already exists" not in str(exc) and not isinstance(exc, sa.exc.IntegrityError):
                raise ConfigurationError(f"Cannot open the run storage {redact_url(url)}: {exc.orig}") from exc
            if attempt == attempts - 1:
                raise ConfigurationError(f"Cannot create the run tables in {redact_url(url)}: {exc.orig}") from exc
            time.sleep(0.2 * (attempt + 1))


def make_engine(url: str | None) -> sa.Engine:
    """An SQLAlchemy engine for ``url`` (SQLite in WAL mode with a busy timeout; None: a private temporary file)."""
    if url is None:  # a private temporary file: the same code path as a real store, removed at exit
        url = f"sqlite:///{tempfile.mkdtemp(prefix='picaco-run-')}/memory.db"
    check_storage_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # concurrent readers while one process writes
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)

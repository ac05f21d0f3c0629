"""Durable storage of a run's paid work: results, claims, workers and the run's identity, in one SQL database.

A :class:`RunStore` keeps, per run name, every result the run paid for (rollouts, judgements, proposals, ``J(e)``
values, schedule decisions) together with the calls, tokens and cost each one took. A resumed or additional worker
reads them back instead of paying again. Claims let several workers split the work without doing any job twice; a
worker's claims are released when it stops and taken over when its heartbeat goes silent.

SQLite (a file, the default) and PostgreSQL/MySQL (shared by several machines) go through SQLAlchemy, which Optuna
already depends on, so the same URL serves the Optuna study too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from picaco_dspy.errors import ConfigurationError

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "default"
_KEY_CHUNK = 400

_metadata = sa.MetaData()
_runs = sa.Table(
    "picaco_runs",
    _metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("spec", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)
_results = sa.Table(
    "picaco_results",
    _metadata,
    sa.Column("run", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("failed", sa.Boolean, nullable=False, default=False),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("calls", sa.Integer, nullable=False, default=0),
    sa.Column("input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cost_usd", sa.Float, nullable=False, default=0.0),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
_claims = sa.Table(
    "picaco_claims",
    _metadata,
    sa.Column("run", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)
_workers = sa.Table(
    "picaco_workers",
    _metadata,
    sa.Column("run", sa.String(200), primary_key=True),
    sa.Column("worker", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class StoredResult:
    """One stored result: its JSON value, whether it records a failure, and what it cost."""

    value: Any
    failed: bool
    role: str | None
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


def default_storage_url() -> str:
    """``$PICACO_STORAGE``, else an SQLite file ``runs.db`` in ``$PICACO_CACHE_DIR`` (``~/.cache/picaco-dspy``)."""
    if os.environ.get("PICACO_STORAGE"):
        return os.environ["PICACO_STORAGE"]
    root = Path(os.environ.get("PICACO_CACHE_DIR") or Path.home() / ".cache" / "picaco-dspy")
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'runs.db'}"


def resolve_storage_url(storage: str | None) -> str | None:
    """Turn the ``storage=`` argument into an SQLAlchemy URL (None keeps the run in memory).

    Accepts ``"default"``, an SQLAlchemy URL (``sqlite:///runs.db``, ``postgresql+psycopg://user@host/db``) or a
    plain path, taken as an SQLite file.
    """
    if storage is None:
        return None
    if not isinstance(storage, str) or not storage.strip():
        raise ConfigurationError(
            f"storage must be None, 'default', an SQLAlchemy URL or an SQLite file path, got {storage!r}."
        )
    if storage == DEFAULT_STORAGE:
        return default_storage_url()
    if "://" in storage:
        check_storage_url(storage)
        return storage
    path = Path(storage).expanduser()
    if path.parent and not path.parent.exists():
        raise ConfigurationError(f"storage {storage!r}: the folder {path.parent} does not exist; create it first.")
    return f"sqlite:///{path.resolve()}"


def check_storage_url(url: str) -> None:
    """Check that ``url`` parses and its dialect and driver are installed, without connecting.

    Raises:
        ConfigurationError: naming the problem and the fix.
    """
    try:
        dialect = sa.engine.make_url(url).get_dialect()
        dialect.import_dbapi()
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigurationError(
            f"storage URL {redact_url(url)} is not usable: {exc}. Write it as dialect+driver://user@host/database, "
            "e.g. postgresql+psycopg://... or sqlite:///runs.db."
        ) from exc
    except ImportError as exc:
        raise ConfigurationError(
            f"storage URL {redact_url(url)} needs the database driver {getattr(exc, 'name', None) or exc}: "
            "pip install 'picaco-dspy[postgres]' (psycopg) or the driver your URL names."
        ) from exc


class RunStore:
    """Results, claims and workers of the runs kept in one database.

    Args:
        url: SQLAlchemy URL; None keeps everything in memory (one process, lost at exit).
        heartbeat_seconds: How often this process tells the database that its workers are alive.
        stale_after_seconds: A worker silent this long is taken for dead and its claims are taken over.
    """

    def __init__(self, url: str | None, *, heartbeat_seconds: float = 5.0, stale_after_seconds: float = 30.0) -> None:
        if stale_after_seconds <= heartbeat_seconds:
            raise ConfigurationError("stale_after_seconds must be larger than heartbeat_seconds.")
        self.url = url
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after_seconds = stale_after_seconds
        self.engine = _make_engine(url)
        self._temporary = url is None
        _create_tables(self.engine, url)
        self._stop = threading.Event()
        self._beating: set[tuple[str, str]] = set()
        self._beat_lock = threading.Lock()
        self._beat_thread: threading.Thread | None = None

    @property
    def persistent(self) -> bool:
        return self.url is not None

    def close(self) -> None:
        self._stop.set()
        if self._beat_thread is not None:
            self._beat_thread.join(timeout=self.heartbeat_seconds + 1)
        self.engine.dispose()
        if self._temporary:
            shutil.rmtree(Path(str(self.engine.url.database)).parent, ignore_errors=True)

    # ------------------------------------------------------------------ runs
    def open_run(self, name: str, fingerprint: str, spec: Mapping[str, Any] | None = None) -> bool:
        """Register run ``name`` (or join it); returns True when the run already existed.

        Raises:
            ConfigurationError: a run of that name exists with a different configuration.
        """
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(_runs.c.fingerprint).where(_runs.c.name == name)).first()
        if row is not None:
            if row.fingerprint != fingerprint:
                raise ConfigurationError(
                    f"Run {name!r} in {redact_url(self.url)} was started with a different configuration (program, "
                    "data, models, values or schedule). Give this run another name, or rerun the original command "
                    "to resume it."
                )
            return True
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    _runs.insert().values(
                        name=name,
                        fingerprint=fingerprint,
                        spec=json.dumps(spec) if spec is not None else None,
                        created_at=time.time(),
                    )
                )
            return False
        except IntegrityError:  # another worker registered it a moment ago
            return self.open_run(name, fingerprint, spec)

    def run_spec(self, name: str) -> dict[str, Any] | None:
        """The spec a run was registered with (the CLI stores its arguments there), or None."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(_runs.c.spec).where(_runs.c.name == name)).first()
        if row is None:
            raise ConfigurationError(f"No run named {name!r} in {redact_url(self.url)}; list them with `picaco runs`.")
        return json.loads(row.spec) if row.spec else None

    def runs(self) -> list[dict[str, Any]]:
        """Every run in the store with its result count."""
        with self.engine.begin() as conn:
            names = conn.execute(sa.select(_runs.c.name, _runs.c.created_at).order_by(_runs.c.created_at)).all()
            counts: dict[str, int] = dict(
                conn.execute(sa.select(_results.c.run, sa.func.count()).group_by(_results.c.run)).all()
            )
        return [{"name": n, "created_at": t, "results": counts.get(n, 0)} for n, t in names]

    # ------------------------------------------------------------------ results
    def get_many(self, run: str, kind: str, keys: Iterable[str]) -> dict[str, StoredResult]:
        """Stored results of ``kind`` for the given keys (missing keys are absent)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, StoredResult] = {}
        with self.engine.begin() as conn:
            for start in range(0, len(keys), _KEY_CHUNK):
                chunk = keys[start : start + _KEY_CHUNK]
                rows = conn.execute(
                    sa.select(_results).where(_results.c.run == run, _results.c.kind == kind, _results.c.key.in_(chunk))
                ).all()
                for row in rows:
                    found[row.key] = StoredResult(
                        json.loads(row.value),
                        bool(row.failed),
                        row.role,
                        row.calls,
                        row.input_tokens,
                        row.output_tokens,
                        row.cost_usd,
                    )
        return found

    def put(
        self,
        run: str,
        kind: str,
        key: str,
        value: Any,
        *,
        worker: str,
        failed: bool = False,
        role: str | None = None,
        usage: Mapping[str, float] | None = None,
    ) -> bool:
        """Store a result unless one is already there (the first writer wins); True when this one was stored."""
        usage = usage or {}
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    _results.insert().values(
                        run=run,
                        kind=kind,
                        key=key,
                        value=json.dumps(value, ensure_ascii=False),
                        failed=failed,
                        role=role,
                        calls=int(usage.get("calls", 0)),
                        input_tokens=int(usage.get("input_tokens", 0)),
                        output_tokens=int(usage.get("output_tokens", 0)),
                        cost_usd=float(usage.get("cost_usd", 0.0)),
                        worker=worker,
                        created_at=time.time(),
                    )
                )
                conn.execute(_claims.delete().where(_claims.c.run == run, _claims.c.kind == kind, _claims.c.key == key))
            return True
        except IntegrityError:
            return False

    def ledger(self, run: str) -> dict[str, dict[str, float]]:
        """Calls, tokens and cost of every stored result of ``run``, per role: what the run has paid, all workers
        and all resumes together."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(
                    _results.c.role,
                    sa.func.sum(_results.c.calls),
                    sa.func.sum(_results.c.input_tokens),
                    sa.func.sum(_results.c.output_tokens),
                    sa.func.sum(_results.c.cost_usd),
                )
                .where(_results.c.run == run, _results.c.role.is_not(None))
                .group_by(_results.c.role)
            ).all()
        return {
            role: {
                "calls": int(calls or 0),
                "input_tokens": int(tin or 0),
                "output_tokens": int(tout or 0),
                "cost_usd": float(cost or 0.0),
            }
            for role, calls, tin, tout, cost in rows
        }

    # ------------------------------------------------------------------ claims
    def claim(self, run: str, kind: str, keys: Sequence[str], worker: str, limit: int) -> list[str]:
        """Claim up to ``limit`` of ``keys`` for ``worker``: unclaimed ones, or ones held by a dead worker."""
        claimed: list[str] = []
        for key in keys:
            if len(claimed) >= limit:
                break
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        _claims.insert().values(run=run, kind=kind, key=key, worker=worker, claimed_at=time.time())
                    )
                got = True
            except IntegrityError:
                got = self._take_over(run, kind, key, worker)
            if got and self._has_result(run, kind, key):  # finished by another worker since we last looked
                with self.engine.begin() as conn:
                    conn.execute(
                        _claims.delete().where(
                            _claims.c.run == run,
                            _claims.c.kind == kind,
                            _claims.c.key == key,
                            _claims.c.worker == worker,
                        )
                    )
                got = False
            if got:
                claimed.append(key)
        return claimed

    def _has_result(self, run: str, kind: str, key: str) -> bool:
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    sa.select(_results.c.key).where(
                        _results.c.run == run, _results.c.kind == kind, _results.c.key == key
                    )
                ).first()
                is not None
            )

    def _take_over(self, run: str, kind: str, key: str, worker: str) -> bool:
        with self.engine.begin() as conn:
            holder = conn.execute(
                sa.select(_claims.c.worker).where(_claims.c.run == run, _claims.c.kind == kind, _claims.c.key == key)
            ).first()
            if holder is None or holder.worker == worker or self._alive(conn, run, holder.worker):
                return holder is not None and holder.worker == worker
            updated = conn.execute(
                _claims.update()
                .where(
                    _claims.c.run == run,
                    _claims.c.kind == kind,
                    _claims.c.key == key,
                    _claims.c.worker == holder.worker,
                )
                .values(worker=worker, claimed_at=time.time())
            ).rowcount
        if updated:
            logger.info("Took over %s job %s from silent worker %s", kind, key[:12], holder.worker)
        return bool(updated)

    def _alive(self, conn: sa.Connection, run: str, worker: str) -> bool:
        row = conn.execute(
            sa.select(_workers.c.last_seen).where(_workers.c.run == run, _workers.c.worker == worker)
        ).first()
        return row is not None and time.time() - row.last_seen < self.stale_after_seconds

    def release(self, run: str, worker: str) -> int:
        """Drop the claims ``worker`` still holds (its unfinished jobs), so others take them at once."""
        with self.engine.begin() as conn:
            return conn.execute(_claims.delete().where(_claims.c.run == run, _claims.c.worker == worker)).rowcount

    # ------------------------------------------------------------------ workers
    def join(self, run: str) -> str:
        """Register a new worker of ``run`` and keep its heartbeat going; returns its id."""
        worker = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                _workers.insert().values(
                    run=run,
                    worker=worker,
                    host=socket.gethostname()[:200],
                    pid=os.getpid(),
                    started_at=now,
                    last_seen=now,
                )
            )
        with self._beat_lock:
            self._beating.add((run, worker))
            if self._beat_thread is None:
                self._beat_thread = threading.Thread(target=self._beat, name="picaco-heartbeat", daemon=True)
                self._beat_thread.start()
        return worker

    def leave(self, run: str, worker: str) -> None:
        """Stop the heartbeat of ``worker``, release its claims and unregister it."""
        with self._beat_lock:
            self._beating.discard((run, worker))
        self.release(run, worker)
        with self.engine.begin() as conn:
            conn.execute(_workers.delete().where(_workers.c.run == run, _workers.c.worker == worker))

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            with self._beat_lock:
                beating = list(self._beating)
            for run, worker in beating:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(
                            _workers.update()
                            .where(_workers.c.run == run, _workers.c.worker == worker)
                            .values(last_seen=time.time())
                        )
                except sa.exc.SQLAlchemyError as exc:  # a hiccup must not kill the run; the next beat retries
                    logger.warning("Heartbeat of %s failed: %s", worker, exc)


def _create_tables(engine: sa.Engine, url: str | None, attempts: int = 5) -> None:
    """Create the tables if missing; workers starting together may race to create them, so a clash is retried."""
    for attempt in range(attempts):
        try:
            _metadata.create_all(engine)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as exc:
            if "already exists" not in str(exc) and not isinstance(exc, sa.exc.IntegrityError):
                raise ConfigurationError(f"Cannot open the run storage {redact_url(url)}: {exc.orig}") from exc
            if attempt == attempts - 1:
                raise ConfigurationError(f"Cannot create the run tables in {redact_url(url)}: {exc.orig}") from exc
            time.sleep(0.2 * (attempt + 1))


def _make_engine(url: str | None) -> sa.Engine:
    if url is None:  # a private temporary file: the same code path as a real store, removed at exit
        url = f"sqlite:///{tempfile.mkdtemp(prefix='picaco-run-')}/memory.db"
    try:
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
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigurationError(
            f"storage URL {redact_url(url)} is not usable: {exc}. Write it as dialect+driver://user@host/database, "
            "e.g. postgresql+psycopg://... or sqlite:///runs.db."
        ) from exc
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"storage URL {redact_url(url)} needs the database driver {exc.name!r}: "
            "pip install 'picaco-dspy[postgres]' (psycopg) or the driver your URL names."
        ) from exc


def redact_url(url: str | None) -> str:
    """The URL with its password hidden (for logs and errors)."""
    if url is None:
        return "memory"
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"

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
from picaco_dspy.runtime.database import CALLS, CLAIMS, RESULTS, RUNS, SPEND, WORKERS, create_tables, make_engine
from picaco_dspy.runtime.storage_url import redact_url

logger = logging.getLogger(__name__)

_KEY_CHUNK = 400


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
        self.engine = make_engine(url)
        self._temporary = url is None
        create_tables(self.engine, url)
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
            row = conn.execute(sa.select(RUNS.c.fingerprint).where(RUNS.c.name == name)).first()
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
                    RUNS.insert().values(
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
            row = conn.execute(sa.select(RUNS.c.spec).where(RUNS.c.name == name)).first()
        if row is None:
            raise ConfigurationError(f"No run named {name!r} in {redact_url(self.url)}; list them with `picaco runs`.")
        return json.loads(row.spec) if row.spec else None

    def runs(self) -> list[dict[str, Any]]:
        """Every run in the store with its result count."""
        with self.engine.begin() as conn:
            names = conn.execute(sa.select(RUNS.c.name, RUNS.c.created_at).order_by(RUNS.c.created_at)).all()
            counts: dict[str, int] = dict(
                conn.execute(sa.select(RESULTS.c.run, sa.func.count()).group_by(RESULTS.c.run)).all()
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
                    sa.select(RESULTS).where(RESULTS.c.run == run, RESULTS.c.kind == kind, RESULTS.c.key.in_(chunk))
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
                    RESULTS.insert().values(
                        run=run,
                        kind=kind,
                        key=key,
                        value=json.dumps(value, ensure_ascii=False),
                        failed=failed,
                        role=role,
                        **_usage_values(usage),
                        worker=worker,
                        created_at=time.time(),
                    )
                )
                conn.execute(CLAIMS.delete().where(CLAIMS.c.run == run, CLAIMS.c.kind == kind, CLAIMS.c.key == key))
            return True
        except IntegrityError:
            return False

    def record_spend(
        self, run: str, kind: str, key: str, role: str, usage: Mapping[str, float], *, worker: str
    ) -> None:
        """Journal one paid call of job ``(kind, key)`` as soon as it returns, so that a process killed before the job
        is stored still leaves what it paid in the ledger."""
        with self.engine.begin() as conn:
            conn.execute(
                SPEND.insert().values(
                    run=run,
                    kind=kind,
                    key=key,
                    role=role,
                    **_usage_values(usage),
                    worker=worker,
                    created_at=time.time(),
                )
            )

    def get_call(self, run: str, key: str) -> str | None:
        """The stored LM answer (JSON) for DSPy cache key ``key``, or None."""
        with self.engine.begin() as conn:
            return conn.execute(
                sa.select(CALLS.c.record).where(CALLS.c.run == run, CALLS.c.key == key)
            ).scalar_one_or_none()

    def put_call(self, run: str, key: str, record: str) -> None:
        """Keep an LM answer for every worker of ``run`` (the first writer wins)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(CALLS.insert().values(run=run, key=key, record=record, created_at=time.time()))
        except IntegrityError:
            pass

    def ledger(self, run: str) -> dict[str, dict[str, float]]:
        """Calls, tokens and cost ``run`` has paid, per role, all workers and all resumes together: every journaled
        call (:meth:`record_spend`: including those of jobs whose process died before storing them), plus the usage
        stored with results that have no journal (written by a version without one)."""
        columns = ("calls", "input_tokens", "output_tokens", "cost_usd")
        journaled = sa.select(SPEND.c.kind, SPEND.c.key).where(SPEND.c.run == run).distinct().subquery()
        with self.engine.begin() as conn:
            spent = conn.execute(
                sa.select(SPEND.c.role, *(sa.func.sum(SPEND.c[c]) for c in columns))
                .where(SPEND.c.run == run)
                .group_by(SPEND.c.role)
            ).all()
            unjournaled = conn.execute(
                sa.select(RESULTS.c.role, *(sa.func.sum(RESULTS.c[c]) for c in columns))
                .select_from(
                    RESULTS.outerjoin(
                        journaled, sa.and_(journaled.c.kind == RESULTS.c.kind, journaled.c.key == RESULTS.c.key)
                    )
                )
                .where(RESULTS.c.run == run, RESULTS.c.role.is_not(None), journaled.c.key.is_(None))
                .group_by(RESULTS.c.role)
            ).all()
        totals: dict[str, dict[str, float]] = {}
        for role, *sums in [*spent, *unjournaled]:
            row = totals.setdefault(role, dict.fromkeys(columns, 0))
            for column, value in zip(columns, sums):
                row[column] += value or 0
        return {
            role: {
                "calls": int(row["calls"]),
                "input_tokens": int(row["input_tokens"]),
                "output_tokens": int(row["output_tokens"]),
                "cost_usd": float(row["cost_usd"]),
            }
            for role, row in totals.items()
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
                        CLAIMS.insert().values(run=run, kind=kind, key=key, worker=worker, claimed_at=time.time())
                    )
                got = True
            except IntegrityError:
                got = self._take_over(run, kind, key, worker)
            if got and self._has_result(run, kind, key):  # finished by another worker since we last looked
                with self.engine.begin() as conn:
                    conn.execute(
                        CLAIMS.delete().where(
                            CLAIMS.c.run == run,
                            CLAIMS.c.kind == kind,
                            CLAIMS.c.key == key,
                            CLAIMS.c.worker == worker,
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
                    sa.select(RESULTS.c.key).where(RESULTS.c.run == run, RESULTS.c.kind == kind, RESULTS.c.key == key)
                ).first()
                is not None
            )

    def _take_over(self, run: str, kind: str, key: str, worker: str) -> bool:
        with self.engine.begin() as conn:
            holder = conn.execute(
                sa.select(CLAIMS.c.worker).where(CLAIMS.c.run == run, CLAIMS.c.kind == kind, CLAIMS.c.key == key)
            ).first()
            if holder is None or holder.worker == worker or self._alive(conn, run, holder.worker):
                return holder is not None and holder.worker == worker
            updated = conn.execute(
                CLAIMS.update()
                .where(
                    CLAIMS.c.run == run,
                    CLAIMS.c.kind == kind,
                    CLAIMS.c.key == key,
                    CLAIMS.c.worker == holder.worker,
                )
                .values(worker=worker, claimed_at=time.time())
            ).rowcount
        if updated:
            logger.info("Took over %s job %s from silent worker %s", kind, key[:12], holder.worker)
        return bool(updated)

    def _alive(self, conn: sa.Connection, run: str, worker: str) -> bool:
        """A worker is alive while its heartbeat is fresh; one on this host whose process is gone is dead at once
        (a rerun after a crash starts without waiting ``claim_timeout``)."""
        row = conn.execute(
            sa.select(WORKERS.c.last_seen, WORKERS.c.host, WORKERS.c.pid).where(
                WORKERS.c.run == run, WORKERS.c.worker == worker
            )
        ).first()
        if row is None or time.time() - row.last_seen >= self.stale_after_seconds:
            return False
        return row.host != socket.gethostname()[:200] or _process_exists(row.pid)

    def release(self, run: str, worker: str) -> int:
        """Drop the claims ``worker`` still holds (its unfinished jobs), so others take them at once."""
        with self.engine.begin() as conn:
            return conn.execute(CLAIMS.delete().where(CLAIMS.c.run == run, CLAIMS.c.worker == worker)).rowcount

    # ------------------------------------------------------------------ workers
    def join(self, run: str) -> str:
        """Register a new worker of ``run`` and keep its heartbeat going; returns its id."""
        worker = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                WORKERS.insert().values(
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
            conn.execute(WORKERS.delete().where(WORKERS.c.run == run, WORKERS.c.worker == worker))

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            with self._beat_lock:
                beating = list(self._beating)
            for run, worker in beating:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(
                            WORKERS.update()
                            .where(WORKERS.c.run == run, WORKERS.c.worker == worker)
                            .values(last_seen=time.time())
                        )
                except sa.exc.SQLAlchemyError as exc:  # a hiccup must not kill the run; the next beat retries
                    logger.warning("Heartbeat of %s failed: %s", worker, exc)


def _process_exists(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this host (a reused pid counts as alive: the heartbeat rule decides)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _usage_values(usage: Mapping[str, float]) -> dict[str, int | float]:
    """The usage columns of a results or spend row."""
    return {
        "calls": int(usage.get("calls", 0)),
        "input_tokens": int(usage.get("input_tokens", 0)),
        "output_tokens": int(usage.get("output_tokens", 0)),
        "cost_usd": float(usage.get("cost_usd", 0.0)),
    }

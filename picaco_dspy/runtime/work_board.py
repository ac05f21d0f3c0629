"""Paid work done once: jobs keyed by content, claimed by one worker, stored the moment they finish.

Every paid step of a PICACO run (a rollout, a judgement, a batch of proposals, a ``J(e)`` value, a schedule
decision) is a job with a deterministic key. :meth:`WorkBoard.run` returns the stored result of each job, runs the
ones nobody has (after claiming them, so that concurrent workers split the work), and waits for the ones another
live worker is running. A killed run started again therefore replays everything it had paid for from the store and
continues where it stopped; several workers running the same deterministic loop share every result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any, TypeVar

import dspy
from tqdm.auto import tqdm

from picaco_dspy.errors import PicacoError, ProviderRejected, ProviderUnavailable
from picaco_dspy.runtime.parallel import parallel_map
from picaco_dspy.runtime.retries import (
    RetryPolicy,
    attempt_number,
    describe,
    is_empty_answer,
    is_fatal,
    is_transient,
)
from picaco_dspy.runtime.stall_watch import StallWatch
from picaco_dspy.runtime.store import RunStore, StoredResult
from picaco_dspy.runtime.usage import UsageMeter, journal, journal_spend

logger = logging.getLogger(__name__)

P = TypeVar("P")


class JobFailed(PicacoError):
    """A job's LM call failed; the failure is stored (so no worker pays for it again) and kept out of every score."""


class _Raised:
    """An exception a job raised, carried out of the executor (which would otherwise log and drop it)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def job_key(*parts: Any) -> str:
    """A stable key for a job from JSON-serialisable parts (the same in every process and on every machine)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class WorkBoard:
    """Runs the jobs of one worker of one run against a :class:`RunStore`.

    Args:
        store: Where results and claims live.
        run: The run's name.
        meter: This worker's usage meter (calls of every job are counted in it as well as in the job's ledger row).
        num_threads: Parallel jobs (None: DSPy's setting).
        progress: Show a progress bar per batch of jobs.
        poll_seconds: How often to look for results while other workers hold the remaining jobs.
        retry_policy: How a job whose LM call failed transiently (timeout, 429, 5xx) is retried; a transient failure
            is never stored, so a rerun tries the job again.
        stall_after: Seconds without a finished job before the progress bar says the provider is not answering.
        stall_log_every: Seconds between log warnings while no job finishes (see :class:`StallWatch`).
    """

    def __init__(
        self,
        store: RunStore,
        run: str,
        *,
        meter: UsageMeter,
        num_threads: int | None = None,
        progress: bool = True,
        poll_seconds: float = 0.5,
        retry_policy: RetryPolicy | None = None,
        stall_after: float = 20.0,
        stall_log_every: float = 60.0,
    ) -> None:
        self.store = store
        self.retry_policy = retry_policy or RetryPolicy()
        self.retries: dict[str, int] = {}
        self._lock = threading.Lock()
        self.run_name = run
        self.meter = meter
        self.num_threads = num_threads
        self.progress = progress
        self.poll_seconds = poll_seconds
        self.stall_after = stall_after
        self.stall_log_every = stall_log_every
        self.worker = store.join(run)
        self.executed = 0
        self.reused = 0

    def close(self) -> None:
        """Leave the run: stop the heartbeat and release unfinished claims."""
        self.store.leave(self.run_name, self.worker)

    def run(
        self,
        kind: str,
        jobs: Mapping[str, P],
        execute: Callable[..., Any],
        *,
        role: str | None = None,
        describe: str = "",
        records_own_usage: bool = False,
    ) -> dict[str, Any]:
        """The result of every job: stored ones read back, missing ones run here or awaited from other workers.

        Args:
            kind: Job family (``rollout``, ``judgement``, ...); keys are unique within a kind.
            jobs: key -> payload, in the order this worker should try them.
            execute: Runs one payload and returns a JSON-serialisable value, or an exception *value* for a failure
                that should be recorded. An exception it *raises* aborts the run (nothing is stored for that job).
            role: The usage role the job's LM calls count under (None: no LM calls).
            describe: Progress-bar label.
            records_own_usage: ``execute`` takes ``(payload, job_meter)`` and records its usage in ``job_meter``
                itself (for work that is not a DSPy LM call, like the reference model's scoring).

        Returns:
            key -> value, or key -> :class:`JobFailed` for a recorded failure.
        """
        keys = list(jobs)
        found = self.store.get_many(self.run_name, kind, keys)
        self.reused += len(found)
        pending = [k for k in keys if k not in found]
        if pending:
            self._work(kind, jobs, pending, found, execute, role, describe, records_own_usage)
        return {k: _unpack(found[k]) for k in keys}

    def _work(
        self,
        kind: str,
        jobs: Mapping[str, P],
        pending: list[str],
        found: dict[str, StoredResult],
        execute: Callable[[P], Any],
        role: str | None,
        describe: str,
        records_own_usage: bool,
    ) -> None:
        # start at a worker-specific offset so that concurrent workers rarely contend for the same first jobs
        offset = zlib.crc32(self.worker.encode()) % len(pending)
        order = pending[offset:] + pending[:offset]
        chunk = 2 * max(1, self.num_threads or dspy.settings.num_threads or 1)
        bar = tqdm(total=len(pending), desc=describe or kind, disable=not self.progress, leave=False)
        waiting_since: float | None = None
        watch = StallWatch(
            role or kind, bar if self.progress else None, after=self.stall_after, log_every=self.stall_log_every
        )
        try:
            while order:
                claimed = self.store.claim(self.run_name, kind, order, self.worker, limit=chunk)
                if claimed:
                    waiting_since = None
                    with watch.running():
                        self._execute(kind, {k: jobs[k] for k in claimed}, execute, role, records_own_usage, watch)
                else:
                    if waiting_since is None:
                        waiting_since = time.monotonic()
                        logger.info("%d %s jobs are held by other workers; waiting for them", len(order), kind)
                    time.sleep(self.poll_seconds)
                found.update(self.store.get_many(self.run_name, kind, order))
                done = [k for k in order if k in found]
                bar.update(len(done))
                order = [k for k in order if k not in found]
        finally:
            bar.close()

    def _execute(
        self,
        kind: str,
        claimed: dict[str, P],
        execute: Callable[..., Any],
        role: str | None,
        records_own_usage: bool,
        watch: StallWatch | None = None,
    ) -> None:
        def one(item: tuple[str, P]) -> Any:
            try:
                self._execute_one(kind, item[0], item[1], execute, role, records_own_usage)
            except Exception as exc:  # a bug, a configuration problem or an unusable store: abort the run
                return _Raised(exc)
            finally:
                if watch is not None:
                    watch.progressed()
            return None

        with self.meter.track(role) if role is not None else nullcontext():
            outcomes = parallel_map(one, list(claimed.items()), num_threads=self.num_threads, progress=False)
        self.executed += len(claimed)
        for outcome in outcomes:
            if isinstance(outcome, _Raised):
                self.store.release(self.run_name, self.worker)
                raise outcome.error

    def _execute_one(
        self, kind: str, key: str, payload: P, execute: Callable[..., Any], role: str | None, records_own_usage: bool
    ) -> None:
        job_meter = UsageMeter()
        policy = self.retry_policy

        def record(paid_role: str, usage: Mapping[str, Any]) -> None:
            self.store.record_spend(self.run_name, kind, key, paid_role, usage, worker=self.worker)

        with journal_spend(record):
            value = self._attempts(kind, payload, execute, role, records_own_usage, job_meter, policy)
        usage = job_meter.role(role).to_dict() if role is not None else {}
        failed = isinstance(value, Exception)
        stored = {"error": f"{type(value).__name__}: {value}"} if failed else value
        self.store.put(self.run_name, kind, key, stored, worker=self.worker, failed=failed, role=role, usage=usage)

    def _attempts(
        self,
        kind: str,
        payload: P,
        execute: Callable[..., Any],
        role: str | None,
        records_own_usage: bool,
        job_meter: UsageMeter,
        policy: RetryPolicy,
    ) -> Any:
        """Run one job with the retry policy; returns its value or the exception to record as its failure."""
        value: Any = None
        for attempt in range(policy.max_retries + 1):
            try:
                with attempt_number(attempt):
                    value = self._attempt(payload, execute, role, records_own_usage, job_meter)
            except Exception as exc:
                if not (is_transient(exc) or is_fatal(exc) or is_empty_answer(exc)):
                    raise
                value = exc
            if isinstance(value, Exception) and is_fatal(value):  # never stored: the rerun after the fix pays it
                raise ProviderRejected(
                    f"The provider refused a {kind} call ({describe(value, brief=True)}): check the API key and its "
                    "permissions for this model, then run the same command again to resume (nothing paid is lost)."
                ) from value
            if not (isinstance(value, Exception) and (is_transient(value) or is_empty_answer(value))):
                break
            if attempt == policy.max_retries:
                if not is_transient(value):
                    break  # an answer that stays empty is recorded as this job's failure
                raise ProviderUnavailable(
                    f"A {kind} call failed {attempt + 1} times with transient errors (last: {describe(value)}). "
                    "Every result paid so far is stored: run the same command again to resume, or raise "
                    "RetryPolicy.max_retries."
                ) from value
            wait = policy.delay(attempt + 1, value)
            with self._lock:
                self.retries[kind] = self.retries.get(kind, 0) + 1
            logger.warning(
                "%s call failed (%s); retry %d/%d in %.1f s",
                kind,
                describe(value, brief=True),
                attempt + 1,
                policy.max_retries,
                wait,
            )
            time.sleep(wait)
        return value

    def _attempt(
        self, payload: P, execute: Callable[..., Any], role: str | None, records_own_usage: bool, job_meter: UsageMeter
    ) -> Any:
        if records_own_usage:
            before = job_meter.role(role) if role is not None else None
            value = execute(payload, job_meter)
            if role is not None and before is not None:  # not a DSPy call: the worker's meter does not see it itself
                own = job_meter.role(role)
                spent = {
                    "calls": own.calls - before.calls,
                    "input_tokens": own.input_tokens - before.input_tokens,
                    "output_tokens": own.output_tokens - before.output_tokens,
                }
                self.meter.record(
                    role, calls=spent["calls"], input_tokens=spent["input_tokens"], output_tokens=spent["output_tokens"]
                )
                journal(role, {**spent, "cost_usd": own.cost_usd - before.cost_usd})
        elif role is None:
            value = execute(payload)
        else:
            with job_meter.track(role):  # forwards to the worker's meter installed around the batch
                value = execute(payload)
        return value

    def decide(self, kind: str, key: str, compute: Callable[[], Any]) -> Any:
        """A decision taken once per run (by whichever worker gets there first) and read back by every other."""
        return self.run(kind, {key: None}, lambda _: compute())[key]


def _unpack(result: StoredResult) -> Any:
    if result.failed:
        return JobFailed(result.value.get("error", "failed") if isinstance(result.value, dict) else str(result.value))
    return result.value

"""A run's paid work done once: rollouts, judgements, proposals and ``J(e)`` as stored jobs on the work board.

:class:`RunSession` is the only place where the algorithm's steps become storage keys. It opens the run storage, joins
the run on the work board and (for a steered schedule) opens the Optuna study; the algorithm in
:mod:`picaco_dspy.optimize` calls :meth:`RunSession.sample`, :meth:`~RunSession.judge`, :meth:`~RunSession.propose`,
:meth:`~RunSession.rank` and :meth:`~RunSession.decide` and never sees a key. Every result is stored the moment it
exists, so a rerun replays to where it stopped and several workers running the same loop split the work.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import dspy

from picaco_dspy.objective.bound import PoolItem, ResponseScore, TotalCorrelationBound
from picaco_dspy.optimize.program_edit import own_instructions as own_instructions_of
from picaco_dspy.optimize.program_edit import with_meta_instruction
from picaco_dspy.optimize.schedule import Schedule
from picaco_dspy.optimize.steering import ScheduleSteering
from picaco_dspy.runtime.call_cache import shared_call_cache
from picaco_dspy.runtime.identity import RunIdentity
from picaco_dspy.runtime.parallel import judge_response, run_program
from picaco_dspy.runtime.provider_calls import call_overrides, with_run_lm
from picaco_dspy.runtime.retries import RetryPolicy, is_retry
from picaco_dspy.runtime.storage_url import redact_url, resolve_storage_url
from picaco_dspy.runtime.store import RunStore
from picaco_dspy.runtime.usage import BUDGET_ROLES, UsageMeter
from picaco_dspy.runtime.work_board import JobFailed, WorkBoard, job_key

logger = logging.getLogger(__name__)

MAX_SAMPLES = 999  # samples per prompt and step: rollout ids leave three digits for them
SELECTION_ITERATION = 999  # the iteration number of the final selection's valset rollouts


def rollout_id(seed: int, iteration: int, sample: int = 0) -> int:
    """The id of one sampled response: ``seed * 10^6 + iteration * 10^3 + sample``.

    It is the DSPy ``rollout_id`` (a distinct cache entry per sample) and the request's sampling seed, so a response
    is the same in every process that asks for it.
    """
    return seed * 1_000_000 + iteration * 1_000 + sample


@dataclass(frozen=True)
class Rollout:
    """One response of the program to one prompt (or the exception the call ended in)."""

    prompt_index: int
    rollout_id: int
    response: str | Exception


class RunSession:
    """The storage, work board and schedule steering of one compile; use as a context manager.

    Args:
        identity: The run to start or join.
        student: The program; rollouts run copies of it with a meta-instruction applied.
        own_instructions: The target predictors' instructions before PICACO.
        metric: The objective (judge, redundancy, reference model).
        proposer: Proposes instructions; called with ``num_candidates=1`` per stored job.
        schedule: The resolved schedule (a steered one gets an Optuna study in the same storage).
        n_prompts: Trainset size (the steering's minibatch range).
        storage: Storage URL or path (see :func:`~picaco_dspy.runtime.store.resolve_storage_url`); None: memory.
        seed: The run's seed (rollout ids, Optuna's sampler).
        response_temperature: Sampling temperature of the target program.
        claim_timeout: Seconds after which a silent worker's claims are taken over.
        num_threads: Parallel jobs.
        progress: Progress bars.
        retry_policy: Retries of transient provider failures (the only retry layer: DSPy's own are off).
        request_timeout: Seconds a remote LM request may take (None: the provider's default).
        run_spec: JSON-ready description stored with a new run (the CLI's arguments, for ``picaco worker``).
        teacher: The teacher program of ``compile`` (None: none); it samples responses for the aligned pools under
            the same meta-instruction, applied to its own copies of the target predictors.
    """

    def __init__(
        self,
        identity: RunIdentity,
        *,
        student: dspy.Module,
        own_instructions: dict[str, str],
        metric: TotalCorrelationBound,
        proposer: Callable[..., tuple[list[str], list[str]]],
        schedule: Schedule,
        n_prompts: int,
        storage: str | None,
        seed: int,
        response_temperature: float,
        claim_timeout: float,
        num_threads: int | None,
        progress: bool,
        retry_policy: RetryPolicy,
        request_timeout: float | None = None,
        run_spec: dict[str, Any] | None = None,
        teacher: dspy.Module | None = None,
    ) -> None:
        self.identity = identity
        self.student = student
        self.own = own_instructions
        self.teacher = teacher
        self.teacher_own = own_instructions_of(teacher, list(own_instructions)) if teacher is not None else {}
        self.request_timeout = request_timeout
        # PICACO's retry policy is the only retry layer, and remote requests time out (see provider_calls)
        self.metric = copy.copy(metric)
        self.metric.judge = with_run_lm(metric.judge, request_timeout)
        self.proposer = with_run_lm(proposer, request_timeout)
        self.seed = seed
        self.response_temperature = response_temperature
        self.meter = UsageMeter()
        url = resolve_storage_url(storage)
        self.storage = redact_url(url)
        self.store = RunStore(url, heartbeat_seconds=min(5.0, claim_timeout / 4), stale_after_seconds=claim_timeout)
        try:
            resumed = self.store.open_run(identity.name, identity.fingerprint, run_spec)
            self.board = WorkBoard(
                self.store,
                identity.name,
                meter=self.meter,
                num_threads=num_threads,
                progress=progress,
                retry_policy=retry_policy,
            )
        except BaseException:
            self.store.close()
            raise
        try:
            self.steering = (
                ScheduleSteering(schedule, storage=url, study_name=identity.name, seed=seed, n_prompts=n_prompts)
                if schedule.steered
                else None
            )
        except BaseException:
            self.close()
            raise
        if resumed:
            logger.info("PICACO: joining run %r in %s (stored results are reused)", identity.name, self.storage)

    def _lm_overrides(self, lm: dspy.BaseLM) -> dict[str, Any]:
        return call_overrides(lm, self.request_timeout)

    def _uncached_lm_overrides(self, lm: dspy.BaseLM) -> dict[str, Any]:  # a retry must reach the provider
        return {**call_overrides(lm, self.request_timeout), "cache": False}

    def _uncached_metric(self) -> TotalCorrelationBound:
        metric = copy.copy(self.metric)
        metric.judge = with_run_lm(self.metric.judge, self.request_timeout, cache=False)
        return metric

    def __enter__(self) -> RunSession:
        self._call_cache = shared_call_cache(self.store, self.identity.name)
        self._call_cache.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._call_cache.__exit__(exc_type, exc, tb)
        finally:
            self.close()

    def close(self) -> None:
        """Leave the run (release unfinished claims, stop the heartbeat) and close the storage."""
        try:
            self.board.close()
        finally:
            self.store.close()

    # ------------------------------------------------------------------ paid work
    def sample(
        self,
        instruction: str | None,
        *,
        iteration: int,
        samples: int,
        inputs: Sequence[dict[str, Any]],
        teacher: bool = False,
    ) -> list[Rollout]:
        """Run the program ``samples`` times per input under ``instruction`` (None: the program as given, bare);
        with ``teacher``, the teacher program instead (its calls count as the ``target`` role)."""
        program = self.teacher if teacher else self.student
        if program is None:
            raise ValueError("This run has no teacher program.")
        own = (self.teacher_own if teacher else self.own) if instruction is not None else {}
        ids = [rollout_id(self.seed, iteration, j) for j in range(samples)]

        def build(rid: int, overrides: Callable[[dspy.BaseLM], dict[str, Any]]) -> dspy.Module:
            return with_meta_instruction(
                program,
                own,
                instruction or "",
                rollout_id=rid,
                temperature=self.response_temperature,
                lm_overrides=overrides,
            )

        programs = [build(rid, self._lm_overrides) for rid in ids]  # built here, not in the worker threads

        def run_one(slot: tuple[int, int]) -> str | Exception:
            i, j = slot
            program = build(ids[j], self._uncached_lm_overrides) if is_retry() else programs[j]
            return run_program(program, inputs[i], self.metric.response_field)

        tag = ("teacher",) if teacher else ()  # the student's keys are those of runs before teachers existed
        jobs = {
            job_key(instruction, sorted(inputs[i].items()), ids[j], self.response_temperature, *tag): (i, j)
            for i in range(len(inputs))
            for j in range(samples)
        }
        results = self.board.run(
            "rollout",
            jobs,
            run_one,
            role="target",
            describe="responses",
        )
        return [Rollout(i, ids[j], results[key]) for key, (i, j) in jobs.items()]

    def judge(self, items: Sequence[tuple[str, str]]) -> list[ResponseScore | Exception]:
        """Score each ``(prompt, response)``; identical pairs share one judgement, once per run."""
        keys = [job_key(prompt, response) for prompt, response in items]
        unique = dict(zip(keys, items))
        prompts, responses = [p for p, _ in unique.values()], [r for _, r in unique.values()]
        q_phi = dict(zip(unique, self.metric.redundancy_of(prompts, responses)))
        results = self.board.run(
            "judgement",
            {k: (p, r, q_phi[k]) for k, (p, r) in unique.items()},
            lambda job: _score_value(judge_response(self._uncached_metric() if is_retry() else self.metric, *job)),
            role="judge",
            describe="judging",
        )
        return [r if isinstance(r, Exception) else ResponseScore.from_dict(r) for r in (results[k] for k in keys)]

    def propose(
        self,
        *,
        iteration: int,
        current: str,
        history: list[tuple[str, float]],
        pooled: Sequence[tuple[str, Any]],
        num_candidates: int,
        temperature: float,
    ) -> tuple[list[tuple[str, int]], list[str]]:
        """``num_candidates`` proposals, one stored job each.

        Returns:
            ``(proposals, failures)``: each proposal with the rollout seed it was proposed with (its lineage).
        """
        base = rollout_id(self.seed, iteration)

        def propose_one(index: int) -> dict[str, list[str]]:
            proposer = with_run_lm(self.proposer, self.request_timeout, cache=False) if is_retry() else self.proposer
            proposals, failures = proposer(
                self.metric.values,
                current,
                history,
                pooled,
                num_candidates=1,
                temperature=temperature,
                rollout_base=base + index,
            )
            return {"proposals": list(proposals), "failures": list(failures)}

        context = job_key(iteration, current, history, [(p, it.response, it.reward) for p, it in pooled], temperature)
        jobs = {job_key(context, base + index): index for index in range(num_candidates)}
        outcomes = self.board.run("proposal", jobs, propose_one, role="proposer", describe="proposing")
        proposals: list[tuple[str, int]] = []
        failures: list[str] = []
        for key, index in jobs.items():
            outcome = outcomes[key]
            if isinstance(outcome, JobFailed):
                failures.append(f"proposal {index}: {outcome}")
            else:
                proposals += [(text, base + index) for text in outcome["proposals"]]
                failures += [f"proposal {index}: {f.split(': ', 1)[-1]}" for f in outcome["failures"]]
        return proposals, failures

    def rank(
        self,
        instructions: Sequence[str],
        pools: list[tuple[str, list[PoolItem]]],
        system_for: Callable[[str], str],
        bare_instruction: str,
    ) -> list[float]:
        """``J(e)`` of each meta-instruction over the given non-empty pools (stored per pool content)."""
        content = job_key([(p, [(it.response, it.reward, it.origin) for it in items]) for p, items in pools])
        jobs = {job_key(text, content): text for text in instructions}

        def score(text: str, job_meter: UsageMeter) -> float:
            return self.metric.instruction_score(
                system_for(text), pools, bare_instruction=bare_instruction, usage=job_meter
            ).value

        results = self.board.run("J", jobs, score, role="reference", describe="ranking", records_own_usage=True)
        return [float(results[k]) for k in jobs]

    def decide(self, kind: str, key_parts: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """A decision (step settings, pruning, budget) taken once per run and read back by every worker."""
        return self.board.decide(kind, job_key(*key_parts), compute)

    # ------------------------------------------------------------------ accounting
    def ledger(self) -> dict[str, dict[str, Any]]:
        """What the run has spent per role, all workers and resumes together (with ``total_tokens``)."""
        ledger = self.store.ledger(self.identity.name)
        empty = {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        return {
            role: {**(u := ledger.get(role, empty)), "total_tokens": u["input_tokens"] + u["output_tokens"]}
            for role in (*BUDGET_ROLES, "reference")
        }

    def accounts(self) -> dict[str, Any]:
        """The run's ledger, this process's own usage, and the work board's counters."""
        return {
            "usage": self.ledger(),
            "worker_usage": self.meter.snapshot(),
            "reused_results": self.board.reused,
            "executed_jobs": self.board.executed,
            "retries": dict(self.board.retries),
        }


def _score_value(score: ResponseScore | Exception) -> dict[str, Any] | Exception:
    return score if isinstance(score, Exception) else score.to_dict()

"""Batched, parallel program runs and judgements, with failures returned as values and usage metered per role.

A failure is logged, counted by the caller and kept out of every score: it is returned as the exception, never as 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import dspy
from dspy.utils.parallelizer import ParallelExecutor

from picaco_dspy.errors import JudgeError, PicacoError
from picaco_dspy.objective.bound import ResponseScore, TotalCorrelationBound, response_text
from picaco_dspy.runtime.retries import describe
from picaco_dspy.runtime.usage import UsageMeter

logger = logging.getLogger(__name__)

T = TypeVar("T")


def parallel_map(
    fn: Callable[[Any], T], items: Sequence[Any], *, num_threads: int | None = None, progress: bool = True
) -> list[T]:
    """``[fn(item) for item in items]`` on DSPy's executor (DSPy settings and usage tracking reach the threads).

    ``fn`` must return failures as exception values; they are boxed so that the executor keeps them as results.
    """
    if not items:
        return []
    executor = ParallelExecutor(
        num_threads=num_threads,
        max_errors=len(items) + 1,
        disable_progress_bar=not progress,
        provide_traceback=False,
        timeout=0,
    )
    boxed = executor.execute(lambda item: (fn(item),), list(items))
    if any(box is None for box in boxed):
        raise PicacoError("A parallel batch was cancelled before it finished; see the log.")
    return [box[0] for box in boxed]


def generate_responses(
    jobs: Sequence[tuple[dspy.Module, dict[str, Any]]],
    *,
    response_field: str | None = None,
    meter: UsageMeter | None = None,
    num_threads: int | None = None,
    progress: bool = True,
) -> list[str | Exception]:
    """Run each ``(program, inputs)`` job and return its response text, or the exception it raised."""

    with _track(meter, "target"):
        return parallel_map(
            lambda job: run_program(job[0], job[1], response_field), jobs, num_threads=num_threads, progress=progress
        )


def run_program(program: dspy.Module, inputs: dict[str, Any], response_field: str | None = None) -> str | Exception:
    """Run ``program`` on ``inputs`` and return its response text, or the exception it raised (logged)."""
    try:
        return response_text(program(**inputs), response_field)
    except Exception as exc:
        logger.warning("Program run failed on %r: %s", _short(inputs), describe(exc, brief=True))
        return exc


def judge_response(
    metric: TotalCorrelationBound, prompt: str, response: str, redundancy: float | None
) -> ResponseScore | JudgeError:
    """Judge one response and combine with its ``q_phi``; a failed judgement comes back as its error (logged)."""
    try:
        judgement = metric.judge.judge(prompt, response, metric.values)
    except JudgeError as exc:
        logger.warning("Judgement failed: %s", describe(exc, brief=True))
        return exc
    return metric.score_judged(judgement, redundancy)


def score_responses(
    metric: TotalCorrelationBound,
    items: Sequence[tuple[str, str]],
    *,
    meter: UsageMeter | None = None,
    num_threads: int | None = None,
    progress: bool = True,
) -> list[ResponseScore | JudgeError]:
    """Judge each ``(prompt, response)`` and combine with ``q_phi``; a failed judgement comes back as its error."""

    q_phi = metric.redundancy_of([p for p, _ in items], [r for _, r in items])
    with _track(meter, "judge"):
        return parallel_map(
            lambda job: judge_response(metric, *job),
            [(p, r, q) for (p, r), q in zip(items, q_phi)],
            num_threads=num_threads,
            progress=progress,
        )


def _track(meter: UsageMeter | None, role: str):
    from contextlib import nullcontext

    return meter.track(role) if meter is not None else nullcontext()


def _short(inputs: dict[str, Any]) -> str:
    text = " ".join(str(v) for v in inputs.values())
    return text if len(text) <= 60 else text[:57] + "..."

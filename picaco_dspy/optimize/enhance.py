"""Response Enhancement: the noisy pool of bare responses, and each iteration's new responses into the aligned pools."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from picaco_dspy.errors import PicacoError
from picaco_dspy.objective.bound import ResponseScore
from picaco_dspy.optimize.pools import PooledResponse
from picaco_dspy.optimize.problem import AlignmentProblem, mean_conformity
from picaco_dspy.optimize.schedule import StepSettings
from picaco_dspy.runtime.session import RunSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enhancement:
    """What one Response Enhancement step did.

    Attributes:
        sampled_under: The instruction the new responses were sampled with (``e^{t-1}``).
        new_responses: Responses sampled and judged.
        failed_rollouts: Target or judge failures (kept out of the pools, never scored 0).
        mean_reward: Mean ``r`` of the new responses.
        conformity: Per value, mean 1-5 conformity of the new responses.
        aligned_pool_mean_reward: Mean ``r`` over the aligned pools (top ``M1`` each) after the update.
        teacher_responses: Responses of the teacher program judged this step (not in ``new_responses``,
            ``mean_reward`` or ``conformity``, which describe the student under ``sampled_under``).
        teacher_mean_reward: Their mean ``r`` (None without a teacher).
    """

    sampled_under: str
    new_responses: int
    failed_rollouts: int
    mean_reward: float
    conformity: dict[str, float]
    aligned_pool_mean_reward: float
    teacher_responses: int = 0
    teacher_mean_reward: float | None = None


def build_noisy_pool(problem: AlignmentProblem, session: RunSession) -> dict[str, Any]:
    """Sample bare responses, keep the ``M2`` most parroting per prompt (by ``q_phi``, judged only then).

    Returns:
        A summary: responses ``sampled``, ``kept``, ``failed`` and their ``mean_redundancy``.
    """
    capacity = problem.schedule.noisy_pool_size
    rollouts = session.sample(
        None, iteration=0, samples=problem.noisy_samples, inputs=[pool.inputs for pool in problem.pools]
    )
    by_prompt: dict[int, list[tuple[int, str]]] = {}
    failed = 0
    for rollout in rollouts:
        if isinstance(rollout.response, Exception):
            failed += 1
        else:
            by_prompt.setdefault(rollout.prompt_index, []).append((rollout.rollout_id, rollout.response))
    # rank by q_phi (cheap, embeddings only), then judge only the M2 kept per prompt
    keep: list[tuple[int, int, str]] = []
    for i, items in by_prompt.items():
        q_phi = problem.metric.redundancy_of([problem.pools[i].prompt] * len(items), [r for _, r in items])
        ranked = sorted(zip(items, q_phi), key=lambda it: (-(it[1] or 0.0), it[0][0], it[0][1]))
        seen: set[str] = set()
        for (rid, response), _ in ranked:
            if response.strip() in seen:
                continue
            seen.add(response.strip())
            keep.append((i, rid, response))
            if len(seen) >= capacity:
                break
    scored = session.judge([(problem.pools[i].prompt, r) for i, _, r in keep])
    per_prompt: dict[int, list[PooledResponse]] = {}
    for (i, rid, response), score in zip(keep, scored):
        if isinstance(score, Exception):
            failed += 1
            continue
        per_prompt.setdefault(i, []).append(PooledResponse(response, score, 0, rid, ""))
    for i, pool in enumerate(problem.pools):
        pool.set_noisy(per_prompt.get(i, []), capacity)
    kept = sum(len(p.noisy) for p in problem.pools)
    if kept == 0:
        raise PicacoError("Every bare rollout or its judgement failed while building the noisy pool; see the log.")
    logger.info("Noisy pool: %d bare responses sampled, %d kept, %d failed", len(rollouts), kept, failed)
    return {
        "sampled": len(rollouts),
        "kept": kept,
        "failed": failed,
        "mean_redundancy": float(np.mean([p.score.redundancy for pl in problem.pools for p in pl.noisy])),
    }


def enhance_responses(
    problem: AlignmentProblem, session: RunSession, iteration: int, instruction: str, settings: StepSettings
) -> Enhancement:
    """Sample new responses under ``instruction`` (from the student, and from the teacher when the run has one), judge
    them and merge them into the aligned pools."""
    inputs = [pool.inputs for pool in problem.pools]
    rollouts = [
        ("student", r)
        for r in session.sample(instruction, iteration=iteration, samples=settings.samples_per_prompt, inputs=inputs)
    ]
    if problem.teacher_samples:
        teacher = session.sample(
            instruction, iteration=iteration, samples=problem.teacher_samples, inputs=inputs, teacher=True
        )
        rollouts += [("teacher", r) for r in teacher]
    ok = [(source, r) for source, r in rollouts if not isinstance(r.response, Exception)]
    failed = len(rollouts) - len(ok)
    scored = session.judge([(problem.pools[r.prompt_index].prompt, str(r.response)) for _, r in ok])
    new: dict[int, list[PooledResponse]] = {}
    fresh: list[ResponseScore] = []
    from_teacher: list[ResponseScore] = []
    for (source, rollout), score in zip(ok, scored):
        if isinstance(score, Exception):
            failed += 1
            continue
        (from_teacher if source == "teacher" else fresh).append(score)
        new.setdefault(rollout.prompt_index, []).append(
            PooledResponse(str(rollout.response), score, iteration, rollout.rollout_id, instruction, source)
        )
    if not fresh:
        raise PicacoError(f"Iteration {iteration}: every rollout or judgement failed; see the log.")
    for i, pool in enumerate(problem.pools):
        pool.add_aligned(new.get(i, []), problem.schedule.pool_capacity)
    aligned = [p.reward for pool in problem.pools for p in pool.aligned[: settings.aligned_pool_size]]
    return Enhancement(
        sampled_under=instruction,
        new_responses=len(fresh),
        failed_rollouts=failed,
        mean_reward=float(np.mean([s.reward for s in fresh])),
        conformity=mean_conformity(fresh, problem.values.names),
        aligned_pool_mean_reward=float(np.mean(aligned)),
        teacher_responses=len(from_teacher),
        teacher_mean_reward=float(np.mean([s.reward for s in from_teacher])) if from_teacher else None,
    )

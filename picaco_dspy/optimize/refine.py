"""Instruction Refinement: propose candidate instructions and keep the one with the highest ``J(e)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from picaco_dspy.optimize.problem import AlignmentProblem
from picaco_dspy.optimize.result import CandidateRecord
from picaco_dspy.optimize.schedule import StepPolicy, StepSettings
from picaco_dspy.runtime.session import RunSession


@dataclass(frozen=True)
class Refinement:
    """What one Instruction Refinement step chose.

    Attributes:
        instruction: The instruction kept (``e^t``); the current one when nothing beat it or the step was pruned.
        J: Its ``J(e)`` on the step's pools.
        candidates: Every candidate ranked, best first.
        proposal_failures: Proposals that failed or came back empty.
        gain: ``J(e_chosen) - J(e_current)`` (0 when pruned).
        pruned: Optuna pruned the step: its candidates were not adopted.
        ranked_prompts: Prompts the candidates were ranked on before the step ended.
    """

    instruction: str
    J: float
    candidates: list[CandidateRecord]
    proposal_failures: list[str] = field(default_factory=list)
    gain: float = 0.0
    pruned: bool = False
    ranked_prompts: int = 0


def refine_instruction(
    problem: AlignmentProblem,
    session: RunSession,
    policy: StepPolicy,
    iteration: int,
    current: str,
    history: list[tuple[str, float]],
    settings: StepSettings,
) -> Refinement:
    """Propose ``settings.num_candidates`` instructions and rank them with the current one by ``J(e)``.

    Candidates are ranked on successive minibatches of prompts; a steered schedule may prune the step between them.
    """
    m1 = settings.aligned_pool_size
    pooled = [(pool.prompt, item) for pool in problem.pools for item in pool.aligned[:m1]]
    proposals, failures = session.propose(
        iteration=iteration,
        current=current,
        history=history,
        pooled=pooled,
        num_candidates=settings.num_candidates,
        temperature=settings.proposal_temperature,
    )
    seeds = dict(reversed(proposals))  # a text proposed twice keeps its first proposal's seed
    texts = [current] + [p for p in dict.fromkeys(text for text, _ in proposals) if p != current]
    kind = getattr(session.proposer, "proposal_kind", type(session.proposer).__name__)

    order = np.random.default_rng([session.seed, iteration]).permutation(len(problem.pools)).tolist()
    size = max(1, settings.minibatch_size)
    batches = [order[k : k + size] for k in range(0, len(order), size)]
    totals, weight = np.zeros(len(texts)), 0
    pruned, ranked, intermediate = False, 0, {}
    for step, batch in enumerate(batches):
        scores, count = instruction_scores(problem, session, texts, batch, m1)
        if count == 0:
            continue
        totals += np.asarray(scores) * count
        weight += count
        ranked += len(batch)
        gain = float(np.max(totals / weight) - totals[0] / weight)
        intermediate[step] = gain
        if step < len(batches) - 1 and policy.prune(iteration, settings, step, gain):
            pruned = True
            break
    J = totals / max(weight, 1)
    records = [CandidateRecord(current, float(J[0]), iteration, "current")] + [
        CandidateRecord(
            text,
            float(J[k]),
            iteration,
            "proposed",
            parent=current,
            proposed_by=kind,
            temperature=settings.proposal_temperature,
            proposal_seed=seeds[text],
        )
        for k, text in enumerate(texts[1:], start=1)
    ]
    records.sort(key=lambda c: -c.J)  # stable: on a tie the current instruction (listed first) stays
    chosen = current if pruned else records[0].instruction
    gain = 0.0 if pruned else float(records[0].J - J[0])
    policy.tell(iteration, settings, gain, pruned, intermediate)
    return Refinement(
        instruction=chosen,
        J=next(c.J for c in records if c.instruction == chosen),
        candidates=records,
        proposal_failures=failures,
        gain=gain,
        pruned=pruned,
        ranked_prompts=ranked,
    )


def instruction_scores(
    problem: AlignmentProblem, session: RunSession, texts: Sequence[str], prompts: Sequence[int], m1: int | None
) -> tuple[list[float], int]:
    """``J`` of each instruction over the given prompts' pools, and how many of those pools are non-empty."""
    pools = problem.pool_items(prompts, m1)
    if not pools:
        return [0.0] * len(texts), 0
    return session.rank(texts, pools, problem.system_for, problem.answer_instruction), len(pools)

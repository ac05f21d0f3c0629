"""Final selection: the best of the instructions chosen along the way, on the valset when there is one."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from picaco_dspy.optimize.budget import BudgetGuard, phase_cost
from picaco_dspy.optimize.problem import AlignmentProblem, mean_conformity
from picaco_dspy.optimize.refine import instruction_scores
from picaco_dspy.optimize.result import IterationRecord, SelectionRecord
from picaco_dspy.runtime.session import SELECTION_ITERATION, RunSession

logger = logging.getLogger(__name__)


def select_final(
    problem: AlignmentProblem, session: RunSession, guard: BudgetGuard, iterations: Sequence[IterationRecord]
) -> tuple[str, SelectionRecord]:
    """Rank every instruction chosen so far plus the last round's candidates by ``J`` on the final pools, then pick
    among the best ``final_candidates`` (and the seed) by the mean reward of fresh valset responses, or by ``J`` when
    there is no valset or the budget does not pay for it.

    Returns:
        The chosen instruction (the seed loses ties) and the record of the selection.
    """
    seed = problem.seed_instruction
    last = iterations[-1] if iterations else None  # none: the budget stopped the run before its first iteration
    chosen = [seed] + [r.instruction for r in iterations]
    pool = list(dict.fromkeys(chosen + ([c.instruction for c in last.candidates] if last else [])))
    m1 = last.settings.get("aligned_pool_size") if last else None
    scores, _ = instruction_scores(problem, session, pool, range(len(problem.pools)), m1)
    final_J = dict(zip(pool, scores))
    contenders = sorted(pool, key=lambda t: -final_J[t])[: problem.final_candidates]
    if seed not in contenders:
        contenders.append(seed)
    on_valset = problem.val_inputs is not None and guard.allows(
        phase_cost(
            rollouts=len(contenders) * len(problem.val_inputs),
            judge_calls_per_response=problem.judge_calls_per_response,
        ),
        "valset-selection",
    )
    selection = (
        SelectionRecord("valset") if on_valset else SelectionRecord("pools", {t: final_J[t] for t in contenders})
    )
    if on_valset and not _score_on_valset(problem, session, contenders, selection):
        logger.warning(
            "Final selection: every valset rollout or judgement of some finalist failed (%s); selecting on the pools "
            "by J instead (what was paid stays in the run storage)",
            {t[:40]: n for t, n in selection.failed.items()},
        )
        selection = SelectionRecord("pools", {t: final_J[t] for t in contenders}, failed=selection.failed)
    best = max(contenders, key=lambda t: (selection.scores[t], t != seed))
    return best, selection


def _score_on_valset(
    problem: AlignmentProblem, session: RunSession, contenders: list[str], selection: SelectionRecord
) -> bool:
    """Score each contender by the mean reward of fresh valset responses; False when one of them got no score."""
    inputs, prompts = problem.val_inputs or [], problem.val_prompts or []
    for text in contenders:
        rollouts = session.sample(text, iteration=SELECTION_ITERATION, samples=1, inputs=inputs)
        ok = [r for r in rollouts if not isinstance(r.response, Exception)]
        judged = session.judge([(prompts[r.prompt_index], str(r.response)) for r in ok])
        scored = [s for s in judged if not isinstance(s, Exception)]
        selection.failed[text] = len(inputs) - len(scored)
        if scored:
            selection.scores[text] = float(np.mean([s.reward for s in scored]))
            selection.conformity[text] = mean_conformity(scored, problem.values.names)
    return all(text in selection.scores for text in contenders)

"""What one compile optimises: the prompts' pools, the objective, and the settings the phases share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from picaco_dspy.objective.bound import PoolItem, ResponseScore, TotalCorrelationBound
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.optimize.pools import PromptPool
from picaco_dspy.optimize.program_edit import compose
from picaco_dspy.optimize.schedule import Schedule


@dataclass
class AlignmentProblem:
    """The state the PICACO phases read and update.

    Attributes:
        metric: The objective ``r(x, y)`` and ``J(e)``.
        pools: One :class:`PromptPool` per trainset prompt (updated by Response Enhancement).
        seed_instruction: ``e^0``, the value names as a plain list.
        answer_instruction: The answer-writing predictor's own instruction; ``J(e)`` weighs responses by how likely
            that instruction composed with ``e`` makes them.
        schedule: The resolved schedule.
        noisy_samples: Bare responses sampled per prompt to pick the noisy pool from.
        final_candidates: Instructions that compete in the final selection (plus the seed).
        val_inputs: The valset's inputs (None: select on the pools).
        val_prompts: The valset's prompts ``x``.
        teacher_samples: Responses per prompt per iteration from the teacher program (0: no teacher).
    """

    metric: TotalCorrelationBound
    pools: list[PromptPool]
    seed_instruction: str
    answer_instruction: str
    schedule: Schedule
    noisy_samples: int
    final_candidates: int
    val_inputs: list[dict[str, Any]] | None = None
    val_prompts: list[str] | None = None
    teacher_samples: int = 0

    @property
    def values(self) -> ValueSet:
        return self.metric.values

    @property
    def judge_calls_per_response(self) -> int:
        """Judge calls for one response (a screened response's second view is not foreseen: it is the exception)."""
        judge = self.metric.judge
        per_view = judge.lm_calls_per_view(self.values)
        return per_view + int(bool(getattr(judge, "screen_call", False)))

    def system_for(self, meta_instruction: str) -> str:
        """What the answer predictor saw under ``meta_instruction`` (``""``: the bare program)."""
        return compose(self.answer_instruction, meta_instruction) if meta_instruction else self.answer_instruction

    def pool_items(self, prompt_indices: Sequence[int], aligned_limit: int | None) -> list[tuple[str, list[PoolItem]]]:
        """The non-empty pools of the given prompts, as ``J(e)`` input (aligned top ``aligned_limit`` + noisy)."""
        pools = [
            (self.pools[i].prompt, self.pools[i].items(system_for=self.system_for, aligned_limit=aligned_limit))
            for i in prompt_indices
        ]
        return [(prompt, items) for prompt, items in pools if items]


def mean_conformity(scores: Sequence[ResponseScore], names: Sequence[str]) -> dict[str, float]:
    """Per value, the mean 1-5 conformity of ``scores``."""
    return {n: float(np.mean([s.conformity[n] for s in scores])) for n in names}

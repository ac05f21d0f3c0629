"""Evaluating programs on held-out prompts: per-value conformity, overall mean, balance (CV), side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import dspy
import numpy as np

from picaco_dspy.batch import generate_responses, score_responses
from picaco_dspy.bound import TotalCorrelationBound, prompt_text
from picaco_dspy.errors import PicacoError
from picaco_dspy.usage import UsageMeter


@dataclass
class ProgramEvaluation:
    """How one program's fresh responses conform to the values.

    Attributes:
        label: Name shown in tables.
        per_value: Mean conformity per value (1-5).
        overall: Mean over the values of ``per_value``.
        cv: Coefficient of variation of ``per_value`` (population std / mean); lower is more balanced.
        all_values_at_least_4: Share of prompts whose response scores >= 4 on every value.
        mean_reward: Mean ``r`` of the responses.
        judged: Responses judged.
        failed: Program runs or judgements that failed (excluded from every number above).
        responses: Per prompt: the prompt, the response and its conformity.
        usage: Calls and tokens per role spent on this evaluation.
    """

    label: str
    per_value: dict[str, float]
    overall: float
    cv: float
    all_values_at_least_4: float
    mean_reward: float
    judged: int
    failed: int
    responses: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Population standard deviation over mean (0 for a single value or a zero mean)."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size < 2 or array.mean() == 0:
        return 0.0
    return float(array.std() / array.mean())


def evaluate_program(
    program: dspy.Module,
    examples: Sequence[dspy.Example],
    metric: TotalCorrelationBound,
    *,
    label: str = "program",
    num_threads: int | None = None,
    progress: bool = True,
) -> ProgramEvaluation:
    """Run ``program`` once per example and judge every response against ``metric``'s values.

    Raises:
        PicacoError: every run or judgement failed.
    """
    meter = UsageMeter()
    prompts = [prompt_text(ex, metric.prompt_field) for ex in examples]
    responses = generate_responses(
        [(program, dict(ex.inputs())) for ex in examples],
        response_field=metric.response_field,
        meter=meter,
        num_threads=num_threads,
        progress=progress,
    )
    ok = [(p, r) for p, r in zip(prompts, responses) if not isinstance(r, Exception)]
    scores = score_responses(metric, ok, meter=meter, num_threads=num_threads, progress=progress)
    judged = [(p, r, s) for (p, r), s in zip(ok, scores) if not isinstance(s, Exception)]
    if not judged:
        raise PicacoError(f"Evaluating {label!r}: every program run or judgement failed; see the log.")
    names = metric.values.names
    per_value = {n: float(np.mean([s.conformity[n] for _, _, s in judged])) for n in names}
    return ProgramEvaluation(
        label=label,
        per_value=per_value,
        overall=float(np.mean(list(per_value.values()))),
        cv=coefficient_of_variation(per_value.values()),
        all_values_at_least_4=float(np.mean([all(s.conformity[n] >= 4 for n in names) for _, _, s in judged])),
        mean_reward=float(np.mean([s.reward for _, _, s in judged])),
        judged=len(judged),
        failed=len(examples) - len(judged),
        responses=[{"prompt": p, "response": r, "conformity": s.conformity} for p, r, s in judged],
        usage=meter.snapshot(),
    )


def comparison_table(evaluations: Sequence[ProgramEvaluation]) -> str:
    """A Markdown table: one row per program, one column per value, then overall, CV and judged/failed counts."""
    if not evaluations:
        return ""
    names = list(evaluations[0].per_value)
    header = ["program", *names, "overall", "CV", "all >= 4", "judged", "failed"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ev in evaluations:
        cells = [
            ev.label,
            *(f"{ev.per_value[n]:.2f}" for n in names),
            f"{ev.overall:.2f}",
            f"{ev.cv:.3f}",
            f"{ev.all_values_at_least_4:.0%}",
            str(ev.judged),
            str(ev.failed),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)

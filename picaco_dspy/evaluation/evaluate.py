"""Evaluating programs on held-out prompts: per-value conformity, overall mean, balance (CV), side by side."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import dspy
import numpy as np

from picaco_dspy.errors import JudgeError, PicacoError
from picaco_dspy.evaluation.judge_agreement import AgreementReport
from picaco_dspy.evaluation.pairwise import PairwiseJudge
from picaco_dspy.evaluation.stats import bootstrap_ci, coefficient_of_variation
from picaco_dspy.objective.bound import TotalCorrelationBound, prompt_text
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.runtime.parallel import generate_responses, parallel_map, score_responses
from picaco_dspy.runtime.usage import UsageMeter

logger = logging.getLogger(__name__)


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
        mean_score: Mean metric score in [0, 1] (``r`` mapped as DSPy optimisers see it).
        judged: Responses judged.
        failed: Program runs or judgements that failed (excluded from every number above).
        responses: Per prompt: the prompt, the response and its conformity.
        usage: Calls and tokens per role spent on this evaluation.
        overall_ci: 95% bootstrap interval of ``overall`` (prompts resampled).
        per_value_ci: 95% bootstrap interval of each ``per_value`` mean.
        win_rate: Share of prompts where this program's response beats the reference program's (ties count half),
            judged pairwise in both orders; None until :func:`add_win_rate` runs.
        win_rate_ci: Its 95% bootstrap interval.
        win_rate_against: Label of the reference program.
    """

    label: str
    per_value: dict[str, float]
    overall: float
    cv: float
    all_values_at_least_4: float
    mean_reward: float
    mean_score: float
    judged: int
    failed: int
    responses: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    overall_ci: tuple[float, float] = (float("nan"), float("nan"))
    per_value_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    win_rate: float | None = None
    win_rate_ci: tuple[float, float] | None = None
    win_rate_against: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_program(
    program: dspy.Module,
    examples: Sequence[dspy.Example],
    metric: TotalCorrelationBound,
    *,
    label: str = "program",
    num_threads: int | None = None,
    progress: bool = True,
    meter: UsageMeter | None = None,
) -> ProgramEvaluation:
    """Run ``program`` once per example and judge every response against ``metric``'s values.

    Args:
        meter: Count the calls in this meter (e.g. an optimiser's budget); ``usage`` then holds this evaluation's share.

    Raises:
        PicacoError: every run or judgement failed.
    """
    meter = meter if meter is not None else UsageMeter()
    before = meter.snapshot()
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
    matrix = np.asarray([[s.conformity[n] for n in names] for _, _, s in judged], dtype=np.float64)
    return ProgramEvaluation(
        label=label,
        per_value=per_value,
        overall=float(np.mean(list(per_value.values()))),
        cv=coefficient_of_variation(per_value.values()),
        all_values_at_least_4=float(np.mean([all(s.conformity[n] >= 4 for n in names) for _, _, s in judged])),
        mean_reward=float(np.mean([s.reward for _, _, s in judged])),
        mean_score=float(np.mean([s.score for _, _, s in judged])),
        judged=len(judged),
        failed=len(examples) - len(judged),
        responses=[{"prompt": p, "response": r, "conformity": s.conformity} for p, r, s in judged],
        usage=_usage_since(before, meter.snapshot()),
        overall_ci=bootstrap_ci(matrix.mean(axis=1)),
        per_value_ci={n: bootstrap_ci(matrix[:, k]) for k, n in enumerate(names)},
    )


def add_win_rate(
    candidate: ProgramEvaluation,
    reference: ProgramEvaluation,
    judge: PairwiseJudge,
    values: ValueSet,
    *,
    num_threads: int | None = None,
    progress: bool = True,
) -> ProgramEvaluation:
    """Judge ``candidate``'s responses against ``reference``'s on the prompts both answered; fills the win-rate fields.

    Failed comparisons are logged and left out (never counted as losses). Returns ``candidate``.

    Raises:
        PicacoError: the two evaluations share no prompt, or every comparison failed.
    """
    theirs = {r["prompt"]: r["response"] for r in reference.responses}
    pairs = [(r["prompt"], r["response"], theirs[r["prompt"]]) for r in candidate.responses if r["prompt"] in theirs]
    if not pairs:
        raise PicacoError(f"{candidate.label!r} and {reference.label!r} share no judged prompt; cannot compare them.")
    meter = UsageMeter()

    def compare(pair: tuple[str, str, str]):
        try:
            return judge.judge_pair(pair[0], pair[1], pair[2], values).score
        except JudgeError as exc:
            logger.warning("Pairwise comparison failed: %s", exc)
            return exc

    with meter.track("judge"):
        outcomes = parallel_map(compare, pairs, num_threads=num_threads, progress=progress)
    scores = [o for o in outcomes if not isinstance(o, Exception)]
    if not scores:
        raise PicacoError(f"Every pairwise comparison of {candidate.label!r} failed; see the log.")
    candidate.win_rate = float(np.mean(scores))
    candidate.win_rate_ci = bootstrap_ci(scores)
    candidate.win_rate_against = reference.label
    for role, usage in meter.snapshot().items():
        for key, value in usage.items():
            candidate.usage.setdefault(role, {}).setdefault(key, 0)
            candidate.usage[role][key] += value
    return candidate


def comparison_table(evaluations: Sequence[ProgramEvaluation], agreement: AgreementReport | None = None) -> str:
    """A Markdown table: one row per program, one column per value, then overall, CV and judged/failed counts.

    Args:
        evaluations: The programs' evaluations.
        agreement: The evaluation judge's agreement with human value labels
            (:func:`~picaco_dspy.evaluation.judge_agreement.measure_judge`); when given, a note under the table says
            how much its scores can be trusted.
    """
    if not evaluations:
        return ""
    names = list(evaluations[0].per_value)
    header = ["program", *names, "overall [95% CI]", "CV", "all >= 4", "win rate", "judged", "failed"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ev in evaluations:
        win = "-" if ev.win_rate is None else f"{ev.win_rate:.0%} vs {ev.win_rate_against}"
        cells = [
            ev.label,
            *(f"{ev.per_value[n]:.2f}" for n in names),
            f"{ev.overall:.2f} [{ev.overall_ci[0]:.2f}, {ev.overall_ci[1]:.2f}]",
            f"{ev.cv:.3f}",
            f"{ev.all_values_at_least_4:.0%}",
            win,
            str(ev.judged),
            str(ev.failed),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    if agreement is not None:
        rows += ["", f"Judge agreement: {agreement.trust_note()}"]
    return "\n".join(rows)


def _usage_since(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {role: {k: v - before[role][k] for k, v in counts.items()} for role, counts in after.items()}

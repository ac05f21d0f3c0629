"""How well a judge agrees with human value labels: rank correlation and pairwise ordering, per value and overall.

PICACO optimises what its judge says, so a judge that cannot tell a response that honours a value from one that does
not makes every number downstream noise. This module measures that against labelled data: for each query, several
responses with a human-derived label per value (higher: people who hold the value prefer the response more).

Two file formats are read (one JSON object per line):

- the simple format users can write: ``{"prompt": "...", "responses": ["...", ...], "labels": {"<value>": [one
  number per response], ...}}``;
- Value Portrait (Han et al., ACL 2025): ``{"prompt": ..., "meta": {"responses": [{"text": ..., "schwartz":
  {"<Value>": correlation, ...}}, ...]}}``, where each label is the Spearman correlation between raters' preference
  for the response and their score on a Schwartz value.

Value names are matched ignoring case, spaces, hyphens and underscores (``Self-direction`` is ``Self_Direction``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from picaco_dspy.errors import ConfigurationError, JudgeError
from picaco_dspy.evaluation.stats import bootstrap_ci
from picaco_dspy.objective.values import ValueSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledQuery:
    """One query, its responses, and one label per response for each value."""

    prompt: str
    responses: tuple[str, ...]
    labels: dict[str, tuple[float, ...]]


@dataclass(frozen=True)
class ValueAgreement:
    """Agreement on one value.

    Attributes:
        spearman: Mean over queries of the Spearman correlation between judge scores and labels (None when no query
            had two distinct scores and two distinct labels).
        interval: 95 % bootstrap interval of ``spearman`` over queries.
        pairwise_accuracy: Share of response pairs whose labels differ by at least the margin that the judge orders
            the same way (a tie in the judge's scores counts half).
        pairs: How many such pairs there were.
        queries: Queries that contributed a correlation.
    """

    spearman: float | None
    interval: tuple[float, float] | None
    pairwise_accuracy: float | None
    pairs: int
    queries: int


@dataclass
class AgreementReport:
    """Per-value and overall agreement of one judge (or any scorer) with the labels.

    ``judgements`` counts the responses scored, ``failed`` those whose judgement failed (left out, never scored).
    """

    name: str
    per_value: dict[str, ValueAgreement]
    overall: ValueAgreement
    seconds: float = 0.0
    judgements: int = 0
    failed: int = 0
    usage: dict[str, Any] = field(default_factory=dict)

    def row(self, width: int = 28) -> str:
        """One table row: name, mean Spearman [interval], pairwise accuracy, pairs."""
        return f"{self.name:<{width}} {_fmt(self.overall)}"

    @property
    def discriminates(self) -> bool:
        """The overall interval lies above 0: the judge orders responses by value better than chance here."""
        return self.overall.interval is not None and self.overall.interval[0] > 0

    def trust_note(self) -> str:
        """A sentence for readers of scores from this judge: how far its agreement with the labels goes."""
        measured = f"{self.name} agrees with human value labels at Spearman {_fmt(self.overall).strip()}"
        if self.discriminates:
            return (
                f"{measured}: it orders responses by value better than chance on these labels; differences smaller "
                "than the intervals above are still not evidence."
            )
        return (
            f"{measured}: the interval includes 0, so on these labels it does not order responses by value better "
            "than chance. Differences in its scores measure noise, not alignment; use a stronger judge model."
        )

    def per_value_lines(self) -> list[str]:
        """One line per value: mean Spearman [interval], pairwise accuracy, pairs."""
        return [f"  {name:<20} {_fmt(value)}" for name, value in self.per_value.items()]


def _fmt(agreement: ValueAgreement) -> str:
    if agreement.spearman is None or agreement.interval is None:
        return f"{'n/a':>26}"
    low, high = agreement.interval
    accuracy = "n/a" if agreement.pairwise_accuracy is None else f"{agreement.pairwise_accuracy:.3f}"
    return f"{agreement.spearman:+.3f} [{low:+.3f}, {high:+.3f}] {accuracy:>6} ({agreement.pairs} pairs)"


def agreement_table(reports: Sequence[AgreementReport]) -> str:
    """Reports side by side: overall mean Spearman [95 % CI], pairwise accuracy, time."""
    width = max([28, *(len(r.name) for r in reports)])
    lines = [f"{'judge':<{width}} {'Spearman [95% CI]':>26} {'pairwise':>6}   seconds"]
    for report in reports:
        failed = f"   {report.failed} judgements failed, left out" if report.failed else ""
        lines.append(f"{report.row(width)}   {report.seconds:.1f}{failed}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- loading
def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def load_labelled(path: str | Path, values: ValueSet, *, limit: int | None = None) -> list[LabelledQuery]:
    """Read a labelled file (simple or Value Portrait format) for the values of ``values``.

    Raises:
        ConfigurationError: the file is missing or malformed (naming the line), or it has no labels for a value of
            the set (naming the labels it has).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"labelled file {str(path)!r} does not exist.")
    queries: list[LabelledQuery] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ConfigurationError(f"{path}:{number} is not JSON ({exc}).") from None
            queries.append(_query(row, values, f"{path}:{number}"))
            if limit is not None and len(queries) >= limit:
                break
    if not queries:
        raise ConfigurationError(f"{path} holds no labelled queries.")
    return queries


def _query(row: Any, values: ValueSet, where: str) -> LabelledQuery:
    if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
        raise ConfigurationError(f"{where}: each line needs a 'prompt' string.")
    meta = row.get("meta")
    if "responses" not in row and isinstance(meta, dict) and isinstance(meta.get("responses"), list):
        items = meta["responses"]
        if not all(isinstance(i, dict) and isinstance(i.get("text"), str) for i in items):
            raise ConfigurationError(f"{where}: Value Portrait responses need 'text'.")
        responses = [i["text"] for i in items]
        available = {_key(k): k for k in (items[0].get("schwartz") or {})}
        raw_labels = {
            name: [float((i.get("schwartz") or {}).get(available.get(_key(name), ""), math.nan)) for i in items]
            for name in values.names
        }
    else:
        responses = row.get("responses")
        labels = row.get("labels")
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise ConfigurationError(f"{where}: 'responses' must be a list of strings.")
        if not isinstance(labels, dict):
            raise ConfigurationError(f"{where}: 'labels' must map value names to one number per response.")
        available = {_key(k): k for k in labels}
        raw_labels = {}
        for name in values.names:
            column = labels.get(available.get(_key(name), ""), None)
            if column is None:
                raw_labels[name] = [math.nan] * len(responses)
                continue
            if not isinstance(column, list) or len(column) != len(responses):
                raise ConfigurationError(f"{where}: labels for {name!r} must be one number per response.")
            raw_labels[name] = [float(x) for x in column]
    missing = [name for name, column in raw_labels.items() if all(math.isnan(x) for x in column)]
    if missing:
        raise ConfigurationError(
            f"{where}: no labels for {missing}; the file labels {sorted(available.values())}. Choose a value set "
            "whose values the file labels."
        )
    if len(responses) < 2:
        raise ConfigurationError(f"{where}: a query needs at least two responses to compare.")
    return LabelledQuery(row["prompt"], tuple(responses), {k: tuple(v) for k, v in raw_labels.items()})


# ---------------------------------------------------------------------------------------------- statistics
def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation with average ranks for ties; None when either side is constant."""
    a, b = _ranks(x), _ranks(y)
    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(values: Sequence[float]) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64)
    order = data.argsort(kind="mergesort")
    ranks = np.empty(len(data), dtype=np.float64)
    ranks[order] = np.arange(len(data), dtype=np.float64)
    for value in np.unique(data):
        tied = data == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _pairs(scores: Sequence[float], labels: Sequence[float], margin: float) -> tuple[float, int]:
    """(credit, count) over response pairs whose labels differ by at least ``margin``."""
    credit, count = 0.0, 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            gap = labels[i] - labels[j]
            if math.isnan(gap) or abs(gap) < margin:
                continue
            count += 1
            judged = scores[i] - scores[j]
            credit += 0.5 if judged == 0 else float((judged > 0) == (gap > 0))
    return credit, count


def agreement(
    scores: Sequence[dict[str, Sequence[float]]],
    queries: Sequence[LabelledQuery],
    *,
    name: str = "judge",
    margin: float = 0.1,
    seed: int = 0,
) -> AgreementReport:
    """Agreement of per-query, per-value scores (one per response) with the queries' labels.

    Args:
        scores: For each query, ``{value: [score per response]}`` (any monotone scale).
        queries: The labelled queries, in the same order.
        name: Label of the report.
        margin: Pairs whose labels differ by less are too close to call and are left out of pairwise accuracy.
        seed: Bootstrap seed.
    """
    if len(scores) != len(queries):
        raise ValueError(f"{len(scores)} score sets for {len(queries)} queries")
    names = list(queries[0].labels)
    table: dict[str, list[float]] = {n: [] for n in names}  # per value: one correlation per query (nan: none)
    credit = {n: [0.0, 0] for n in names}
    for query_scores, query in zip(scores, queries):
        for value in names:
            labels = query.labels[value]
            judged_all = query_scores[value]
            keep = [i for i, lab in enumerate(labels) if not (math.isnan(lab) or math.isnan(judged_all[i]))]
            judged = [float(judged_all[i]) for i in keep]
            rho = spearman(judged, [labels[i] for i in keep]) if len(keep) >= 2 else None
            table[value].append(math.nan if rho is None else rho)
            got, count = _pairs(judged, [labels[i] for i in keep], margin)
            credit[value][0] += got
            credit[value][1] += int(count)
    per_value = {v: _summarise(np.asarray(table[v]), *credit[v], seed=seed) for v in names}
    columns = np.asarray([table[v] for v in names], dtype=np.float64).T  # one row per query
    per_query = np.asarray([row[np.isfinite(row)].mean() if np.isfinite(row).any() else math.nan for row in columns])
    total_credit = sum(c[0] for c in credit.values())
    total_pairs = sum(int(c[1]) for c in credit.values())
    overall = _summarise(per_query, total_credit, total_pairs, seed=seed)
    return AgreementReport(name=name, per_value=per_value, overall=overall)


def _summarise(correlations: np.ndarray, credit: float, pairs: float, *, seed: int) -> ValueAgreement:
    finite = correlations[np.isfinite(correlations)]
    accuracy = credit / pairs if pairs else None
    if finite.size == 0:
        return ValueAgreement(None, None, accuracy, int(pairs), 0)
    low, high = bootstrap_ci(finite, seed=seed)
    return ValueAgreement(float(finite.mean()), (low, high), accuracy, int(pairs), int(finite.size))


QueryScores = dict[str, list[float]]
"""One query's scores: ``{value: [score per response]}``."""


def collect_scores(
    score: Callable[[str, str], dict[str, float]], queries: Sequence[LabelledQuery]
) -> list[QueryScores]:
    """Run ``score(prompt, response) -> {value: score}`` on every labelled response, grouped per query.

    A judgement that raises :class:`~picaco_dspy.errors.JudgeError` is logged and recorded as NaN for every value:
    :func:`agreement` leaves it out, as it does a missing label (a failed call never becomes a score).
    """
    collected = []
    for query in queries:
        per_response = []
        for response in query.responses:
            try:
                per_response.append(score(query.prompt, response))
            except JudgeError as exc:
                logger.warning("Judgement failed and is left out of the agreement: %s", exc)
                per_response.append(dict.fromkeys(query.labels, math.nan))
        collected.append({value: [float(s[value]) for s in per_response] for value in query.labels})
    return collected


def rank_ensemble(designs: Sequence[Sequence[QueryScores]]) -> list[QueryScores]:
    """Per query and value, each response's rank averaged over several designs' scores (scale-free ensemble)."""
    if not designs:
        raise ValueError("rank_ensemble needs at least one design's scores")
    combined = []
    for per_design in zip(*designs):
        combined.append(
            {
                value: [float(x) for x in np.mean([_ranks(d[value]) for d in per_design], axis=0)]
                for value in per_design[0]
            }
        )
    return combined


def contrast_scores(scores: Sequence[QueryScores]) -> list[QueryScores]:
    """Each response's score minus its mean over the values (see
    :func:`picaco_dspy.objective.value_readings.contrasted`)."""
    out = []
    for query_scores in scores:
        names = list(query_scores)
        matrix = np.asarray([query_scores[n] for n in names], dtype=np.float64)  # values x responses
        matrix = matrix - matrix.mean(axis=0, keepdims=True)
        out.append({n: [float(x) for x in matrix[k]] for k, n in enumerate(names)})
    return out


def judge_agreement(
    score: Callable[[str, str], dict[str, float]],
    queries: Sequence[LabelledQuery],
    *,
    name: str = "judge",
    margin: float = 0.1,
    seed: int = 0,
) -> AgreementReport:
    """Run ``score(prompt, response) -> {value: score}`` on every labelled response and measure its agreement.

    For a :class:`~picaco_dspy.objective.judge.ValueJudge`, pass
    ``lambda p, r: judge.judge(p, r, values).conformity``.
    """
    started = time.perf_counter()
    scores = collect_scores(score, queries)
    report = agreement(scores, queries, name=name, margin=margin, seed=seed)
    report.seconds = time.perf_counter() - started
    report.judgements = sum(len(q.responses) for q in queries)
    report.failed = sum(math.isnan(x) for query_scores in scores for x in next(iter(query_scores.values())))
    return report


def measure_judge(
    judge: Any,
    values: ValueSet,
    labels: str | Path | Sequence[LabelledQuery],
    *,
    limit: int | None = 20,
    margin: float = 0.1,
    name: str | None = None,
) -> AgreementReport:
    """Agreement of a :class:`~picaco_dspy.objective.judge.ValueJudge` with a labelled file, its LM calls counted.

    Use it next to an evaluation to show how much a difference in the judge's scores can be trusted; ``usage`` holds
    the judge's calls and tokens.

    Args:
        judge: The judge (anything with ``judge(prompt, response, values).conformity``).
        values: The value set it judges.
        labels: A labelled file (see :func:`load_labelled`), or queries already loaded from one.
        limit: Use only the first ``limit`` queries (None: all).
        margin: See :func:`agreement`.
        name: Label of the report (default: the judge's LM).

    Raises:
        ConfigurationError: the file is missing or malformed, before any judge call.
    """
    from picaco_dspy.runtime.usage import UsageMeter

    queries = load_labelled(labels, values, limit=limit) if isinstance(labels, str | Path) else list(labels)[:limit]
    meter = UsageMeter()
    label = name or f"judge {getattr(judge, 'model_name', None) or 'configured LM'}"
    with meter.track("judge"):
        report = judge_agreement(
            lambda prompt, response: judge.judge(prompt, response, values).conformity,
            queries,
            name=label,
            margin=margin,
        )
    report.usage = meter.snapshot()["judge"]
    return report

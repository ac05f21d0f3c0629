"""The per-value Pareto front over candidate instructions: which is best for each value, which are non-dominated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ValueFront:
    """The per-value comparison of candidate instructions.

    Attributes:
        source: Where the per-value scores come from: ``"valset"`` (fresh responses of the final selection) or
            ``"training samples"`` (the responses sampled under each instruction during the run; only instructions
            that responses were sampled under have them).
        scores: Per candidate instruction, per value, mean 1-5 conformity.
        best_per_value: Per value, the candidate(s) with the highest conformity.
        non_dominated: The candidates no other candidate matches or beats on every value while beating on one, in
            the order of ``scores``.
    """

    source: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    best_per_value: dict[str, list[str]] = field(default_factory=dict)
    non_dominated: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def value_front(source: str, scores: Mapping[str, Mapping[str, float]], values: Sequence[str]) -> ValueFront:
    """The Pareto front of ``scores`` (candidate -> value -> conformity) over ``values``.

    Candidates missing a value are left out of the front (they cannot be compared on it).
    """
    complete = {c: {v: float(s[v]) for v in values} for c, s in scores.items() if all(v in s for v in values)}
    best = {}
    for v in values:
        top = max((s[v] for s in complete.values()), default=None)
        best[v] = [c for c, s in complete.items() if top is not None and s[v] == top]
    front = [c for c, s in complete.items() if not any(_dominates(o, s, values) for o in complete.values())]
    return ValueFront(source, complete, best, front)


def _dominates(a: Mapping[str, float], b: Mapping[str, float], values: Sequence[str]) -> bool:
    return all(a[v] >= b[v] for v in values) and any(a[v] > b[v] for v in values)

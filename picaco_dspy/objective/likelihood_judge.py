"""A judge reading without generation: how much a response raises a language model's likelihood of each value.

For a response ``y`` to a prompt ``x`` and a value ``v_k`` stated as ``"<name>: <definition>"``, the score is the
pointwise mutual information between the response and the statement under a local causal LM:

    PMI_k(x, y) = mean log p(statement_k | x, y) - mean log p(statement_k | x, null response)

(nats per statement token). The statements of one response share the ``(x, y)`` prefix, so the reference model runs it
once and scores the K statements in one batch. ``contrast=True`` subtracts the mean over the set's values, so that a
response that raises every statement alike (talk about values in general) does not score high on each.

This is a design under measurement (``benchmarks/judge_agreement.py``); it is not yet a ``ValueJudge``.
"""

from __future__ import annotations

from collections.abc import Sequence

from picaco_dspy.objective.reference import LikelihoodRequest, LikelihoodScorer, ReferenceModel
from picaco_dspy.objective.values import ValueSet

_SYSTEM = "You read a conversation and name the human value that the assistant's response reflects."
_NULL = "(no response)"


class ValueStatementLikelihood:
    """Per-value PMI scores of a response under a local reference model.

    Args:
        reference: The model that scores statements (the embedded one by default).
        contrast: Subtract the mean PMI over the set's values.
    """

    def __init__(self, reference: LikelihoodScorer | None = None, *, contrast: bool = False) -> None:
        self.reference: LikelihoodScorer = reference or ReferenceModel("embedded", max_response_tokens=64)
        self.contrast = contrast

    @staticmethod
    def _user(prompt: str, response: str) -> str:
        return (
            f"User request:\n{prompt}\n\nAssistant response:\n{response}\n\n"
            "Which human value does the assistant's response reflect most?"
        )

    def scores(self, prompt: str, response: str, values: ValueSet) -> dict[str, float]:
        """``{value: PMI}`` for one response (higher: the response makes the value's statement more likely)."""
        statements = [f"{v.name}: {v.definition}" for v in values]
        with_response = [LikelihoodRequest(_SYSTEM, self._user(prompt, response), s) for s in statements]
        with_null = [LikelihoodRequest(_SYSTEM, self._user(prompt, _NULL), s) for s in statements]
        scored = self.reference.score(with_response + with_null)
        k = len(statements)
        pmi = [a.mean - b.mean for a, b in zip(scored[:k], scored[k:])]
        if self.contrast:
            centre = sum(pmi) / k
            pmi = [p - centre for p in pmi]
        return dict(zip(values.names, pmi))

    def score_many(self, items: Sequence[tuple[str, str]], values: ValueSet) -> list[dict[str, float]]:
        """Scores for several ``(prompt, response)`` pairs."""
        return [self.scores(p, r, values) for p, r in items]

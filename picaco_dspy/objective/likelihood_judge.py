"""A conformity judge that generates nothing: the value statements' likelihood under a local model (PMI).

:class:`LikelihoodJudge` is a :class:`~picaco_dspy.objective.judge.ValueJudge` whose per-value reading is
:class:`~picaco_dspy.objective.value_readings.ValueStatementLikelihood` (how much the response raises a local LM's
log-probability of a sentence stating the value, against a null response) instead of a question to an LM. It keeps
everything else of the judge: the canonicalised, fenced view of the response, and the lower score of the screened view
when the response addresses the evaluator. It makes no LM call, so it spends nothing of a budget of LM calls or
tokens; its forward passes are counted in the active usage meter's ``reference`` role (local likelihood work).
"""

from __future__ import annotations

import math
from typing import Any

import dspy

from picaco_dspy.objective.judge import Judgement, ValueJudge
from picaco_dspy.objective.judge_parsing import conformity_to_probability
from picaco_dspy.objective.reference import LikelihoodScorer
from picaco_dspy.objective.value_readings import ValueStatementLikelihood
from picaco_dspy.objective.values import ValueSet

# PMI in nats per statement token -> conformity 1 + 4 sigmoid(PMI / scale): no information (PMI 0) is the neutral 3,
# +0.5 nats per token (a large effect for a 135M model) is about 4.8. Fixed before measuring, never fitted.
PMI_SCALE = 0.25


class LikelihoodJudge(ValueJudge):
    """Per-value conformity from the PMI of each value statement given the response, under a local causal LM.

    Args:
        reference: The model that scores statements (default: the embedded model, responses cut at 64 tokens).
        scale: PMI (nats per token) that moves conformity from 3 to about 3.9; see :data:`PMI_SCALE`.
        **judge_kwargs: ``hardened``, ``max_response_chars`` as for :class:`ValueJudge`.
    """

    def __init__(self, reference: LikelihoodScorer | None = None, *, scale: float = PMI_SCALE, **judge_kwargs: Any):
        super().__init__(lm=None, mode="per_value", scale="yes_no", use_logprobs=False, **judge_kwargs)
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.scale = "likelihood"  # type: ignore[assignment]  # read by the run identity
        self.pmi_scale = float(scale)
        self.reading = ValueStatementLikelihood(reference)

    @property
    def model_name(self) -> str:
        """The judge's model as run identities and reports name it (``local/``: free, no price needed)."""
        return f"local/likelihood-{getattr(self.reading.reference, 'model_name', 'reference')}"

    def lm_calls_per_view(self, values: ValueSet) -> int:
        """No LM call: the statements are scored by the local reference model."""
        return 0

    def _judge_view(self, prompt: str, text: str, values: ValueSet) -> Judgement:
        tally = _Tally()
        pmi = self.reading.scores(prompt, text, values, usage=tally)
        meter = getattr(dspy.settings.usage_tracker, "meter", None)  # the UsageMeter of the block being tracked
        if meter is not None:
            meter.record("reference", calls=tally.calls, input_tokens=tally.input_tokens, cost_usd=0.0)
        conformity = {name: 1.0 + 4.0 / (1.0 + math.exp(-value / self.pmi_scale)) for name, value in pmi.items()}
        return Judgement(
            conformity=conformity,
            probabilities={name: conformity_to_probability(c) for name, c in conformity.items()},
            method="likelihood",
            attempts=0,
            raw=[f"{name}: PMI {value:+.4f}" for name, value in pmi.items()],
        )


class _Tally:
    """Collects what the reference model reports (its forward passes and tokens) for one judgement."""

    def __init__(self) -> None:
        self.calls = 0
        self.input_tokens = 0

    def record(self, role: str, *, calls: int = 1, input_tokens: int = 0, **_: Any) -> None:
        self.calls += calls
        self.input_tokens += int(input_tokens)

"""The total-correlation bound: PICACO's per-response reward and its instruction score ``J(e)``.

Per response (the paper's Response Enhancement score)::

    r(x, y) = beta * sum_k w_k log q_omega(v_k | x, y)  -  log q_phi(s | x, y)

Per instruction (Instruction Refinement), over each prompt's pool P_i (aligned + noisy responses)::

    J(e) = mean_i  sum_{y in P_i}  pi_e(y | x_i) r(x_i, y),   pi_e = softmax_{y in P_i}( lbar_e(y | x_i) / tau )

with ``lbar_e`` the reference model's length-normalised ``log p(y | e, x_i)``. The README derives both from the paper's
bound and lists where this implementation departs from it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dspy
import numpy as np

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.objective.judge import Judgement, ValueJudge
from picaco_dspy.objective.redundancy import RedundancyScorer
from picaco_dspy.objective.reference import LikelihoodRequest, LikelihoodScorer
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.runtime.usage import UsageMeter

logger = logging.getLogger(__name__)

# q_omega lies in [0.1, 0.9] (see judge_parsing.conformity_to_probability); q_phi in [0.5, 1] (see redundancy).
Q_OMEGA_RANGE = (0.1, 0.9)
Q_PHI_RANGE = (0.5, 1.0)


@dataclass(frozen=True)
class ResponseScore:
    """Everything the bound knows about one response.

    Attributes:
        conformity: Per value, the judge's 1-5 conformity.
        probabilities: Per value, ``q_omega(v_k|x,y)``.
        redundancy: ``q_phi(s|x,y)`` in [0.5, 1] (1 = parrots the value text); 0.5 when the term is switched off.
        reward: ``r(x, y)``.
        score: ``r`` mapped linearly onto [0, 1] (what DSPy optimisers see).
        screened: The response addressed the evaluator; its conformity is the lower of the response's and its
            screened view's (:attr:`Judgement.screened`).
    """

    conformity: dict[str, float]
    probabilities: dict[str, float]
    redundancy: float
    reward: float
    score: float
    screened: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "conformity": self.conformity,
            "probabilities": self.probabilities,
            "redundancy": self.redundancy,
            "reward": self.reward,
            "score": self.score,
            "screened": self.screened,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResponseScore:
        return cls(
            dict(data["conformity"]),
            dict(data["probabilities"]),
            float(data["redundancy"]),
            float(data["reward"]),
            float(data["score"]),
            bool(data.get("screened", False)),
        )


@dataclass(frozen=True)
class PoolItem:
    """A response of a prompt's pool with its reward (input to :meth:`TotalCorrelationBound.instruction_score`).

    Attributes:
        response: The response text.
        reward: Its ``r``.
        origin: The system text it was sampled under (needed by importance weighting).
    """

    response: str
    reward: float
    origin: str | None = None


@dataclass(frozen=True)
class InstructionScore:
    """``J(e)`` and its parts.

    Attributes:
        value: ``J(e)``, the mean over prompts of the likelihood-weighted pool reward.
        per_prompt: The weighted reward of each prompt's pool.
        weights: Per prompt, ``pi_e`` over its pool items (in the order given).
    """

    value: float
    per_prompt: list[float]
    weights: list[list[float]]


class TotalCorrelationBound:
    """PICACO's objective, usable as an ordinary DSPy metric.

    Args:
        values: The value composition (a :class:`ValueSet`, a built-in name or a file path).
        judge: The conformity judge ``q_omega``; None builds a :class:`ValueJudge` on the configured LM.
        reference: Reference model for ``J(e)`` (needed by the PICACO teleprompter, not by the per-response metric).
        redundancy: ``q_phi``: a :class:`RedundancyScorer`, an embedder name (``"embedded"``, ``"hashing"``,
            ``"litellm:<model>"``), or None to drop the term (the paper's "w/o q_phi" ablation).
        beta: Weight of the conformity term against the redundancy term.
        weight_temperature: ``tau`` of the softmax over a pool's length-normalised log-likelihoods.
        likelihood_weighting: What the softmax runs over. ``"importance"`` (default): ``lbar_e(y|x) - lbar_o(y|x)``,
            with ``o`` the instruction ``y`` was sampled under: self-normalised importance sampling of
            ``E_{y~p_e}[r]`` from the pooled samples, which removes the incumbent instruction's advantage (it made its
            own samples likely). ``"raw"``: ``lbar_e(y|x)``, the form the paper's notes give. ``"pmi"``:
            ``lbar_e(y|x) - lbar_0(y|x)``, the gain over the instruction-free prompt.
        prompt_field: Example field holding the prompt ``x``; None: the example's only input (or all inputs).
        response_field: Prediction field holding the response ``y``; None: ``response`` if present, else the last
            text output.
        success_threshold: With a ``trace`` (bootstrapping), the metric returns ``score >= success_threshold``.

    Examples:
        >>> metric = TotalCorrelationBound("liberalism-4", judge=ValueJudge(lm=judge_lm))
        >>> dspy.Evaluate(devset=dev, metric=metric)(program)
    """

    def __init__(
        self,
        values: ValueSet | str,
        judge: ValueJudge | None = None,
        reference: LikelihoodScorer | None = None,
        *,
        redundancy: RedundancyScorer | str | None = "embedded",
        beta: float = 1.0,
        weight_temperature: float = 1.0,
        likelihood_weighting: Literal["importance", "raw", "pmi"] = "importance",
        prompt_field: str | None = None,
        response_field: str | None = None,
        success_threshold: float = 0.7,
    ) -> None:
        self.values = ValueSet.resolve(values)
        if judge is not None and not isinstance(judge, ValueJudge):
            raise ConfigurationError(f"judge must be a ValueJudge, got {type(judge).__name__}.")
        self.judge = judge or ValueJudge()
        if reference is not None and not isinstance(reference, LikelihoodScorer):
            raise ConfigurationError("reference must have a score(requests, usage=None) method, e.g. ReferenceModel().")
        self.reference = reference
        if isinstance(redundancy, str):
            redundancy = RedundancyScorer(redundancy)
        if redundancy is not None and not isinstance(redundancy, RedundancyScorer):
            raise ConfigurationError("redundancy must be a RedundancyScorer, an embedder name, or None.")
        self.redundancy = redundancy
        if not _positive(beta):
            raise ConfigurationError(f"beta must be a positive number, got {beta!r}.")
        if not _positive(weight_temperature):
            raise ConfigurationError(f"weight_temperature must be a positive number, got {weight_temperature!r}.")
        if likelihood_weighting not in ("importance", "raw", "pmi"):
            raise ConfigurationError(
                f"likelihood_weighting must be 'importance', 'raw' or 'pmi', got {likelihood_weighting!r}."
            )
        if not 0 <= success_threshold <= 1:
            raise ConfigurationError(f"success_threshold must lie in [0, 1], got {success_threshold!r}.")
        self.beta = float(beta)
        self.weight_temperature = float(weight_temperature)
        self.likelihood_weighting = likelihood_weighting
        self.prompt_field = prompt_field
        self.response_field = response_field
        self.success_threshold = success_threshold
        self._weights = dict(zip(self.values.names, self.values.weights))

    # ------------------------------------------------------------------ the reward
    @property
    def reward_range(self) -> tuple[float, float]:
        """Smallest and largest possible ``r`` (used to map ``r`` onto [0, 1])."""
        total_weight = sum(self._weights.values())
        low = self.beta * total_weight * math.log(Q_OMEGA_RANGE[0])
        high = self.beta * total_weight * math.log(Q_OMEGA_RANGE[1])
        if self.redundancy is not None:
            low -= math.log(Q_PHI_RANGE[1])
            high -= math.log(Q_PHI_RANGE[0])
        return low, high

    def reward(self, probabilities: Mapping[str, float], redundancy: float | None) -> float:
        """``r = beta * sum_k w_k log q_k - log q_phi`` (the last term dropped when ``redundancy`` is None)."""
        missing = [n for n in self.values.names if n not in probabilities]
        if missing:
            raise ValueError(f"no probability for {missing}")
        conformity_term = sum(self._weights[n] * math.log(probabilities[n]) for n in self.values.names)
        value = self.beta * conformity_term
        if self.redundancy is not None and redundancy is not None:
            value -= math.log(redundancy)
        return value

    def normalise(self, reward: float) -> float:
        """Map ``r`` linearly onto [0, 1] using :attr:`reward_range`."""
        low, high = self.reward_range
        return min(1.0, max(0.0, (reward - low) / (high - low)))

    def score_judged(self, judgement: Judgement, redundancy: float | None) -> ResponseScore:
        """Combine a judgement and a ``q_phi`` into a :class:`ResponseScore`."""
        if self.redundancy is None:
            redundancy = None
        reward = self.reward(judgement.probabilities, redundancy)
        return ResponseScore(
            dict(judgement.conformity),
            dict(judgement.probabilities),
            Q_PHI_RANGE[0] if redundancy is None else float(redundancy),
            reward,
            self.normalise(reward),
            judgement.screened,
        )

    def redundancy_of(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        """``q_phi`` of each response (None for every response when the term is off)."""
        if self.redundancy is None:
            return [None] * len(responses)
        return [float(q) for q in self.redundancy.probability(self.values.observation_text(), responses, prompts)]

    def score_response(self, prompt: str, response: str) -> ResponseScore:
        """Judge one response and compute its reward."""
        judgement = self.judge.judge(prompt, response, self.values)
        return self.score_judged(judgement, self.redundancy_of([prompt], [response])[0])

    # ------------------------------------------------------------------ DSPy metric
    def __call__(
        self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
    ) -> dspy.Prediction | bool:
        """DSPy metric: ``Prediction(score in [0, 1], feedback, objective_scores={value: conformity 1-5})``.

        Raises:
            JudgeError: the judge failed (a failed judgement is never turned into a score).
        """
        prompt = prompt_text(gold, self.prompt_field)
        response = response_text(pred, self.response_field)
        scored = self.score_response(prompt, response)
        if trace is not None:
            return scored.score >= self.success_threshold
        return dspy.Prediction(
            score=scored.score, feedback=self.feedback(scored), objective_scores=dict(scored.conformity)
        )

    def feedback(self, scored: ResponseScore) -> str:
        """Readable feedback for reflective optimisers (GEPA): weak values first, then parroting."""
        ranked = sorted(scored.conformity.items(), key=lambda kv: kv[1])
        parts = ["Per-value conformity (1-5): " + ", ".join(f"{n} {c:.1f}" for n, c in self.values_in_order(scored))]
        weak = [n for n, c in ranked if c < 4]
        if weak:
            parts.append(
                "Neglected or weak values: " + ", ".join(weak) + ". Make the response act on them in substance."
            )
        else:
            parts.append("Every value is reflected well.")
        if self.redundancy is not None and scored.redundancy > 0.8:
            parts.append(
                f"The response parrots the value descriptions (similarity {scored.redundancy:.2f}); "
                "act on the values instead of naming them."
            )
        if scored.screened:
            parts.append(
                "The response addresses the evaluator (asks for scores or tells it to ignore its instructions); that "
                "text was discounted and can only lower the score. Write for the user only."
            )
        return " ".join(parts)

    def values_in_order(self, scored: ResponseScore) -> list[tuple[str, float]]:
        return [(n, scored.conformity[n]) for n in self.values.names]

    # ------------------------------------------------------------------ instruction score
    def instruction_score(
        self,
        instruction: str,
        pools: Sequence[tuple[str, Sequence[PoolItem]]],
        *,
        bare_instruction: str | None = None,
        usage: UsageMeter | None = None,
    ) -> InstructionScore:
        """``J(e)`` of the system text ``instruction`` over ``pools`` = [(prompt, pool items)].

        Raises:
            ConfigurationError: no reference model, PMI weighting without ``bare_instruction``, or importance
                weighting with pool items that lack their ``origin``.
        """
        if self.reference is None:
            raise ConfigurationError(
                "J(e) needs a reference model: TotalCorrelationBound(..., reference=ReferenceModel('embedded'))."
            )
        pools = [(prompt, list(items)) for prompt, items in pools if items]
        if not pools:
            raise ValueError("J(e) needs at least one non-empty pool")
        requests = [LikelihoodRequest(instruction, prompt, item.response) for prompt, items in pools for item in items]
        means = [lk.mean for lk in self.reference.score(requests, usage)]
        if self.likelihood_weighting != "raw":
            baselines = self._baseline_requests(pools, bare_instruction)
            means = [m - b.mean for m, b in zip(means, self.reference.score(baselines, usage))]
        per_prompt, weights, offset = [], [], 0
        for _, items in pools:
            logits = np.asarray(means[offset : offset + len(items)], dtype=np.float64) / self.weight_temperature
            offset += len(items)
            pi = np.exp(logits - logits.max())
            pi /= pi.sum()
            rewards = np.asarray([item.reward for item in items], dtype=np.float64)
            per_prompt.append(float(pi @ rewards))
            weights.append(pi.tolist())
        return InstructionScore(float(np.mean(per_prompt)), per_prompt, weights)

    def _baseline_requests(
        self, pools: Sequence[tuple[str, Sequence[PoolItem]]], bare_instruction: str | None
    ) -> list[LikelihoodRequest]:
        """What each response's log-likelihood is compared with: the bare prompt (PMI) or its own origin."""
        if self.likelihood_weighting == "pmi":
            if bare_instruction is None:
                raise ConfigurationError("likelihood_weighting='pmi' needs the instruction-free system text.")
            return [
                LikelihoodRequest(bare_instruction, prompt, item.response) for prompt, items in pools for item in items
            ]
        missing = sum(item.origin is None for _, items in pools for item in items)
        if missing:
            raise ConfigurationError(
                f"likelihood_weighting='importance' needs each pool item's origin instruction ({missing} lack one); "
                "set PoolItem.origin or use likelihood_weighting='raw'."
            )
        return [
            LikelihoodRequest(item.origin or "", prompt, item.response) for prompt, items in pools for item in items
        ]


def prompt_text(example: Any, field: str | None = None) -> str:
    """The prompt ``x`` of a DSPy example: ``field`` if given, else its only input, else ``name: value`` lines."""
    if field is not None:
        try:
            return str(example[field])
        except (KeyError, TypeError):
            raise ConfigurationError(f"The example has no field {field!r} (prompt_field).") from None
    try:
        inputs = dict(example.inputs())
    except (AttributeError, ValueError):
        raise ConfigurationError(
            "The example has no input keys: build examples with dspy.Example(...).with_inputs('query')."
        ) from None
    if not inputs:
        raise ConfigurationError("The example has no input keys: call .with_inputs(...) on it.")
    if len(inputs) == 1:
        return str(next(iter(inputs.values())))
    return "\n".join(f"{k}: {v}" for k, v in inputs.items())


def response_text(pred: Any, field: str | None = None) -> str:
    """The response ``y`` of a prediction: ``field`` if given, else ``response``, else the last text output."""
    if pred is None:
        raise ConfigurationError("The program returned no prediction.")
    if field is not None:
        value = pred.get(field) if hasattr(pred, "get") else getattr(pred, field, None)
        if value is None:
            raise ConfigurationError(f"The prediction has no field {field!r} (response_field).")
        return str(value)
    keys = list(pred.keys()) if hasattr(pred, "keys") else []
    if "response" in keys:
        return str(pred["response"])
    texts = [k for k in keys if isinstance(pred[k], str) and k not in ("reasoning", "rationale")]
    if not texts:
        raise ConfigurationError(
            f"The prediction has no text output (fields: {keys}); set response_field to the field holding the answer."
        )
    return str(pred[texts[-1]])


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0

"""Spending limits of a PICACO run and the guard that checks each phase's expected calls against them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from picaco_dspy.optimize.schedule import StepSettings
from picaco_dspy.runtime.usage import BUDGET_ROLES, call_cost

logger = logging.getLogger(__name__)

PROJECTION_MARGIN = 1.25  # later calls of a role are longer than its average so far


@dataclass(frozen=True)
class Budget:
    """Limits on what a run may spend on target + judge + proposer calls (None: no limit).

    Attributes:
        max_calls: LM calls.
        max_tokens: Input + output tokens.
        max_cost_usd: US dollars, priced from litellm's price table.
    """

    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.max_calls, self.max_tokens, self.max_cost_usd))

    def shortfall(
        self,
        spent: Mapping[str, Mapping[str, float]],
        expected: Mapping[str, int],
        prior: Mapping[str, Mapping[str, float]] | None = None,
    ) -> str | None:
        """Why the ``expected`` calls per role would break a limit, given what each role has ``spent`` (``calls``,
        ``total_tokens``, ``cost_usd``); None when they fit. Tokens and cost of the coming calls are projected from
        the same role's average call so far (a role without calls yet: the average of all calls; before any call:
        ``prior``, an estimate per role from prompt sizes and length caps, see :func:`estimate_calls`), times
        :data:`PROJECTION_MARGIN` because prompts grow as a run goes on (the proposer sees more history)."""
        totals = {k: sum(float(u.get(k, 0)) for u in spent.values()) for k in ("calls", "total_tokens", "cost_usd")}

        def projected(what: str) -> float:
            total = 0.0
            for role, n in expected.items():
                usage = spent.get(role) or {}
                calls = float(usage.get("calls", 0))
                if calls:
                    total += n * float(usage.get(what, 0)) / calls
                elif totals["calls"]:
                    total += n * totals[what] / totals["calls"]
                elif prior is not None:
                    total += n * float((prior.get(role) or {}).get(what, 0.0))
            return total * PROJECTION_MARGIN

        calls_needed = sum(expected.values())
        if self.max_calls is not None and totals["calls"] + calls_needed > self.max_calls:
            return f"{totals['calls']:.0f} of max_lm_calls={self.max_calls} spent, about {calls_needed} more needed"
        tokens_needed = projected("total_tokens")
        if self.max_tokens is not None and totals["total_tokens"] + tokens_needed > self.max_tokens:
            return (
                f"{totals['total_tokens']:.0f} of max_tokens={self.max_tokens} spent, about {tokens_needed:.0f} "
                "more needed"
            )
        cost_needed = projected("cost_usd")
        if self.max_cost_usd is not None and totals["cost_usd"] + cost_needed > self.max_cost_usd:
            return (
                f"${totals['cost_usd']:.4f} of max_cost_usd={self.max_cost_usd} spent, about ${cost_needed:.4f} "
                "more needed"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"max_lm_calls": self.max_calls, "max_tokens": self.max_tokens, "max_cost_usd": self.max_cost_usd}


CHARS_PER_TOKEN = 4  # a conservative average for English text; other scripts take more tokens per character
_ADAPTER_TOKENS = 150  # DSPy's field markers and format instructions around every prompt


def estimate_calls(
    *,
    prompt_chars: int,
    instruction_chars: int,
    response_tokens: int,
    value_chars: int,
    judge_calls_per_response: int,
    proposal_tokens: int = 400,
    proposer_context_chars: int = 6000,
    models: Mapping[str, str | None] | None = None,
) -> dict[str, dict[str, float]]:
    """Tokens and US dollars of one call per role, before any call was made: the budget's projection of the first
    phases (what the run's own averages replace as soon as there are some).

    Args:
        prompt_chars: The longest prompt ``x``, in characters.
        instruction_chars: The longest instruction the target sees (its own plus the meta-instruction).
        response_tokens: The target's output cap (its LM's ``max_tokens``).
        value_chars: The value set's names and definitions, in characters.
        judge_calls_per_response: 1 (joint judge) or the number of values (one call per value).
        proposal_tokens: The proposer's output cap.
        proposer_context_chars: What a proposer prompt holds besides the values (history, examples).
        models: Model name per role (``target``, ``judge``, ``proposer``) for prices; None or unpriced: cost 0.
    """
    per_value = value_chars // max(judge_calls_per_response, 1) if judge_calls_per_response > 1 else value_chars
    shapes = {  # (input tokens, output tokens) of one call
        "target": ((prompt_chars + instruction_chars) / CHARS_PER_TOKEN + _ADAPTER_TOKENS, response_tokens),
        "judge": ((prompt_chars + per_value) / CHARS_PER_TOKEN + response_tokens + 2 * _ADAPTER_TOKENS, 40),
        "proposer": ((value_chars + proposer_context_chars) / CHARS_PER_TOKEN + _ADAPTER_TOKENS, proposal_tokens),
    }
    estimates: dict[str, dict[str, float]] = {}
    for role, (input_tokens, output_tokens) in shapes.items():
        model = (models or {}).get(role)
        cost = call_cost(model, int(input_tokens), int(output_tokens)) if model else None
        estimates[role] = {"total_tokens": input_tokens + output_tokens, "cost_usd": cost or 0.0}
    return estimates


def iteration_cost(
    n_prompts: int, settings: StepSettings, judge_calls_per_response: int, teacher_samples: int = 0
) -> dict[str, int]:
    """Calls per role of one iteration: its samples (the student's and the teacher's, both counted as ``target``),
    each judged, and its proposals."""
    return phase_cost(
        rollouts=n_prompts * (settings.samples_per_prompt + teacher_samples),
        judge_calls_per_response=judge_calls_per_response,
        proposals=settings.num_candidates,
    )


def phase_cost(
    *, rollouts: int, judge_calls_per_response: int, proposals: int = 0, judged: int | None = None
) -> dict[str, int]:
    """Calls per role a phase is expected to make: ``rollouts`` responses, ``judged`` of them judged (default: all),
    and ``proposals``."""
    judged = rollouts if judged is None else judged
    return {"target": rollouts, "judge": judged * judge_calls_per_response, "proposer": proposals}


class BudgetGuard:
    """Checks each phase's expected calls against the :class:`Budget` before the phase runs.

    The decision is taken once per run through ``decide`` (so every worker and every resume agrees), from what the
    run's ledger says was spent. The first refusal is kept in :attr:`stop_reason`.

    Args:
        budget: The limits.
        decide: ``decide(kind, key_parts, compute)`` runs ``compute`` once per run and returns its stored value.
        ledger: The run's spending so far, per role (``calls``, ``total_tokens``, ``cost_usd``).
        prior: Tokens and cost of one call per role before any call was made (see :func:`estimate_calls`).
    """

    def __init__(
        self,
        budget: Budget,
        decide: Callable[[str, tuple[Any, ...], Callable[[], Any]], Any],
        ledger: Callable[[], Mapping[str, Mapping[str, float]]],
        prior: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        self.budget = budget
        self.prior = prior
        self._decide = decide
        self._ledger = ledger
        self.stopped = False
        self.stop_reason = ""

    def allows(self, expected: Mapping[str, int], phase: str) -> bool:
        """Whether the ``expected`` calls per role fit every limit."""
        if not self.budget.limited:
            return True

        def compute() -> dict[str, Any]:
            spent = self._ledger()
            return {"shortfall": self.budget.shortfall({r: spent[r] for r in BUDGET_ROLES}, expected, self.prior)}

        shortfall = self._decide("budget", (phase, self.budget.to_dict()), compute)["shortfall"]
        if shortfall is None:
            return True
        if not self.stopped:
            logger.info("Budget: %s: %s; stopping here", phase, shortfall)
            self.stop_reason = f"budget: {phase}: {shortfall}"
        self.stopped = True
        return False

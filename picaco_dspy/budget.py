"""Metered LMs: every call is counted under a role, and a shared LM-call budget is enforced before each call.

Used to run optimisers that are not ours (COPRO, MIPROv2, GEPA) on the same budget and cost accounting as PICACO:
their LMs are replaced by metered copies, so calls are attributed to target, judge or proposer as the engines serve
them, and once the budget is spent every further call raises :class:`BudgetExhausted` before reaching the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dspy

from picaco_dspy.errors import PicacoError
from picaco_dspy.usage import UsageMeter

BUDGET_ROLES = ("target", "judge", "proposer")


class BudgetExhausted(PicacoError):
    """The shared LM-call budget is spent; the call was not made."""


class _MeteredMixin:
    """Counts the LM's calls under ``_picaco_role`` and refuses calls once the budget is spent."""

    _picaco_meter: UsageMeter
    _picaco_role: str
    _picaco_max_calls: int | None

    def __call__(self, *args: Any, **kwargs: Any):
        _check_budget(self._picaco_meter, self._picaco_max_calls)
        with self._picaco_meter.track(self._picaco_role):
            return super().__call__(*args, **kwargs)

    async def acall(self, *args: Any, **kwargs: Any):
        _check_budget(self._picaco_meter, self._picaco_max_calls)
        with self._picaco_meter.track(self._picaco_role):
            return await super().acall(*args, **kwargs)


_CLASSES: dict[type, type] = {}


def metered(lm: dspy.BaseLM, role: str, meter: UsageMeter, max_calls: int | None = None) -> dspy.BaseLM:
    """A copy of ``lm`` whose calls count under ``role`` in ``meter`` and stop at ``max_calls`` in all roles.

    Copies made from it (``lm.copy(rollout_id=...)``) stay metered.
    """
    if role not in BUDGET_ROLES:
        raise ValueError(f"role must be one of {BUDGET_ROLES}, got {role!r}")
    base = type(lm)
    if issubclass(base, _MeteredMixin):
        base = next(c for c in base.__mro__[1:] if not issubclass(c, _MeteredMixin))
    cls = _CLASSES.setdefault(base, type(f"Metered{base.__name__}", (_MeteredMixin, base), {}))
    copy = lm.copy()
    copy.__class__ = cls
    copy._picaco_meter, copy._picaco_role, copy._picaco_max_calls = meter, role, max_calls
    return copy


def calls_spent(meter: UsageMeter) -> int:
    """Target + judge + proposer calls served so far."""
    usage = meter.snapshot()
    return sum(usage[role]["calls"] for role in BUDGET_ROLES)


def _check_budget(meter: UsageMeter, max_calls: int | None) -> None:
    if max_calls is not None and calls_spent(meter) >= max_calls:
        raise BudgetExhausted(f"the budget of {max_calls} LM calls is spent")


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

    def shortfall(self, spent: Mapping[str, float], expected_calls: int) -> str | None:
        """Why ``expected_calls`` more calls would break a limit, given ``spent`` (calls, tokens, cost_usd); None
        when they fit. Tokens and cost of the coming calls are projected from the average call so far."""
        calls, tokens, cost = int(spent["calls"]), int(spent["tokens"]), float(spent["cost_usd"])
        tokens_per_call = tokens / calls if calls else 0.0
        cost_per_call = cost / calls if calls else 0.0
        if self.max_calls is not None and calls + expected_calls > self.max_calls:
            return f"{calls} of max_lm_calls={self.max_calls} spent, about {expected_calls} more needed"
        if self.max_tokens is not None and tokens + expected_calls * tokens_per_call > self.max_tokens:
            return (f"{tokens} of max_tokens={self.max_tokens} spent, about "
                    f"{expected_calls * tokens_per_call:.0f} more needed")
        if self.max_cost_usd is not None and cost + expected_calls * cost_per_call > self.max_cost_usd:
            return (f"${cost:.4f} of max_cost_usd={self.max_cost_usd} spent, about "
                    f"${expected_calls * cost_per_call:.4f} more needed")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"max_lm_calls": self.max_calls, "max_tokens": self.max_tokens, "max_cost_usd": self.max_cost_usd}

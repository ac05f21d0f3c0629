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
PROJECTION_MARGIN = 1.25  # later calls of a role are longer than its average so far


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

    def shortfall(self, spent: Mapping[str, Mapping[str, float]], expected: Mapping[str, int]) -> str | None:
        """Why the ``expected`` calls per role would break a limit, given what each role has ``spent`` (``calls``,
        ``total_tokens``, ``cost_usd``); None when they fit. Tokens and cost of the coming calls are projected from
        the same role's average call so far (a role without calls yet: the average of all calls), times
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
            return total * PROJECTION_MARGIN

        calls_needed = sum(expected.values())
        if self.max_calls is not None and totals["calls"] + calls_needed > self.max_calls:
            return f"{totals['calls']:.0f} of max_lm_calls={self.max_calls} spent, about {calls_needed} more needed"
        tokens_needed = projected("total_tokens")
        if self.max_tokens is not None and totals["total_tokens"] + tokens_needed > self.max_tokens:
            return (f"{totals['total_tokens']:.0f} of max_tokens={self.max_tokens} spent, about {tokens_needed:.0f} "
                    "more needed")
        cost_needed = projected("cost_usd")
        if self.max_cost_usd is not None and totals["cost_usd"] + cost_needed > self.max_cost_usd:
            return (f"${totals['cost_usd']:.4f} of max_cost_usd={self.max_cost_usd} spent, about ${cost_needed:.4f} "
                    "more needed")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"max_lm_calls": self.max_calls, "max_tokens": self.max_tokens, "max_cost_usd": self.max_cost_usd}

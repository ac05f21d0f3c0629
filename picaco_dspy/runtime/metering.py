"""Metered LMs: every call is counted under a role, and a shared LM-call budget is enforced before each call.

Used to run optimisers that are not ours (COPRO, MIPROv2, GEPA) on the same budget and cost accounting as PICACO:
their LMs are replaced by metered copies, so calls are attributed to target, judge or proposer as the engines serve
them, and once the budget is spent every further call raises :class:`BudgetExhausted` before reaching the engine.
"""

from __future__ import annotations

from typing import Any

import dspy

from picaco_dspy.errors import PicacoError
from picaco_dspy.runtime.usage import BUDGET_ROLES, UsageMeter


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
            return super().__call__(*args, **kwargs)  # type: ignore[misc]  # the LM class it is mixed into

    async def acall(self, *args: Any, **kwargs: Any):
        _check_budget(self._picaco_meter, self._picaco_max_calls)
        with self._picaco_meter.track(self._picaco_role):
            return await super().acall(*args, **kwargs)  # type: ignore[misc]


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

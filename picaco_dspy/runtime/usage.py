"""Counting LM calls, tokens and cost per role (target, judge, proposer, reference model).

Cost comes from litellm's price table (``litellm.model_cost``, extendable with ``litellm.register_model``). Models
served in-process by :class:`~picaco_dspy.models.engine.TransformersEngine` (``local/...``) cost nothing; a call to a
model without a price is counted in ``unpriced_calls``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

import dspy

ROLES = ("target", "judge", "proposer", "reference")
BUDGET_ROLES = ("target", "judge", "proposer")  # the LM calls budgets limit (the reference model runs locally)


SpendHook = Callable[[str, Mapping[str, Any]], None]
_SPEND_HOOK: ContextVar[SpendHook | None] = ContextVar("picaco_spend_hook", default=None)


@contextmanager
def journal_spend(hook: SpendHook) -> Iterator[None]:
    """Call ``hook(role, usage)`` for every LM call counted in this thread inside the block, as soon as it returns
    (the run store journals it, so a process killed mid-job still leaves what it paid in the ledger)."""
    token = _SPEND_HOOK.set(hook)
    try:
        yield
    finally:
        _SPEND_HOOK.reset(token)


def journal(role: str, usage: Mapping[str, Any]) -> None:
    """Hand ``usage`` of one paid call to the journal of the current job, if one is installed."""
    hook = _SPEND_HOOK.get()
    if hook is not None and usage.get("calls"):
        hook(role, usage)


@dataclass
class RoleUsage:
    """Calls and tokens one role has spent.

    Attributes:
        calls: Requests the engine or provider actually served (cache hits are not counted: they cost nothing).
        input_tokens: Prompt tokens the provider reported.
        output_tokens: Completion tokens the provider reported.
        failed_calls: Calls that raised (their partial usage, if any, is included in the token counts).
        cost_usd: Price of the calls in US dollars, from litellm's price table.
        unpriced_calls: Calls to a model litellm has no price for (not included in ``cost_usd``).
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    failed_calls: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


class UsageMeter:
    """Thread-safe per-role usage counter.

    An instance is installed as DSPy's ``usage_tracker`` for the calls of one role (see :meth:`track`). DSPy calls
    :meth:`add_usage` once for every call that reached the engine and never for a cache hit, so ``calls`` equals what
    the engine saw. DSPy deep-copies the tracker into worker threads; :meth:`__deepcopy__` returns the meter itself so
    counts from every thread land in one place.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage: dict[str, RoleUsage] = {role: RoleUsage() for role in ROLES}

    def __deepcopy__(self, memo: dict[int, Any]) -> UsageMeter:
        return self

    @contextmanager
    def track(self, role: str) -> Iterator[None]:
        """Route the LM calls made inside the block (and in DSPy worker threads it starts) to ``role``."""
        if role not in self._usage:
            raise ValueError(f"Unknown role {role!r}; roles are {ROLES}.")
        outer = dspy.settings.usage_tracker
        if isinstance(outer, _RoleTracker) and outer.meter is self:
            outer = outer.outer  # re-entering the same meter: count once, under the innermost role
        with dspy.context(usage_tracker=_RoleTracker(self, role, outer)):
            yield

    def record(
        self,
        role: str,
        *,
        calls: int = 1,
        input_tokens: int = 0,
        output_tokens: int = 0,
        failed: bool = False,
        cost_usd: float | None = 0.0,
    ) -> None:
        """Add one observation (used directly by the reference model, which is not a DSPy LM).

        ``cost_usd=None`` means the model has no price: the calls are counted as unpriced.
        """
        with self._lock:
            usage = self._usage[role]
            usage.calls += calls
            usage.input_tokens += int(input_tokens or 0)
            usage.output_tokens += int(output_tokens or 0)
            usage.failed_calls += int(failed)
            if cost_usd is None:
                usage.unpriced_calls += calls
            else:
                usage.cost_usd += float(cost_usd)

    def role(self, role: str) -> RoleUsage:
        with self._lock:
            u = self._usage[role]
            return RoleUsage(u.calls, u.input_tokens, u.output_tokens, u.failed_calls, u.cost_usd, u.unpriced_calls)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """JSON-ready copy of all counters."""
        with self._lock:
            return {role: usage.to_dict() for role, usage in self._usage.items()}


class _RoleTracker:
    """DSPy usage-tracker facade that forwards to one role of a :class:`UsageMeter`.

    A tracker the caller had installed (``with dspy.track_usage():``) keeps receiving the usage too.
    """

    def __init__(self, meter: UsageMeter, role: str, outer: Any = None) -> None:
        self.meter = meter
        self.role = role
        self.outer = outer

    def __deepcopy__(self, memo: dict[int, Any]) -> _RoleTracker:
        return self

    def add_usage(self, model: str, usage: Mapping[str, Any] | None) -> None:
        usage = dict(usage or {})
        input_tokens = usage.get("prompt_tokens", usage.get("input_tokens")) or 0
        output_tokens = usage.get("completion_tokens", usage.get("output_tokens")) or 0
        cost = call_cost(model, int(input_tokens), int(output_tokens))
        self.meter.record(self.role, input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost)
        if not isinstance(self.outer, _RoleTracker):  # nested trackers see the same call: journal it once
            journal(
                self.role,
                {"calls": 1, "input_tokens": input_tokens, "output_tokens": output_tokens, "cost_usd": cost or 0.0},
            )
        if self.outer is not None:
            self.outer.add_usage(model, usage)

    def get_total_tokens(self) -> dict[str, Any]:  # DSPy's tracker interface; totals live in the meter
        return {}


def price_per_token(model: str) -> tuple[float, float] | None:
    """(input, output) US dollars per token of ``model`` from litellm's price table; None when it has no price.

    ``local/...`` models (served in-process) are free. A provider prefix (``openai/gpt-4o-mini``) is tried with and
    without the prefix.
    """
    if model.startswith("local/"):
        return 0.0, 0.0
    import litellm

    for name in (model, model.split("/", 1)[-1]):
        info = litellm.model_cost.get(name)
        if info and ("input_cost_per_token" in info or "output_cost_per_token" in info):
            return float(info.get("input_cost_per_token") or 0.0), float(info.get("output_cost_per_token") or 0.0)
    return None


def call_cost(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """Price of one call in US dollars, or None when ``model`` has no price."""
    price = price_per_token(model)
    if price is None:
        return None
    return input_tokens * price[0] + output_tokens * price[1]

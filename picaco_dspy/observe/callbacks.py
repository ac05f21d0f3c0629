"""Callbacks: progress events of a PICACO run, delivered to observer objects (dashboards, trackers, tests).

Event names and the one-``TypedDict``-per-event style follow GEPA's callbacks (``gepa.core.callbacks``). A callback is
any object with some of the ``on_*`` methods; :class:`PICACOCallback` provides no-op defaults to subclass.

Failure policy: a callback that raises never stops the run. :func:`dispatch` logs the exception (with its traceback,
through ``logging.getLogger(__name__).exception``) and goes on with the next callback and the run, because a broken
dashboard or an unreachable tracking server must not waste the LM calls a run has already paid for. Only
:class:`Exception` is caught: ``KeyboardInterrupt`` and ``SystemExit`` still stop the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from dspy.utils.callback import BaseCallback

if TYPE_CHECKING:  # no runtime import: the run loop imports this module, and result.py lives in its package
    from picaco_dspy.optimize.result import IterationRecord, PICACOResult

logger = logging.getLogger(__name__)


class OptimizationStartEvent(TypedDict):
    """Sent once, before the first paid call.

    Attributes:
        run_name: The run's name in the run storage.
        config: The run's configuration (``PICACOResult.config``: settings, models, budget).
        values: The value names, in the value set's order.
        seed_instruction: The meta-instruction the run starts from.
        schedule: The schedule (``Schedule.to_dict()``).
    """

    run_name: str
    config: dict[str, Any]
    values: list[str]
    seed_instruction: str
    schedule: dict[str, Any]


class NoisyPoolBuiltEvent(TypedDict):
    """Sent once the noisy pool is built (never when ``noisy_pool_size`` is 0).

    Attributes:
        noisy_pool: ``PICACOResult.noisy_pool``: ``sampled``, ``kept``, ``failed``, ``mean_redundancy``.
        result: The run's result so far.
    """

    noisy_pool: dict[str, Any]
    result: PICACOResult


class IterationEndEvent(TypedDict):
    """Sent after each iteration is recorded (``record`` is ``result.iterations[-1]``).

    Attributes:
        iteration: 1-based iteration index.
        record: The iteration's record (J, gain, mean reward, per-value conformity, cumulative usage per role...).
        result: The run's result so far.
    """

    iteration: int
    record: IterationRecord
    result: PICACOResult


class OptimizationEndEvent(TypedDict):
    """Sent once at the end of the run, also when it fails.

    Attributes:
        result: The run's result (complete, or what was done before the failure).
        error: Present only when the run raised: the exception, which propagates after the callbacks ran.
    """

    result: PICACOResult
    error: NotRequired[BaseException]


EVENT_NAMES = ("on_optimization_start", "on_noisy_pool_built", "on_iteration_end", "on_optimization_end")


class PICACOCallback(BaseCallback):
    """Base class of PICACO callbacks: every method is a no-op; override the events you need.

    It is a DSPy ``BaseCallback`` too, because ``PICACO(callbacks=...)`` is also the teleprompter's DSPy callback
    list: DSPy tells the same objects ``on_compile_start`` / ``on_compile_end``, and a plain DSPy callback given there
    hears those DSPy events (PICACO's own events reach only the objects that define them).

    Callbacks observe and must not modify the events' objects. They run synchronously in the thread that runs
    ``PICACO.compile``, so a slow callback slows the run.
    """

    def on_optimization_start(self, event: OptimizationStartEvent) -> None:
        """Called once, before the first paid call."""

    def on_noisy_pool_built(self, event: NoisyPoolBuiltEvent) -> None:
        """Called once the noisy pool is built."""

    def on_iteration_end(self, event: IterationEndEvent) -> None:
        """Called after each iteration."""

    def on_optimization_end(self, event: OptimizationEndEvent) -> None:
        """Called once at the end of the run, whether it succeeded or raised."""


def dispatch(callbacks: Iterable[object], name: str, event: Mapping[str, Any]) -> None:
    """Call ``callback.<name>(event)`` on each callback, in order; a callback that raises is logged and skipped.

    Callbacks without the method are skipped (any object with some ``on_*`` methods is a callback).

    Raises:
        ValueError: ``name`` is not one of :data:`EVENT_NAMES` (a wiring mistake, not a callback failure).
    """
    if name not in EVENT_NAMES:
        raise ValueError(f"Unknown callback event {name!r}; events are {EVENT_NAMES}.")
    for callback in callbacks:
        method = getattr(callback, name, None)
        if method is None:
            continue
        try:
            method(event)
        except Exception:
            logger.exception("Callback %s failed in %s; the run goes on without it", type(callback).__name__, name)


class CallbackList(PICACOCallback):
    """Several callbacks behind one: each event goes to every callback in order, with :func:`dispatch`'s policy."""

    def __init__(self, callbacks: Iterable[object] = ()) -> None:
        self.callbacks: list[object] = list(callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def on_optimization_start(self, event: OptimizationStartEvent) -> None:
        dispatch(self.callbacks, "on_optimization_start", event)

    def on_noisy_pool_built(self, event: NoisyPoolBuiltEvent) -> None:
        dispatch(self.callbacks, "on_noisy_pool_built", event)

    def on_iteration_end(self, event: IterationEndEvent) -> None:
        dispatch(self.callbacks, "on_iteration_end", event)

    def on_optimization_end(self, event: OptimizationEndEvent) -> None:
        dispatch(self.callbacks, "on_optimization_end", event)

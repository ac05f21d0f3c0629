"""Every alignment method behind one call, on a shared LM-call budget with the same cost accounting.

Methods: ``Q`` (program as given), ``Q+IF`` (plain value instruction), ``URIAL`` (fixed alignment prompt and examples),
``OPRO``, ``PICACO``, and DSPy's ``COPRO``, ``MIPROv2`` (zero-shot) and ``GEPA`` driven by
:class:`TotalCorrelationBound` as their metric. The LMs a method gets are metered copies (:func:`metered`), so calls
and tokens are counted per role as the engines serve them; the DSPy optimisers are also stopped by the budget
(further calls raise :class:`BudgetExhausted`, which they treat as failed evaluations), and their best program so far
is kept. OPRO and PICACO stop themselves before a step that would not fit the budget.

Every method runs in :func:`fresh_lm_cache`: an empty, memory-only ``dspy.cache`` of its own (and PICACO in a private
temporary run storage), so it pays for every LM call it makes, whatever ran before it in the same process and
whatever earlier runs left in DSPy's disk cache.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.clients.cache import Cache

from picaco_dspy.baselines.fixed import bare_program, urial_program, value_instruction_program
from picaco_dspy.baselines.opro import OPRO
from picaco_dspy.errors import ConfigurationError, PicacoError
from picaco_dspy.objective.bound import TotalCorrelationBound
from picaco_dspy.runtime.metering import calls_spent, metered
from picaco_dspy.runtime.usage import UsageMeter
from picaco_dspy.teleprompter import PICACO

logger = logging.getLogger(__name__)

METHODS = ("Q", "Q+IF", "URIAL", "OPRO", "COPRO", "MIPROv2", "GEPA", "PICACO")


@dataclass
class MethodRun:
    """The outcome of one method.

    Attributes:
        method: Its name.
        program: The aligned program (None when the method failed).
        usage: Calls and tokens per role spent optimising (evaluation is counted separately).
        wall_seconds: Optimisation time.
        budget_stopped: The budget ended the optimisation.
        error: Why the method failed, if it did.
        instructions: The final instructions of the program's predictors.
    """

    method: str
    program: dspy.Module | None
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    budget_stopped: bool = False
    error: str | None = None
    instructions: dict[str, str] = field(default_factory=dict)


@dataclass
class MethodContext:
    """What every method gets: the student, data, objective, models and budget."""

    student: dspy.Module
    trainset: Sequence[dspy.Example]
    valset: Sequence[dspy.Example] | None
    metric: TotalCorrelationBound
    target_lm: dspy.BaseLM
    judge_lm: dspy.BaseLM
    prompt_model: dspy.BaseLM
    max_lm_calls: int
    adapter: Any = None
    num_threads: int | None = 1
    seed: int = 0
    progress: bool = False
    picaco_kwargs: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def fresh_lm_cache() -> Iterator[Cache]:
    """Route every DSPy LM call in the block through a new, empty, memory-only cache; restore the previous one after.

    No answer paid for before the block (by another method, or stored on disk by an earlier run) is served inside
    it, and no answer paid for inside it outlives it. Identical requests within the block are still served from
    memory, as in any standalone DSPy run that starts with an empty cache. The swap is process-wide (DSPy's worker
    threads see it too), so run one block at a time.

    Yields:
        The cache DSPy uses inside the block.
    """
    had_cache = "cache" in vars(dspy)  # dspy builds its default cache lazily, on first read
    previous = vars(dspy).get("cache")
    isolated = Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None)
    dspy.cache = isolated
    try:
        yield isolated
    finally:
        if had_cache:
            dspy.cache = previous
        else:
            del dspy.cache  # back to DSPy's lazy default


def run_method(name: str, context: MethodContext) -> MethodRun:
    """Run one method on ``context``; a failure is reported in the result, not raised (other methods go on).

    The method runs in :func:`fresh_lm_cache` and with the reference model's memoised scores dropped, so its usage
    is everything it paid for, exactly as if it ran alone.

    Raises:
        ConfigurationError: unknown method name.
    """
    if name not in RUNNERS:
        raise ConfigurationError(f"Unknown method {name!r}; choose from {', '.join(METHODS)}.")
    meter = UsageMeter()
    target = metered(context.target_lm, "target", meter, context.max_lm_calls)
    judge_lm = metered(context.judge_lm, "judge", meter, context.max_lm_calls)
    proposer = metered(context.prompt_model, "proposer", meter, context.max_lm_calls)
    metric = copy.copy(context.metric)
    metric.judge = copy.copy(context.metric.judge)
    metric.judge.lm = judge_lm
    started = time.monotonic()
    run = MethodRun(name, None)
    overrides: dict[str, Any] = {"lm": target}
    if context.adapter is not None:
        overrides["adapter"] = context.adapter
    forget_reference_scores = getattr(metric.reference, "forget", None)
    if callable(forget_reference_scores):
        forget_reference_scores()
    try:
        with fresh_lm_cache(), dspy.context(**overrides):
            run.program = RUNNERS[name](context, metric, proposer)
    except Exception as exc:  # reported per method; the comparison goes on
        run.error = f"{type(exc).__name__}: {exc}"
        logger.warning("Method %s failed: %s", name, run.error)
    run.usage = meter.snapshot()
    picaco_result = getattr(run.program, "picaco_result", None)
    if picaco_result is not None:  # the reference model is local compute, metered by PICACO itself
        run.usage["reference"] = dict(picaco_result.usage["reference"])
    run.wall_seconds = round(time.monotonic() - started, 3)
    own_flags = [
        getattr(getattr(run.program, attr, None), "budget_stopped", False) for attr in ("opro_result", "picaco_result")
    ]
    run.budget_stopped = calls_spent(meter) >= context.max_lm_calls or any(own_flags)
    if run.program is not None:
        run.instructions = {n: p.signature.instructions for n, p in run.program.named_predictors()}
    return run


# ---------------------------------------------------------------------------------------------------- runners
def _q(context: MethodContext, metric: TotalCorrelationBound, proposer: dspy.BaseLM) -> dspy.Module:
    return bare_program(context.student)


def _q_if(context: MethodContext, metric: TotalCorrelationBound, proposer: dspy.BaseLM) -> dspy.Module:
    return value_instruction_program(context.student, metric.values)


def _urial(context: MethodContext, metric: TotalCorrelationBound, proposer: dspy.BaseLM) -> dspy.Module:
    return urial_program(context.student, metric.values)


def _opro(context: MethodContext, metric: TotalCorrelationBound, proposer: dspy.BaseLM) -> dspy.Module:
    optimizer = OPRO(
        metric=metric,
        prompt_model=proposer,
        num_steps=1000,
        max_lm_calls=context.max_lm_calls,
        num_threads=context.num_threads,
        seed=context.seed,
        progress=context.progress,
    )
    return optimizer.compile(context.student, trainset=context.trainset)


def _picaco(context: MethodContext, metric: TotalCorrelationBound, proposer: dspy.BaseLM) -> dspy.Module:
    settings = {
        "num_iterations": 3,
        "num_candidates": 3,
        "aligned_pool_size": 3,
        "noisy_pool_size": 1,
        "noisy_samples_per_prompt": 2,
        "samples_per_prompt": 1,
        **context.picaco_kwargs,
    }
    optimizer = PICACO(
        metric=metric,
        prompt_model=proposer,
        num_threads=context.num_threads,
        seed=context.seed,
        progress=context.progress,
        max_lm_calls=context.max_lm_calls,
        storage=None,  # a comparison pays for its own run, like every other method (no replay of a stored run)
        **settings,
    )
    return optimizer.compile(context.student, trainset=context.trainset, valset=context.valset)


def _seeded_student(context: MethodContext, metric: TotalCorrelationBound) -> dspy.Module:
    """DSPy's optimisers start from the plain value instruction, like PICACO and OPRO."""
    return value_instruction_program(context.student, metric.values)


def _evaluation_cost(examples: Sequence[dspy.Example], metric: TotalCorrelationBound) -> int:
    """LM calls to run and judge a program once on ``examples``."""
    return len(examples) * (1 + metric.judge.lm_calls_per_view(metric.values))


def _copro(context: MethodContext, metric: TotalCorrelationBound, proposer: dspy.BaseLM) -> dspy.Module:
    breadth = 4
    per_depth = breadth * _evaluation_cost(context.trainset, metric) + breadth
    depth = max(1, context.max_lm_calls // per_depth)  # COPRO re-scores every candidate on the trainset each depth
    optimizer = dspy.COPRO(prompt_model=proposer, metric=metric, breadth=breadth, depth=depth, init_temperature=1.0)
    return _keep_best_on_budget(
        lambda: optimizer.compile(
            _seeded_student(context, metric),
            trainset=list(context.trainset),
            eval_kwargs={"num_threads": context.num_threads or 1, "display_progress": False},
        ),
        context,
        metric,
    )


def _miprov2(context: MethodContext, metric: TotalCorrelationBound, proposer: dspy.BaseLM) -> dspy.Module:
    optimizer = dspy.MIPROv2(
        metric=metric,
        prompt_model=proposer,
        task_model=dspy.settings.lm,
        auto=None,
        num_candidates=4,
        max_bootstrapped_demos=0,
        max_labeled_demos=0,
        num_threads=context.num_threads or 1,
        seed=context.seed + 1,
        verbose=False,
        max_errors=10**9,
    )
    valset = list(context.valset or context.trainset)
    trials = max(1, context.max_lm_calls // _evaluation_cost(valset, metric))
    return _keep_best_on_budget(
        lambda: optimizer.compile(
            _seeded_student(context, metric),
            trainset=list(context.trainset),
            valset=valset,
            num_trials=trials,
            minibatch=False,
        ),
        context,
        metric,
    )


def _gepa(context: MethodContext, metric: TotalCorrelationBound, proposer: dspy.BaseLM) -> dspy.Module:
    optimizer = dspy.GEPA(
        metric=metric,
        max_metric_calls=max(len(context.trainset), context.max_lm_calls),
        reflection_lm=proposer,
        num_threads=context.num_threads or 1,
        seed=context.seed,
        track_stats=False,
        warn_on_score_mismatch=False,
    )
    valset = list(context.valset or context.trainset)
    return _keep_best_on_budget(
        lambda: optimizer.compile(_seeded_student(context, metric), trainset=list(context.trainset), valset=valset),
        context,
        metric,
    )


def _keep_best_on_budget(
    compile_fn: Callable[[], dspy.Module], context: MethodContext, metric: TotalCorrelationBound
) -> dspy.Module:
    """Run an external optimiser; if it dies at the budget without a program, fall back to its seed program."""
    try:
        return compile_fn()
    except PicacoError:
        raise
    except Exception as exc:
        if "budget" in str(exc).lower() or "cancelled" in str(exc).lower():
            logger.warning("Optimiser stopped at the budget without returning a program; keeping its seed (%s)", exc)
            return _seeded_student(context, metric)
        raise


RUNNERS: dict[str, Callable[[MethodContext, TotalCorrelationBound, dspy.BaseLM], dspy.Module]] = {
    "Q": _q,
    "Q+IF": _q_if,
    "URIAL": _urial,
    "OPRO": _opro,
    "COPRO": _copro,
    "MIPROv2": _miprov2,
    "GEPA": _gepa,
    "PICACO": _picaco,
}

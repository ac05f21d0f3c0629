"""The PICACO algorithm (Jiang et al., arXiv 2507.16679, Algorithm 1) over a run session.

noisy pool of bare responses -> T x (Response Enhancement, Instruction Refinement) -> final selection.
Every paid step goes through the :class:`~picaco_dspy.runtime.session.RunSession`, which keeps it once; this module
holds the order of the steps and the stopping rules only.
"""

from __future__ import annotations

import logging
import time

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.observe.callbacks import PICACOCallback
from picaco_dspy.optimize.budget import BudgetGuard, iteration_cost, phase_cost
from picaco_dspy.optimize.enhance import build_noisy_pool, enhance_responses
from picaco_dspy.optimize.problem import AlignmentProblem
from picaco_dspy.optimize.refine import refine_instruction
from picaco_dspy.optimize.result import IterationRecord, PICACOResult
from picaco_dspy.optimize.schedule import StepPolicy
from picaco_dspy.optimize.select import select_final
from picaco_dspy.runtime.session import RunSession

logger = logging.getLogger(__name__)


def run_picaco(
    problem: AlignmentProblem,
    session: RunSession,
    policy: StepPolicy,
    guard: BudgetGuard,
    result: PICACOResult,
    *,
    log_dir: str | None = None,
    callbacks: PICACOCallback | None = None,
) -> str:
    """Run PICACO to the end (or the budget, or an early stop) and return the selected meta-instruction.

    ``result`` is filled in as the run goes and written to ``log_dir`` after every phase; ``callbacks`` hear of the
    noisy pool and of every iteration.
    """
    callbacks = callbacks or PICACOCallback()
    started = time.monotonic()
    schedule, n, per_response = problem.schedule, len(problem.pools), problem.judge_calls_per_response

    def checkpoint() -> None:
        result.budget_stopped = guard.stopped
        if guard.stopped and not result.stop_reason.startswith("early stop"):
            result.stop_reason = guard.stop_reason
        for name, value in session.accounts().items():
            setattr(result, name, value)
        result.wall_seconds = round(time.monotonic() - started, 3)
        result.checkpoint(log_dir, problem.pools)

    logger.info(
        "PICACO run %s: %d prompts, %d values, predictors %s, up to %d iterations (%s schedule)",
        result.run_name,
        n,
        len(problem.values),
        result.predictor_names,
        schedule.max_iterations,
        "Optuna-steered" if schedule.steered else "fixed",
    )
    noisy_cost = phase_cost(
        rollouts=n * problem.noisy_samples if schedule.noisy_pool_size else 0,
        judged=n * schedule.noisy_pool_size,  # only the M2 kept per prompt are judged
        judge_calls_per_response=per_response,
    )
    teacher = problem.teacher_samples
    first = noisy_cost if schedule.noisy_pool_size else iteration_cost(n, policy.settings(1), per_response, teacher)
    if not guard.allows(first, "noisy-pool" if schedule.noisy_pool_size else "start"):  # before any call: projected
        raise ConfigurationError(  # from prompt sizes and length caps, so nothing is paid yet
            f"The budget does not pay for the first phase ({sum(first.values())} calls expected; "
            f"{guard.stop_reason}); nothing was spent: raise it or shrink the prompts, samples or the LM's max_tokens."
        )
    if schedule.noisy_pool_size:
        result.noisy_pool = build_noisy_pool(problem, session)
        checkpoint()
        callbacks.on_noisy_pool_built({"noisy_pool": result.noisy_pool, "result": result})

    current, history = problem.seed_instruction, list[tuple[str, float]]()
    for iteration in range(1, schedule.max_iterations + 1):
        settings = policy.settings(iteration)
        if not guard.allows(iteration_cost(n, settings, per_response, teacher), f"iteration-{iteration}"):
            break  # the best program so far is selected and returned, marked budget_stopped
        enhancement = enhance_responses(problem, session, iteration, current, settings)
        refinement = refine_instruction(problem, session, policy, iteration, current, history, settings)
        current = refinement.instruction
        record = IterationRecord.from_phases(
            iteration,
            enhancement,
            refinement,
            settings=settings.to_dict(),
            usage=session.ledger(),
            wall_seconds=round(time.monotonic() - started, 3),
        )
        if iteration == 1:
            seed_rows = [c for c in refinement.candidates if c.origin == "current"]
            result.seed_J = seed_rows[0].J if seed_rows else None
        result.iterations.append(record)
        history.extend((c.instruction, c.J) for c in reversed(refinement.candidates))
        logger.info(
            "Iteration %d/%d: J(e) = %.4f (gain %+.4f%s), mean r of new responses = %.4f, conformity %s",
            iteration,
            schedule.max_iterations,
            record.J,
            record.gain,
            ", pruned" if record.pruned else "",
            record.mean_reward,
            ", ".join(f"{v} {c:.2f}" for v, c in record.conformity.items()),
        )
        checkpoint()
        callbacks.on_iteration_end({"iteration": iteration, "record": record, "result": result})
        if policy.stalled([(r.gain, r.pruned) for r in result.iterations]):
            result.stop_reason = (
                f"early stop: {schedule.patience} iterations in a row gained less than {schedule.min_improvement}"
            )
            logger.info("PICACO: %s", result.stop_reason)
            break

    best, result.selection = select_final(problem, session, guard, result.iterations)
    result.final_instruction = best
    checkpoint()
    return best

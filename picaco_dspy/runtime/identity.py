"""A run's identity: the configuration that decides its results, its fingerprint and its name.

Two compiles with the same identity are the same run: the second resumes (or joins) the first. The fingerprint
covers what changes a result (values, program instructions, prompts, schedule, models, judge and its defence); the
budget, storage, threads and progress bars do not, so a budget-stopped run continues with a larger budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dspy

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.objective.bound import TotalCorrelationBound
from picaco_dspy.objective.screening import SCREEN_VERSION
from picaco_dspy.optimize.program_edit import all_predictors
from picaco_dspy.runtime.usage import price_per_token
from picaco_dspy.runtime.work_board import job_key


@dataclass(frozen=True)
class RunIdentity:
    """Who a run is.

    Attributes:
        name: The run's name in the storage (given, or ``picaco-<fingerprint prefix>``).
        fingerprint: Hash of everything that decides the run's results.
        config: JSON-ready settings and objective description (written to ``run.json``).
        models: Model name per role (``target:<predictor>``, ``judge``, ``proposer``, ``reference``).
    """

    name: str
    fingerprint: str
    config: dict[str, Any]
    models: dict[str, str | None]


def run_identity(
    *,
    settings: Mapping[str, Any],
    metric: TotalCorrelationBound,
    own_instructions: Mapping[str, str],
    train_inputs: Sequence[Mapping[str, Any]],
    val_inputs: Sequence[Mapping[str, Any]] | None,
    schedule: Mapping[str, Any],
    noisy_samples: int,
    models: dict[str, str | None],
    proposer_kind: str,
    run_name: str | None,
) -> RunIdentity:
    """Fingerprint a compile and name its run.

    Args:
        settings: The teleprompter's JSON-ready settings.
        metric: The objective (its weights, judge mode and defence are part of the identity).
        own_instructions: The program's instructions before PICACO, per target predictor.
        train_inputs: Inputs of the trainset, in order.
        val_inputs: Inputs of the valset (None: no valset).
        schedule: The resolved schedule.
        noisy_samples: Bare responses sampled per prompt for the noisy pool.
        models: Model name per role (see :func:`model_names`).
        proposer_kind: Class name of the proposer.
        run_name: A name the user chose, or None to derive one.
    """
    objective = {
        "beta": metric.beta,
        "weight_temperature": metric.weight_temperature,
        "likelihood_weighting": metric.likelihood_weighting,
        "redundancy": metric.redundancy is not None,
        "judge": {
            "mode": metric.judge.mode,
            "scale": metric.judge.scale,
            "defence": SCREEN_VERSION if metric.judge.hardened else "off",
        },
    }
    teacher = (  # only runs with a teacher have these, so the fingerprints of other runs stay as they were
        (settings["teacher_samples_per_prompt"], settings["teacher_instructions"])
        if "teacher_instructions" in settings
        else ()
    )
    fingerprint = job_key(
        "picaco-run",
        metric.values.to_dict(),
        dict(own_instructions),
        [sorted(inputs.items()) for inputs in train_inputs],
        [sorted(inputs.items()) for inputs in val_inputs] if val_inputs is not None else None,
        dict(schedule),
        {k: settings[k] for k in ("response_temperature", "final_candidates", "seed", "predictor_names")},
        noisy_samples,
        objective,
        models,
        proposer_kind,
        *teacher,
    )
    return RunIdentity(
        name=run_name or f"picaco-{fingerprint[:16]}",
        fingerprint=fingerprint,
        config={**settings, "metric": objective},
        models=models,
    )


def model_names(
    student: dspy.Module, targets: Sequence[str], metric: TotalCorrelationBound, proposer_lm: Any
) -> dict[str, str | None]:
    """Model names of the target predictors, judge, proposer and reference (part of a run's identity; priced for
    budgets).

    ``proposer_lm`` is the proposer LM (None: the configured LM), or False for a custom proposer without one.
    """

    def name(lm: Any) -> str | None:
        lm = lm or dspy.settings.lm
        return getattr(lm, "model", None) if lm is not None else None

    predictors = dict(all_predictors(student))
    models = {f"target:{t}": name(getattr(predictors[t], "lm", None)) for t in targets}
    models["judge"] = metric.judge.model_name or name(metric.judge.lm)
    models["proposer"] = None if proposer_lm is False else name(proposer_lm)
    models["reference"] = getattr(metric.reference, "model_name", type(metric.reference).__name__)
    return models


def require_prices(models: Mapping[str, str | None]) -> None:
    """Raise :class:`ConfigurationError` naming every LM without a price in litellm's table (for ``max_cost_usd``)."""
    unpriced = sorted({m for role, m in models.items() if role != "reference" and m and price_per_token(m) is None})
    if unpriced:
        raise ConfigurationError(
            f"max_cost_usd needs a price for every model, and litellm has none for {unpriced}: add one with "
            "litellm.register_model({name: {'input_cost_per_token': ..., 'output_cost_per_token': ..., "
            "'litellm_provider': ..., 'mode': 'chat'}}) or budget with max_lm_calls / max_tokens."
        )

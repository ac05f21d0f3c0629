"""Optuna's side of a steered schedule: one trial per refinement step (see :mod:`picaco_dspy.optimize.schedule`).

A step's trial asks for its settings, reports the best gain after each ranking minibatch (Optuna's median pruner may
stop the step there) and is told the step's gain. The study lives in the run's own storage, so resumed and concurrent
workers see the same trials.
"""

from __future__ import annotations

import time
from typing import Any

from picaco_dspy.optimize.schedule import Range, Schedule, StepSettings


class ScheduleSteering:
    """Optuna's side of a steered schedule: ask a step's settings, report its intermediate gains, tell its result.

    Args:
        schedule: A steered :class:`Schedule`.
        storage: Optuna storage URL (the run's SQL store) or None for memory.
        study_name: The run's name.
        seed: The run's seed; the sampler of step ``t`` is seeded with ``(seed, t)``.
        n_prompts: Prompts in the trainset (bounds the minibatch size).
    """

    def __init__(self, schedule: Schedule, *, storage: str | None, study_name: str, seed: int, n_prompts: int) -> None:
        import optuna

        self._optuna = optuna
        self.schedule = schedule
        self.seed = seed
        self.n_prompts = n_prompts
        self.study = _open_study(optuna, storage, study_name)

    def ask(self, iteration: int) -> StepSettings:
        """Settings of step ``iteration`` (the first step takes the middle of every range)."""
        if iteration == 1:
            return self.schedule.default_step(self.n_prompts)
        optuna = self._optuna
        self._fail_orphans()
        self.study.sampler = optuna.samplers.TPESampler(seed=self.seed * 10_007 + iteration, n_startup_trials=3)
        trial = self.study.ask()
        trial.set_user_attr("iteration", iteration)
        s = self.schedule

        def pick(name: str, r: Range, integer: bool) -> float:
            if r.fixed:
                return int(r.low) if integer else float(r.low)
            if integer:
                return trial.suggest_int(name, int(r.low), int(r.high))
            return round(trial.suggest_float(name, float(r.low), float(r.high)), 3)

        minibatch_range = self._minibatch_range()
        minibatch = self.n_prompts if minibatch_range is None else int(pick("minibatch_size", minibatch_range, True))
        return StepSettings(
            samples_per_prompt=int(pick("samples_per_prompt", s.samples_per_prompt, True)),
            num_candidates=int(pick("num_candidates", s.num_candidates, True)),
            proposal_temperature=float(pick("proposal_temperature", s.proposal_temperature, False)),
            aligned_pool_size=int(pick("aligned_pool_size", s.aligned_pool_size, True)),
            minibatch_size=minibatch,
            trial_number=trial.number,
        )

    def report(self, settings: StepSettings, step: int, gain: float) -> bool:
        """Report the best gain after ``step`` minibatches; True when Optuna prunes the step."""
        if settings.trial_number is None:
            return False
        trial = self._trial(settings.trial_number)
        trial.report(float(gain), step)
        return bool(trial.should_prune())

    def tell(
        self, iteration: int, settings: StepSettings, gain: float, pruned: bool, intermediate: dict[int, float]
    ) -> None:
        """Record the finished step (the first step is added as a completed trial with its fixed settings)."""
        optuna = self._optuna
        state = optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE
        if settings.trial_number is None:
            params, distributions = self._fixed_params(settings)
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions=distributions,
                    value=None if pruned else gain,
                    state=state,
                    intermediate_values=intermediate,
                    user_attrs={"iteration": iteration},
                )
            )
            return
        if pruned:
            self.study.tell(settings.trial_number, state=state)
        else:
            self.study.tell(settings.trial_number, gain)

    # ------------------------------------------------------------------ helpers
    def _trial(self, number: int):
        frozen = next(t for t in self.study.get_trials(deepcopy=False) if t.number == number)
        return self._optuna.trial.Trial(self.study, frozen._trial_id)

    def _fail_orphans(self) -> None:
        """Trials a killed worker asked for but never recorded are marked failed (TPE ignores them)."""
        running = self.study.get_trials(deepcopy=False, states=(self._optuna.trial.TrialState.RUNNING,))
        for trial in running:
            self.study.tell(trial.number, state=self._optuna.trial.TrialState.FAIL)

    def _fixed_params(self, settings: StepSettings) -> tuple[dict[str, Any], dict[str, Any]]:
        dist = self._optuna.distributions
        s = self.schedule
        params: dict[str, Any] = {}
        distributions: dict[str, Any] = {}
        for name, r, integer in (
            ("samples_per_prompt", s.samples_per_prompt, True),
            ("num_candidates", s.num_candidates, True),
            ("proposal_temperature", s.proposal_temperature, False),
            ("aligned_pool_size", s.aligned_pool_size, True),
        ):
            if r.fixed:
                continue
            params[name] = getattr(settings, name)
            distributions[name] = (
                dist.IntDistribution(int(r.low), int(r.high)) if integer else dist.FloatDistribution(r.low, r.high)
            )
        minibatch_range = self._minibatch_range()
        if minibatch_range is not None and not minibatch_range.fixed:
            params["minibatch_size"] = settings.minibatch_size
            distributions["minibatch_size"] = dist.IntDistribution(int(minibatch_range.low), int(minibatch_range.high))
        return params, distributions

    def _minibatch_range(self) -> Range | None:
        """The schedule's minibatch range, bounded by the number of prompts (None: all prompts at once)."""
        r = self.schedule.minibatch_size
        if r is None:
            return None
        return Range(min(int(r.low), self.n_prompts), min(int(r.high), self.n_prompts))


def _open_study(optuna: Any, storage: str | None, name: str, attempts: int = 5) -> Any:
    """Create or load the run's study; workers starting together may race to create its tables or the study."""

    for attempt in range(attempts):
        try:
            return optuna.create_study(
                storage=storage,
                study_name=name,
                direction="maximize",
                load_if_exists=True,
                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0, n_min_trials=2),
            )
        except Exception:  # noqa: BLE001 - a clash between starting workers; anything else repeats and is raised
            if attempt == attempts - 1:
                raise
            time.sleep(0.3 * (attempt + 1))
    raise AssertionError("unreachable")

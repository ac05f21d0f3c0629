"""The iteration schedule of a PICACO run: fixed (the paper's) or steered step by step by Optuna.

**One Optuna trial is one refinement step** (one iteration of Response Enhancement + Instruction Refinement), not a
whole schedule. A trial over whole schedules would cost a full run per trial; a step costs one iteration, so a
single run learns online which settings pay off. Each step's trial picks the proposal temperature, the number of
candidates, the samples per prompt, the aligned-pool size ``M1`` the step uses and the prompts per minibatch when
ranking candidates. Its objective is the gain ``J(e_chosen) - J(e_current)`` on the step's pools (``J`` is not
comparable across steps, the gain is). Candidates are ranked minibatch by minibatch; after each minibatch the best
gain so far is reported, and Optuna's median pruner drops a step whose gain lags the earlier steps' at the same
point (its candidates are not adopted and the rest of their ranking is skipped). The run stops early when
``patience`` steps in a row gained less than ``min_improvement`` (a pruned step counts as no gain); the number of
iterations is thus chosen per run, up to ``max_iterations`` and the budget.

Decisions are made once per run through the shared work board, so resumed and concurrent workers follow the same
schedule; each ask uses a sampler seeded by (seed, iteration), so the schedule depends on the seed and on the
completed steps only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from picaco_dspy.errors import ConfigurationError

if TYPE_CHECKING:
    from picaco_dspy.optimize.steering import ScheduleSteering

PRESETS = ("light", "medium", "heavy")
SCHEDULE_ARGUMENTS = (  # the PICACO arguments that fix a schedule setting (see resolve_schedule)
    "num_iterations",
    "num_candidates",
    "aligned_pool_size",
    "noisy_pool_size",
    "samples_per_prompt",
    "proposal_temperature",
    "minibatch_size",
    "patience",
    "min_improvement",
)


@dataclass(frozen=True)
class Range:
    """Inclusive range Optuna searches (``low == high`` fixes the setting)."""

    low: float
    high: float

    @property
    def fixed(self) -> bool:
        return self.low == self.high


@dataclass(frozen=True)
class StepSettings:
    """The settings one iteration runs with.

    Attributes:
        samples_per_prompt: New responses per prompt in Response Enhancement.
        num_candidates: Instructions proposed.
        proposal_temperature: The proposer's sampling temperature.
        aligned_pool_size: ``M1`` used by this step (the pools keep up to the schedule's largest ``M1``).
        minibatch_size: Prompts per minibatch when ranking candidates (all prompts: no pruning point).
        trial_number: The Optuna trial of this step (None for a fixed schedule).
    """

    samples_per_prompt: int
    num_candidates: int
    proposal_temperature: float
    aligned_pool_size: int
    minibatch_size: int
    trial_number: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Schedule:
    """How many iterations a run may take and what each may use.

    Attributes:
        max_iterations: Upper bound on ``T``.
        samples_per_prompt / num_candidates / proposal_temperature / aligned_pool_size: Ranges per step.
        minibatch_size: Prompts per candidate-ranking minibatch (None: all prompts at once).
        noisy_pool_size: ``M2`` (built once, before the first step).
        patience: Stop after this many steps in a row without a gain of ``min_improvement`` (None: never).
        min_improvement: Smallest ``J`` gain that counts as progress.
        steered: Whether Optuna picks the settings (else every range is fixed).
    """

    max_iterations: int
    samples_per_prompt: Range
    num_candidates: Range
    proposal_temperature: Range
    aligned_pool_size: Range
    minibatch_size: Range | None
    noisy_pool_size: int
    patience: int | None = None
    min_improvement: float = 1e-3
    steered: bool = False

    @property
    def pool_capacity(self) -> int:
        return int(self.aligned_pool_size.high)

    def default_step(self, n_prompts: int) -> StepSettings:
        """The settings of the first step (and of every step of a fixed schedule): the middle of each range."""

        def mid(r: Range) -> float:
            return (r.low + r.high) / 2

        minibatch = n_prompts if self.minibatch_size is None else min(n_prompts, round(mid(self.minibatch_size)))
        return StepSettings(
            samples_per_prompt=round(mid(self.samples_per_prompt)),
            num_candidates=round(mid(self.num_candidates)),
            proposal_temperature=round(mid(self.proposal_temperature), 3),
            aligned_pool_size=round(mid(self.aligned_pool_size)),
            minibatch_size=minibatch,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paper_schedule(
    *,
    num_iterations: int = 10,
    num_candidates: int = 4,
    aligned_pool_size: int = 10,
    noisy_pool_size: int = 15,
    samples_per_prompt: int = 2,
    proposal_temperature: float = 1.0,
) -> Schedule:
    """The fixed schedule of the paper (T=10, M1=10, M2=15), every step alike, no early stop."""
    return Schedule(
        max_iterations=num_iterations,
        samples_per_prompt=Range(samples_per_prompt, samples_per_prompt),
        num_candidates=Range(num_candidates, num_candidates),
        proposal_temperature=Range(proposal_temperature, proposal_temperature),
        aligned_pool_size=Range(aligned_pool_size, aligned_pool_size),
        minibatch_size=None,
        noisy_pool_size=noisy_pool_size,
    )


_PRESETS: dict[str, Schedule] = {
    "light": Schedule(
        max_iterations=4,
        samples_per_prompt=Range(1, 2),
        num_candidates=Range(2, 4),
        proposal_temperature=Range(0.5, 1.3),
        aligned_pool_size=Range(3, 6),
        minibatch_size=Range(2, 8),
        noisy_pool_size=6,
        patience=2,
        steered=True,
    ),
    "medium": Schedule(
        max_iterations=8,
        samples_per_prompt=Range(1, 3),
        num_candidates=Range(2, 6),
        proposal_temperature=Range(0.4, 1.4),
        aligned_pool_size=Range(4, 10),
        minibatch_size=Range(2, 16),
        noisy_pool_size=10,
        patience=3,
        steered=True,
    ),
    "heavy": Schedule(
        max_iterations=12,
        samples_per_prompt=Range(2, 4),
        num_candidates=Range(3, 8),
        proposal_temperature=Range(0.3, 1.5),
        aligned_pool_size=Range(6, 15),
        minibatch_size=Range(4, 32),
        noisy_pool_size=15,
        patience=4,
        steered=True,
    ),
}


def resolve_schedule(auto: str | None, overrides: dict[str, Any]) -> Schedule:
    """The schedule for ``auto`` (None: the paper's fixed one) with explicit arguments fixing their setting.

    Args:
        auto: ``"light"``, ``"medium"``, ``"heavy"`` or None.
        overrides: Constructor arguments the user gave explicitly (None values are ignored): ``num_iterations``,
            ``num_candidates``, ``aligned_pool_size``, ``noisy_pool_size``, ``samples_per_prompt``,
            ``proposal_temperature``, ``minibatch_size``, ``patience``, ``min_improvement``.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if auto is None:
        fixed_keys = set(SCHEDULE_ARGUMENTS[:6])  # the paper schedule takes these; the rest are set below
        schedule = paper_schedule(**{k: v for k, v in given.items() if k in fixed_keys})
        if given.get("minibatch_size") is not None:
            schedule = replace(schedule, minibatch_size=Range(given["minibatch_size"], given["minibatch_size"]))
        if given.get("patience") is not None:
            schedule = replace(schedule, patience=given["patience"])
        if given.get("min_improvement") is not None:
            schedule = replace(schedule, min_improvement=given["min_improvement"])
        return schedule
    if auto not in _PRESETS:
        raise ConfigurationError(f"auto must be one of {PRESETS} or None (the paper's fixed schedule), got {auto!r}.")
    schedule = _PRESETS[auto]
    ranged = ("num_candidates", "aligned_pool_size", "samples_per_prompt", "proposal_temperature", "minibatch_size")
    changes: dict[str, Any] = {name: Range(given[name], given[name]) for name in ranged if name in given}
    if "num_iterations" in given:
        changes["max_iterations"] = given["num_iterations"]
    for arg in ("noisy_pool_size", "patience", "min_improvement"):
        if arg in given:
            changes[arg] = given[arg]
    return replace(schedule, **changes)


class StepPolicy:
    """Each step's settings, whether to prune it, and the stall rule, for a fixed or steered schedule.

    Steered decisions go through ``decide`` (taken once per run, read back by every worker and every resume).

    Args:
        schedule: The resolved schedule.
        steering: Optuna's side of a steered schedule (None: fixed).
        decide: ``decide(kind, key_parts, compute)`` runs ``compute`` once per run and returns its stored value.
        n_prompts: Prompts in the trainset.
    """

    def __init__(
        self,
        schedule: Schedule,
        steering: ScheduleSteering | None,
        decide: Callable[[str, tuple[Any, ...], Callable[[], Any]], Any],
        n_prompts: int,
    ) -> None:
        self.schedule = schedule
        self.steering = steering
        self._decide = decide
        self.n_prompts = n_prompts

    def settings(self, iteration: int) -> StepSettings:
        """The settings of step ``iteration``."""
        steering = self.steering
        if steering is None:
            return self.schedule.default_step(self.n_prompts)
        return StepSettings(**self._decide("step", (iteration,), lambda: steering.ask(iteration).to_dict()))

    def prune(self, iteration: int, settings: StepSettings, minibatch: int, gain: float) -> bool:
        """Report the best gain after ``minibatch``; True when the step should stop ranking and keep its instruction."""
        steering = self.steering
        if steering is None:
            return False
        return bool(self._decide("prune", (iteration, minibatch), lambda: steering.report(settings, minibatch, gain)))

    def tell(
        self, iteration: int, settings: StepSettings, gain: float, pruned: bool, intermediate: dict[int, float]
    ) -> None:
        """Record the finished step with Optuna (once per run)."""
        steering = self.steering
        if steering is None:
            return

        def tell() -> bool:  # a stored decision needs a value
            steering.tell(iteration, settings, gain, pruned, intermediate)
            return True

        self._decide("tell", (iteration,), tell)

    def stalled(self, gains: Sequence[tuple[float, bool]]) -> bool:
        """Whether the last ``patience`` steps (``(gain, pruned)`` each, oldest first) all failed to improve."""
        patience = self.schedule.patience
        recent = list(gains)[-patience:] if patience else []
        return (
            bool(patience)
            and len(recent) == patience
            and all(pruned or gain < self.schedule.min_improvement for gain, pruned in recent)
        )

"""PICACO's settings: one dataclass from which the teleprompter's keyword arguments, the CLI flags and the stored run
spec are derived (the config pattern of TRL).

Each field carries its help text and, when the CLI exposes it, its flag. :class:`PICACOSettings` validates in
``__post_init__``, so a bad value is named when the settings (or the teleprompter) are built, before any model runs.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from picaco_dspy._validation import excerpt, require_int
from picaco_dspy.errors import ConfigurationError
from picaco_dspy.optimize.budget import Budget
from picaco_dspy.optimize.schedule import PRESETS, SCHEDULE_ARGUMENTS, Schedule, resolve_schedule
from picaco_dspy.runtime.session import MAX_SAMPLES
from picaco_dspy.runtime.storage_url import DEFAULT_STORAGE, resolve_storage_url


def _setting(default: Any, help: str, flag: str | None = None, **metadata: Any) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag, **metadata})


@dataclass
class PICACOSettings:
    """Every scalar setting of :class:`~picaco_dspy.PICACO` (the objects, metric, LMs and proposer, are separate).

    ``PICACO(metric, **settings.to_kwargs())`` builds the teleprompter; ``PICACO(...).settings`` gives them back.
    """

    auto: str | None = _setting(
        None,
        "let Optuna steer a schedule of this size: light, medium or heavy (default: the paper's fixed schedule)",
        "--auto",
        choices=PRESETS,
    )
    num_iterations: int | None = _setting(
        None, "T, refinement iterations (default 10; with auto, the most)", "--iterations"
    )
    num_candidates: int | None = _setting(None, "instructions proposed per iteration (default 4)", "--candidates")
    aligned_pool_size: int | None = _setting(None, "M1, responses kept per prompt (default 10)", "--aligned-pool")
    noisy_pool_size: int | None = _setting(
        None, "M2, parroting bare responses kept per prompt (default 15; 0: none)", "--noisy-pool"
    )
    samples_per_prompt: int | None = _setting(None, "new responses per prompt per iteration (default 2)", "--samples")
    noisy_samples_per_prompt: int | None = _setting(
        None, "bare responses sampled per prompt (default 2 x M2)", "--noisy-samples"
    )
    teacher_samples_per_prompt: int = _setting(
        1, "responses per prompt per iteration from the teacher program, when compile() is given one"
    )
    response_temperature: float = _setting(1.0, "sampling temperature of the target program", "--response-temperature")
    proposal_temperature: float | None = _setting(
        None, "sampling temperature of the proposer (default 1.0)", "--proposal-temperature"
    )
    minibatch_size: int | None = _setting(
        None, "prompts per minibatch when ranking candidates (default: all)", "--minibatch"
    )
    patience: int | None = _setting(
        None,
        "stop after this many iterations without min_improvement (default: never for the fixed schedule)",
        "--patience",
    )
    min_improvement: float | None = _setting(
        None, "smallest J gain that counts as progress (default 1e-3)", "--min-improvement"
    )
    predictor_names: list[str] | None = _setting(None, "predictors that receive the meta-instruction (default: all)")
    final_candidates: int = _setting(3, "instructions that compete in the final selection", "--final-candidates")
    num_threads: int | None = _setting(None, "parallel LM calls (keep 1 for local models)", "--threads", cli_default=1)
    max_lm_calls: int | None = _setting(None, "LM calls (target + judge + proposer) the run may spend", "--budget")
    max_tokens: int | None = _setting(None, "input + output tokens of those calls", "--budget-tokens")
    max_cost_usd: float | None = _setting(None, "US dollars, priced from litellm's price table", "--budget-usd")
    seed: int = _setting(0, "seeds every rollout id and the Optuna sampler", "--seed")
    storage: str | None = _setting(
        DEFAULT_STORAGE,
        "where every paid result is kept: an SQLite file, sqlite:///path, "
        "postgresql+psycopg://user@host/db (shared by workers), or 'default' "
        "($PICACO_STORAGE or ~/.cache/picaco-dspy/runs.db); rerunning resumes",
        "--storage",
    )
    run_name: str | None = _setting(None, "run to start or join (default: derived from the configuration)", "--run")
    request_timeout: float | None = _setting(
        120.0,
        "seconds one request to a remote LM may take before it is retried (None: the provider's default, 600 s in "
        "litellm); an LM that sets its own timeout keeps it",
        "--request-timeout",
    )
    claim_timeout: float = _setting(30.0, "seconds after which a silent worker's jobs are taken over")
    log_dir: str | Path | None = _setting(None, "where run.json, pools.json and program.json are written")
    progress: bool = _setting(True, "show progress bars")

    def __post_init__(self) -> None:
        if self.auto is not None and self.auto not in PRESETS:
            raise ConfigurationError(
                f"auto must be one of {PRESETS} or None (the fixed paper schedule), got {self.auto!r}."
            )
        for name, low, high in _INT_RANGES:
            value = getattr(self, name)
            if value is not None:
                require_int(name, value, low, high)
        require_int("final_candidates", self.final_candidates, 1, 10**6)
        require_int("seed", self.seed, 0, 2**63 - 1)
        for name in ("response_temperature", "proposal_temperature"):
            value = getattr(self, name)
            if value is None and name == "proposal_temperature":
                continue
            if not _is_number(value) or not 0 < value <= 2:
                raise ConfigurationError(
                    f"{name} must be in (0, 2] (distinct samples need a temperature > 0), got {value!r}."
                )
        if self.request_timeout is not None and (not _is_number(self.request_timeout) or self.request_timeout <= 0):
            raise ConfigurationError(
                f"request_timeout must be a positive number of seconds, got {self.request_timeout!r}."
            )
        for name in ("max_cost_usd", "min_improvement", "claim_timeout"):
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or value < 0):
                raise ConfigurationError(f"{name} must be a finite non-negative number, got {value!r}.")
        if self.max_cost_usd is not None and self.max_cost_usd <= 0:
            raise ConfigurationError(f"max_cost_usd must be positive, got {self.max_cost_usd!r}.")
        if self.claim_timeout <= 1:
            raise ConfigurationError(
                f"claim_timeout must exceed 1 second (heartbeats are sent more often), got {self.claim_timeout!r}."
            )
        if self.run_name is not None and (
            not isinstance(self.run_name, str)
            or not self.run_name.strip()
            or len(self.run_name) > 200
            or any(c in self.run_name for c in "/\\")
            or any(not c.isprintable() for c in self.run_name)
        ):
            raise ConfigurationError(
                f"run_name must be a non-empty line of at most 200 printable characters without '/' or '\\', got "
                f"{excerpt(self.run_name, 60)}."
            )
        if self.predictor_names is not None and (
            isinstance(self.predictor_names, str) or not all(isinstance(n, str) for n in self.predictor_names)
        ):
            raise ConfigurationError(f"predictor_names must be a list of names, got {self.predictor_names!r}.")
        resolve_storage_url(self.storage)  # a malformed URL or a missing driver is named now, not after paid calls
        require_int("teacher_samples_per_prompt", self.teacher_samples_per_prompt, 0, MAX_SAMPLES)
        m2 = self.schedule().noisy_pool_size
        require_int("noisy_samples_per_prompt", self.noisy_samples, m2, MAX_SAMPLES)

    # ------------------------------------------------------------------ derived
    def schedule(self) -> Schedule:
        """The resolved schedule: the preset (or the paper's) with the explicitly given settings fixed."""
        return resolve_schedule(self.auto, {name: getattr(self, name) for name in SCHEDULE_ARGUMENTS})

    @property
    def noisy_samples(self) -> int:
        """Bare responses sampled per prompt (``noisy_samples_per_prompt``, default ``2 * M2``)."""
        if self.noisy_samples_per_prompt is not None:
            return self.noisy_samples_per_prompt
        return 2 * self.schedule().noisy_pool_size

    def budget(self) -> Budget:
        """The spending limits."""
        return Budget(self.max_lm_calls, self.max_tokens, self.max_cost_usd)

    # ------------------------------------------------------------------ conversions
    def to_kwargs(self) -> dict[str, Any]:
        """The settings as :class:`~picaco_dspy.PICACO` keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PICACOSettings:
        """Settings from :meth:`to_dict` output or keyword arguments; unknown keys are an error."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigurationError(f"unknown PICACO settings {unknown}; known: {[f.name for f in fields(cls)]}.")
        return cls(**data)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each setting's default."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


_INT_RANGES = (  # (name, low, high) for the optional integer settings
    ("num_iterations", 1, 10**6),  # the highs only refuse typos (a run of 10^6 iterations is already absurd)
    ("num_candidates", 1, 10**6),
    ("aligned_pool_size", 1, 10**6),
    ("noisy_pool_size", 0, 10**6),
    ("samples_per_prompt", 1, MAX_SAMPLES),
    ("minibatch_size", 1, 10**6),
    ("patience", 1, 10**6),
    ("num_threads", 1, 256),
    ("max_lm_calls", 1, 10**12),
    ("max_tokens", 1, 10**15),
)


def _is_number(value: Any) -> bool:
    """A finite real number (NaN or infinity as a budget or timeout would silently mean "no limit")."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)

"""The record of a PICACO run: instructions, J(e) per iteration, per-value conformity, and cost per role."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from picaco_dspy.optimize.pareto import ValueFront, value_front

SCHEMA_VERSION = 1  # of PICACOResult.to_dict(); from_dict() reads this version and older files without one


@dataclass
class CandidateRecord:
    """A candidate meta-instruction, its instruction score ``J(e)`` and where it came from.

    Attributes:
        instruction: The meta-instruction.
        J: Its ``J(e)`` on the iteration's pools.
        iteration: The iteration that ranked it.
        origin: ``"current"`` (the incumbent ``e^{t-1}``, kept from the previous iteration) or ``"proposed"``.
        parent: For a proposal, the incumbent it was proposed from.
        proposed_by: For a proposal, how it was written: ``"lm_proposal"`` (an LM proposer), ``"template"``
            (:class:`~picaco_dspy.optimize.proposer.TemplateProposer`) or a custom proposer's class name.
        temperature: For a proposal, the proposer's sampling temperature.
        proposal_seed: For a proposal, the rollout seed it was proposed with (reruns reproduce it).
    """

    instruction: str
    J: float
    iteration: int
    origin: str
    parent: str | None = None
    proposed_by: str | None = None
    temperature: float | None = None
    proposal_seed: int | None = None


@dataclass
class IterationRecord:
    """One Response Enhancement + Instruction Refinement step.

    Attributes:
        iteration: 1-based index.
        sampled_under: The instruction the new responses were sampled with (``e^{t-1}``).
        new_responses: Responses sampled and judged this iteration.
        failed_rollouts: Target or judge failures this iteration (excluded from the pools, never scored 0).
        mean_reward: Mean ``r`` of the new responses.
        conformity: Per value, mean 1-5 conformity of the new responses.
        aligned_pool_mean_reward: Mean ``r`` over all aligned pools after the update.
        candidates: Every candidate ranked this iteration, best first.
        instruction: The instruction chosen (``e^t``).
        J: Its score, on this iteration's pools (pools grow every iteration, so J is comparable between the
            candidates of one iteration, not across iterations).
        proposal_failures: Proposals that failed or came back empty.
        usage: Cumulative calls and tokens per role after this iteration (the run's ledger: all workers, all resumes).
        wall_seconds: Time since compile started.
        settings: The step's schedule settings (samples, candidates, temperature, M1, minibatch, Optuna trial).
        gain: ``J(e_chosen) - J(e_current)`` on the step's pools (what Optuna maximises).
        pruned: Optuna pruned the step: its candidates were not adopted.
        ranked_prompts: Prompts the candidates were ranked on before the step ended.
        teacher_responses: Responses of the teacher program judged this iteration (0 without a teacher).
        teacher_mean_reward: Their mean ``r``.
    """

    iteration: int
    sampled_under: str
    new_responses: int
    failed_rollouts: int
    mean_reward: float
    conformity: dict[str, float]
    aligned_pool_mean_reward: float
    candidates: list[CandidateRecord]
    instruction: str
    J: float
    proposal_failures: list[str] = field(default_factory=list)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    gain: float = 0.0
    pruned: bool = False
    ranked_prompts: int = 0
    teacher_responses: int = 0
    teacher_mean_reward: float | None = None

    @classmethod
    def from_phases(
        cls,
        iteration: int,
        enhancement: Any,
        refinement: Any,
        *,
        settings: dict[str, Any],
        usage: dict[str, dict[str, int]],
        wall_seconds: float,
    ) -> IterationRecord:
        """The record of one iteration from its :class:`~picaco_dspy.optimize.enhance.Enhancement` and
        :class:`~picaco_dspy.optimize.refine.Refinement`."""
        return cls(
            iteration=iteration,
            sampled_under=enhancement.sampled_under,
            new_responses=enhancement.new_responses,
            failed_rollouts=enhancement.failed_rollouts,
            mean_reward=enhancement.mean_reward,
            conformity=enhancement.conformity,
            aligned_pool_mean_reward=enhancement.aligned_pool_mean_reward,
            candidates=refinement.candidates,
            instruction=refinement.instruction,
            J=refinement.J,
            proposal_failures=refinement.proposal_failures,
            usage=usage,
            wall_seconds=wall_seconds,
            settings=settings,
            gain=refinement.gain,
            pruned=refinement.pruned,
            ranked_prompts=refinement.ranked_prompts,
            teacher_responses=enhancement.teacher_responses,
            teacher_mean_reward=enhancement.teacher_mean_reward,
        )


@dataclass
class SelectionRecord:
    """How the final instruction was chosen.

    Attributes:
        on: ``"valset"`` (mean ``r`` of fresh responses) or ``"pools"`` (``J(e)``).
        scores: Per candidate instruction, the selection score.
        conformity: Per candidate (valset only), per-value mean conformity of its fresh responses.
        failed: Valset rollouts or judgements that failed, per candidate.
    """

    on: str
    scores: dict[str, float] = field(default_factory=dict)
    conformity: dict[str, dict[str, float]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


@dataclass
class PICACOResult:
    """Everything a PICACO run produced, JSON-serialisable (see :meth:`to_dict` and :meth:`save`).

    ``usage`` is the run's ledger: what every stored result cost, all workers and resumes together;
    ``worker_usage`` is what this process itself paid. ``reused_results`` counts results read back from the storage
    instead of being paid again, ``executed_jobs`` the ones this process ran, ``retries`` the transient failures it
    retried, per job kind.
    """

    values: dict[str, Any]
    predictor_names: list[str]
    seed_instruction: str
    config: dict[str, Any]
    seed_J: float | None = None
    noisy_pool: dict[str, Any] = field(default_factory=dict)
    iterations: list[IterationRecord] = field(default_factory=list)
    selection: SelectionRecord | None = None
    final_instruction: str | None = None
    final_instructions: dict[str, str] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    finished: bool = False
    budget_stopped: bool = False
    stop_reason: str = ""
    run_name: str = ""
    storage: str = ""
    schedule: dict[str, Any] = field(default_factory=dict)
    worker_usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    reused_results: int = 0
    executed_jobs: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (with ``schema_version``); :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PICACOResult:
        """Rebuild a result from :meth:`to_dict`'s data (a ``run.json``).

        Raises:
            ValueError: the data was written by a newer schema version, or is not a PICACO result.
        """
        if not isinstance(data, Mapping) or "seed_instruction" not in data:
            raise ValueError("Not a PICACO result: expected the JSON that PICACOResult.to_dict() / run.json hold.")
        version = int(data.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"This result has schema version {version}; this picaco-dspy reads up to {SCHEMA_VERSION}: "
                "upgrade picaco-dspy."
            )
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["iterations"] = [
            IterationRecord(**{**it, "candidates": [CandidateRecord(**c) for c in it.get("candidates", [])]})
            for it in data.get("iterations", [])
        ]
        if data.get("selection") is not None:
            kwargs["selection"] = SelectionRecord(**data["selection"])
        kwargs["schema_version"] = SCHEMA_VERSION
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> PICACOResult:
        """Read a result written by :meth:`save` (e.g. ``<log_dir>/run.json``)."""
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def lineage(self) -> dict[str, CandidateRecord]:
        """Where every instruction of the run came from: its first record (the seed has ``origin="seed"``).

        A proposal's record names its ``parent`` (the incumbent it was proposed from), the iteration, how it was
        written (``proposed_by``), the proposer's temperature and the proposal's seed.
        """
        seed_J = self.seed_J if self.seed_J is not None else float("nan")
        seed = CandidateRecord(self.seed_instruction, seed_J, 0, "seed")
        first = {self.seed_instruction: seed}
        for record in self.iterations:
            for candidate in record.candidates:
                first.setdefault(candidate.instruction, candidate)
        return first

    def ancestry(self, instruction: str) -> list[str]:
        """The chain of instructions from the seed to ``instruction`` (parents first, ``instruction`` last)."""
        lineage, chain = self.lineage(), [instruction]
        while (parent := lineage[chain[-1]].parent if chain[-1] in lineage else None) is not None:
            if parent in chain:
                break
            chain.append(parent)
        return chain[::-1]

    def value_front(self) -> ValueFront:
        """The per-value Pareto front over the final candidates: on the valset's per-value conformity when the
        selection ran there, else on the conformity of the responses sampled under each instruction during the run
        (instructions nothing was sampled under are left out)."""
        names = [v["name"] for v in self.values.get("values", [])]
        if self.selection is not None and self.selection.on == "valset":
            return value_front("valset", self.selection.conformity, names)
        finalists = list(self.selection.scores) if self.selection is not None else []
        sampled = {r.sampled_under: r.conformity for r in self.iterations}
        return value_front("training samples", {t: sampled[t] for t in finalists if t in sampled}, names)

    def checkpoint(self, log_dir: str | Path | None, pools: Sequence[Any] = ()) -> None:
        """Write ``run.json`` and ``pools.json`` (each pool's ``to_dict()``) to ``log_dir`` (None: nothing)."""
        if log_dir is None:
            return
        self.save(Path(log_dir) / "run.json")
        write_json(Path(log_dir) / "pools.json", [pool.to_dict() for pool in pools])

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON (atomically: a crash mid-write leaves the previous file intact)."""
        return write_json(path, self.to_dict())

    def conformity_table(self) -> dict[str, dict[str, float]]:
        """Per-value conformity of the seed and final instructions on the valset (empty without a valset)."""
        if not self.selection or self.selection.on != "valset":
            return {}
        table = {}
        for label, text in (("seed", self.seed_instruction), ("final", self.final_instruction)):
            if text in self.selection.conformity:
                table[label] = self.selection.conformity[text]
        return table


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, ensure_ascii=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

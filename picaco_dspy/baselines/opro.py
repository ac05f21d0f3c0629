"""OPRO baseline (Yang et al., 2024): an optimiser LM reads the (instruction, score) trajectory and proposes the next.

Implemented here as the paper's strongest baseline, on the same footing as PICACO: the instruction is appended to the
same predictors, candidates are scored by the mean :class:`TotalCorrelationBound` score of fresh responses (on the
scale 0-100, as OPRO shows scores), and a shared LM-call budget stops the search, keeping the best so far.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from picaco_dspy._validation import require_int
from picaco_dspy.errors import ConfigurationError, PicacoError
from picaco_dspy.evaluation.evaluate import evaluate_program
from picaco_dspy.objective.bound import TotalCorrelationBound, prompt_text
from picaco_dspy.optimize.program_edit import compose, own_instructions, target_predictors, with_meta_instruction
from picaco_dspy.optimize.proposer import clean_proposal
from picaco_dspy.runtime.session import rollout_id
from picaco_dspy.runtime.usage import UsageMeter

logger = logging.getLogger(__name__)


class ProposeFromTrajectory(dspy.Signature):
    """You optimise the instruction (system prompt) of an AI assistant. Below are earlier instructions with their
    scores from 0 to 100 (higher is better), listed from worst to best, and example requests the assistant receives.
    The score measures how well the assistant's responses honour every one of the listed values. Write one new
    instruction, different from all the earlier ones, that will score higher. Reply with the instruction only."""

    values: str = dspy.InputField(desc="the values, one per line as `name: definition`")
    trajectory: str = dspy.InputField(desc="earlier instructions and their scores, worst first")
    examples: str = dspy.InputField(desc="example requests")
    proposed_instruction: str = dspy.OutputField(desc="the new instruction, plain text")


@dataclass
class OPROStep:
    """One scored instruction of the trajectory."""

    step: int
    instruction: str
    score: float
    judged: int
    failed: int


@dataclass
class OPROResult:
    """The trajectory, the best instruction, the cost and whether the budget ended the search."""

    trajectory: list[OPROStep] = field(default_factory=list)
    best_instruction: str = ""
    best_score: float = float("nan")
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    budget_stopped: bool = False
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OPRO(Teleprompter):
    """Optimisation by PROmpting, scored with the total-correlation metric.

    Args:
        metric: Scores responses (its judge makes the calls; no reference model is needed).
        prompt_model: The optimiser LM; None uses the configured LM.
        num_steps: Proposal rounds after scoring the seed instruction.
        candidates_per_step: Instructions proposed per round (OPRO's default is 8; 4 keeps small budgets useful).
        max_lm_calls: Stop before an evaluation would take target + judge + proposer calls past this; keep the best.
        eval_size: Score candidates on the first N training examples (None: all).
        temperature: Sampling temperature of the optimiser LM.
        trajectory_size: Best instructions shown to the optimiser.
        predictor_names: Predictors that receive the instruction (None: all).
        num_threads: Parallel LM calls.
        seed: Seeds the proposal rollout ids.
        progress: Show progress bars.
    """

    def __init__(
        self,
        metric: TotalCorrelationBound,
        *,
        prompt_model: dspy.BaseLM | None = None,
        num_steps: int = 5,
        candidates_per_step: int = 4,
        max_lm_calls: int | None = None,
        eval_size: int | None = None,
        temperature: float = 1.0,
        trajectory_size: int = 20,
        predictor_names: Sequence[str] | None = None,
        num_threads: int | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(metric, TotalCorrelationBound):
            raise ConfigurationError(f"OPRO's metric must be a TotalCorrelationBound, got {type(metric).__name__}.")
        require_int("num_steps", num_steps, 1)
        require_int("candidates_per_step", candidates_per_step, 1)
        require_int("trajectory_size", trajectory_size, 1)
        require_int("seed", seed, 0)
        if max_lm_calls is not None:
            require_int("max_lm_calls", max_lm_calls, 1)
        if eval_size is not None:
            require_int("eval_size", eval_size, 1)
        self.metric = metric
        self.prompt_model = prompt_model
        self.num_steps = num_steps
        self.candidates_per_step = candidates_per_step
        self.max_lm_calls = max_lm_calls
        self.eval_size = eval_size
        self.temperature = temperature
        self.trajectory_size = trajectory_size
        self.predictor_names = list(predictor_names) if predictor_names is not None else None
        self.num_threads = num_threads
        self.seed = seed
        self.progress = progress
        self.propose = dspy.Predict(ProposeFromTrajectory)

    def compile(
        self,
        student: dspy.Module,
        *,
        trainset: Sequence[dspy.Example],
        teacher: Any = None,
        valset: Sequence[dspy.Example] | None = None,
    ) -> dspy.Module:
        """Return a copy of ``student`` with the best instruction found; ``opro_result`` holds the trajectory.

        ``valset`` is accepted for a uniform interface but unused: OPRO scores on the training examples.
        """
        if teacher is not None:
            raise ConfigurationError("OPRO takes no teacher; pass teacher=None.")
        examples = list(trainset)[: self.eval_size]
        if not examples:
            raise ConfigurationError("trainset is empty: give at least one dspy.Example with .with_inputs(...).")
        started = time.monotonic()
        targets = target_predictors(student, self.predictor_names)
        own = own_instructions(student, targets)
        meter = UsageMeter()
        result = OPROResult()
        prompts = [prompt_text(ex, self.metric.prompt_field) for ex in examples]
        judge_calls = self.metric.judge.lm_calls_per_view(self.metric.values)
        evaluation_cost = len(examples) * (1 + judge_calls)

        def spent() -> int:
            usage = meter.snapshot()
            return sum(usage[role]["calls"] for role in ("target", "judge", "proposer"))

        def affordable(extra: int) -> bool:
            return self.max_lm_calls is None or spent() + extra <= self.max_lm_calls

        def evaluate(step: int, instruction: str) -> None:
            program = with_meta_instruction(student, own, instruction)
            try:
                evaluation = evaluate_program(
                    program,
                    examples,
                    self.metric,
                    label=f"step {step}",
                    num_threads=self.num_threads,
                    progress=self.progress,
                    meter=meter,
                )
            except PicacoError:
                logger.warning("OPRO step %d: every run or judgement failed; the instruction gets no score", step)
                return
            score = 100.0 * evaluation.mean_score
            result.trajectory.append(OPROStep(step, instruction, score, evaluation.judged, evaluation.failed))
            logger.info("OPRO step %d: score %.2f (%d judged)", step, score, evaluation.judged)

        seed_instruction = self.metric.values.seed_instruction()
        if not affordable(evaluation_cost):
            raise ConfigurationError(
                f"max_lm_calls={self.max_lm_calls} cannot pay for one evaluation ({evaluation_cost} calls)."
            )
        evaluate(0, seed_instruction)
        for step in range(1, self.num_steps + 1):
            if result.budget_stopped:
                break
            for k in range(self.candidates_per_step):
                if not affordable(1 + evaluation_cost):
                    result.budget_stopped = True
                    logger.info("OPRO stops at the budget of %d LM calls (%d spent)", self.max_lm_calls, spent())
                    break
                with meter.track("proposer"):
                    proposal = self._propose(result, examples, prompts, step, k)
                if proposal and proposal not in {s.instruction for s in result.trajectory}:
                    evaluate(step, proposal)
        if not result.trajectory:
            raise PicacoError("OPRO could not score any instruction; see the log.")
        best = max(result.trajectory, key=lambda s: (s.score, -s.step))
        result.best_instruction, result.best_score = best.instruction, best.score
        result.usage, result.wall_seconds = meter.snapshot(), round(time.monotonic() - started, 3)
        program = with_meta_instruction(student, own, best.instruction)
        program.opro_result = result
        program.score = best.score
        program.candidate_programs = [
            {
                "program": program if s is best else with_meta_instruction(student, own, s.instruction),
                "score": s.score,
                "instruction": s.instruction,
                "step": s.step,
                "instructions": {name: compose(own[name], s.instruction) for name in targets},
            }
            for s in sorted(result.trajectory, key=lambda s: -s.score)
        ]
        return program

    def _propose(
        self, result: OPROResult, examples: list[dspy.Example], prompts: list[str], step: int, k: int
    ) -> str | None:
        shown = sorted(result.trajectory, key=lambda s: s.score)[-self.trajectory_size :]
        kwargs: dict[str, Any] = {
            "values": self.metric.values.observation_text(),
            "trajectory": "\n\n".join(f"Instruction: {s.instruction}\nScore: {s.score:.1f}" for s in shown),
            "examples": "\n".join(f"- {p[:200]}" for p in prompts[:3]),
            "config": {"rollout_id": rollout_id(self.seed, step, k), "temperature": self.temperature},
        }
        if self.prompt_model is not None:
            kwargs["lm"] = self.prompt_model
        try:
            text = clean_proposal(self.propose(**kwargs).proposed_instruction)
        except Exception as exc:  # a failed proposal is reported and skipped, never scored
            logger.warning("OPRO proposal failed: %s: %s", type(exc).__name__, exc)
            return None
        return text or None

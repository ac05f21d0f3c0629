"""The PICACO teleprompter: alternate Response Enhancement and Instruction Refinement on any DSPy program."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dspy
import numpy as np
from dspy.teleprompt import Teleprompter

from picaco_dspy.batch import generate_responses, score_responses
from picaco_dspy.bound import ResponseScore, TotalCorrelationBound, prompt_text
from picaco_dspy.errors import ConfigurationError, PicacoError
from picaco_dspy.pools import PooledResponse, PromptPool
from picaco_dspy.program_edit import compose, own_instructions, target_predictors, with_meta_instruction
from picaco_dspy.proposer import InstructionProposer
from picaco_dspy.result import CandidateRecord, IterationRecord, PICACOResult, SelectionRecord, write_json
from picaco_dspy.usage import UsageMeter
from picaco_dspy.validation import require_int

logger = logging.getLogger(__name__)

T = TypeVar("T")
_MAX_SAMPLES = 999  # rollout ids are seed * 10^6 + iteration * 10^3 + sample
_SELECTION_ITERATION = 999


class PICACO(Teleprompter):
    """Pluralistic In-Context value Alignment via total COrrelation optimisation (Jiang et al., arXiv 2507.16679).

    Optimises one meta-instruction ``e``, appended to the instructions of the predictors that write the program's
    answer, so that responses carry every value of a composition. Each iteration samples responses under the current
    instruction and keeps the best ``aligned_pool_size`` per prompt (Response Enhancement), then asks the proposer for
    ``num_candidates`` new instructions and keeps the one with the highest ``J(e)`` (Instruction Refinement).

    Args:
        metric: The objective; its judge scores responses and its reference model ranks instructions.
        prompt_model: Proposer LM; None uses the LM configured when ``compile`` runs.
        proposer: A custom proposer with :class:`InstructionProposer`'s call signature, e.g. :class:`TemplateProposer`
            for offline runs without a capable LM; None builds an :class:`InstructionProposer` on ``prompt_model``.
        num_iterations: ``T``, outer iterations.
        num_candidates: Instructions proposed per iteration (the current one always competes too, so J never drops).
        aligned_pool_size: ``M1``, responses kept per prompt in the aligned pool.
        noisy_pool_size: ``M2``, bare responses kept per prompt in the noisy pool (0 disables it).
        samples_per_prompt: New responses sampled per prompt per iteration.
        noisy_samples_per_prompt: Bare responses sampled per prompt to pick the noisy pool from (default ``2 * M2``).
        response_temperature: Sampling temperature of the target program.
        proposal_temperature: Sampling temperature of the proposer.
        predictor_names: Predictors that receive the meta-instruction (None: all of them).
        final_candidates: How many instructions compete in the final selection: the best by J on the final pools among
            the instructions chosen in any iteration and the candidates of the last one (the seed always competes).
        num_threads: Parallel LM calls (None: DSPy's setting).
        max_lm_calls: Budget of target + judge + proposer calls. Before each phase its expected cost is checked
            against what is left; when it does not fit, the run stops cleanly, selects among what it has (on the
            valset when the remaining budget pays for it, else on the pools) and is marked ``budget_stopped``.
            Judge retries can overshoot the budget by a few calls.
        seed: Seeds every rollout id, so the same seed with the same cache replays the same run.
        log_dir: Where ``run.json`` and ``pools.json`` are written after every iteration, and ``program.json`` at
            the end.
        progress: Show progress bars.

    Examples:
        >>> optimizer = PICACO(metric=metric, prompt_model=proposer_lm, num_iterations=10, num_candidates=4)
        >>> aligned = optimizer.compile(program, trainset=prompts, valset=heldout)
        >>> aligned.picaco_result.final_instruction
    """

    def __init__(
        self,
        metric: TotalCorrelationBound,
        *,
        prompt_model: dspy.BaseLM | None = None,
        proposer: Callable[..., tuple[list[str], list[str]]] | None = None,
        num_iterations: int = 10,
        num_candidates: int = 4,
        aligned_pool_size: int = 10,
        noisy_pool_size: int = 15,
        samples_per_prompt: int = 2,
        noisy_samples_per_prompt: int | None = None,
        response_temperature: float = 1.0,
        proposal_temperature: float = 1.0,
        predictor_names: Sequence[str] | None = None,
        final_candidates: int = 3,
        num_threads: int | None = None,
        max_lm_calls: int | None = None,
        seed: int = 0,
        log_dir: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(metric, TotalCorrelationBound):
            raise ConfigurationError(
                f"PICACO's metric must be a TotalCorrelationBound, got {type(metric).__name__}: "
                "PICACO(metric=TotalCorrelationBound(values, judge=..., reference=...))."
            )
        if metric.reference is None:
            raise ConfigurationError(
                "PICACO ranks instructions with a reference model: "
                "TotalCorrelationBound(values, judge=..., reference=ReferenceModel('embedded'))."
            )
        require_int("num_iterations", num_iterations, 1)
        require_int("num_candidates", num_candidates, 1)
        require_int("aligned_pool_size", aligned_pool_size, 1)
        require_int("noisy_pool_size", noisy_pool_size, 0)
        require_int("samples_per_prompt", samples_per_prompt, 1, _MAX_SAMPLES)
        if noisy_samples_per_prompt is None:
            noisy_samples_per_prompt = 2 * noisy_pool_size
        require_int("noisy_samples_per_prompt", noisy_samples_per_prompt, noisy_pool_size, _MAX_SAMPLES)
        require_int("final_candidates", final_candidates, 1)
        require_int("seed", seed, 0)
        if num_threads is not None:
            require_int("num_threads", num_threads, 1)
        if max_lm_calls is not None:
            require_int("max_lm_calls", max_lm_calls, 1)
        for name, value in (
            ("response_temperature", response_temperature),
            ("proposal_temperature", proposal_temperature),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 2:
                raise ConfigurationError(
                    f"{name} must be in (0, 2] (distinct samples need a temperature > 0), got {value!r}."
                )
        self.metric = metric
        if proposer is not None and not callable(proposer):
            raise ConfigurationError("proposer must be callable like InstructionProposer (or None).")
        self.prompt_model = prompt_model
        self.proposer = proposer
        self.num_iterations = num_iterations
        self.num_candidates = num_candidates
        self.aligned_pool_size = aligned_pool_size
        self.noisy_pool_size = noisy_pool_size
        self.samples_per_prompt = samples_per_prompt
        self.noisy_samples_per_prompt = noisy_samples_per_prompt
        self.response_temperature = float(response_temperature)
        self.proposal_temperature = float(proposal_temperature)
        self.predictor_names = list(predictor_names) if predictor_names is not None else None
        self.final_candidates = final_candidates
        self.num_threads = num_threads
        self.max_lm_calls = max_lm_calls
        self.seed = seed
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.progress = progress

    # ================================================================== compile
    def compile(
        self,
        student: dspy.Module,
        *,
        trainset: Sequence[dspy.Example],
        teacher: Any = None,
        valset: Sequence[dspy.Example] | None = None,
    ) -> dspy.Module:
        """Return a copy of ``student`` whose answer-writing predictors carry the optimised meta-instruction.

        The returned program has ``picaco_result`` (:class:`PICACOResult`), ``candidate_programs`` (JSON-ready
        summaries, best first) and ``score``. ``student`` is never modified.

        Raises:
            ConfigurationError: ``teacher`` is given, or ``trainset``/``valset`` are not usable examples.
            ProgramError: the program has no (or no such) predictors.
            PicacoError: every rollout of a phase failed.
        """
        if teacher is not None:
            raise ConfigurationError("PICACO samples from the student itself and takes no teacher; pass teacher=None.")
        trainset = _check_examples("trainset", trainset, self.metric.prompt_field)
        valset = _check_examples("valset", valset, self.metric.prompt_field) if valset is not None else None
        run = _Run(self, student, trainset)
        return run.execute(valset)


class _Run:
    """State of one compile call (kept off the teleprompter so that ``get_params`` stays the constructor's)."""

    def __init__(self, opt: PICACO, student: dspy.Module, trainset: list[dspy.Example]) -> None:
        self.opt = opt
        self.metric = opt.metric
        self.values = opt.metric.values
        self.student = student
        self.targets = target_predictors(student, opt.predictor_names)
        self.own = own_instructions(student, self.targets)
        self.answer_predictor = self.targets[-1]
        self.meter = UsageMeter()
        self.started = time.monotonic()
        self.pools = [PromptPool(prompt_text(ex, opt.metric.prompt_field), dict(ex.inputs())) for ex in trainset]
        self.proposer = opt.proposer or InstructionProposer(opt.prompt_model)
        self.seed_instruction = self.values.seed_instruction()
        self.result = PICACOResult(
            values=self.values.to_dict(),
            predictor_names=self.targets,
            seed_instruction=self.seed_instruction,
            config={
                **{
                    k: (str(v) if isinstance(v, Path) else v)
                    for k, v in opt.get_params().items()
                    if isinstance(v, (int, float, str, bool, list, type(None), Path))
                },
                "metric": {
                    "beta": self.metric.beta,
                    "weight_temperature": self.metric.weight_temperature,
                    "likelihood_weighting": self.metric.likelihood_weighting,
                    "redundancy": self.metric.redundancy is not None,
                    "judge": {"mode": self.metric.judge.mode, "scale": self.metric.judge.scale},
                },
            },
        )

    # ------------------------------------------------------------------ main loop
    def execute(self, valset: list[dspy.Example] | None) -> dspy.Module:
        logger.info(
            "PICACO: %d prompts, %d values, predictors %s, %d iterations",
            len(self.pools),
            len(self.values),
            self.targets,
            self.opt.num_iterations,
        )
        n, jc = len(self.pools), self._judge_calls_per_response()
        if self.opt.noisy_pool_size and self._affordable(
            n * self.opt.noisy_samples_per_prompt + n * self.opt.noisy_pool_size * jc, "the noisy pool"
        ):
            self._build_noisy_pool()
        current = self.seed_instruction
        history: list[tuple[str, float]] = []
        iteration_cost = n * self.opt.samples_per_prompt * (1 + jc) + self.opt.num_candidates
        for iteration in range(1, self.opt.num_iterations + 1):
            if not self._affordable(iteration_cost, f"iteration {iteration}"):
                if iteration == 1:
                    raise ConfigurationError(
                        f"max_lm_calls={self.opt.max_lm_calls} does not pay for one iteration ({iteration_cost} "
                        "calls expected); raise the budget or shrink the prompts, samples or candidates."
                    )
                break
            record = self._enhance_responses(iteration, current)
            current, candidates, failures = self._refine_instruction(iteration, current, history)
            record.candidates, record.proposal_failures = candidates, failures
            record.instruction, record.J = current, candidates[0].J
            record.usage, record.wall_seconds = self.meter.snapshot(), self._elapsed()
            if iteration == 1:
                seed_rows = [c for c in candidates if c.origin == "current"]
                self.result.seed_J = seed_rows[0].J if seed_rows else None
            self.result.iterations.append(record)
            history.extend((c.instruction, c.J) for c in reversed(candidates))
            logger.info(
                "Iteration %d/%d: J(e) = %.4f, mean r of new responses = %.4f, conformity %s",
                iteration,
                self.opt.num_iterations,
                record.J,
                record.mean_reward,
                _fmt_conformity(record.conformity),
            )
            self._checkpoint()
        best = self._select_final(valset)
        return self._finish(best)

    # ------------------------------------------------------------------ budget
    def _judge_calls_per_response(self) -> int:
        return 1 if self.metric.judge.mode == "joint" else len(self.values)

    def _spent(self) -> int:
        usage = self.meter.snapshot()
        return sum(usage[role]["calls"] for role in ("target", "judge", "proposer"))

    def _affordable(self, cost: int, phase: str) -> bool:
        """Whether ``cost`` more calls fit the budget; logs and marks the run when they do not."""
        if self.opt.max_lm_calls is None or self._spent() + cost <= self.opt.max_lm_calls:
            return True
        if not self.result.budget_stopped:
            logger.info("Budget: %s would need about %d calls, %d of %d are left; stopping here", phase, cost,
                        self.opt.max_lm_calls - self._spent(), self.opt.max_lm_calls)
        self.result.budget_stopped = True
        return False

    # ------------------------------------------------------------------ noisy pool
    def _build_noisy_pool(self) -> None:
        n = self.opt.noisy_samples_per_prompt
        rollouts = self._rollouts(None, iteration=0, samples=n)
        by_prompt: dict[int, list[tuple[int, str]]] = {}
        failed = 0
        for (i, rollout_id), outcome in rollouts:
            if isinstance(outcome, Exception):
                failed += 1
            else:
                by_prompt.setdefault(i, []).append((rollout_id, outcome))
        # rank by q_phi (cheap, embeddings only), then judge only the M2 kept per prompt
        keep: list[tuple[int, int, str]] = []
        for i, items in by_prompt.items():
            prompt = self.pools[i].prompt
            q_phi = self.metric.redundancy_of([prompt] * len(items), [r for _, r in items])
            ranked = sorted(zip(items, q_phi), key=lambda it: (-(it[1] or 0.0), it[0][0], it[0][1]))
            seen: set[str] = set()
            for (rollout_id, response), _ in ranked:
                if response.strip() in seen:
                    continue
                seen.add(response.strip())
                keep.append((i, rollout_id, response))
                if len(seen) >= self.opt.noisy_pool_size:
                    break
        scored = self._score([(self.pools[i].prompt, r) for i, _, r in keep])
        per_prompt: dict[int, list[PooledResponse]] = {}
        for (i, rollout_id, response), score in zip(keep, scored):
            if isinstance(score, Exception):
                failed += 1
                continue
            per_prompt.setdefault(i, []).append(PooledResponse(response, score, 0, rollout_id, ""))
        for i, pool in enumerate(self.pools):
            pool.set_noisy(per_prompt.get(i, []), self.opt.noisy_pool_size)
        kept = sum(len(p.noisy) for p in self.pools)
        if kept == 0:
            raise PicacoError("Every bare rollout or its judgement failed while building the noisy pool; see the log.")
        self.result.noisy_pool = {
            "sampled": len(rollouts),
            "kept": kept,
            "failed": failed,
            "mean_redundancy": float(np.mean([p.score.redundancy for pl in self.pools for p in pl.noisy])),
        }
        logger.info("Noisy pool: %d bare responses sampled, %d kept, %d failed", len(rollouts), kept, failed)
        self._checkpoint()

    # ------------------------------------------------------------------ Response Enhancement
    def _enhance_responses(self, iteration: int, instruction: str) -> IterationRecord:
        rollouts = self._rollouts(instruction, iteration=iteration, samples=self.opt.samples_per_prompt)
        ok = [(key, out) for key, out in rollouts if not isinstance(out, Exception)]
        failed = len(rollouts) - len(ok)
        scored = self._score([(self.pools[i].prompt, out) for (i, _), out in ok])
        new: dict[int, list[PooledResponse]] = {}
        fresh_scores: list[ResponseScore] = []
        for ((i, rollout_id), response), score in zip(ok, scored):
            if isinstance(score, Exception):
                failed += 1
                continue
            fresh_scores.append(score)
            new.setdefault(i, []).append(PooledResponse(response, score, iteration, rollout_id, instruction))
        if not fresh_scores:
            raise PicacoError(f"Iteration {iteration}: every rollout or judgement failed; see the log.")
        for i, pool in enumerate(self.pools):
            pool.add_aligned(new.get(i, []), self.opt.aligned_pool_size)
        aligned = [p.reward for pool in self.pools for p in pool.aligned]
        return IterationRecord(
            iteration=iteration,
            sampled_under=instruction,
            new_responses=len(fresh_scores),
            failed_rollouts=failed,
            mean_reward=float(np.mean([s.reward for s in fresh_scores])),
            conformity=_mean_conformity(fresh_scores, self.values.names),
            aligned_pool_mean_reward=float(np.mean(aligned)),
            candidates=[],
            instruction=instruction,
            J=float("nan"),
        )

    # ------------------------------------------------------------------ Instruction Refinement
    def _refine_instruction(
        self, iteration: int, current: str, history: list[tuple[str, float]]
    ) -> tuple[str, list[CandidateRecord], list[str]]:
        pooled = [(pool.prompt, item) for pool in self.pools for item in pool.aligned]
        with self.meter.track("proposer"):
            proposals, failures = self.proposer(
                self.values,
                current,
                history,
                pooled,
                num_candidates=self.opt.num_candidates,
                temperature=self.opt.proposal_temperature,
                rollout_base=self.opt.seed * 1_000_000 + iteration * 1_000,
            )
        candidates = [(current, "current")] + [(p, "proposed") for p in proposals if p != current]
        records = [
            CandidateRecord(text, self._instruction_score(text), iteration, origin) for text, origin in candidates
        ]
        # stable sort: on a tie the current instruction (listed first) stays
        records.sort(key=lambda c: -c.J)
        return records[0].instruction, records, failures

    def _instruction_score(self, instruction: str) -> float:
        own = self.own[self.answer_predictor]

        def system_for(meta_instruction: str) -> str:  # what the answer predictor saw ("" = the bare program)
            return compose(own, meta_instruction) if meta_instruction else own

        pools = [(pool.prompt, pool.items(include_noisy=True, system_for=system_for)) for pool in self.pools]
        return self.metric.instruction_score(system_for(instruction), pools, bare_instruction=own,
                                             usage=self.meter).value

    # ------------------------------------------------------------------ final selection
    def _select_final(self, valset: list[dspy.Example] | None) -> str:
        # everything chosen so far plus every candidate of the last round, ranked by J on the final pools (the last
        # round's candidates were scored on exactly these pools, so their J is memoised and free)
        last_round = [c.instruction for c in self.result.iterations[-1].candidates]
        chosen = [self.seed_instruction] + [r.instruction for r in self.result.iterations]
        pool = list(dict.fromkeys(chosen + last_round))
        final_J = {text: self._instruction_score(text) for text in pool}
        contenders = sorted(pool, key=lambda t: -final_J[t])[: self.opt.final_candidates]
        if self.seed_instruction not in contenders:
            contenders.append(self.seed_instruction)
        if valset is not None and not self._affordable(
            len(contenders) * len(valset) * (1 + self._judge_calls_per_response()), "the valset selection"
        ):
            valset = None
        if valset is None:
            selection = SelectionRecord("pools", {t: final_J[t] for t in contenders})
        else:
            selection = SelectionRecord("valset")
            prompts = [prompt_text(ex, self.metric.prompt_field) for ex in valset]
            for text in contenders:
                rollouts = self._rollouts(
                    text, iteration=_SELECTION_ITERATION, samples=1, inputs=[dict(ex.inputs()) for ex in valset]
                )
                ok = [(i, out) for (i, _), out in rollouts if not isinstance(out, Exception)]
                scored = [s for s in self._score([(prompts[i], out) for i, out in ok]) if not isinstance(s, Exception)]
                selection.failed[text] = len(valset) - len(scored)
                if not scored:
                    raise PicacoError("Every valset rollout or judgement failed during the final selection.")
                selection.scores[text] = float(np.mean([s.reward for s in scored]))
                selection.conformity[text] = _mean_conformity(scored, self.values.names)
        self.result.selection = selection
        return max(contenders, key=lambda t: (selection.scores[t], t != self.seed_instruction))

    def _finish(self, best: str) -> dspy.Module:
        program = with_meta_instruction(self.student, self.own, best)
        instructions = own_instructions(program, self.targets)
        self.result.final_instruction = best
        self.result.final_instructions = instructions
        self.result.finished = True
        self._checkpoint()
        selection = self.result.selection
        program.picaco_result = self.result
        program.score = selection.scores[best]
        program.candidate_programs = [
            {
                "score": score,
                "instruction": text,
                "selected_on": selection.on,
                "chosen": text == best,
                "instructions": {name: compose(self.own[name], text) for name in self.targets},
            }
            for text, score in sorted(selection.scores.items(), key=lambda kv: -kv[1])
        ]
        if self.opt.log_dir is not None:
            program.save(str(self.opt.log_dir / "program.json"))
        usage = self.result.usage
        logger.info(
            "PICACO finished in %.1f s; calls: target %d, judge %d, proposer %d; reference tokens %d",
            self.result.wall_seconds,
            usage["target"]["calls"],
            usage["judge"]["calls"],
            usage["proposer"]["calls"],
            usage["reference"]["input_tokens"],
        )
        return program

    # ------------------------------------------------------------------ plumbing
    def _rollouts(
        self, instruction: str | None, *, iteration: int, samples: int, inputs: list[dict[str, Any]] | None = None
    ) -> list[tuple[tuple[int, int], str | Exception]]:
        """Run the program ``samples`` times per prompt; ``instruction=None`` runs it as given (bare)."""
        inputs = inputs if inputs is not None else [pool.inputs for pool in self.pools]
        own = self.own if instruction is not None else {}
        base = self.opt.seed * 1_000_000 + iteration * 1_000
        programs = [
            with_meta_instruction(
                self.student, own, instruction or "", rollout_id=base + j, temperature=self.opt.response_temperature
            )
            for j in range(samples)
        ]
        jobs = [(i, j) for i in range(len(inputs)) for j in range(samples)]
        outcomes = generate_responses([(programs[j], inputs[i]) for i, j in jobs],
                                      response_field=self.metric.response_field, meter=self.meter,
                                      num_threads=self.opt.num_threads, progress=self.opt.progress)
        return [((i, base + j), out) for (i, j), out in zip(jobs, outcomes)]

    def _score(self, items: list[tuple[str, str]]) -> list[ResponseScore | Exception]:
        return score_responses(self.metric, items, meter=self.meter, num_threads=self.opt.num_threads,
                               progress=self.opt.progress)

    def _elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def _checkpoint(self) -> None:
        self.result.usage = self.meter.snapshot()
        self.result.wall_seconds = self._elapsed()
        if self.opt.log_dir is None:
            return
        self.result.save(self.opt.log_dir / "run.json")
        write_json(self.opt.log_dir / "pools.json", [pool.to_dict() for pool in self.pools])


# ---------------------------------------------------------------------- helpers
def _check_examples(name: str, examples: Any, prompt_field: str | None) -> list[dspy.Example]:
    if examples is None or isinstance(examples, (str, bytes)) or not hasattr(examples, "__iter__"):
        raise ConfigurationError(f"{name} must be a list of dspy.Example, got {type(examples).__name__}.")
    examples = list(examples)
    if not examples:
        raise ConfigurationError(f"{name} is empty: give at least one dspy.Example with .with_inputs(...).")
    for k, ex in enumerate(examples):
        if not isinstance(ex, dspy.Example):
            raise ConfigurationError(f"{name}[{k}] is a {type(ex).__name__}, not a dspy.Example.")
        prompt_text(ex, prompt_field)  # raises a clear error when the example has no inputs
    return examples


def _mean_conformity(scores: Sequence[ResponseScore], names: Sequence[str]) -> dict[str, float]:
    return {n: float(np.mean([s.conformity[n] for s in scores])) for n in names}


def _fmt_conformity(conformity: dict[str, float]) -> str:
    return ", ".join(f"{n} {c:.2f}" for n, c in conformity.items())

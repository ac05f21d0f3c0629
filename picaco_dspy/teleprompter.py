"""The PICACO teleprompter: alternate Response Enhancement and Instruction Refinement on any DSPy program."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dspy
import numpy as np
from dspy.teleprompt import Teleprompter

from picaco_dspy.batch import judge_response, run_program
from picaco_dspy.bound import ResponseScore, TotalCorrelationBound, prompt_text
from picaco_dspy.budget import BUDGET_ROLES, Budget
from picaco_dspy.errors import ConfigurationError, PicacoError
from picaco_dspy.pools import PooledResponse, PromptPool
from picaco_dspy.program_edit import (
    compose,
    own_instructions,
    require_text_output,
    target_predictors,
    with_meta_instruction,
)
from picaco_dspy.proposer import InstructionProposer
from picaco_dspy.response_screening import SCREEN_VERSION
from picaco_dspy.result import CandidateRecord, IterationRecord, PICACOResult, SelectionRecord, write_json
from picaco_dspy.retries import RetryPolicy
from picaco_dspy.run_store import DEFAULT_STORAGE, RunStore, redact_url, resolve_storage_url
from picaco_dspy.schedule import PRESETS, Schedule, ScheduleSteering, StepSettings, resolve_schedule
from picaco_dspy.shared_work import JobFailed, WorkBoard, job_key
from picaco_dspy.usage import UsageMeter, price_per_token
from picaco_dspy.validation import require_int

logger = logging.getLogger(__name__)

_MAX_SAMPLES = 999  # rollout ids are seed * 10^6 + iteration * 10^3 + sample
_SELECTION_ITERATION = 999


class PICACO(Teleprompter):
    """Pluralistic In-Context value Alignment via total COrrelation optimisation (Jiang et al., arXiv 2507.16679).

    Optimises one meta-instruction ``e``, appended to the instructions of the predictors that write the program's
    answer, so that responses carry every value of a composition. Each iteration samples responses under the current
    instruction and keeps the best ``M1`` per prompt (Response Enhancement), then asks the proposer for new
    instructions and keeps the one with the highest ``J(e)`` (Instruction Refinement).

    The schedule is the paper's fixed one by default (T=10, M1=10, M2=15, 4 candidates); ``auto`` lets Optuna pick
    each step's settings and stop early (see :mod:`picaco_dspy.schedule`). Schedule arguments given explicitly fix
    that setting and override the preset.

    Every paid result (rollouts, judgements, proposals, ``J(e)`` values, schedule decisions) is stored in
    ``storage`` the moment it exists. Running the same compile again resumes the run: nothing already paid for is
    requested again and the final program is the one an uninterrupted run gives. Processes that compile with the same
    configuration and a shared storage URL work on one run together (see ``picaco worker``).

    Args:
        metric: The objective; its judge scores responses and its reference model ranks instructions.
        prompt_model: Proposer LM; None uses the LM configured when ``compile`` runs.
        proposer: A custom proposer with :class:`InstructionProposer`'s call signature, e.g. :class:`TemplateProposer`
            for offline runs without a capable LM; None builds an :class:`InstructionProposer` on ``prompt_model``.
            PICACO asks for one candidate per call (``num_candidates=1``, ``rollout_base`` advancing), so that each
            paid proposal is stored on its own and proposals run in parallel.
        auto: ``"light"``, ``"medium"`` or ``"heavy"``: an Optuna-steered schedule of that size; None: the fixed
            paper schedule.
        num_iterations: ``T`` (with ``auto``: the most iterations). Default 10.
        num_candidates: Instructions proposed per iteration (the current one always competes too). Default 4.
        aligned_pool_size: ``M1``, responses kept per prompt in the aligned pool. Default 10.
        noisy_pool_size: ``M2``, bare responses kept per prompt in the noisy pool (0 disables it). Default 15.
        samples_per_prompt: New responses sampled per prompt per iteration. Default 2.
        noisy_samples_per_prompt: Bare responses sampled per prompt to pick the noisy pool from (default ``2 * M2``).
        response_temperature: Sampling temperature of the target program.
        proposal_temperature: Sampling temperature of the proposer. Default 1.0.
        minibatch_size: Prompts per minibatch when ranking candidates (default: all prompts; with ``auto``, Optuna
            picks it and may prune a step between minibatches).
        patience: Stop after this many iterations in a row whose ``J`` gain is below ``min_improvement`` (default:
            never for the fixed schedule, the preset's with ``auto``).
        min_improvement: Smallest ``J`` gain that counts as progress (default 1e-3).
        predictor_names: Predictors that receive the meta-instruction (None: all of them).
        final_candidates: How many instructions compete in the final selection: the best by J on the final pools among
            the instructions chosen in any iteration and the candidates of the last one (the seed always competes).
        num_threads: Parallel LM calls (None: DSPy's setting).
        max_lm_calls: Budget of target + judge + proposer calls.
        max_tokens: Budget of their input + output tokens.
        max_cost_usd: Budget in US dollars, priced from litellm's price table (every model used must have a price:
            ``litellm.register_model`` adds one; in-process ``local/...`` models are free). Before each phase its
            expected cost is checked against every budget; when it does not fit, the run stops cleanly, selects among
            what it has (on the valset when the rest of the budget pays for it, else on the pools) and is marked
            ``budget_stopped``. Judge retries can overshoot by a few calls.
        seed: Seeds every rollout id and the Optuna sampler.
        storage: Where the run's paid results live: ``"default"`` (an SQLite file in ``$PICACO_CACHE_DIR``, or
            ``$PICACO_STORAGE``), an SQLAlchemy URL (``sqlite:///run.db``, ``postgresql+psycopg://user@host/db``), an
            SQLite file path, or None (memory only: nothing survives the process).
        run_name: The run to start or join (default: derived from the configuration, so the same command resumes the
            same run). A name already used with another configuration is an error.
        run_spec: JSON-ready description stored with the run (the CLI stores its arguments, for ``picaco worker``).
        claim_timeout: Seconds after which a silent worker's unfinished jobs are taken over by another.
        retry_policy: Retries of calls that failed transiently (timeouts, 429 with ``Retry-After``, 5xx), with
            exponential backoff (default :class:`RetryPolicy`: 4 retries from 1 s). Past the bound the run stops with
            :class:`ProviderUnavailable`; what was paid stays stored, so the same command resumes. Other failures
            (unparseable answers, 4xx) are recorded, counted and kept out of every score.
        log_dir: Where ``run.json`` and ``pools.json`` are written after every iteration, and ``program.json`` at
            the end.
        progress: Show progress bars.

    Examples:
        >>> optimizer = PICACO(metric=metric, prompt_model=proposer_lm, auto="light", max_cost_usd=2.0)
        >>> aligned = optimizer.compile(program, trainset=prompts, valset=heldout)
        >>> aligned.picaco_result.final_instruction
    """

    def __init__(
        self,
        metric: TotalCorrelationBound,
        *,
        prompt_model: dspy.BaseLM | None = None,
        proposer: Callable[..., tuple[list[str], list[str]]] | None = None,
        auto: str | None = None,
        num_iterations: int | None = None,
        num_candidates: int | None = None,
        aligned_pool_size: int | None = None,
        noisy_pool_size: int | None = None,
        samples_per_prompt: int | None = None,
        noisy_samples_per_prompt: int | None = None,
        response_temperature: float = 1.0,
        proposal_temperature: float | None = None,
        minibatch_size: int | None = None,
        patience: int | None = None,
        min_improvement: float | None = None,
        predictor_names: Sequence[str] | None = None,
        final_candidates: int = 3,
        num_threads: int | None = None,
        max_lm_calls: int | None = None,
        max_tokens: int | None = None,
        max_cost_usd: float | None = None,
        seed: int = 0,
        storage: str | None = DEFAULT_STORAGE,
        run_name: str | None = None,
        run_spec: dict[str, Any] | None = None,
        claim_timeout: float = 30.0,
        retry_policy: RetryPolicy | None = None,
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
        if auto is not None and auto not in PRESETS:
            raise ConfigurationError(f"auto must be one of {PRESETS} or None (the fixed paper schedule), got {auto!r}.")
        for name, value, low, high in (
            ("num_iterations", num_iterations, 1, None),
            ("num_candidates", num_candidates, 1, None),
            ("aligned_pool_size", aligned_pool_size, 1, None),
            ("noisy_pool_size", noisy_pool_size, 0, None),
            ("samples_per_prompt", samples_per_prompt, 1, _MAX_SAMPLES),
            ("minibatch_size", minibatch_size, 1, None),
            ("patience", patience, 1, None),
            ("num_threads", num_threads, 1, None),
            ("max_lm_calls", max_lm_calls, 1, None),
            ("max_tokens", max_tokens, 1, None),
        ):
            if value is not None:
                require_int(name, value, low, high)
        require_int("final_candidates", final_candidates, 1)
        require_int("seed", seed, 0)
        for name, value in (
            ("response_temperature", response_temperature),
            ("proposal_temperature", proposal_temperature),
        ):
            if value is None and name == "proposal_temperature":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 2:
                raise ConfigurationError(
                    f"{name} must be in (0, 2] (distinct samples need a temperature > 0), got {value!r}."
                )
        for name, value in (("max_cost_usd", max_cost_usd), ("min_improvement", min_improvement),
                            ("claim_timeout", claim_timeout)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ConfigurationError(f"{name} must be a non-negative number, got {value!r}.")
        if max_cost_usd is not None and max_cost_usd <= 0:
            raise ConfigurationError(f"max_cost_usd must be positive, got {max_cost_usd!r}.")
        if claim_timeout <= 1:
            raise ConfigurationError(f"claim_timeout must exceed 1 second (heartbeats are sent more often), got "
                                     f"{claim_timeout!r}.")
        if proposer is not None and not callable(proposer):
            raise ConfigurationError("proposer must be callable like InstructionProposer (or None).")
        if run_name is not None and (not isinstance(run_name, str) or not run_name.strip() or len(run_name) > 200):
            raise ConfigurationError(
                f"run_name must be a non-empty string of at most 200 characters, got {run_name!r}."
            )
        self.metric = metric
        self.prompt_model = prompt_model
        self.proposer = proposer
        self.auto = auto
        self.num_iterations = num_iterations
        self.num_candidates = num_candidates
        self.aligned_pool_size = aligned_pool_size
        self.noisy_pool_size = noisy_pool_size
        self.samples_per_prompt = samples_per_prompt
        self.noisy_samples_per_prompt = noisy_samples_per_prompt
        self.response_temperature = float(response_temperature)
        self.proposal_temperature = proposal_temperature
        self.minibatch_size = minibatch_size
        self.patience = patience
        self.min_improvement = min_improvement
        self.predictor_names = list(predictor_names) if predictor_names is not None else None
        self.final_candidates = final_candidates
        self.num_threads = num_threads
        self.max_lm_calls = max_lm_calls
        self.max_tokens = max_tokens
        self.max_cost_usd = max_cost_usd
        self.seed = seed
        resolve_storage_url(storage)  # a malformed URL or a missing driver is named now, not after the first calls
        self.storage = storage
        self.run_name = run_name
        self.run_spec = run_spec
        self.claim_timeout = float(claim_timeout)
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise ConfigurationError(f"retry_policy must be a RetryPolicy, got {type(retry_policy).__name__}.")
        self.retry_policy = retry_policy or RetryPolicy()
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.progress = progress
        self.schedule = resolve_schedule(
            auto,
            {
                "num_iterations": num_iterations,
                "num_candidates": num_candidates,
                "aligned_pool_size": aligned_pool_size,
                "noisy_pool_size": noisy_pool_size,
                "samples_per_prompt": samples_per_prompt,
                "proposal_temperature": proposal_temperature,
                "minibatch_size": minibatch_size,
                "patience": patience,
                "min_improvement": min_improvement,
            },
        )
        m2 = self.schedule.noisy_pool_size
        if noisy_samples_per_prompt is None:
            noisy_samples_per_prompt = 2 * m2
        require_int("noisy_samples_per_prompt", noisy_samples_per_prompt, m2, _MAX_SAMPLES)
        self.noisy_samples = noisy_samples_per_prompt
        self.budget = Budget(max_lm_calls, max_tokens, max_cost_usd)

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
            ConfigurationError: ``teacher`` is given, ``trainset``/``valset`` are not usable examples, a model has no
                price while ``max_cost_usd`` is set, or the run name is taken by another configuration.
            ProgramError: the program has no (or no such) predictors.
            PicacoError: every rollout of a phase failed.
        """
        if teacher is not None:
            raise ConfigurationError("PICACO samples from the student itself and takes no teacher; pass teacher=None.")
        trainset = _check_examples("trainset", trainset, self.metric.prompt_field)
        valset = _check_examples("valset", valset, self.metric.prompt_field) if valset is not None else None
        run = _Run(self, student, trainset, valset)
        try:
            return run.execute()
        finally:
            run.close()


class _Run:
    """State of one compile call (kept off the teleprompter so that ``get_params`` stays the constructor's)."""

    def __init__(
        self, opt: PICACO, student: dspy.Module, trainset: list[dspy.Example], valset: list[dspy.Example] | None
    ) -> None:
        self.opt = opt
        self.schedule: Schedule = opt.schedule
        self.metric = opt.metric
        self.values = opt.metric.values
        self.student = student
        self.valset = valset
        self.targets = target_predictors(student, opt.predictor_names)
        self.own = own_instructions(student, self.targets)
        self.answer_predictor = self.targets[-1]
        require_text_output(student, self.answer_predictor)
        self.meter = UsageMeter()
        self.started = time.monotonic()
        self.pools = [PromptPool(prompt_text(ex, opt.metric.prompt_field), dict(ex.inputs())) for ex in trainset]
        self.proposer = opt.proposer or InstructionProposer(opt.prompt_model)
        self.seed_instruction = self.values.seed_instruction()
        models = _models(student, self.targets, self.metric, opt.prompt_model if opt.proposer is None else False)
        if opt.max_cost_usd is not None:
            unpriced = sorted(
                {m for role, m in models.items() if role != "reference" and m and price_per_token(m) is None}
            )
            if unpriced:
                raise ConfigurationError(
                    f"max_cost_usd needs a price for every model, and litellm has none for {unpriced}: add one with "
                    "litellm.register_model({name: {'input_cost_per_token': ..., 'output_cost_per_token': ..., "
                    "'litellm_provider': ..., 'mode': 'chat'}}) or budget with max_lm_calls / max_tokens."
                )
        config = {
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
                "judge": {
                    "mode": self.metric.judge.mode,
                    "scale": self.metric.judge.scale,
                    "defence": SCREEN_VERSION if self.metric.judge.hardened else "off",
                },
            },
        }
        fingerprint = job_key(
            "picaco-run",
            self.values.to_dict(),
            self.own,
            [sorted(p.inputs.items()) for p in self.pools],
            [sorted(dict(ex.inputs()).items()) for ex in valset] if valset is not None else None,
            self.schedule.to_dict(),
            {k: config[k] for k in ("response_temperature", "final_candidates", "seed", "predictor_names")},
            opt.noisy_samples,
            config["metric"],
            models,
            type(self.proposer).__name__,
        )
        run_name = opt.run_name or f"picaco-{fingerprint[:16]}"
        url = resolve_storage_url(opt.storage)
        self.store = RunStore(url, heartbeat_seconds=min(5.0, opt.claim_timeout / 4),
                              stale_after_seconds=opt.claim_timeout)
        self.board: WorkBoard | None = None
        try:
            resumed = self.store.open_run(run_name, fingerprint, opt.run_spec)
            self.board = WorkBoard(self.store, run_name, meter=self.meter, num_threads=opt.num_threads,
                                   progress=opt.progress, retry_policy=opt.retry_policy)
            self.steering = (
                ScheduleSteering(self.schedule, storage=url, study_name=run_name, seed=opt.seed,
                                 n_prompts=len(self.pools))
                if self.schedule.steered
                else None
            )
        except BaseException:
            self.close()
            raise
        if resumed:
            logger.info("PICACO: joining run %r in %s (stored results are reused)", run_name, _describe(url))
        self.result = PICACOResult(
            values=self.values.to_dict(),
            predictor_names=self.targets,
            seed_instruction=self.seed_instruction,
            config={**config, "models": models, "budget": opt.budget.to_dict()},
            run_name=run_name,
            storage=_describe(url),
            schedule=self.schedule.to_dict(),
        )

    def close(self) -> None:
        """Leave the run (release unfinished claims, stop the heartbeat) and close the storage."""
        try:
            if self.board is not None:
                self.board.close()
        finally:
            self.store.close()

    # ------------------------------------------------------------------ main loop
    def execute(self) -> dspy.Module:
        schedule = self.schedule
        logger.info(
            "PICACO run %s: %d prompts, %d values, predictors %s, up to %d iterations (%s schedule)",
            self.result.run_name,
            len(self.pools),
            len(self.values),
            self.targets,
            schedule.max_iterations,
            f"Optuna-steered {self.opt.auto}" if schedule.steered else "fixed",
        )
        n, jc = len(self.pools), self._judge_calls_per_response()
        if schedule.noisy_pool_size and self._affordable(
            {"target": n * self.opt.noisy_samples, "judge": n * schedule.noisy_pool_size * jc}, "noisy-pool"
        ):
            self._build_noisy_pool()
        current = self.seed_instruction
        history: list[tuple[str, float]] = []
        for iteration in range(1, schedule.max_iterations + 1):
            settings = self._settings(iteration)
            cost = {
                "target": n * settings.samples_per_prompt,
                "judge": n * settings.samples_per_prompt * jc,
                "proposer": settings.num_candidates,
            }
            if not self._affordable(cost, f"iteration-{iteration}"):
                if iteration == 1:
                    raise ConfigurationError(
                        f"The budget does not pay for one iteration ({sum(cost.values())} calls expected; "
                        f"{self.result.stop_reason}); raise it or shrink the prompts, samples or candidates."
                    )
                break
            record = self._enhance_responses(iteration, current, settings)
            current, candidates, failures, gain, pruned, ranked = self._refine_instruction(
                iteration, current, history, settings
            )
            record.candidates, record.proposal_failures = candidates, failures
            record.instruction = current
            record.J = next(c.J for c in candidates if c.instruction == current)
            record.settings, record.gain, record.pruned = settings.to_dict(), gain, pruned
            record.ranked_prompts = ranked
            record.usage, record.wall_seconds = self._ledger(), self._elapsed()
            if iteration == 1:
                seed_rows = [c for c in candidates if c.origin == "current"]
                self.result.seed_J = seed_rows[0].J if seed_rows else None
            self.result.iterations.append(record)
            history.extend((c.instruction, c.J) for c in reversed(candidates))
            logger.info(
                "Iteration %d/%d: J(e) = %.4f (gain %+.4f%s), mean r of new responses = %.4f, conformity %s",
                iteration,
                schedule.max_iterations,
                record.J,
                gain,
                ", pruned" if pruned else "",
                record.mean_reward,
                _fmt_conformity(record.conformity),
            )
            self._checkpoint()
            if self._stalled():
                self.result.stop_reason = (
                    f"early stop: {schedule.patience} iterations in a row gained less than {schedule.min_improvement}"
                )
                logger.info("PICACO: %s", self.result.stop_reason)
                break
        best = self._select_final()
        return self._finish(best)

    def _settings(self, iteration: int) -> StepSettings:
        if self.steering is None:
            return self.schedule.default_step(len(self.pools))
        data = self.board.decide("step", job_key(iteration), lambda: self.steering.ask(iteration).to_dict())
        return StepSettings(**data)

    def _stalled(self) -> bool:
        patience = self.schedule.patience
        recent = self.result.iterations[-patience:] if patience else []
        return bool(patience) and len(recent) == patience and all(
            r.pruned or r.gain < self.schedule.min_improvement for r in recent
        )

    # ------------------------------------------------------------------ budget
    def _judge_calls_per_response(self) -> int:
        return 1 if self.metric.judge.mode == "joint" else len(self.values)

    def _ledger(self) -> dict[str, dict[str, Any]]:
        ledger = self.store.ledger(self.result.run_name)
        empty = {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        return {
            role: {**(u := ledger.get(role, empty)), "total_tokens": u["input_tokens"] + u["output_tokens"]}
            for role in (*BUDGET_ROLES, "reference")
        }

    def _affordable(self, expected: dict[str, int], phase: str) -> bool:
        """Whether the ``expected`` calls per role fit every budget; decided once per run (all workers and resumes
        agree)."""
        budget = self.opt.budget
        if not budget.limited:
            return True

        def decide() -> dict[str, Any]:
            ledger = self._ledger()
            return {"shortfall": budget.shortfall({r: ledger[r] for r in BUDGET_ROLES}, expected)}

        shortfall = self.board.decide("budget", job_key(phase, budget.to_dict()), decide)["shortfall"]
        if shortfall is None:
            return True
        if not self.result.budget_stopped:
            logger.info("Budget: %s: %s; stopping here", phase, shortfall)
            self.result.stop_reason = f"budget: {phase}: {shortfall}"
        self.result.budget_stopped = True
        return False

    # ------------------------------------------------------------------ noisy pool
    def _build_noisy_pool(self) -> None:
        n = self.opt.noisy_samples
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
                if len(seen) >= self.schedule.noisy_pool_size:
                    break
        scored = self._score([(self.pools[i].prompt, r) for i, _, r in keep])
        per_prompt: dict[int, list[PooledResponse]] = {}
        for (i, rollout_id, response), score in zip(keep, scored):
            if isinstance(score, Exception):
                failed += 1
                continue
            per_prompt.setdefault(i, []).append(PooledResponse(response, score, 0, rollout_id, ""))
        for i, pool in enumerate(self.pools):
            pool.set_noisy(per_prompt.get(i, []), self.schedule.noisy_pool_size)
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
    def _enhance_responses(self, iteration: int, instruction: str, settings: StepSettings) -> IterationRecord:
        rollouts = self._rollouts(instruction, iteration=iteration, samples=settings.samples_per_prompt)
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
            pool.add_aligned(new.get(i, []), self.schedule.pool_capacity)
        aligned = [p.reward for pool in self.pools for p in pool.aligned[: settings.aligned_pool_size]]
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
        self, iteration: int, current: str, history: list[tuple[str, float]], settings: StepSettings
    ) -> tuple[str, list[CandidateRecord], list[str], float, bool, int]:
        m1 = settings.aligned_pool_size
        pooled = [(pool.prompt, item) for pool in self.pools for item in pool.aligned[:m1]]
        rollout_base = self.opt.seed * 1_000_000 + iteration * 1_000

        def propose(index: int) -> dict[str, list[str]]:  # one candidate per job: each paid proposal is stored
            proposals, failures = self.proposer(
                self.values,
                current,
                history,
                pooled,
                num_candidates=1,
                temperature=settings.proposal_temperature,
                rollout_base=rollout_base + index,
            )
            return {"proposals": list(proposals), "failures": list(failures)}

        context = job_key(iteration, current, history, [(p, it.response, it.reward) for p, it in pooled],
                          settings.proposal_temperature)
        jobs = {job_key(context, rollout_base + index): index for index in range(settings.num_candidates)}
        outcomes = self.board.run("proposal", jobs, propose, role="proposer", describe="proposing")
        proposals, failures = [], []
        for key, index in jobs.items():
            outcome = outcomes[key]
            if isinstance(outcome, JobFailed):
                failures.append(f"proposal {index}: {outcome}")
            else:
                proposals += outcome["proposals"]
                failures += [f"proposal {index}: {f.split(': ', 1)[-1]}" for f in outcome["failures"]]
        texts = [current] + [p for p in dict.fromkeys(proposals) if p != current]
        origins = ["current"] + ["proposed"] * (len(texts) - 1)

        # rank on successive minibatches of prompts; Optuna may prune the step between minibatches
        order = np.random.default_rng([self.opt.seed, iteration]).permutation(len(self.pools)).tolist()
        size = max(1, settings.minibatch_size)
        batches = [order[k : k + size] for k in range(0, len(order), size)]
        totals = np.zeros(len(texts))
        weight = 0
        pruned, ranked, intermediate = False, 0, {}
        for step, batch in enumerate(batches):
            scores, count = self._instruction_scores(texts, batch, m1)
            if count == 0:
                continue
            totals += np.asarray(scores) * count
            weight += count
            ranked += len(batch)
            gain = float(np.max(totals / weight) - totals[0] / weight)
            intermediate[step] = gain
            if self.steering is not None and step < len(batches) - 1:
                pruned = self.board.decide(
                    "prune", job_key(iteration, step), lambda g=gain, s=step: self.steering.report(settings, s, g)
                )
                if pruned:
                    break
        J = totals / max(weight, 1)
        records = [CandidateRecord(t, float(J[k]), iteration, o) for k, (t, o) in enumerate(zip(texts, origins))]
        # stable sort: on a tie the current instruction (listed first) stays
        records.sort(key=lambda c: -c.J)
        chosen = current if pruned else records[0].instruction
        gain = 0.0 if pruned else float(records[0].J - J[0])
        if self.steering is not None:
            self.board.decide(
                "tell",
                job_key(iteration),
                lambda: self.steering.tell(iteration, settings, gain, pruned, intermediate) or True,
            )
        return chosen, records, failures, gain, pruned, ranked

    def _instruction_scores(self, texts: list[str], prompts: list[int], m1: int | None) -> tuple[list[float], int]:
        """``J`` of each instruction over the given prompts' pools (stored per pool content), and how many of those
        pools are non-empty."""
        own = self.own[self.answer_predictor]

        def system_for(meta_instruction: str) -> str:  # what the answer predictor saw ("" = the bare program)
            return compose(own, meta_instruction) if meta_instruction else own

        pools = [(self.pools[i].prompt, self.pools[i].items(True, system_for, m1)) for i in prompts]
        pools = [(prompt, items) for prompt, items in pools if items]
        if not pools:
            return [0.0] * len(texts), 0
        content = job_key([(p, [(it.response, it.reward, it.origin) for it in items]) for p, items in pools])
        jobs = {job_key(text, content): text for text in texts}

        def score(text: str, job_meter: UsageMeter) -> float:
            return self.metric.instruction_score(system_for(text), pools, bare_instruction=own, usage=job_meter).value

        results = self.board.run("J", jobs, score, role="reference", describe="ranking", records_own_usage=True)
        return [float(results[k]) for k in jobs], len(pools)

    # ------------------------------------------------------------------ final selection
    def _select_final(self) -> str:
        # everything chosen so far plus every candidate of the last round, ranked by J on the final pools
        if not self.result.iterations:
            raise PicacoError("PICACO ran no iteration; see the log.")
        last = self.result.iterations[-1]
        last_round = [c.instruction for c in last.candidates]
        chosen = [self.seed_instruction] + [r.instruction for r in self.result.iterations]
        pool = list(dict.fromkeys(chosen + last_round))
        scores, _ = self._instruction_scores(pool, list(range(len(self.pools))), last.settings.get("aligned_pool_size"))
        final_J = dict(zip(pool, scores))
        contenders = sorted(pool, key=lambda t: -final_J[t])[: self.opt.final_candidates]
        if self.seed_instruction not in contenders:
            contenders.append(self.seed_instruction)
        valset = self.valset
        rollouts = len(contenders) * len(valset) if valset is not None else 0
        if valset is not None and not self._affordable(
            {"target": rollouts, "judge": rollouts * self._judge_calls_per_response()}, "valset-selection"
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
            "PICACO finished in %.1f s; calls: target %d, judge %d, proposer %d; reference tokens %d; %d stored "
            "results reused",
            self.result.wall_seconds,
            usage["target"]["calls"],
            usage["judge"]["calls"],
            usage["proposer"]["calls"],
            usage["reference"]["input_tokens"],
            self.result.reused_results,
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
        programs: dict[int, dspy.Module] = {}

        def program(j: int) -> dspy.Module:
            if j not in programs:
                programs[j] = with_meta_instruction(
                    self.student, own, instruction or "", rollout_id=base + j,
                    temperature=self.opt.response_temperature,
                )
            return programs[j]

        slots = [(i, j) for i in range(len(inputs)) for j in range(samples)]
        jobs = {
            job_key(instruction, sorted(inputs[i].items()), base + j, self.opt.response_temperature): (i, j)
            for i, j in slots
        }
        for j in range(samples):  # built here, not in the worker threads
            program(j)
        results = self.board.run(
            "rollout",
            jobs,
            lambda slot: run_program(programs[slot[1]], inputs[slot[0]], self.metric.response_field),
            role="target",
            describe="responses",
        )
        return [((i, base + j), results[key]) for key, (i, j) in jobs.items()]

    def _score(self, items: list[tuple[str, str]]) -> list[ResponseScore | Exception]:
        """Judge each (prompt, response) once per run; identical pairs share one judgement."""
        keys = [job_key(prompt, response) for prompt, response in items]
        unique = dict(zip(keys, items))
        q_phi = dict(zip(unique, self.metric.redundancy_of([p for p, _ in unique.values()],
                                                           [r for _, r in unique.values()])))
        results = self.board.run(
            "judgement",
            {k: (p, r, q_phi[k]) for k, (p, r) in unique.items()},
            lambda job: _score_value(judge_response(self.metric, *job)),
            role="judge",
            describe="judging",
        )
        return [r if isinstance(r, Exception) else ResponseScore.from_dict(r) for r in (results[k] for k in keys)]

    def _elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def _checkpoint(self) -> None:
        self.result.usage = self._ledger()
        self.result.worker_usage = self.meter.snapshot()
        self.result.reused_results = self.board.reused
        self.result.executed_jobs = self.board.executed
        self.result.retries = dict(self.board.retries)
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


def _score_value(score: ResponseScore | Exception) -> dict[str, Any] | Exception:
    return score if isinstance(score, Exception) else score.to_dict()


def _models(
    student: dspy.Module, targets: Sequence[str], metric: TotalCorrelationBound, proposer: Any
) -> dict[str, str | None]:
    """Model names of the target, judge, proposer and reference (part of a run's identity; priced for budgets).

    ``proposer`` is the proposer LM (None: the configured LM), or False for a custom proposer without one.
    """

    def name(lm: Any) -> str | None:
        lm = lm or dspy.settings.lm
        return getattr(lm, "model", None) if lm is not None else None

    predictors = dict(student.named_predictors())
    models = {f"target:{t}": name(getattr(predictors[t], "lm", None)) for t in targets}
    models["judge"] = name(metric.judge.lm)
    models["proposer"] = None if proposer is False else name(proposer)
    models["reference"] = getattr(metric.reference, "model_name", type(metric.reference).__name__)
    return models


def _describe(url: str | None) -> str:
    return redact_url(url)

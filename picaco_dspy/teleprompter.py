"""The PICACO teleprompter: alternate Response Enhancement and Instruction Refinement on any DSPy program."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.objective.bound import TotalCorrelationBound, prompt_text
from picaco_dspy.observe.callbacks import CallbackList
from picaco_dspy.observe.mlflow_tracking import MLflowCallback, default_callbacks
from picaco_dspy.optimize.budget import BudgetGuard, estimate_calls
from picaco_dspy.optimize.loop import run_picaco
from picaco_dspy.optimize.pools import PromptPool
from picaco_dspy.optimize.problem import AlignmentProblem
from picaco_dspy.optimize.program_edit import (
    all_predictors,
    compose,
    own_instructions,
    require_text_output,
    target_predictors,
    with_meta_instruction,
)
from picaco_dspy.optimize.projection import RunProjection, project_compile
from picaco_dspy.optimize.proposer import InstructionProposer
from picaco_dspy.optimize.result import PICACOResult
from picaco_dspy.optimize.schedule import StepPolicy
from picaco_dspy.runtime.identity import model_names, require_prices, run_identity
from picaco_dspy.runtime.retries import RetryPolicy
from picaco_dspy.runtime.session import RunSession
from picaco_dspy.runtime.storage_url import DEFAULT_STORAGE
from picaco_dspy.settings import PICACOSettings

logger = logging.getLogger(__name__)

# constructor arguments that are objects, not settings
_OBJECTS = ("metric", "prompt_model", "proposer", "retry_policy", "run_spec", "callbacks")


class PICACO(Teleprompter):
    """Pluralistic In-Context value Alignment via total COrrelation optimisation (Jiang et al., arXiv 2507.16679).

    Optimises one meta-instruction ``e``, appended to the instructions of the predictors that write the program's
    answer, so that responses carry every value of a composition. Each iteration samples responses under the current
    instruction and keeps the best ``M1`` per prompt (Response Enhancement), then asks the proposer for new
    instructions and keeps the one with the highest ``J(e)`` (Instruction Refinement).

    The schedule is the paper's fixed one by default (T=10, M1=10, M2=15, 4 candidates); ``auto`` lets Optuna pick
    each step's settings and stop early (see :mod:`picaco_dspy.optimize.schedule`). Schedule arguments given
    explicitly fix that setting and override the preset.

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
        teacher_samples_per_prompt: With a ``teacher`` given to ``compile``, its responses per prompt per iteration.
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
        callbacks: :class:`~picaco_dspy.observe.PICACOCallback` objects, told when the run starts, after the noisy
            pool, after every iteration and at the end (one that raises is logged and skipped: it never stops a paid
            run). This is also the teleprompter's DSPy callback list (``on_compile_start`` / ``on_compile_end``).
            When mlflow is imported and a run is active or ``mlflow.dspy.autolog()`` is on, an
            :class:`~picaco_dspy.observe.MLflowCallback` is added unless the list has one.

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
        teacher_samples_per_prompt: int = 1,
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
        request_timeout: float | None = 120.0,
        claim_timeout: float = 30.0,
        retry_policy: RetryPolicy | None = None,
        log_dir: str | Path | None = None,
        progress: bool = True,
        callbacks: Sequence[object] = (),
    ) -> None:
        super().__init__()
        arguments = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
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
        if proposer is not None and not callable(proposer):
            raise ConfigurationError("proposer must be callable like InstructionProposer (or None).")
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise ConfigurationError(f"retry_policy must be a RetryPolicy, got {type(retry_policy).__name__}.")
        if predictor_names is not None:
            arguments["predictor_names"] = list(predictor_names)
        if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
            raise ConfigurationError(f"callbacks must be a list of callback objects, got {type(callbacks).__name__}.")
        arguments["callbacks"] = list(callbacks)  # DSPy's compile wrapper reads this list too
        _settings_of(arguments)  # validates every setting now, before any model runs
        self.__dict__.update(arguments)  # stored as given: get_params() is the constructor's arguments

    @classmethod
    def from_settings(cls, metric: TotalCorrelationBound, settings: PICACOSettings, **objects: Any) -> PICACO:
        """Build from a :class:`PICACOSettings` plus the objects (``prompt_model``, ``proposer``, ``retry_policy``,
        ``run_spec``)."""
        return cls(metric, **objects, **settings.to_kwargs())

    @property
    def settings(self) -> PICACOSettings:
        """The scalar settings, as a :class:`PICACOSettings` (derived from the current parameters)."""
        return _settings_of(self.get_params())

    def estimate(
        self,
        student: dspy.Module,
        trainset: Sequence[dspy.Example],
        valset: Sequence[dspy.Example] | None = None,
        *,
        teacher: Any = None,
    ) -> RunProjection:
        """What :meth:`compile` would spend, per role and phase, under these settings and under the paper's fixed
        schedule, without calling or loading any model (see :mod:`picaco_dspy.optimize.projection`).

        Returns:
            A :class:`RunProjection`; ``print(projection.format_table())`` shows both schedules side by side.

        Raises:
            ConfigurationError / ProgramError: as :meth:`compile` does for the same arguments.

        A teacher's calls are projected as ``target`` calls of the student's shape and price.
        """
        settings = self.settings
        problem, targets, _ = self._prepare(student, trainset, valset, teacher)
        return project_compile(
            problem, student, targets, proposer=self.proposer, prompt_model=self.prompt_model, budget=settings.budget()
        )

    def _prepare(
        self, student: dspy.Module, trainset: Any, valset: Any, teacher: Any
    ) -> tuple[AlignmentProblem, list[str], dict[str, str]]:
        """Check the arguments of compile/estimate and build the problem: (problem, target predictors, their own
        instructions)."""
        settings, metric = self.settings, self.metric
        trainset = _check_examples("trainset", trainset, metric.prompt_field)
        valset = _check_examples("valset", valset, metric.prompt_field) if valset is not None else None
        targets = target_predictors(student, settings.predictor_names)
        own = own_instructions(student, targets)
        require_text_output(student, targets[-1])
        _check_teacher(teacher, targets)
        problem = _problem(metric, settings, trainset, valset, answer_instruction=own[targets[-1]])
        if teacher is not None:
            problem.teacher_samples = settings.teacher_samples_per_prompt
        return problem, targets, own

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

        The returned program has ``picaco_result`` (:class:`PICACOResult`), ``candidate_programs`` (runnable programs,
        best first, ``score`` in the metric's [0, 1] scale) and ``score``. ``student`` is never modified.

        Args:
            student: The program to align.
            trainset: The prompts the pools are built on.
            teacher: Optionally the same program on a stronger LM (or with better demos): each iteration it also
                answers every prompt ``teacher_samples_per_prompt`` times under the current meta-instruction, and its
                responses, judged like the student's, compete for the aligned pools. ``J(e)`` then favours
                instructions under which the student is likely to write what the best responses, the teacher's
                included, say. Its predictors must have the student's names.
            valset: Prompts for the final selection (fresh responses of each finalist); None: select on the pools.

        Raises:
            ConfigurationError: ``trainset``/``valset`` are not usable examples, ``teacher`` is not a program with the
                student's target predictors, a model has no price while ``max_cost_usd`` is set, or the run name is
                taken by another configuration.
            ProgramError: the program has no (or no such) predictors.
            PicacoError: every rollout of a phase failed.
        """
        settings = self.settings
        metric: TotalCorrelationBound = self.metric
        problem, targets, own = self._prepare(student, trainset, valset, teacher)
        schedule = problem.schedule
        proposer = self.proposer or InstructionProposer(self.prompt_model)
        models = model_names(student, targets, metric, self.prompt_model if self.proposer is None else False)
        if teacher is not None and problem.teacher_samples:
            teacher_models = model_names(teacher, targets, metric, False)
            models.update({f"teacher:{t}": teacher_models[f"target:{t}"] for t in targets})
        if settings.max_cost_usd is not None:
            require_prices(models)
        described = settings.to_dict()
        if problem.teacher_samples:  # what the teacher's responses depend on, besides its models
            described["teacher_instructions"] = own_instructions(teacher, targets)
        else:  # runs without a teacher keep the identity they had before teachers existed
            del described["teacher_samples_per_prompt"]
        identity = run_identity(
            settings=described,
            metric=metric,
            own_instructions=own,
            train_inputs=[pool.inputs for pool in problem.pools],
            val_inputs=problem.val_inputs,
            schedule=schedule.to_dict(),
            noisy_samples=settings.noisy_samples,
            models=models,
            proposer_kind=type(proposer).__name__,
            run_name=settings.run_name,
        )
        started = time.monotonic()
        with RunSession(
            identity,
            student=student,
            own_instructions=own,
            metric=metric,
            proposer=proposer,
            schedule=schedule,
            n_prompts=len(problem.pools),
            storage=settings.storage,
            seed=settings.seed,
            response_temperature=float(settings.response_temperature),
            claim_timeout=float(settings.claim_timeout),
            num_threads=settings.num_threads,
            progress=settings.progress,
            retry_policy=self.retry_policy or RetryPolicy(),
            request_timeout=settings.request_timeout,
            run_spec=self.run_spec,
            teacher=teacher if problem.teacher_samples else None,
        ) as session:
            result = PICACOResult(
                values=metric.values.to_dict(),
                predictor_names=targets,
                seed_instruction=problem.seed_instruction,
                config={**identity.config, "models": models, "budget": settings.budget().to_dict()},
                run_name=identity.name,
                storage=session.storage,
                schedule=schedule.to_dict(),
            )
            given = list(self.callbacks)
            automatic = [] if any(isinstance(c, MLflowCallback) for c in given) else default_callbacks()
            callbacks = CallbackList(given + automatic)
            callbacks.on_optimization_start(
                {
                    "run_name": identity.name,
                    "config": result.config,
                    "values": metric.values.names,
                    "seed_instruction": problem.seed_instruction,
                    "schedule": result.schedule,
                }
            )
            policy = StepPolicy(schedule, session.steering, session.decide, len(problem.pools))
            prior = _first_call_estimates(problem, student, targets, own, models)
            guard = BudgetGuard(settings.budget(), session.decide, session.ledger, prior)
            log_dir = str(settings.log_dir) if settings.log_dir is not None else None
            try:
                best = run_picaco(problem, session, policy, guard, result, log_dir=log_dir, callbacks=callbacks)
            except BaseException as error:
                callbacks.on_optimization_end({"result": result, "error": error})
                raise
            result.final_instructions = own_instructions(with_meta_instruction(student, own, best), targets)
            result.finished = True
            result.wall_seconds = round(time.monotonic() - started, 3)
            result.checkpoint(log_dir, problem.pools)
            callbacks.on_optimization_end({"result": result})
        return _package(student, own, targets, result, log_dir, metric)


def _package(
    student: dspy.Module,
    own: dict[str, str],
    targets: list[str],
    result: PICACOResult,
    log_dir: str | None,
    metric: TotalCorrelationBound,
) -> dspy.Module:
    """The aligned copy of ``student`` with DSPy's result attributes.

    ``candidate_programs`` follows MIPROv2 / BetterTogether: runnable programs, best first, each with ``score`` in
    the metric's [0, 1] scale (see :func:`metric_scale_scores`), plus the instruction, its lineage and per-value
    conformity; ``score`` is the chosen program's.
    """
    best = result.final_instruction or ""
    selection = result.selection
    assert selection is not None
    scores, source = metric_scale_scores(result, metric)
    lineage, front = result.lineage(), result.value_front()
    ranked = sorted(selection.scores, key=lambda text: (text != best, -selection.scores[text]))
    program = with_meta_instruction(student, own, best)
    program.picaco_result = result
    program.score = scores.get(best)
    program.candidate_programs = []
    for text in ranked:
        origin = lineage.get(text)
        program.candidate_programs.append(
            {
                "program": program if text == best else with_meta_instruction(student, own, text),
                "score": scores.get(text),
                "score_source": source if text in scores else None,
                "selection_score": selection.scores[text],
                "selected_on": selection.on,
                "chosen": text == best,
                "instruction": text,
                "instructions": {name: compose(own[name], text) for name in targets},
                "conformity": front.scores.get(text),
                "iteration": origin.iteration if origin else None,
                "origin": origin.origin if origin else None,
                "parent": origin.parent if origin else None,
                "proposed_by": origin.proposed_by if origin else None,
            }
        )
    if log_dir is not None:
        program.save(str(Path(log_dir) / "program.json"))
    usage = result.usage
    logger.info(
        "PICACO finished in %.1f s; calls: target %d, judge %d, proposer %d; reference tokens %d; %d stored "
        "results reused",
        result.wall_seconds,
        usage["target"]["calls"],
        usage["judge"]["calls"],
        usage["proposer"]["calls"],
        usage["reference"]["input_tokens"],
        result.reused_results,
    )
    return program


def metric_scale_scores(result: PICACOResult, metric: TotalCorrelationBound) -> tuple[dict[str, float], str]:
    """Each final candidate's score in the metric's [0, 1] scale, and where it was measured.

    On the valset: the mean score of its fresh responses (the metric maps ``r`` linearly, so this is the mean reward
    mapped). When the selection ran on the pools (no valset, or the budget did not pay for it): the mean score of the
    responses sampled under the instruction during the run; candidates nothing was sampled under have none.
    """
    selection = result.selection
    if selection is not None and selection.on == "valset":
        return {text: metric.normalise(r) for text, r in selection.scores.items()}, "valset"
    totals: dict[str, tuple[float, int]] = {}
    for record in result.iterations:
        total, count = totals.get(record.sampled_under, (0.0, 0))
        totals[record.sampled_under] = (total + record.mean_reward * record.new_responses, count + record.new_responses)
    return {text: metric.normalise(t / n) for text, (t, n) in totals.items() if n}, "training samples"


def _problem(
    metric: TotalCorrelationBound,
    settings: PICACOSettings,
    trainset: list[dspy.Example],
    valset: list[dspy.Example] | None,
    *,
    answer_instruction: str,
) -> AlignmentProblem:
    """The pools (one per trainset prompt), the objective and the settings the phases share."""
    field = metric.prompt_field
    return AlignmentProblem(
        metric=metric,
        pools=[PromptPool(prompt_text(ex, field), dict(ex.inputs())) for ex in trainset],
        seed_instruction=metric.values.seed_instruction(),
        answer_instruction=answer_instruction,
        schedule=settings.schedule(),
        noisy_samples=settings.noisy_samples,
        final_candidates=settings.final_candidates,
        val_inputs=[dict(ex.inputs()) for ex in valset] if valset is not None else None,
        val_prompts=[prompt_text(ex, field) for ex in valset] if valset is not None else None,
    )


def _first_call_estimates(
    problem: AlignmentProblem,
    student: dspy.Module,
    targets: list[str],
    own: dict[str, str],
    models: dict[str, str | None],
) -> dict[str, dict[str, float]]:
    """Tokens and cost of one call per role before any call was made, from prompt sizes and length caps."""
    answer_lm = dict(all_predictors(student))[targets[-1]].lm or dspy.settings.lm
    response_tokens = int((getattr(answer_lm, "kwargs", None) or {}).get("max_tokens") or 1000)
    values = problem.values
    return estimate_calls(
        prompt_chars=max(len(pool.prompt) for pool in problem.pools),
        instruction_chars=max(len(text) for text in own.values()) + 2 * len(problem.seed_instruction),
        response_tokens=response_tokens,
        value_chars=sum(len(v.name) + len(v.definition) for v in values),
        judge_calls_per_response=problem.judge_calls_per_response,
        models={
            "target": models.get(f"target:{targets[-1]}"),
            "judge": models["judge"],
            "proposer": models["proposer"],
        },
    )


def _check_teacher(teacher: Any, targets: list[str]) -> None:
    """A teacher must be a DSPy program with the student's target predictors (PICACO edits the same ones)."""
    if teacher is None:
        return
    if not isinstance(teacher, dspy.Module):
        raise ConfigurationError(
            f"teacher must be a DSPy program (the student's program on a stronger LM), got {type(teacher).__name__}."
        )
    names = [name for name, _ in all_predictors(teacher)]
    missing = [t for t in targets if t not in names]
    if missing:
        raise ConfigurationError(
            f"The teacher has no predictor(s) {missing}; its predictors are {names}. Give a copy of the student on "
            "another LM: teacher = student.deepcopy(); teacher.set_lm(strong_lm)."
        )


def _settings_of(params: dict[str, Any]) -> PICACOSettings:
    return PICACOSettings.from_dict({k: v for k, v in params.items() if k not in _OBJECTS})


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

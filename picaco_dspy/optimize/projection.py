"""Cost before spending: the calls, tokens and US dollars a PICACO run is projected to make, per role and phase.

Worked out from the sizes of each kind of call (:mod:`picaco_dspy.optimize.call_shapes`) and the schedule, without
calling or loading a model: :data:`~picaco_dspy.optimize.budget.CHARS_PER_TOKEN` characters to a token, every
response at its length cap, so tokens are an upper bound. Calls are what the schedule asks for (a judgement shared by
identical responses, a cache hit or a retry is not foreseen); the reference model scores each response under each
instruction once per run, as :class:`~picaco_dspy.objective.reference.ReferenceModel` memoises. An Optuna-steered
schedule is projected at the most it allows.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import dspy

from picaco_dspy.optimize.budget import CHARS_PER_TOKEN, Budget
from picaco_dspy.optimize.call_shapes import CallShapes, call_shapes
from picaco_dspy.optimize.problem import AlignmentProblem
from picaco_dspy.optimize.program_edit import SEPARATOR
from picaco_dspy.optimize.schedule import Schedule, StepSettings, paper_schedule
from picaco_dspy.runtime.usage import BUDGET_ROLES, ROLES, price_per_token

logger = logging.getLogger(__name__)

_TEMPLATE_TOKENS = 10  # the chat template's role markers around a reference-model prefix


@dataclass
class RoleProjection:
    """What one role is projected to spend.

    Attributes:
        calls: LM calls (for the reference model: responses scored).
        input_tokens: Prompt tokens.
        output_tokens: Completion tokens.
        usd: US dollars from litellm's price table; None when a model of the role has no price (local: 0).
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = 0.0

    def add(self, other: RoleProjection) -> None:
        """Add ``other`` to this projection (an unpriced part leaves the sum unpriced)."""
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.usd = None if self.usd is None or other.usd is None else self.usd + other.usd


@dataclass
class RunProjection:
    """Projected spending of one schedule, per role and phase, with the paper's fixed schedule alongside.

    Attributes:
        schedule: What was projected, in words.
        upper_bound: An Optuna-steered schedule, projected at its largest settings and every iteration it allows.
        iterations: Iterations projected.
        prompts: Trainset prompts.
        val_prompts: Valset prompts (0: the final selection ranks on the pools).
        roles: Per role (``target``, ``judge``, ``proposer``, ``reference``), the whole run.
        phases: Per phase (``noisy-pool``, ``iteration-<t>``, ``selection``), per role.
        models: Model name per role (the reference model is local: tokens only, $0).
        budget: The run's limits, when any is set.
        paper: The same prompts and models under the paper's fixed schedule (T=10, M1=10, M2=15, 4 candidates).
    """

    schedule: str
    upper_bound: bool
    iterations: int
    prompts: int
    val_prompts: int
    roles: dict[str, RoleProjection]
    phases: dict[str, dict[str, RoleProjection]]
    models: dict[str, str | None]
    budget: dict[str, Any] | None = None
    paper: RunProjection | None = None

    @property
    def lm(self) -> RoleProjection:
        """Target + judge + proposer together: what ``max_lm_calls``, ``max_tokens`` and ``max_cost_usd`` limit."""
        return _sum(self.roles[r] for r in BUDGET_ROLES)

    @property
    def usd(self) -> float | None:
        """Total US dollars (the reference model is free); None when some model has no price."""
        return self.lm.usd

    def budget_warning(self) -> str | None:
        """Which limits the projected spending exceeds and what that does to the run; None when it fits them."""
        if not self.budget:
            return None
        lm, over = self.lm, []
        calls, tokens, usd = (self.budget.get(k) for k in ("max_lm_calls", "max_tokens", "max_cost_usd"))
        if calls is not None and lm.calls > calls:
            over.append(f"{lm.calls:,} calls > max_lm_calls={calls:,}")
        if tokens is not None and lm.input_tokens + lm.output_tokens > tokens:
            over.append(f"{lm.input_tokens + lm.output_tokens:,} tokens > max_tokens={tokens:,}")
        if usd is not None and lm.usd is not None and lm.usd > usd:
            over.append(f"${lm.usd:.4f} > max_cost_usd={usd}")
        if not over:
            return None
        first_calls = _sum(next(iter(self.phases.values()))[r] for r in BUDGET_ROLES).calls
        if calls is not None and first_calls > calls:
            return (
                f"{'; '.join(over)}: the first phase alone needs {first_calls:,} calls, so compile refuses to start "
                "(nothing is spent)"
            )
        return f"{'; '.join(over)}: the run stops early and selects among what it has (budget_stopped)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready projection (the paper's under ``paper``)."""
        return {
            "schedule": self.schedule,
            "upper_bound": self.upper_bound,
            "iterations": self.iterations,
            "prompts": self.prompts,
            "val_prompts": self.val_prompts,
            "models": dict(self.models),
            "roles": {role: asdict(p) for role, p in self.roles.items()},
            "phases": {phase: {r: asdict(p) for r, p in roles.items()} for phase, roles in self.phases.items()},
            "lm": asdict(self.lm),
            "budget": self.budget,
            "paper": self.paper.to_dict() if self.paper is not None else None,
        }

    def format_table(self) -> str:
        """This schedule and the paper's side by side: calls, input and output tokens and USD per role."""
        columns = [("this run", self)] + ([("paper schedule", self.paper)] if self.paper is not None else [])
        lines = [f"Projected spending, before any call ({self.prompts} prompts, {self.val_prompts} held out):"]
        lines += [f"  {label}: {p.schedule}" for label, p in columns]
        cell = 11
        head = f"{'':<10}{'model':<28}" + "".join(f"{label:^{4 * cell}}" for label, _ in columns)
        sub = f"{'role':<10}{'':<28}" + "".join(
            f"{'calls':>{cell}}{'in tokens':>{cell}}{'out tokens':>{cell}}{'USD':>{cell}}" for _ in columns
        )
        lines += ["", head, sub, "-" * len(sub)]
        for role in ROLES:
            model = _short(self.models.get(role) or "-", 27)
            lines.append(f"{role:<10}{model:<28}" + "".join(_cells(p.roles[role], role, cell) for _, p in columns))
        total = "".join(_cells(p.lm, "total", cell) for _, p in columns)
        lines += ["-" * len(sub), f"{'total':<10}{'(target + judge + proposer)':<28}{total}", ""]
        for label, p in columns:
            lines.append(f"{label} by phase (calls target/judge/proposer): " + _phase_summary(p))
        lines.append(
            f"Tokens: characters / {CHARS_PER_TOKEN}, every response at its length cap (an upper bound). The reference "
            "model runs locally: tokens only, $0."
        )
        warning = self.budget_warning()
        if warning:
            lines.append(f"Budget: {warning}.")
        return "\n".join(line.rstrip() for line in lines)


def project_compile(
    problem: AlignmentProblem,
    student: dspy.Module,
    targets: list[str],
    *,
    proposer: Any,
    prompt_model: dspy.BaseLM | None,
    budget: Budget | None = None,
) -> RunProjection:
    """Measure a compile's calls (:func:`call_shapes`) and project them (:func:`project_run`); no model is touched."""
    shapes = call_shapes(problem, student, targets, proposer=proposer, prompt_model=prompt_model)
    return project_run(problem, shapes, budget)


def project_run(problem: AlignmentProblem, shapes: CallShapes, budget: Budget | None = None) -> RunProjection:
    """The run's projection under its own schedule, with the paper's fixed schedule as :attr:`RunProjection.paper`."""
    chosen = _project(problem, shapes, problem.schedule, problem.noisy_samples)
    paper = paper_schedule()
    chosen.paper = _project(problem, shapes, paper, 2 * paper.noisy_pool_size)
    chosen.budget = budget.to_dict() if budget is not None and budget.limited else None
    logger.debug("Projected run: %s", chosen.to_dict())
    return chosen


# ---------------------------------------------------------------------- the phases
def _project(problem: AlignmentProblem, shapes: CallShapes, schedule: Schedule, noisy_samples: int) -> RunProjection:
    n, per_response = len(problem.pools), problem.judge_calls_per_response
    prompt, seed = _mean_prompt(problem), len(problem.seed_instruction)
    val = problem.val_prompts or []
    phases: dict[str, dict[str, RoleProjection]] = {}
    m2 = min(schedule.noisy_pool_size, noisy_samples)
    if schedule.noisy_pool_size:
        phase = _empty()
        _rollouts(phase, shapes, n * noisy_samples, prompt, None)
        _judgements(phase, shapes, n * m2 * per_response, prompt)
        phases["noisy-pool"] = phase
    current, sampled, step = seed, 0, _step(schedule, n)
    for t in range(1, schedule.max_iterations + 1):  # every step alike: a fixed schedule's, or a steered one's most
        sampled += step.samples_per_prompt
        items = min(step.aligned_pool_size, sampled, schedule.pool_capacity) + m2
        phase = _empty()
        answered = step.samples_per_prompt + problem.teacher_samples  # the teacher's calls count as target calls
        _rollouts(phase, shapes, n * answered, prompt, current)
        _judgements(phase, shapes, n * answered * per_response, prompt)
        history = min(8, (step.num_candidates + 1) * (t - 1)) * (shapes.proposal_chars + 14)
        pooled = n * min(step.aligned_pool_size, sampled)
        examples = min(2 * shapes.max_examples, pooled) * shapes.example_chars
        proposer_input = (shapes.proposer_frame_chars + current + history + examples) / CHARS_PER_TOKEN
        calls = shapes.proposer_calls * step.num_candidates
        _charge(phase, "proposer", calls, proposer_input, shapes.proposer_output_tokens, shapes.proposer_model)
        # the reference model memoises: the current instruction was scored on the older responses last time
        new = items if t == 1 else min(step.samples_per_prompt, items)
        scored: list[tuple[int | None, int]] = [(shapes.proposal_chars, items)] * step.num_candidates
        scored += [(current, new), (None, _baseline_items(shapes.likelihood_weighting, t, m2, items, new))]
        _ranking(phase, problem, shapes, scored, n, prompt)
        phases[f"iteration-{t}"] = phase
        current = shapes.proposal_chars  # later iterations: as if a proposal was adopted
    phase = _empty()
    distinct = schedule.max_iterations + step.num_candidates  # seed + each chosen + the last candidates, less repeats
    items = min(step.aligned_pool_size, sampled, schedule.pool_capacity) + m2
    earlier = max(0, schedule.max_iterations - 1)  # instructions chosen before the last round: not yet on these pools
    _ranking(phase, problem, shapes, [(shapes.proposal_chars, items)] * earlier, n, prompt)
    if val:
        contenders = min(problem.final_candidates, distinct) + int(distinct > problem.final_candidates)  # + the seed
        val_prompt = round(statistics.fmean(len(p) for p in val))
        _rollouts(phase, shapes, len(val), val_prompt, seed)  # the seed always competes
        _rollouts(phase, shapes, (contenders - 1) * len(val), val_prompt, shapes.proposal_chars)
        _judgements(phase, shapes, contenders * len(val) * per_response, val_prompt)
    phases["selection"] = phase
    roles = {role: _sum(phase[role] for phase in phases.values()) for role in ROLES}
    return RunProjection(
        schedule=_describe(schedule, noisy_samples, problem.final_candidates),
        upper_bound=schedule.steered,
        iterations=schedule.max_iterations,
        prompts=n,
        val_prompts=len(val),
        roles=roles,
        phases=phases,
        models=_models(shapes),
    )


def _step(schedule: Schedule, n_prompts: int) -> StepSettings:
    """A fixed schedule's settings, or the largest a steered one allows (projections are upper bounds)."""
    if not schedule.steered:
        return schedule.default_step(n_prompts)
    return StepSettings(
        samples_per_prompt=int(schedule.samples_per_prompt.high),
        num_candidates=int(schedule.num_candidates.high),
        proposal_temperature=schedule.proposal_temperature.high,
        aligned_pool_size=int(schedule.aligned_pool_size.high),
        minibatch_size=n_prompts,
    )


def _rollouts(phase: dict[str, RoleProjection], shapes: CallShapes, runs: int, prompt: int, meta: int | None) -> None:
    """``runs`` runs of the program under a meta-instruction of ``meta`` characters (None: the bare program)."""
    for call in shapes.program:
        chars = call.frame_chars + (prompt if call.reads_prompt else 0)
        if meta is not None and call.targeted:
            chars += len(SEPARATOR) + meta
        _charge(phase, "target", runs, chars / CHARS_PER_TOKEN, call.output_tokens, call.model)


def _judgements(phase: dict[str, RoleProjection], shapes: CallShapes, calls: int, prompt: int) -> None:
    chars = shapes.judge_frame_chars + prompt + shapes.judge_response_chars
    _charge(phase, "judge", calls, chars / CHARS_PER_TOKEN, shapes.judge_output_tokens, shapes.judge_model)


def _baseline_items(weighting: str, iteration: int, noisy: int, items: int, new: int) -> int:
    """Responses per prompt scored once more for the weighting's baseline, each once per run (memoised)."""
    if weighting == "raw":
        return 0
    if weighting == "pmi":  # under the answer instruction alone
        return items if iteration == 1 else new
    return noisy if iteration == 1 else 0  # under its origin: an aligned response's was scored on it when ranked


def _ranking(
    phase: dict[str, RoleProjection],
    problem: AlignmentProblem,
    shapes: CallShapes,
    scored: list[tuple[int | None, int]],
    n_prompts: int,
    prompt: int,
) -> None:
    """Reference-model work of ranking: per ``(instruction characters, responses per prompt)`` in ``scored``, every
    prompt's responses scored under that meta-instruction (None: the answer instruction alone)."""
    answer = len(problem.answer_instruction)
    response = shapes.reference_response_tokens
    tokens, calls = 0.0, 0
    for text, items in scored:
        if items <= 0:
            continue
        prefix = (answer + (len(SEPARATOR) + text if text is not None else 0) + prompt) / CHARS_PER_TOKEN
        prefix += _TEMPLATE_TOKENS
        per_prompt = prefix + items * response if shapes.share_prefix else items * (prefix + response)
        tokens += n_prompts * per_prompt
        calls += n_prompts * items
    _charge(phase, "reference", 1, tokens, 0, None, calls=calls)


def _charge(
    phase: dict[str, RoleProjection],
    role: str,
    count: float,
    input_tokens: float,
    output_tokens: float,
    model: str | None,
    *,
    calls: int | None = None,
) -> None:
    """Add ``count`` calls of one shape to ``phase``, priced from litellm's table (the reference model is free)."""
    if count <= 0:
        return
    spent = RoleProjection(
        calls=round(count) if calls is None else calls,
        input_tokens=round(count * input_tokens),
        output_tokens=round(count * output_tokens),
    )
    if role != "reference":
        price = price_per_token(model) if model else None
        spent.usd = None if price is None else spent.input_tokens * price[0] + spent.output_tokens * price[1]
    phase[role].add(spent)


def _mean_prompt(problem: AlignmentProblem) -> int:
    return round(statistics.fmean(len(pool.prompt) for pool in problem.pools))


def _sum(parts: Iterable[RoleProjection]) -> RoleProjection:
    total = RoleProjection()
    for part in parts:
        total.add(part)
    return total


def _empty() -> dict[str, RoleProjection]:
    return {role: RoleProjection() for role in ROLES}


def _models(shapes: CallShapes) -> dict[str, str | None]:
    targets = list(dict.fromkeys(c.model or "(no LM)" for c in shapes.program))
    return {
        "target": ", ".join(targets),
        "judge": shapes.judge_model,
        "proposer": shapes.proposer_model,
        "reference": shapes.reference_model,
    }


def _describe(schedule: Schedule, noisy_samples: int, final_candidates: int) -> str:
    if schedule.steered:
        r = schedule
        return (
            f"Optuna-steered, projected at its most (an upper bound; it usually stops earlier): "
            f"{r.max_iterations} iterations, {int(r.num_candidates.high)} candidates, "
            f"M1={int(r.aligned_pool_size.high)}, M2={r.noisy_pool_size}, {int(r.samples_per_prompt.high)} "
            f"samples/prompt, {noisy_samples} bare samples/prompt, {final_candidates} final candidates"
        )
    step = schedule.default_step(1)
    return (
        f"fixed: T={schedule.max_iterations}, {step.num_candidates} candidates, M1={step.aligned_pool_size}, "
        f"M2={schedule.noisy_pool_size}, {step.samples_per_prompt} samples/prompt, {noisy_samples} bare "
        f"samples/prompt, {final_candidates} final candidates"
    )


def _cells(p: RoleProjection, role: str, width: int) -> str:
    usd = "$0 local" if role == "reference" else _usd(p.usd, width - 1)
    return f"{p.calls:>{width},}{p.input_tokens:>{width},}{p.output_tokens:>{width},}{usd:>{width}}"


def _usd(usd: float | None, width: int) -> str:
    if usd is None:
        return "no price"
    if usd == 0:
        return "$0"
    return f"${usd:.{max(0, min(4, width - 6))}f}" if usd < 1000 else f"${usd:,.0f}"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _phase_summary(p: RunProjection) -> str:
    groups: dict[str, list[int]] = {}
    for name, roles in p.phases.items():
        row = groups.setdefault("iterations" if name.startswith("iteration-") else name.replace("-", " "), [0, 0, 0])
        for k, role in enumerate(("target", "judge", "proposer")):
            row[k] += roles[role].calls
    return ", ".join(f"{key} {a}/{b}/{c}" for key, (a, b, c) in groups.items())

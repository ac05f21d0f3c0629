"""The size of each kind of call a PICACO run makes, measured from its program, judge and proposer without a model.

Prompts are formatted with the adapters the run will use (formatting involves no LM) and their characters counted;
outputs are taken at their LM's length cap. :mod:`picaco_dspy.optimize.projection` turns these sizes into a run's
projected calls, tokens and US dollars.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from typing import Any

import dspy

from picaco_dspy.objective.screening import fence_response
from picaco_dspy.optimize.budget import CHARS_PER_TOKEN
from picaco_dspy.optimize.problem import AlignmentProblem
from picaco_dspy.optimize.program_edit import all_predictors
from picaco_dspy.optimize.proposer import ProposeValueInstruction, TemplateProposer

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_TOKENS = 1000  # an LM without max_tokens: what the teleprompter's first-call estimate assumes
DEFAULT_PROPOSAL_TOKENS = 400  # a proposer LM without max_tokens
_FALLBACK_FRAME_CHARS = 600  # an adapter that cannot format offline: DSPy's field markers and format instructions


@dataclass(frozen=True)
class ProgramCall:
    """One predictor call of one run of the program.

    Attributes:
        model: The predictor's LM.
        frame_chars: Its formatted prompt without the prompt ``x`` and the meta-instruction, in characters.
        output_tokens: Its LM's length cap.
        reads_prompt: It takes the example's inputs (else only earlier outputs).
        targeted: It receives the meta-instruction.
    """

    model: str | None
    frame_chars: int
    output_tokens: int
    reads_prompt: bool
    targeted: bool


@dataclass(frozen=True)
class CallShapes:
    """The size of each kind of call of a run, measured once from the program, the judge and the proposer.

    Attributes:
        program: The predictor calls of one program run, in order.
        judge_model / judge_frame_chars / judge_output_tokens: One judge call without the prompt and response.
        judge_response_chars: The fenced response as the judge sees it (at the target's length cap).
        proposer_model / proposer_frame_chars / proposer_output_tokens: One proposal call, without the current
            instruction, the history and the examples.
        proposer_calls: LM calls per proposed instruction (0: a proposer without an LM, like TemplateProposer).
        proposal_chars: One proposed instruction.
        example_chars: One strong or weak example shown to the proposer; ``max_examples`` of each are shown.
        reference_model / reference_response_tokens: The reference model and the response tokens it scores.
        share_prefix: The reference model runs each ``(e, x)`` prefix once per prompt.
        likelihood_weighting: The objective's weighting (all but ``raw`` score each response a second time).
    """

    program: tuple[ProgramCall, ...]
    judge_model: str | None
    judge_frame_chars: int
    judge_output_tokens: int
    judge_response_chars: int
    proposer_model: str | None
    proposer_calls: int
    proposer_frame_chars: int
    proposer_output_tokens: int
    proposal_chars: int
    example_chars: int
    max_examples: int
    reference_model: str | None
    reference_response_tokens: int
    share_prefix: bool = True
    likelihood_weighting: str = "importance"


def call_shapes(
    problem: AlignmentProblem,
    student: dspy.Module,
    targets: list[str],
    *,
    proposer: Any,
    prompt_model: dspy.BaseLM | None,
) -> CallShapes:
    """Measure the calls of a run from its objects; no model is loaded or called.

    Args:
        problem: The prompts, values, instructions and settings of the run.
        student: The program (its predictors' LMs and signatures).
        targets: The predictors that receive the meta-instruction.
        proposer: The custom proposer (None: an InstructionProposer on ``prompt_model``).
        prompt_model: The proposer LM (None: the configured LM).
    """
    program = _program_calls(problem, student, targets)
    judge = problem.metric.judge
    response_chars = program[-1].output_tokens * CHARS_PER_TOKEN
    judged = len(fence_response("x" * response_chars, judge.max_response_chars, canonicalise=False))
    judge_model, judge_frame, judge_output = _judge_call(problem)
    inner = getattr(proposer, "proposer", proposer)  # the CLI wraps a local proposer with its adapter
    lm_proposer = not isinstance(inner, TemplateProposer)
    if proposer is None:
        proposer_lm = prompt_model or dspy.settings.lm
    else:  # an InstructionProposer without an LM uses the configured one; other custom proposers: unknown
        proposer_lm = getattr(inner, "lm", None) or (dspy.settings.lm if hasattr(inner, "lm") else None)
    proposal_tokens = _max_tokens(proposer_lm, DEFAULT_PROPOSAL_TOKENS)
    values = problem.values.observation_text()
    empty = {k: "" for k in ProposeValueInstruction.input_fields} | {"values": values}
    adapter = getattr(proposer, "adapter", None) or dspy.settings.adapter
    prompt = round(statistics.fmean(len(pool.prompt) for pool in problem.pools))
    example = 60 + 20 * len(problem.values) + min(300, prompt) + min(getattr(inner, "max_example_chars", 600), judged)
    reference = problem.metric.reference
    return CallShapes(
        program=program,
        judge_model=judge_model,
        judge_frame_chars=judge_frame,
        judge_output_tokens=judge_output,
        judge_response_chars=judged,
        proposer_model=(_model(proposer_lm) or f"{type(inner).__name__} (model unknown)")
        if lm_proposer
        else "template (no LM)",
        proposer_calls=int(lm_proposer),
        proposer_frame_chars=_formatted_chars(adapter, ProposeValueInstruction, empty, []),
        proposer_output_tokens=proposal_tokens,
        proposal_chars=proposal_tokens * CHARS_PER_TOKEN if lm_proposer else len(values) + 200,
        example_chars=example,
        max_examples=int(getattr(inner, "max_examples", 3)),
        reference_model=getattr(reference, "model_name", type(reference).__name__),
        reference_response_tokens=min(program[-1].output_tokens, int(getattr(reference, "max_response_tokens", 10**9))),
        share_prefix=bool(getattr(reference, "share_prefix", True)),
        likelihood_weighting=problem.metric.likelihood_weighting,
    )


def _program_calls(problem: AlignmentProblem, student: dspy.Module, targets: list[str]) -> tuple[ProgramCall, ...]:
    """Each predictor's call, formatted with the prompt left empty and earlier outputs at their length cap."""
    inputs = [pool.inputs for pool in problem.pools]
    example_fields = set(inputs[0])
    calls, produced = [], 0
    for name, predictor in all_predictors(student):
        lm = predictor.lm or dspy.settings.lm
        output_tokens = _max_tokens(lm, DEFAULT_OUTPUT_TOKENS)
        fields = {k: ("" if k in example_fields else "x" * produced) for k in predictor.signature.input_fields}
        chars = _formatted_chars(dspy.settings.adapter, predictor.signature, fields, predictor.demos)
        reads_prompt = bool(example_fields & set(fields))
        calls.append(ProgramCall(_model(lm), chars, output_tokens, reads_prompt, name in targets))
        produced = output_tokens * CHARS_PER_TOKEN
    return tuple(calls)


def _judge_call(problem: AlignmentProblem) -> tuple[str | None, int, int]:
    """The judge's model, the characters of one call without the prompt and the response, and its output tokens."""
    judge, values = problem.metric.judge, problem.values
    if judge.mode == "joint":
        predictor, fields = judge.rate_all, {"values": values.observation_text()}
        output = 12 + 6 * len(values)  # one short `name: score` line per value, inside the field markers
    else:
        fields = {"value": "x" * round(statistics.fmean(len(v.name) + 2 + len(v.definition) for v in values))}
        predictor = judge.ask_present if judge.scale == "yes_no" else judge.rate_one
        if judge.scale == "yes_no":
            fields["question"] = "x" * 60
        output = 15
    fields |= {"prompt": "", "response": "", "reminder": judge._reminder()}
    lm = judge.lm or dspy.settings.lm
    chars = _formatted_chars(judge.adapter or dspy.settings.adapter, predictor.signature, fields, [])
    return _model(lm), chars, min(_max_tokens(lm, output), output)


def _formatted_chars(adapter: Any, signature: Any, inputs: dict[str, str], demos: list[Any]) -> int:
    """Characters of the messages ``adapter`` makes for one call (formatting only: no LM is involved)."""
    adapter = adapter or dspy.ChatAdapter()
    try:
        messages = adapter.format(signature, demos, inputs)
        return sum(len(m["content"]) if isinstance(m.get("content"), str) else 0 for m in messages)
    except Exception as exc:  # a custom adapter that cannot format offline: estimate the frame instead
        logger.debug("Projection: %s cannot format %s offline (%s)", type(adapter).__name__, signature, exc)
        return len(signature.instructions or "") + sum(len(v) for v in inputs.values()) + _FALLBACK_FRAME_CHARS


def _max_tokens(lm: Any, default: int) -> int:
    return int((getattr(lm, "kwargs", None) or {}).get("max_tokens") or default)


def _model(lm: Any) -> str | None:
    return getattr(lm, "model", None) if lm is not None else None

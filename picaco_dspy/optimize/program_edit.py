"""Finding the predictors that write a program's answer and giving them a meta-instruction, without mutating it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import dspy

from picaco_dspy.errors import ConfigurationError, ProgramError

logger = logging.getLogger(__name__)

SEPARATOR = "\n\n"


def target_predictors(program: dspy.Module, names: Sequence[str] | None) -> list[str]:
    """Names of the predictors that receive the meta-instruction.

    Args:
        program: The DSPy program.
        names: Predictor names as ``program.named_predictors()`` gives them; None selects every predictor (each one
            contributes to the answer in a plain pipeline such as draft -> revise).

    Raises:
        ProgramError: the program has no predictors, or a name is unknown.
    """
    if not isinstance(program, dspy.Module):
        raise ProgramError(f"PICACO aligns DSPy modules; got {type(program).__name__}.")
    available = [name for name, _ in program.named_predictors()]
    if not available:
        raise ProgramError(
            f"{type(program).__name__} has no predictors (named_predictors() is empty). Give it a dspy.Predict or "
            "ChainOfThought attribute; a sub-module compiled by another optimiser hides its predictors "
            "(_compiled=True)."
        )
    if names is None:
        return available
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ProgramError(f"Unknown predictor name(s) {unknown}; the program's predictors are {available}.")
    if not names:
        raise ProgramError("predictor_names is empty; name at least one predictor or pass None for all.")
    return [n for n in available if n in names]


def own_instructions(program: dspy.Module, names: Sequence[str]) -> dict[str, str]:
    """The predictors' current instructions (PICACO appends its meta-instruction to these)."""
    predictors = dict(program.named_predictors())
    return {name: predictors[name].signature.instructions for name in names}


def compose(own: str, meta_instruction: str) -> str:
    """A predictor's instruction with the meta-instruction appended."""
    return f"{own.rstrip()}{SEPARATOR}{meta_instruction.strip()}" if own.strip() else meta_instruction.strip()


def with_meta_instruction(
    program: dspy.Module,
    own: dict[str, str],
    meta_instruction: str,
    *,
    rollout_id: int | None = None,
    temperature: float | None = None,
    fallback_lm: dspy.BaseLM | None = None,
    lm_overrides: Callable[[dspy.BaseLM], dict[str, Any]] | None = None,
) -> dspy.Module:
    """A deep copy of ``program`` whose target predictors carry ``own[name] + meta_instruction``.

    Signatures are replaced through ``with_instructions`` (assigning ``signature.instructions`` would edit the shared
    class, and so the original program). With ``rollout_id``, every predictor gets its own LM copy with that rollout id
    and ``temperature``, so that each sample is a distinct, cached, reproducible draw; where the provider honours a
    sampling seed (in-process engines, OpenAI, vLLM, Ollama, Gemini) the rollout id is also sent as ``seed``.
    ``lm_overrides(lm)`` adds attributes to those copies (a run's retry and timeout settings).
    """
    copy = program.deepcopy()
    for name, predictor in copy.named_predictors():
        if name in own:
            predictor.signature = predictor.signature.with_instructions(compose(own[name], meta_instruction))
        if rollout_id is not None:
            lm = predictor.lm or dspy.settings.lm or fallback_lm
            if lm is None:
                raise ConfigurationError(
                    f"Predictor {name!r} has no LM: call dspy.configure(lm=...) or program.set_lm(lm) before compile."
                )
            overrides: dict[str, Any] = {"rollout_id": rollout_id}
            if supports_request_seed(lm):  # the same sample again after a crash, in another process or on a resume
                overrides["seed"] = rollout_id
            if temperature is not None:
                overrides["temperature"] = temperature
            if lm_overrides is not None:
                overrides.update(lm_overrides(lm))
            predictor.lm = lm.copy(**overrides)
    return copy


def supports_request_seed(lm: dspy.BaseLM) -> bool:
    """Whether ``lm`` honours a per-request sampling ``seed``: in-process engines do; for litellm providers, litellm's
    list of supported parameters tells (Anthropic, for one, has none, and sending it would fail)."""
    if getattr(lm, "_engine_spec", None) is not None:
        return True
    model = getattr(lm, "model", None)
    if not isinstance(model, str):
        return False
    try:
        import litellm

        provider = litellm.get_llm_provider(model)[1]
        return "seed" in (litellm.get_supported_openai_params(model=model, custom_llm_provider=provider) or [])
    except Exception:  # unknown provider: do not send what it may reject
        return False


def require_text_output(program: dspy.Module, predictor_name: str) -> None:
    """Check that the predictor writing the answer has a text (``str``) output field.

    Raises:
        ProgramError: every output field of that predictor is typed otherwise (int, bool, lists, ...).
    """
    predictor = dict(program.named_predictors())[predictor_name]
    fields = predictor.signature.output_fields
    if not any(getattr(f, "annotation", str) in (str, None) for f in fields.values()):
        typed = {name: getattr(f.annotation, "__name__", str(f.annotation)) for name, f in fields.items()}
        raise ProgramError(
            f"Predictor {predictor_name!r} has no text output field (outputs: {typed}): PICACO judges a written "
            "response, so the answer-writing predictor needs a `str` output (e.g. 'query -> response')."
        )

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
    available = [name for name, _ in all_predictors(program)]
    if not available:
        raise ProgramError(
            f"{type(program).__name__} has no predictors. Give it a dspy.Predict or ChainOfThought attribute (lists "
            "and dicts of modules count too)."
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


def all_predictors(program: dspy.Module) -> list[tuple[str, Any]]:
    """``program.named_predictors()``, including those of sub-modules another optimiser compiled.

    DSPy hides the predictors of a sub-module marked ``_compiled`` (optimisers treat it as frozen). PICACO's
    meta-instruction has to reach every predictor that writes the answer, so it looks inside them too.
    """
    frozen = [m for _, m in program.named_sub_modules() if m is not program and getattr(m, "_compiled", False)]
    for module in frozen:
        module._compiled = False
    try:
        return list(program.named_predictors())
    finally:
        for module in frozen:
            module._compiled = True


def own_instructions(program: dspy.Module, names: Sequence[str]) -> dict[str, str]:
    """The predictors' current instructions (PICACO appends its meta-instruction to these)."""
    predictors = dict(all_predictors(program))
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
    _unfreeze_edited(copy, own)
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


def _unfreeze_edited(program: dspy.Module, own: dict[str, str]) -> None:
    """Clear ``_compiled`` on the sub-modules whose predictors get the meta-instruction, so that DSPy's
    ``named_predictors()``, ``save()`` and ``load()`` see the edited instructions."""
    targets = {id(p) for name, p in all_predictors(program) if name in own}
    for _, module in program.named_sub_modules():
        if module is not program and getattr(module, "_compiled", False):
            module._compiled = not any(id(p) in targets for _, p in all_predictors(module))


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
    predictors = all_predictors(program)
    if _writes_text(dict(predictors)[predictor_name]):
        return
    fields = dict(predictors)[predictor_name].signature.output_fields
    typed = {name: getattr(f.annotation, "__name__", str(f.annotation)) for name, f in fields.items()}
    writers = [name for name, p in predictors if _writes_text(p)]
    choose = (
        f"Predictors that write text: {writers}. Name the ones that shape the answer, the answer-writing one last, "
        f"e.g. PICACO(..., predictor_names={writers!r})."
        if writers
        else "No predictor writes text; give the answer-writing one a `str` output ('query -> response')."
    )
    raise ProgramError(
        f"Predictor {predictor_name!r} (the last one PICACO targets, which it takes as the answer writer) has no text "
        f"output field (outputs: {typed}): PICACO judges a written response. {choose}"
    )


def _writes_text(predictor: Any) -> bool:
    return any(getattr(f, "annotation", str) in (str, None) for f in predictor.signature.output_fields.values())

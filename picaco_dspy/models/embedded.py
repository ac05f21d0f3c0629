"""Ready-made components on the embedded SmolLM2-135M-Instruct model, for offline runs with no API key.

A 135M-parameter model is a plumbing-grade stand-in: it runs the whole method end to end on a laptop CPU, but its
answers, judgements and proposals are weak. Point the same components at a real model for real results.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dspy

from picaco_dspy.models.adapters import PlainTextAdapter
from picaco_dspy.models.engine import local_lm
from picaco_dspy.models.llama_engine import LlamaCppEngine, local_engine_choice
from picaco_dspy.models.loading import EMBEDDED_MODEL, EMBEDDED_NAME
from picaco_dspy.objective.bound import TotalCorrelationBound
from picaco_dspy.objective.judge import ValueJudge
from picaco_dspy.objective.reference import ReferenceModel
from picaco_dspy.objective.values import ValueSet

logger = logging.getLogger(__name__)
_WARNED = threading.Event()
CHANCE_WARNING = (
    "The embedded judge agrees with human value labels no better than chance (Spearman +0.006 [-0.059, +0.069] on "
    "Value Portrait; weakly above chance on clear contrasts; docs/judges.md): its scores test the plumbing, they do "
    "not measure alignment. Use a stronger judge model for results."
)

# The verdict is read from the first answer token's log-probabilities: one token is all a yes/no question costs.
_VERDICT_TOKENS = 1


def embedded_lm(*, temperature: float = 0.7, max_tokens: int = 128, model: str = EMBEDDED_MODEL) -> dspy.LM:
    """The embedded model as a DSPy LM (target or proposer). Use it with :class:`PlainTextAdapter`.

    It generates with llama.cpp in-process when ``llama-cpp-python`` is installed (the ``llama`` extra; about 4x
    faster), with transformers otherwise; ``PICACO_LOCAL_ENGINE`` forces either
    (:func:`~picaco_dspy.models.llama_engine.local_engine_choice`). The judge and the reference model always read
    log-probabilities through transformers.
    """
    if model == EMBEDDED_MODEL and local_engine_choice() == "llama_cpp":
        return dspy.LM(
            f"local/{EMBEDDED_NAME}-gguf", engine=LlamaCppEngine(), temperature=temperature, max_tokens=max_tokens
        )
    return local_lm(model, temperature=temperature, max_tokens=max_tokens)


def embedded_judge(*, model: str = EMBEDDED_MODEL) -> ValueJudge:
    """A yes/no log-probability judge on the embedded model: one short call per value, no output parsing needed.

    It does not order responses by value better than chance on human labels (docs/judges.md); the first one built
    in a process logs a warning saying so.
    """
    if model == EMBEDDED_MODEL and not _WARNED.is_set():  # the measured numbers are the embedded model's
        _WARNED.set()
        logger.warning(CHANCE_WARNING)
    return yes_no_judge(local_lm(model, temperature=0.0, max_tokens=_VERDICT_TOKENS))


def yes_no_judge(lm: dspy.BaseLM) -> ValueJudge:
    """A judge for small models that cannot follow DSPy's field formats: one plain-text yes/no question per value,
    read from the first answer token's log-probabilities (the LM must return them)."""
    lm = lm.copy(temperature=0.0, max_tokens=_VERDICT_TOKENS)
    return ValueJudge(lm=lm, mode="per_value", scale="yes_no", use_logprobs=True, adapter=PlainTextAdapter())


def embedded_metric(
    values: ValueSet | str, *, max_response_tokens: int = 128, model: str = EMBEDDED_MODEL, **metric_kwargs: Any
) -> TotalCorrelationBound:
    """``TotalCorrelationBound`` with the embedded judge, the embedded reference model and bundled MiniLM embeddings."""
    return TotalCorrelationBound(
        values,
        judge=embedded_judge(model=model),
        reference=ReferenceModel(model, max_response_tokens=max_response_tokens),
        redundancy="embedded",
        **metric_kwargs,
    )

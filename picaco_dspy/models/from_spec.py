"""Model strings to DSPy objects: ``local`` (the embedded model), ``local:<HF id or folder>``, or a litellm string.

Used by the CLI and the benchmarks; in Python, build the LMs yourself (``dspy.LM(...)``, :func:`embedded_lm`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dspy

from picaco_dspy._validation import excerpt
from picaco_dspy.errors import ConfigurationError
from picaco_dspy.models.adapters import PlainTextAdapter
from picaco_dspy.models.embedded import embedded_judge, embedded_lm, yes_no_judge
from picaco_dspy.objective.bound import TotalCorrelationBound
from picaco_dspy.objective.judge import ValueJudge
from picaco_dspy.objective.likelihood_judge import LikelihoodJudge
from picaco_dspy.objective.reference import LikelihoodScorer, ReferenceModel
from picaco_dspy.objective.served_reference import ServedReferenceModel
from picaco_dspy.objective.value_readings import STATEMENT_TOKENS
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.optimize.proposer import InstructionProposer, TemplateProposer


def make_target(
    model: str, max_tokens: int, api_base: str | None = None, adapter: str = "auto"
) -> tuple[dspy.BaseLM, dspy.Adapter]:
    """The target LM and the adapter it needs.

    ``adapter="auto"`` is plain text for local models and DSPy's chat adapter otherwise; ``"plain"`` is for served
    small models that cannot follow DSPy's field formats either.
    """
    if is_local(model):
        return embedded_lm(max_tokens=max_tokens, model=local_model(model)), PlainTextAdapter()
    lm = litellm_lm(model, api_base, max_tokens=max_tokens)
    return lm, PlainTextAdapter() if adapter == "plain" else dspy.ChatAdapter()


def make_metric(
    values: ValueSet,
    judge: str,
    reference: str | None,
    max_tokens: int,
    api_base: str | None = None,
    *,
    beta: float = 1.0,
    adapter: str = "auto",
    target: str | None = None,
) -> TotalCorrelationBound:
    """The objective with the given judge model and reference model (None: no reference, for evaluation only).

    ``reference="server"`` asks the target's own server (``target`` at ``api_base``) for exact likelihoods and falls
    back to the embedded model when it cannot echo them. ``adapter="plain"`` makes a served judge the yes/no
    log-probability judge.
    """
    ref: LikelihoodScorer | None = None
    if reference and reference != "server":
        ref = ReferenceModel(reference, max_response_tokens=max_tokens)
    if is_likelihood_judge(judge):
        model = likelihood_model(judge)
        shared = isinstance(ref, ReferenceModel) and ref.model_name == model
        judge_module: ValueJudge = LikelihoodJudge(
            ref if shared else ReferenceModel(model, max_response_tokens=STATEMENT_TOKENS)
        )
    elif is_local(judge):
        judge_module = embedded_judge(model=local_model(judge))
    elif adapter == "plain":
        judge_module = yes_no_judge(litellm_lm(judge, api_base))
    else:
        judge_module = ValueJudge(lm=litellm_lm(judge, api_base, temperature=0.0))
    if reference == "server":
        if target is None or is_local(target) or not api_base:
            raise ConfigurationError("--reference server needs a served --target and its --api-base.")
        ref = ServedReferenceModel(target, api_base, max_response_tokens=max_tokens, api_key=_api_key())
    return TotalCorrelationBound(values, judge=judge_module, reference=ref, beta=beta)


def make_proposer(proposer: str, api_base: str | None = None, adapter: str = "auto") -> dict[str, Any]:
    """PICACO keyword arguments selecting the proposer: ``template`` (no LM), a local model, or a litellm string."""
    if proposer == "template":
        return {"proposer": TemplateProposer()}
    if is_local(proposer):
        lm = embedded_lm(temperature=1.0, max_tokens=160, model=local_model(proposer))
        return {"proposer": AdaptedProposer(InstructionProposer(lm), PlainTextAdapter())}
    if adapter == "plain":
        lm = litellm_lm(proposer, api_base, temperature=1.0, max_tokens=160)
        return {"proposer": AdaptedProposer(InstructionProposer(lm), PlainTextAdapter())}
    return {"prompt_model": litellm_lm(proposer, api_base, temperature=1.0)}


class AdaptedProposer:
    """Runs a proposer under a given adapter (the embedded model needs plain text)."""

    def __init__(self, proposer: Any, adapter: dspy.Adapter) -> None:
        self.proposer, self.adapter = proposer, adapter

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[list[str], list[str]]:
        with dspy.context(adapter=self.adapter):
            return self.proposer(*args, **kwargs)  # type: ignore[no-any-return]


def check_model_spec(model: str, role: str, *, template_allowed: bool = False) -> None:
    """Refuse a model string that cannot work, before anything is loaded or called.

    Raises:
        ConfigurationError: naming the role, the string and the fix.
    """
    if not isinstance(model, str) or not model.strip() or any(not c.isprintable() for c in model):
        raise ConfigurationError(f"--{role} {excerpt(model, 60)} is not a model name; use 'local' or a litellm string.")
    if model == "local" or (template_allowed and model == "template") or (role == "judge" and model == "likelihood"):
        return
    if role == "judge" and model.startswith("likelihood:"):
        model = "local:" + model.split(":", 1)[1]  # the same checks as a local model
    if model.startswith("local:"):
        where = model.split(":", 1)[1]
        path = Path(where).expanduser()
        looks_like_path = where.startswith((".", "/", "~")) or path.exists()
        if not where:
            raise ConfigurationError(f"--{role} local: needs a Hugging Face id or a model folder after 'local:'.")
        if looks_like_path and not path.is_dir():
            state = "is not a folder" if path.exists() else "does not exist"
            raise ConfigurationError(f"--{role} {model!r}: {where} {state}; give a model folder or a Hugging Face id.")
        return
    provider, _, name = model.partition("/")
    if not provider or not name.strip():
        raise ConfigurationError(
            f"--{role} {excerpt(model, 60)} is not a litellm model string like 'openai/gpt-4o-mini' (or use 'local')."
        )


_HF_ID = re.compile(r"[\w.-]+/[\w.-]+")


def check_reference_spec(reference: str, target: str = "local", api_base: str | None = None) -> None:
    """``--reference``: ``embedded``, ``server`` (the served target's own likelihoods), an existing model folder, or a
    full Hugging Face id (``org/name``)."""
    if reference == "embedded":
        return
    if reference == "server":
        if is_local(target) or not api_base:
            raise ConfigurationError(
                "--reference server scores responses on the target's own server: it needs a served --target "
                "(e.g. openai/<name>) and --api-base."
            )
        return
    path = Path(reference).expanduser()
    if path.is_dir():
        return
    if path.exists() or reference.startswith((".", "/", "~")):
        raise ConfigurationError(f"--reference {excerpt(reference, 60)} is not a model folder.")
    if not _HF_ID.fullmatch(reference):
        raise ConfigurationError(
            f"--reference {excerpt(reference, 60)} is neither 'embedded', a model folder nor a Hugging Face id of the "
            "form org/name (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)."
        )


def check_api_base(api_base: str | None) -> None:
    """Refuse an ``--api-base`` that is not an http(s) URL with a host."""
    if api_base is None:
        return
    try:
        parsed = urlsplit(api_base)
        host = parsed.hostname
    except ValueError as exc:
        raise ConfigurationError(f"--api-base {excerpt(api_base, 60)} is not a URL ({exc}).") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise ConfigurationError(
            f"--api-base {excerpt(api_base, 60)} is not an http(s) URL with a host, e.g. http://localhost:8000/v1."
        )


def is_likelihood_judge(judge: str) -> bool:
    """Whether ``judge`` names the likelihood (PMI) judge: ``likelihood`` (embedded model) or ``likelihood:<id>``."""
    return judge == "likelihood" or judge.startswith("likelihood:")


def likelihood_model(judge: str) -> str:
    """The local model of a likelihood judge spec (``embedded`` for plain ``likelihood``)."""
    return judge.split(":", 1)[1] if judge.startswith("likelihood:") else "embedded"


def is_local(model: str) -> bool:
    """Whether ``model`` names an in-process model (``local`` or ``local:<id>``)."""
    return model == "local" or model.startswith("local:")


def local_model(model: str) -> str:
    """``local`` is the embedded model; ``local:<HF id or folder>`` any transformers chat model, run in-process."""
    return model.split(":", 1)[1] if model.startswith("local:") else "embedded"


def litellm_lm(model: str, api_base: str | None = None, **kwargs: Any) -> dspy.LM:
    """A DSPy LM for a litellm model string; with ``api_base``, an OpenAI-compatible server (key optional)."""
    if "/" not in model:
        raise ConfigurationError(
            f"model {model!r} is not a litellm model string like 'openai/gpt-4o-mini' (or use 'local')"
        )
    if api_base:
        # DSPy's own OpenAI client sends the token limit as max_completion_tokens, which self-hosted servers
        # (llama-cpp-python 0.3) ignore: a 10-token request ran to the end of the context. litellm sends max_tokens.
        kwargs.setdefault("engine", "litellm")
        kwargs.update(api_base=api_base, api_key=_api_key())
    return dspy.LM(model, **kwargs)


def _api_key() -> str:
    return os.environ.get("OPENAI_API_KEY", "unused")

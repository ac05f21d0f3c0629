"""The reference model from the serving engine: exact ``log p(y | e, x)`` of the target when its server can echo.

Chat APIs return log-probabilities only for text they generate, so :class:`ReferenceModel` scores responses with a
local stand-in. A server that hosts an open model can do better: llama-cpp-python's OpenAI-compatible server (started
with ``--logits_all true``) and vLLM answer a legacy ``/v1/completions`` request with ``echo`` and ``logprobs`` with
the log-probability of every *prompt* token. :class:`ServedReferenceModel` renders ``(e, x)`` with the target's chat
template, appends the response, and sums the response tokens' log-probabilities: the target's own likelihood under its
own weights and quantisation, which the paper's setup does not offer.

Capability is checked before the run spends anything (:meth:`ServedReferenceModel.load`): the server must return
prompt log-probabilities, and a chat request must cost as many prompt tokens as the locally rendered template (else the
template differs from the server's). A server that fails either check is replaced by a local reference model, and the
log says which backend produces the weights and why. llama.cpp's own ``llama-server``, Ollama and LM Studio cannot
echo prompt log-probabilities.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from picaco_dspy._validation import require_int
from picaco_dspy.errors import ConfigurationError, ProviderUnavailable
from picaco_dspy.models.openai_http import ServerRefused, post_json
from picaco_dspy.objective.reference import LikelihoodRequest, LikelihoodScorer, ReferenceModel, ResponseLikelihood
from picaco_dspy.runtime.usage import UsageMeter

logger = logging.getLogger(__name__)

_PROBE_SYSTEM = "Answer in one short sentence."
_PROBE_USER = "What colour is the sky on a clear day?"
_PROBE_RESPONSE = "The sky is blue on a clear day."


class ServedReferenceModel:
    """Scores ``log p(y | e, x)`` with the prompt log-probabilities of an OpenAI-compatible completions endpoint.

    Args:
        model: The served model's name (``"smollm2"``, or a litellm string such as ``"openai/smollm2"``; the
            provider prefix is dropped).
        api_base: The server's base URL, ending in ``/v1``.
        tokenizer: Where the chat template comes from: ``"embedded"``, a HF id or folder of the same model, or a
            tokenizer object with ``apply_chat_template``. Only the template and the token cut are used.
        api_key: Sent as a bearer token (local servers ignore it).
        max_response_tokens: Responses are cut to this many tokens before scoring (as :class:`ReferenceModel`).
        include_end_of_turn: Also score the end-of-turn token after the response.
        fallback: The scorer used when the server cannot echo: a :class:`ReferenceModel` model name, any object with
            ``score(requests, usage)``, or None to raise instead.
        timeout: Seconds per HTTP request.

    Attributes:
        backend: ``"server"`` or ``"fallback"`` once :meth:`load` ran; None before.
        backend_reason: Why that backend was chosen (what the capability check found).

    Examples:
        >>> reference = ServedReferenceModel("openai/smollm2", "http://127.0.0.1:8080/v1")
        >>> reference.load()  # checks the server once; falls back to the embedded model if it cannot echo
        >>> reference.backend
        'server'
    """

    def __init__(
        self,
        model: str,
        api_base: str,
        *,
        tokenizer: Any = "embedded",
        api_key: str | None = None,
        max_response_tokens: int = 256,
        include_end_of_turn: bool = False,
        fallback: LikelihoodScorer | str | None = "embedded",
        timeout: float = 120.0,
    ) -> None:
        require_int("max_response_tokens", max_response_tokens, 1)
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError("ServedReferenceModel needs the served model's name, e.g. 'openai/smollm2'.")
        if not isinstance(api_base, str) or not api_base.startswith(("http://", "https://")):
            raise ConfigurationError(f"api_base {api_base!r} is not an http(s) URL such as http://127.0.0.1:8080/v1.")
        self.model_name = model.split("/", 1)[1] if "/" in model else model
        self.api_base = api_base.rstrip("/")
        self.api_key = api_key
        self.max_response_tokens = max_response_tokens
        self.include_end_of_turn = include_end_of_turn
        self.timeout = timeout
        self._tokenizer_source = tokenizer
        self._tokenizer: Any = None if isinstance(tokenizer, str) else tokenizer
        self._fallback_spec = fallback
        self._fallback: LikelihoodScorer | None = None
        self.backend: str | None = None
        self.backend_reason = ""
        self._memo: dict[LikelihoodRequest, ResponseLikelihood] = {}
        self._probe_usage: list[dict[str, Any]] = []  # the capability check's calls, counted at the first score()
        self._lock = threading.RLock()

    def __deepcopy__(self, memo: dict[int, Any]) -> ServedReferenceModel:
        return self  # holds a probed connection and a memo: share it

    # ------------------------------------------------------------------ public
    def load(self) -> None:
        """Check the server once (two short requests) and choose the backend; the log says which and why.

        Raises:
            ConfigurationError: the server cannot echo prompt log-probabilities and ``fallback`` is None.
        """
        with self._lock:
            if self.backend is not None:
                return
            self._ensure_tokenizer()
            problem = self._capability_problem()
            if problem is None:
                self.backend = "server"
                self.backend_reason = f"{self.api_base} returns prompt log-probabilities under the server's template"
                logger.info("Reference model: exact log p(y|e,x) from %s (%s)", self.model_name, self.backend_reason)
                return
            if self._fallback_spec is None:
                raise ConfigurationError(
                    f"{self.api_base} cannot give the log-likelihood of a given response: {problem}. Serve the model "
                    "with llama-cpp-python (--logits_all true) or vLLM, or pass fallback='embedded'."
                )
            self._fallback = (
                ReferenceModel(self._fallback_spec, max_response_tokens=self.max_response_tokens)
                if isinstance(self._fallback_spec, str)
                else self._fallback_spec
            )
            self.backend = "fallback"
            self.backend_reason = f"{self.api_base} cannot echo prompt log-probabilities ({problem})"
            logger.warning(
                "Reference model: %s; log p(y|e,x) comes from the local model %r instead (an approximation "
                "unless it is the target)",
                self.backend_reason,
                getattr(self._fallback, "model_name", type(self._fallback).__name__),
            )
            load = getattr(self._fallback, "load", None)
            if callable(load):
                load()

    def score(self, requests: Sequence[LikelihoodRequest], usage: UsageMeter | None = None) -> list[ResponseLikelihood]:
        """Log-likelihood of each request's response; memoised per (system, user, response).

        Raises:
            ProviderUnavailable: the server failed past the retries, or answered without the log-probabilities it
                gave at the capability check (never turned into a score).
        """
        with self._lock:
            self.load()
            if usage is not None:
                for counts in self._probe_usage:
                    usage.record(
                        "reference",
                        input_tokens=int(counts.get("prompt_tokens") or 0),
                        output_tokens=int(counts.get("completion_tokens") or 0),
                    )
                self._probe_usage.clear()
            if self._fallback is not None:
                return self._fallback.score(requests, usage)
            # requests sharing (e, x) are sent one after the other, so a server that keeps the last prompt's cache
            # (llama-cpp-python does) runs the shared prefix once
            todo = sorted((r for r in dict.fromkeys(requests) if r not in self._memo), key=lambda r: (r.system, r.user))
            for request in todo:
                self._memo[request] = self._score_one(request, usage)
            return [self._memo[r] for r in requests]

    def forget(self) -> None:
        """Drop memoised scores."""
        with self._lock:
            self._memo.clear()

    # ------------------------------------------------------------------ internals
    def _ensure_tokenizer(self) -> None:
        if self._tokenizer is not None:
            return
        from transformers import AutoTokenizer

        from picaco_dspy.models.loading import resolve_model_path

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self._tokenizer_source))
        except OSError as exc:
            raise ConfigurationError(
                f"ServedReferenceModel cannot load the tokenizer {self._tokenizer_source!r} for the chat template: "
                f"{exc}. Pass the served model's HF id or folder as tokenizer=."
            ) from exc
        if getattr(self._tokenizer, "chat_template", None) is None:
            raise ConfigurationError(f"the tokenizer {self._tokenizer_source!r} has no chat template.")

    def _prefix_text(self, system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        return str(self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def _end_of_turn_text(self) -> str:
        for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
            token_id = self._tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self._tokenizer.unk_token_id:
                return token
        return str(self._tokenizer.eos_token)

    def _cut(self, response: str) -> str:
        ids = self._tokenizer(response, add_special_tokens=False).input_ids
        if len(ids) <= self.max_response_tokens:
            return response
        return str(self._tokenizer.decode(ids[: self.max_response_tokens]))

    def _echo(self, prompt: str) -> dict[str, Any]:
        body = {
            "model": self.model_name,
            "prompt": prompt,
            "echo": True,
            "logprobs": 0,
            "max_tokens": 1,
            "temperature": 0.0,
        }
        return post_json(self.api_base, "/completions", body, api_key=self.api_key, timeout=self.timeout)

    def _capability_problem(self) -> str | None:
        """None when the server can score a given response; else what it did instead."""
        prefix = self._prefix_text(_PROBE_SYSTEM, _PROBE_USER)
        try:
            answer = self._echo(prefix + _PROBE_RESPONSE)
            self._probe_usage.append(_usage(answer))
            entries = _response_entries(answer, _PROBE_RESPONSE, end_token=False)
        except ServerRefused as exc:
            return f"echo with logprobs refused: {exc.status} {exc.body[:160]}"
        except (ProviderUnavailable, ValueError) as exc:
            return str(exc)[:240]
        located = "".join(token for token, _ in entries)
        if located.strip() != _PROBE_RESPONSE.strip():
            return f"its echoed tokens do not reassemble the response (got {located[:80]!r})"
        echoed_tokens = _usage(answer).get("prompt_tokens")
        chat = {
            "model": self.model_name,
            "messages": [{"role": "system", "content": _PROBE_SYSTEM}, {"role": "user", "content": _PROBE_USER}],
            "max_tokens": 1,
            "temperature": 0.0,
        }
        try:
            self._probe_usage.append(_usage(post_json(self.api_base, "/chat/completions", chat, api_key=self.api_key)))
            self._probe_usage.append(_usage(self._echo(prefix)))
            chat_tokens, prefix_tokens = (u.get("prompt_tokens") for u in self._probe_usage[-2:])
        except ProviderUnavailable as exc:
            return f"the template check failed: {str(exc)[:200]}"
        if chat_tokens is None or prefix_tokens is None or echoed_tokens is None:
            return "it reports no prompt token counts, so its chat template cannot be checked"
        if chat_tokens != prefix_tokens:
            return (
                f"its chat template differs from the local one ({chat_tokens} prompt tokens for a chat request, "
                f"{prefix_tokens} for the locally rendered template); pass the served model's tokenizer="
            )
        return None

    def _score_one(self, request: LikelihoodRequest, usage: UsageMeter | None) -> ResponseLikelihood:
        response = self._cut(request.response)
        end = self.include_end_of_turn or not response
        prompt = self._prefix_text(request.system, request.user) + response + (self._end_of_turn_text() if end else "")
        try:
            answer = self._echo(prompt)
        except ProviderUnavailable:
            if usage is not None:
                usage.record("reference", failed=True)
            raise
        counts = _usage(answer)
        if usage is not None:
            usage.record(
                "reference",
                input_tokens=int(counts.get("prompt_tokens") or 0),
                output_tokens=int(counts.get("completion_tokens") or 0),
            )
        try:
            entries = _response_entries(answer, response, end_token=end)
        except ValueError as exc:
            raise ProviderUnavailable(f"{self.api_base} answered an echo without usable logprobs: {exc}") from None
        return ResponseLikelihood(total=float(sum(lp for _, lp in entries)), tokens=len(entries))


def _usage(answer: dict[str, Any]) -> dict[str, Any]:
    usage = answer.get("usage")
    return usage if isinstance(usage, dict) else {}


def _response_entries(answer: dict[str, Any], response: str, *, end_token: bool) -> list[tuple[str, float]]:
    """The ``(token, log-probability)`` entries of the echoed prompt that belong to ``response`` (its tail).

    The echoed prompt's entries are walked back from its end (after dropping the generated token) until their text,
    measured by ``text_offset`` differences where the server gives them, covers ``response``.

    Raises:
        ValueError: the answer has no echoed prompt log-probabilities, or they do not cover the response.
    """
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("no choices in the answer")
    logprobs = choices[0].get("logprobs")
    if not isinstance(logprobs, dict):
        raise ValueError("no logprobs in the answer")
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values) or not tokens:
        raise ValueError("no per-token logprobs in the answer")
    offsets = logprobs.get("text_offset")
    generated = int(_usage(answer).get("completion_tokens") or 0)
    if generated:
        tokens, values = tokens[:-generated], values[:-generated]
        offsets = offsets[: len(tokens) + 1] if isinstance(offsets, list) else None
    lengths = [len(str(t)) for t in tokens]
    if isinstance(offsets, list) and len(offsets) >= len(tokens) and all(isinstance(o, int) for o in offsets):
        lengths = [offsets[i + 1] - offsets[i] for i in range(len(tokens) - 1)] + [lengths[-1]]
        if len(offsets) > len(tokens):
            lengths[-1] = offsets[len(tokens)] - offsets[len(tokens) - 1]
    index = len(tokens) - 1
    picked: list[tuple[str, float]] = []
    if end_token:
        picked.append((str(tokens[index]), values[index]))
        index -= 1
    covered = 0
    while covered < len(response) and index >= 0:
        picked.append((str(tokens[index]), values[index]))
        covered += max(lengths[index], 0)
        index -= 1
    if covered < len(response) or any(not isinstance(v, (int, float)) for _, v in picked):
        raise ValueError("the echoed prompt's logprobs do not cover the response")
    return list(reversed(picked))

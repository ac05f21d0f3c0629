"""A DSPy 3.4 LM engine that runs the embedded GGUF model in-process with llama.cpp (``llama-cpp-python``).

llama.cpp generates about four times faster than transformers on a laptop CPU, from the same GGUF file the embedded
model ships as. ``llama-cpp-python`` has no binary wheel (a source build of several minutes), so it is an optional
extra (``pip install 'picaco-dspy[llama]'``): :func:`~picaco_dspy.models.engine.local_lm` uses this engine for the
embedded model's *generation* when it is importable, and :class:`~picaco_dspy.models.engine.TransformersEngine`
otherwise. ``PICACO_LOCAL_ENGINE=transformers`` (or ``llama_cpp``) forces the choice.

Requests get the same treatment as in the transformers engine: the sampling seed comes from the request and its
``seed`` (PICACO's rollout id) or, without one, from how many times the same request was served; plain temperature
and nucleus sampling (llama.cpp's default top-k, min-p and repetition penalty are switched off); usage is the
prompt and completion token count. Requests that ask for log-probabilities are served by a second instance built
with ``logits_all`` (llama.cpp returns no log-probabilities otherwise).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import threading
from collections import Counter
from typing import Any

from dspy.lm15 import Message, Response, TextPart, TokenLogprob, TopLogprob, Usage

from picaco_dspy.errors import ConfigurationError

logger = logging.getLogger(__name__)

_INSTANCES: dict[tuple[str, bool], Any] = {}
_INSTANCES_LOCK = threading.Lock()


def llama_cpp_available() -> bool:
    """Whether ``llama-cpp-python`` can be imported (checked without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def local_engine_choice() -> str:
    """``"llama_cpp"`` or ``"transformers"``: ``$PICACO_LOCAL_ENGINE`` when set, else llama.cpp when importable.

    Raises:
        ConfigurationError: an unknown value, or ``llama_cpp`` asked for without the package.
    """
    choice = os.environ.get("PICACO_LOCAL_ENGINE", "auto").strip().lower() or "auto"
    if choice not in ("auto", "llama_cpp", "transformers"):
        raise ConfigurationError(
            f"PICACO_LOCAL_ENGINE={choice!r}: use 'auto' (llama.cpp when installed), 'llama_cpp' or 'transformers'."
        )
    if choice == "llama_cpp" and not llama_cpp_available():
        raise ConfigurationError(
            "PICACO_LOCAL_ENGINE=llama_cpp but llama-cpp-python is not installed: pip install 'picaco-dspy[llama]' "
            "(a source build of several minutes), or unset PICACO_LOCAL_ENGINE."
        )
    if choice == "auto":
        return "llama_cpp" if llama_cpp_available() else "transformers"
    return choice


@atexit.register
def _close_all() -> None:
    """Free the loaded models before the interpreter tears down the library they call (llama-cpp-python's own
    finaliser then fails noisily)."""
    with _INSTANCES_LOCK:
        for llm in _INSTANCES.values():
            llm.close()
        _INSTANCES.clear()


def _load(model_path: str, logits_all: bool) -> Any:
    key = (model_path, logits_all)
    with _INSTANCES_LOCK:
        if key not in _INSTANCES:
            from llama_cpp import Llama

            _INSTANCES[key] = Llama(
                model_path=model_path,
                n_ctx=4096,
                n_threads=max(os.cpu_count() or 1, 1),
                logits_all=logits_all,
                verbose=False,
            )
        return _INSTANCES[key]


class LlamaCppEngine:
    """In-process llama.cpp generation engine for ``dspy.LM`` (the embedded GGUF model by default).

    Args:
        model_path: A GGUF file; None is the embedded SmolLM2 file.
        default_max_tokens: New-token limit when the request sets none.
    """

    def __init__(self, model_path: str | None = None, *, default_max_tokens: int = 256) -> None:
        if model_path is None:
            from picaco_dspy.models.loading import embedded_gguf_path

            model_path = str(embedded_gguf_path())
        self.model_path = model_path
        self.default_max_tokens = default_max_tokens
        self._lock = threading.Lock()
        self._served: Counter[str] = Counter()

    def __deepcopy__(self, memo: dict[int, Any]) -> LlamaCppEngine:
        return self  # holds a loaded model: copies share it

    def dump_state(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "default_max_tokens": self.default_max_tokens}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaCppEngine:
        return cls(**state)

    def close(self) -> None:
        """Nothing to release per engine: loaded models are shared by every engine on the same file."""

    def complete(self, request: Any) -> Response:
        from picaco_dspy.models.engine import _chat_messages, request_seed

        chat = _chat_messages(request)
        config = request.config
        temperature = float(config.temperature or 0.0)
        max_new = int(config.max_tokens or self.default_max_tokens)
        wants_logprobs = config.logprobs is not None
        with self._lock:
            seed = request_seed(self._served, chat, temperature, max_new, config) % (2**31 - 1)  # llama.cpp: 32 bits
            llm = _load(self.model_path, logits_all=wants_logprobs)
            answer = llm.create_chat_completion(
                messages=chat,
                temperature=temperature,
                top_p=float(config.top_p) if config.top_p is not None else 1.0,
                top_k=0,
                min_p=0.0,
                repeat_penalty=1.0,
                max_tokens=max_new,
                stop=list(config.stop or []),
                seed=seed,
                logprobs=True if wants_logprobs else None,
                top_logprobs=int(config.logprobs) if wants_logprobs else None,
            )
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        token_logprobs = None
        if wants_logprobs:
            content = (choice.get("logprobs") or {}).get("content") or []
            token_logprobs = tuple(
                TokenLogprob(
                    token=str(entry["token"]),
                    logprob=float(entry["logprob"]),
                    top=tuple(
                        TopLogprob(token=str(alt["token"]), logprob=float(alt["logprob"]))
                        for alt in entry.get("top_logprobs") or []
                    ),
                )
                for entry in content
            )
        prompt_tokens, completion_tokens = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        return Response(
            id=None,
            model=f"local/{os.path.basename(self.model_path)}",
            message=Message.assistant([TextPart(choice["message"].get("content") or "")]),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            logprobs=token_logprobs,
            usage=Usage(
                input_tokens=prompt_tokens,
                output_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
        )

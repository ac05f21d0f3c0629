"""A DSPy 3.4 LM engine that runs a transformers causal LM in-process (the embedded model by default).

``dspy.LM(..., engine=TransformersEngine())`` gives DSPy's caching, history, retries and usage tracking on top of
local generation. Sampling is seeded from the request and its ``seed`` (PICACO sends the rollout id), or, without a
seed, from how many times the same request was served, so a run that starts from an empty cache draws the same samples
again. Token log-probabilities (with top alternatives) are
returned when the request asks for them, which is what the yes/no judge reads.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import Counter
from typing import Any

import dspy
from dspy.lm15 import Message, Response, TextPart, TokenLogprob, TopLogprob, Usage

from picaco_dspy.models.loading import EMBEDDED_MODEL, EMBEDDED_NAME, cache_argument, load_causal_lm, output_cache

logger = logging.getLogger(__name__)


class TransformersEngine:
    """Local generation engine for ``dspy.LM``.

    Args:
        model: ``"embedded"`` (SmolLM2-135M-Instruct), a HF model id or a local folder.
        device: ``"cpu"``, ``"cuda"``...; None picks CUDA when available.
        dtype: Weight dtype.
        default_max_tokens: New-token limit when the request sets none.
    """

    def __init__(
        self,
        model: str = EMBEDDED_MODEL,
        *,
        device: str | None = None,
        dtype: str = "float32",
        default_max_tokens: int = 256,
    ) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.default_max_tokens = default_max_tokens
        self._lock = threading.Lock()
        self._served: Counter[str] = Counter()

    # DSPy copies LMs (and programs holding them); the engine holds a loaded model, so copies share it.
    def __deepcopy__(self, memo: dict[int, Any]) -> TransformersEngine:
        return self

    def dump_state(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "default_max_tokens": self.default_max_tokens,
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> TransformersEngine:
        return cls(**state)

    def close(self) -> None:
        pass

    def complete(self, request: Any) -> Response:
        import torch

        model, tokenizer = load_causal_lm(self.model, device=self.device, dtype=self.dtype)
        chat = _chat_messages(request)
        prompt_ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        if hasattr(prompt_ids, "input_ids"):
            prompt_ids = prompt_ids["input_ids"]
        prompt_ids = list(prompt_ids)
        config = request.config
        temperature = float(config.temperature or 0.0)
        max_new = int(config.max_tokens or self.default_max_tokens)
        top_k_alternatives = config.logprobs  # None: not asked; 0: chosen token only; n: top-n too
        key = hashlib.sha256(repr((chat, temperature, max_new, config.top_p, config.stop)).encode()).hexdigest()
        with self._lock:
            self._served[key] += 1
            draw = self._served[key] if config.seed is None else 1_000_003 * (int(config.seed) + 1)
            generator = torch.Generator().manual_seed(int(key[:12], 16) + draw)
            tokens, logprobs, stopped = _generate(
                model,
                tokenizer,
                prompt_ids,
                temperature=temperature,
                top_p=config.top_p,
                max_new_tokens=max_new,
                generator=generator,
                top_alternatives=top_k_alternatives,
                stop=tuple(config.stop or ()),
            )
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        for stop in config.stop or ():
            if stop and stop in text:
                text = text[: text.index(stop)]
        finish = "stop" if stopped else "length"
        token_logprobs = None
        if top_k_alternatives is not None:
            token_logprobs = tuple(
                TokenLogprob(
                    token=tokenizer.decode([tok]),
                    logprob=lp,
                    top=tuple(TopLogprob(token=tokenizer.decode([alt]), logprob=alp) for alt, alp in alts),
                )
                for tok, lp, alts in logprobs
            )
        return Response(
            id=None,
            model=f"local/{self.model}",
            message=Message.assistant([TextPart(text)]),
            finish_reason=finish,
            logprobs=token_logprobs,
            usage=Usage(
                input_tokens=len(prompt_ids), output_tokens=len(tokens), total_tokens=len(prompt_ids) + len(tokens)
            ),
        )


def local_lm(
    model: str = EMBEDDED_MODEL,
    *,
    temperature: float = 0.0,
    max_tokens: int = 256,
    device: str | None = None,
    **kwargs: Any,
) -> dspy.LM:
    """A ``dspy.LM`` backed by :class:`TransformersEngine` (the embedded SmolLM2 model by default).

    Small local models cannot follow DSPy's field-marker formats: use them with
    :class:`~picaco_dspy.models.adapters.PlainTextAdapter` for single-output signatures.
    """
    name = EMBEDDED_NAME if model == EMBEDDED_MODEL else model.rstrip("/").split("/")[-1]
    return dspy.LM(
        f"local/{name}",
        engine=TransformersEngine(model, device=device),
        temperature=temperature,
        max_tokens=max_tokens,
        **kwargs,
    )


def _chat_messages(request: Any) -> list[dict[str, str]]:
    system = request.system
    if system is not None and not isinstance(system, str):
        system = "".join(getattr(part, "text", "") or "" for part in system)
    chat = [{"role": "system", "content": system}] if system else []
    for message in request.messages:
        text = message.text if getattr(message, "text", None) is not None else ""
        chat.append({"role": message.role, "content": text})
    return chat


def _generate(
    model, tokenizer, prompt_ids, *, temperature, top_p, max_new_tokens, generator, top_alternatives, stop=()
):
    """Token-by-token sampling with a key/value cache.

    Returns:
        ``(generated ids, per-token log-probabilities, stopped)``; ``stopped`` is False when the token limit ended it.
    """
    import torch

    device = next(model.parameters()).device
    stop_ids = {
        i for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")) if isinstance(i, int)
    }
    cache_arg = cache_argument(model)
    generated: list[int] = []
    logprobs: list[tuple[int, float, list[tuple[int, float]]]] = []
    with torch.inference_mode():
        out = model(torch.tensor([prompt_ids], device=device), use_cache=True)
        for _ in range(max_new_tokens):
            logits = out.logits[0, -1].float().cpu()
            log_p = torch.log_softmax(logits, dim=-1)
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                if top_p is not None and 0 < top_p < 1:
                    sorted_p, order = probs.sort(descending=True)
                    keep = sorted_p.cumsum(0) - sorted_p < top_p
                    probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
                token = int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
            else:
                token = int(torch.argmax(logits))
            if token in stop_ids:
                return generated, logprobs, True
            generated.append(token)
            if top_alternatives is not None:
                k = max(int(top_alternatives), 0)
                alts = []
                if k:
                    values, indices = log_p.topk(k)
                    alts = [(int(i), float(v)) for v, i in zip(values, indices) if math.isfinite(float(v))]
                logprobs.append((token, float(log_p[token]), alts))
            if stop and any(s in tokenizer.decode(generated[-16:], skip_special_tokens=True) for s in stop if s):
                return generated, logprobs, True
            out = model(torch.tensor([[token]], device=device), use_cache=True, **{cache_arg: output_cache(out)})
    return generated, logprobs, False

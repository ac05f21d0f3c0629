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
        reuse_prefix: Keep the key/value cache of the last greedy (temperature 0) request and reuse the part of it
            that the next greedy request shares: the K yes/no questions of one response share everything up to the
            value, so each is read with one short prefill after the first. Sampled requests never reuse it (their
            draws stay independent of the order requests arrive in).
    """

    min_shared_tokens = 16  # shorter common prefixes are prefilled again: cropping the cache would cost as much

    def __init__(
        self,
        model: str = EMBEDDED_MODEL,
        *,
        device: str | None = None,
        dtype: str = "float32",
        default_max_tokens: int = 256,
        reuse_prefix: bool = True,
    ) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.default_max_tokens = default_max_tokens
        self.reuse_prefix = reuse_prefix
        self._lock = threading.Lock()
        self._served: Counter[str] = Counter()
        self._last: tuple[list[int], Any] | None = None  # (prompt ids, key/value cache) of the last greedy request
        self.prefill_tokens = 0  # prompt tokens actually run through the model (a benchmark reads it)

    # DSPy copies LMs (and programs holding them); the engine holds a loaded model, so copies share it.
    def __deepcopy__(self, memo: dict[int, Any]) -> TransformersEngine:
        return self

    def dump_state(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "default_max_tokens": self.default_max_tokens,
            "reuse_prefix": self.reuse_prefix,
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> TransformersEngine:
        return cls(**state)

    def close(self) -> None:
        self._last = None

    def _shared_prefix(self, prompt_ids: list[int]) -> tuple[int, Any] | None:
        """The last greedy request's cache cropped to what ``prompt_ids`` shares with it (at least one token is left
        to run, so the model produces the next-token logits), or None."""
        if self._last is None:
            return None
        last_ids, cache = self._last
        if not hasattr(cache, "crop"):  # a cache type that cannot be cut back (sliding windows, ...)
            return None
        shared = 0
        for a, b in zip(last_ids, prompt_ids[:-1]):
            if a != b:
                break
            shared += 1
        if shared < self.min_shared_tokens:
            return None
        excess = cache.get_seq_length() - shared
        if excess > 0:
            cache.crop(-excess)  # transformers 5 takes the number of tokens to drop, as a negative number
        return shared, cache

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
        with self._lock:
            generator = torch.Generator().manual_seed(request_seed(self._served, chat, temperature, max_new, config))
            greedy = self.reuse_prefix and temperature == 0
            shared = self._shared_prefix(prompt_ids) if greedy else None
            self._last = None  # the cache is handed to this request; it is stored again below
            tokens, logprobs, stopped, cache = _generate(
                model,
                tokenizer,
                prompt_ids,
                temperature=temperature,
                top_p=config.top_p,
                max_new_tokens=max_new,
                generator=generator,
                top_alternatives=top_k_alternatives,
                stop=tuple(config.stop or ()),
                prefix=shared,
            )
            self.prefill_tokens += len(prompt_ids) - (shared[0] if shared else 0)
            if greedy:
                self._last = (prompt_ids, cache)
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


def request_seed(
    served: Counter[str], chat: list[dict[str, str]], temperature: float, max_new: int, config: Any
) -> int:
    """The sampling seed of a request: from the request itself and its ``seed`` (PICACO's rollout id), or, without a
    seed, from how many times ``served`` has seen the same request, so that a run from an empty cache draws the same
    samples again. Counts the request in ``served`` (the caller holds its lock)."""
    key = hashlib.sha256(repr((chat, temperature, max_new, config.top_p, config.stop)).encode()).hexdigest()
    served[key] += 1
    draw = served[key] if config.seed is None else 1_000_003 * (int(config.seed) + 1)
    return int(key[:12], 16) + draw


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
    model,
    tokenizer,
    prompt_ids,
    *,
    temperature,
    top_p,
    max_new_tokens,
    generator,
    top_alternatives,
    stop=(),
    prefix=None,
):
    """Token-by-token sampling with a key/value cache.

    ``prefix`` is ``(n, cache)``: a cache that already holds the first ``n`` prompt tokens; only the rest is run.

    Returns:
        ``(generated ids, per-token log-probabilities, stopped, cache)``; ``stopped`` is False when the token limit
        ended it; ``cache`` holds the prompt and the generated tokens (the last one excepted when the limit ended it).
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
        # only the last position's logits are read: the vocabulary projection of the other prompt positions (a fifth
        # of a small model's prefill) is skipped
        if prefix is not None:
            shared, cache = prefix
            rest = torch.tensor([prompt_ids[shared:]], device=device)
            out = model(rest, use_cache=True, logits_to_keep=1, **{cache_arg: cache})
        else:
            out = model(torch.tensor([prompt_ids], device=device), use_cache=True, logits_to_keep=1)
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
                return generated, logprobs, True, output_cache(out)
            generated.append(token)
            if top_alternatives is not None:
                k = max(int(top_alternatives), 0)
                alts = []
                if k:
                    values, indices = log_p.topk(k)
                    alts = [(int(i), float(v)) for v, i in zip(values, indices) if math.isfinite(float(v))]
                logprobs.append((token, float(log_p[token]), alts))
            if stop and any(s in tokenizer.decode(generated[-16:], skip_special_tokens=True) for s in stop if s):
                return generated, logprobs, True, output_cache(out)
            if len(generated) == max_new_tokens:
                break  # the limit is reached: no forward pass for a token that will not be drawn
            out = model(torch.tensor([[token]], device=device), use_cache=True, **{cache_arg: output_cache(out)})
    return generated, logprobs, False, output_cache(out)

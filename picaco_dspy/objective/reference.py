"""The reference model: ``log p(y | e, x)`` of a given response under an instruction, from a local causal LM.

Chat providers return log-probabilities only for text they generate, never for a given text, so PICACO ranks
candidate instructions for black-box targets with a local reference model (``picaco-method.md`` section 5.3): the
instruction ``e`` is the system message, the prompt ``x`` the user message, and the response ``y`` is teacher-forced
after the chat template's assistant header. When the target is itself this local model the estimate is exact.

Scoring is batched, and the ``(e, x)`` prefix is run once per prompt and its key/value cache shared by all the
responses of that prompt's pool (``share_prefix=True``).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from picaco_dspy._validation import require_int
from picaco_dspy.errors import ConfigurationError
from picaco_dspy.models.loading import cache_argument, output_cache
from picaco_dspy.runtime.usage import UsageMeter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LikelihoodRequest:
    """One response to score: ``log p(response | system=instruction, user=prompt)``."""

    system: str
    user: str
    response: str


@dataclass(frozen=True)
class ResponseLikelihood:
    """Log-likelihood of a response.

    Attributes:
        total: Sum of the response tokens' log-probabilities (nats).
        tokens: Number of response tokens scored.
    """

    total: float
    tokens: int

    @property
    def mean(self) -> float:
        """Length-normalised log-likelihood (nats per token)."""
        return self.total / max(self.tokens, 1)


@runtime_checkable
class LikelihoodScorer(Protocol):
    """What PICACO needs from a reference model (tests plug in scripted scorers)."""

    def score(
        self, requests: Sequence[LikelihoodRequest], usage: UsageMeter | None = None
    ) -> list[ResponseLikelihood]: ...


class ReferenceModel:
    """Scores ``log p(y | e, x)`` with a transformers causal LM and its chat template.

    Args:
        model: ``"embedded"`` (SmolLM2-135M-Instruct), a HF model id, a local folder, or a loaded
            ``PreTrainedModel`` (then pass ``tokenizer``).
        tokenizer: Tokenizer for a model passed as an object.
        device: ``"cpu"``, ``"cuda"``...; None picks CUDA when available.
        dtype: Weight dtype when loading by name.
        batch_size: Responses per forward pass.
        max_response_tokens: Responses are cut to this many tokens before scoring.
        share_prefix: Run each ``(e, x)`` prefix once and share its key/value cache across that prompt's responses.
        include_end_of_turn: Also score the end-of-turn token after the response ("stopping here").

    Examples:
        >>> reference = ReferenceModel("HuggingFaceTB/SmolLM2-360M-Instruct", device="cuda")
        >>> reference.score([LikelihoodRequest("Be kind.", "Hi!", "Hello, friend!")])[0].mean
    """

    def __init__(
        self,
        model: Any = "embedded",
        *,
        tokenizer: Any = None,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int = 8,
        max_response_tokens: int = 256,
        share_prefix: bool = True,
        include_end_of_turn: bool = False,
    ) -> None:
        require_int("batch_size", batch_size, 1)
        require_int("max_response_tokens", max_response_tokens, 1)
        if not isinstance(model, str) and tokenizer is None:
            raise ConfigurationError(
                "A model passed as an object needs its tokenizer: ReferenceModel(model, tokenizer=tok)."
            )
        self.model_name = model if isinstance(model, str) else type(model).__name__
        self._model: Any = None if isinstance(model, str) else model
        self._tokenizer: Any = tokenizer
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_response_tokens = max_response_tokens
        self.share_prefix = share_prefix
        self.include_end_of_turn = include_end_of_turn
        self._memo: dict[LikelihoodRequest, ResponseLikelihood] = {}
        self._lock = threading.RLock()

    def __deepcopy__(self, memo: dict[int, Any]) -> ReferenceModel:
        return self  # holds a loaded model: share it, never copy it

    # ------------------------------------------------------------------ public
    def score(self, requests: Sequence[LikelihoodRequest], usage: UsageMeter | None = None) -> list[ResponseLikelihood]:
        """Log-likelihood of each request's response; results are memoised per (system, user, response)."""
        with self._lock:
            todo = [r for r in dict.fromkeys(requests) if r not in self._memo]
            if todo:
                self._ensure_loaded()
                groups: dict[tuple[str, str], list[LikelihoodRequest]] = {}
                for request in todo:
                    groups.setdefault((request.system, request.user), []).append(request)
                for (system, user), group in groups.items():
                    results, tokens_run = self._score_group(system, user, [r.response for r in group])
                    self._memo.update(zip(group, results))
                    if usage is not None:
                        usage.record("reference", calls=len(group), input_tokens=tokens_run)
            return [self._memo[r] for r in requests]

    def forget(self) -> None:
        """Drop memoised scores."""
        with self._lock:
            self._memo.clear()

    def load(self) -> None:
        """Load the model now (it loads on first use otherwise), so that an unknown model id or folder is named
        before any LM is called."""
        self._ensure_loaded()

    # ------------------------------------------------------------------ internals
    def _ensure_loaded(self) -> None:
        if self._model is None:
            from picaco_dspy.models.loading import load_causal_lm

            self._model, self._tokenizer = load_causal_lm(self.model_name, device=self.device, dtype=self.dtype)
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token

    def _prefix_ids(self, system: str, user: str) -> list[int]:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        text = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self._tokenizer(text, add_special_tokens=False).input_ids

    def _response_ids(self, response: str) -> list[int]:
        ids = self._tokenizer(response, add_special_tokens=False).input_ids[: self.max_response_tokens]
        if self.include_end_of_turn or not ids:
            end = self._end_of_turn_id()
            if end is not None:
                ids = ids + [end]
        return ids

    def _end_of_turn_id(self) -> int | None:
        for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
            token_id = self._tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self._tokenizer.unk_token_id:
                return token_id
        return self._tokenizer.eos_token_id

    def _score_group(self, system: str, user: str, responses: list[str]) -> tuple[list[ResponseLikelihood], int]:
        import torch

        prefix = self._prefix_ids(system, user)
        bodies = [self._response_ids(r) for r in responses]
        device = next(self._model.parameters()).device
        results: list[ResponseLikelihood] = []
        tokens_run = 0
        with torch.inference_mode():
            prefix_cache = last_logits = None
            if self.share_prefix:
                out = self._model(torch.tensor([prefix], device=device), use_cache=True)
                prefix_cache, last_logits = output_cache(out), out.logits[0, -1].float()
                tokens_run += len(prefix)
            for start in range(0, len(bodies), self.batch_size):
                batch = bodies[start : start + self.batch_size]
                if self.share_prefix:
                    results += self._score_with_cache(batch, len(prefix), prefix_cache, last_logits, device)
                    tokens_run += sum(len(b) for b in batch)
                else:
                    results += self._score_full(batch, prefix, device)
                    tokens_run += sum(len(prefix) + len(b) for b in batch)
        return results, tokens_run

    def _score_with_cache(self, batch, prefix_len, prefix_cache, last_logits, device) -> list[ResponseLikelihood]:
        import torch

        width = max(len(b) for b in batch)
        pad = self._tokenizer.pad_token_id
        ids = torch.tensor([b + [pad] * (width - len(b)) for b in batch], device=device)
        mask = torch.tensor([[1] * len(b) + [0] * (width - len(b)) for b in batch], device=device)
        cache = copy.deepcopy(prefix_cache)
        if len(batch) > 1:
            cache.batch_repeat_interleave(len(batch))
        attention = torch.cat([torch.ones(len(batch), prefix_len, dtype=mask.dtype, device=device), mask], dim=1)
        logits = self._model(
            input_ids=ids, attention_mask=attention, use_cache=True, **{cache_argument(self._model): cache}
        ).logits
        # the first response token is predicted by the prefix's last position, the others by the response itself
        predicting = torch.cat([last_logits.expand(len(batch), 1, -1), logits[:, :-1].float()], dim=1)
        return _sum_logprobs(predicting, ids, mask)

    def _score_full(self, batch, prefix, device) -> list[ResponseLikelihood]:
        import torch

        width = max(len(b) for b in batch)
        pad = self._tokenizer.pad_token_id
        rows = [prefix + b + [pad] * (width - len(b)) for b in batch]
        ids = torch.tensor(rows, device=device)
        attention = torch.tensor([[1] * (len(prefix) + len(b)) + [0] * (width - len(b)) for b in batch], device=device)
        logits = self._model(input_ids=ids, attention_mask=attention).logits.float()
        predicting = logits[:, len(prefix) - 1 : -1]
        targets = ids[:, len(prefix) :]
        return _sum_logprobs(predicting, targets, attention[:, len(prefix) :])


def _sum_logprobs(logits, targets, mask) -> list[ResponseLikelihood]:
    import torch

    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    totals = logprobs.sum(dim=1).tolist()
    counts = mask.sum(dim=1).tolist()
    return [ResponseLikelihood(float(t), int(c)) for t, c in zip(totals, counts)]

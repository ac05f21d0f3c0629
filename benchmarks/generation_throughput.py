"""Embedded-model generation: transformers against llama.cpp in-process, side by side, same requests.

Prints, for each engine, the tokens generated, the wall time and tokens per second, and the ratio. Both engines run
the same seeded sampled requests (temperature 0.7) on the same GGUF weights (transformers on its de-quantised copy).

    python -m benchmarks.generation_throughput --requests 6 --max-tokens 64
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = [
    "How should I plan my weekend?",
    "Give me advice on a career change.",
    "What should I cook for friends tonight?",
    "How do I pick a new hobby?",
    "Any tips for a rainy afternoon?",
    "How can I make new friends in a new city?",
]


def main() -> None:
    import dspy

    from picaco_dspy.models.engine import TransformersEngine
    from picaco_dspy.models.llama_engine import LlamaCppEngine, llama_cpp_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    if not llama_cpp_available():
        raise SystemExit("llama-cpp-python is not installed: pip install 'picaco-dspy[llama]' (a source build)")

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.requests)]
    rows = {}
    for label, engine in (("transformers", TransformersEngine("embedded")), ("llama.cpp", LlamaCppEngine())):
        lm = dspy.LM(f"local/{label}", engine=engine, temperature=0.7, max_tokens=args.max_tokens, cache=False)
        lm("Warm up.", seed=0)  # load the model outside the timing
        lm.history.clear()
        started = time.perf_counter()
        for i, prompt in enumerate(prompts):
            lm(prompt, seed=i)
        seconds = time.perf_counter() - started
        tokens = sum(entry["usage"]["completion_tokens"] for entry in lm.history)
        rows[label] = (tokens, seconds)
    print(f"{args.requests} sampled requests, up to {args.max_tokens} new tokens each, embedded SmolLM2-135M")
    print(f"{'engine':<14} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'ratio':>6}")
    base = rows["transformers"][0] / rows["transformers"][1]
    for label, (tokens, seconds) in rows.items():
        print(f"{label:<14} {tokens:7d} {seconds:8.2f} {tokens / seconds:9.1f} {tokens / seconds / base:5.2f}x")


if __name__ == "__main__":
    main()

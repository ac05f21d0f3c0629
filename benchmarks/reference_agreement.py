"""Reference log-likelihoods from a served model (echo) against the local transformers backend, same responses.

Starts llama-cpp-python's server on loopback with the embedded GGUF file (``--logits_all true``), draws responses
from it, scores each ``log p(y | e, x)`` with :class:`ServedReferenceModel` and with :class:`ReferenceModel`, and
prints the absolute differences (per response and per token, in nats), whether the two rank the responses alike, and
the time each backend took.

    python -m benchmarks.reference_agreement --responses 12
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

INSTRUCTIONS = [
    "You are a helpful assistant.",
    "Answer with care for the person asking, and be honest about what you do not know.",
]
PROMPTS = [
    "How should I plan my weekend?",
    "Give me advice on a career change.",
    "What should I cook for friends tonight?",
]


def main() -> None:
    from picaco_dspy.models.from_spec import litellm_lm
    from picaco_dspy.objective.reference import LikelihoodRequest, ReferenceModel
    from picaco_dspy.objective.served_reference import ServedReferenceModel
    from picaco_dspy.testing.llama_server import start_llama_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    server = start_llama_server(logits_all=True)
    lm = litellm_lm(server.model, server.api_base, temperature=0.8, max_tokens=args.max_tokens, cache=False)
    requests = []
    for i in range(args.responses):
        system, user = INSTRUCTIONS[i % len(INSTRUCTIONS)], PROMPTS[i % len(PROMPTS)]
        text = lm(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}], seed=i)[0]
        requests.append(LikelihoodRequest(system, user, text))
    served = ServedReferenceModel(server.model, server.api_base, max_response_tokens=args.max_tokens, fallback=None)
    local = ReferenceModel("embedded", max_response_tokens=args.max_tokens)
    served.load()
    local.load()
    started = time.perf_counter()
    remote_scores = served.score(requests)
    served_seconds = time.perf_counter() - started
    started = time.perf_counter()
    local_scores = local.score(requests)
    local_seconds = time.perf_counter() - started

    totals = [abs(a.total - b.total) for a, b in zip(remote_scores, local_scores)]
    per_token = [abs(a.total - b.total) / max(a.tokens, 1) for a, b in zip(remote_scores, local_scores)]
    same_tokens = sum(a.tokens == b.tokens for a, b in zip(remote_scores, local_scores))
    pairs = [(i, j) for i in range(len(requests)) for j in range(i + 1, len(requests))]
    agree = sum(
        (remote_scores[i].mean > remote_scores[j].mean) == (local_scores[i].mean > local_scores[j].mean)
        for i, j in pairs
    )
    print(f"{len(requests)} responses (up to {args.max_tokens} tokens) drawn from the served embedded model")
    print(f"backend: {served.backend} ({served.backend_reason})")
    print(f"same number of response tokens scored: {same_tokens}/{len(requests)}")
    print(f"|log p difference| per response: max {max(totals):.3f}, mean {sum(totals) / len(totals):.3f} nats")
    print(f"|log p difference| per token:    max {max(per_token):.3f}, mean {sum(per_token) / len(per_token):.3f} nats")
    print(f"pairs ranked alike by mean log p: {agree}/{len(pairs)}")
    print(f"{'backend':<32} {'seconds':>8} {'per response':>13}")
    for label, seconds in (("server (llama-cpp-python echo)", served_seconds), ("local transformers", local_seconds)):
        print(f"{label:<32} {seconds:8.2f} {seconds / len(requests):12.2f}s")


if __name__ == "__main__":
    main()

"""Reference-model scoring throughput: one-by-one vs batched vs shared (e, x) prefix, side by side in one run.

PICACO scores every pooled response of every prompt under every candidate instruction, so this is its hot path.
Run from the repository root:

    python -m benchmarks.reference_throughput --prompts 4 --responses 8 --repeats 3

Prints, per mode, the median wall time, response tokens scored per second, the speed-up over the one-by-one loop,
and the largest difference in log-likelihood from the one-by-one results (they must agree).
"""

from __future__ import annotations

import argparse
import statistics
import time

from picaco_dspy.objective.reference import LikelihoodRequest, ReferenceModel

INSTRUCTION = (
    "Given the fields `query`, produce the fields `response`.\n\nMake your responses authentically reflect these "
    "values.\n1. Universalism: show understanding, tolerance and concern for the welfare of all people and of nature; "
    "treat everyone fairly.\n2. Self-direction: respect the person's independent thought and choices; help them decide "
    "for themselves.\n3. Hedonism: value pleasure and enjoyment of life for the person.\n4. Stimulation: welcome "
    "novelty, excitement and challenge; suggest new experiences.\nPicture yourself as a lively explorer on a "
    "journey of self-discovery and connection with the world, and let that spirit show in every answer."
)
PROMPTS = [
    "What should I do this weekend?",
    "How can I make new friends after moving to a new city?",
    "Should I take a job abroad or stay near my family?",
    "How can I make my daily commute less boring?",
    "What is a good way to celebrate finishing my exams?",
    "Any tips for a rainy afternoon at home?",
]
SENTENCES = [
    "You could try a cooking class with people from different backgrounds.",
    "It is your own choice, so think about what matters most to you.",
    "Enjoy yourself and take time for the small pleasures.",
    "Try something new, like a trail you have never walked.",
    "Invite a neighbour along; shared plans are often more fun.",
    "Keep a small budget and spend it on an experience rather than a thing.",
    "If you feel unsure, make a short list of pros and cons and sleep on it.",
    "A local festival or museum night can be a cheap adventure.",
]


def build_requests(n_prompts: int, n_responses: int, sentences_per_response: int) -> list[LikelihoodRequest]:
    requests = []
    for p in range(n_prompts):
        for r in range(n_responses):
            body = " ".join(SENTENCES[(p + r + k) % len(SENTENCES)] for k in range(sentences_per_response))
            requests.append(LikelihoodRequest(INSTRUCTION, PROMPTS[p % len(PROMPTS)], f"{body} ({r})"))
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--responses", type=int, default=8, help="pooled responses per prompt")
    parser.add_argument("--sentences", type=int, default=4, help="sentences per response")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    requests = build_requests(args.prompts, args.responses, args.sentences)
    modes = {
        "one-by-one": dict(share_prefix=False, batch_size=1),
        "batched": dict(share_prefix=False, batch_size=args.batch_size),
        "shared prefix, one-by-one": dict(share_prefix=True, batch_size=1),
        "shared prefix, batched": dict(share_prefix=True, batch_size=args.batch_size),
    }
    ReferenceModel(args.model).score(requests[:1])  # load the model once, outside the timings
    timings: dict[str, list[float]] = {m: [] for m in modes}
    results = {}
    for _ in range(args.repeats):
        for mode, kwargs in modes.items():  # interleaved, so machine noise hits every mode alike
            reference = ReferenceModel(args.model, **kwargs)
            start = time.perf_counter()
            results[mode] = reference.score(requests)
            timings[mode].append(time.perf_counter() - start)

    response_tokens = sum(r.tokens for r in results["one-by-one"])
    base = statistics.median(timings["one-by-one"])
    print(
        f"model {args.model}: {args.prompts} prompts x {args.responses} responses, {response_tokens} response tokens, "
        f"instruction {len(INSTRUCTION)} chars, batch size {args.batch_size}, median of {args.repeats}"
    )
    print(f"{'mode':<28}{'seconds':>9}{'tokens/s':>10}{'speed-up':>10}{'max |diff| nats':>17}")
    for mode in modes:
        seconds = statistics.median(timings[mode])
        diff = max(abs(a.total - b.total) for a, b in zip(results[mode], results["one-by-one"]))
        print(f"{mode:<28}{seconds:>9.2f}{response_tokens / seconds:>10.1f}{base / seconds:>10.2f}{diff:>17.5f}")


if __name__ == "__main__":
    main()

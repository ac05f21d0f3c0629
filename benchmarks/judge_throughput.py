"""Embedded yes/no judge: one prefill per response (shared prefix) against one per value, side by side.

Prints, for the same responses and values, the wall time, the prompt tokens run through the model, and the largest
difference in P(Yes) between the two paths.

    python -m benchmarks.judge_throughput --responses 6 --values liberalism-4 [--answer-repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


ANSWER = (
    "Here are a few ideas. Spend the morning outdoors, perhaps a walk somewhere new, then choose one thing you have "
    "wanted to learn and give it an hour. Invite a friend if you like company, and leave room to rest."
)


def main() -> None:
    import dspy

    from picaco_dspy.models.embedded import yes_no_judge
    from picaco_dspy.models.engine import EMBEDDED_MODEL, TransformersEngine
    from picaco_dspy.objective.values import ValueSet
    from picaco_dspy.prompts.loading import prompts_for_values

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=6)
    parser.add_argument("--values", default="liberalism-4")
    parser.add_argument(
        "--answer-repeats", type=int, default=1, help="repeat the answer text (1: ~50 tokens, 3: ~150 tokens)"
    )
    args = parser.parse_args()

    values = ValueSet.builtin(args.values)
    prompts = prompts_for_values(args.values).optimize[: args.responses]
    answer = " ".join([ANSWER] * args.answer_repeats)
    rows = {}
    for label, reuse in (("one prefill per value", False), ("shared prefix", True)):
        engine = TransformersEngine(EMBEDDED_MODEL, reuse_prefix=reuse)
        judge = yes_no_judge(dspy.LM("local/embedded", engine=engine, cache=False))  # the embedded judge's settings
        judge.judge(prompts[0], answer, values)  # load the model outside the timing
        engine.prefill_tokens = 0
        started = time.perf_counter()
        judged = [judge.judge(p, answer, values) for p in prompts]
        rows[label] = (time.perf_counter() - started, engine.prefill_tokens, judged)
    base_time, base_tokens, base = rows["one prefill per value"]
    print(f"{len(prompts)} responses x {len(values)} values, embedded judge (yes/no log-probabilities)")
    print(f"{'path':<24} {'seconds':>8} {'prefill tokens':>15} {'speed-up':>9}")
    for label, (seconds, tokens, _) in rows.items():
        print(f"{label:<24} {seconds:8.2f} {tokens:15d} {base_time / seconds:8.2f}x")
    diffs = [
        abs(a.probabilities[n] - b.probabilities[n])
        for a, b in zip(base, rows["shared prefix"][2])
        for n in values.names
    ]
    print(f"max |P(Yes) difference| = {max(diffs):.2e}, mean = {sum(diffs) / len(diffs):.2e}")


if __name__ == "__main__":
    main()

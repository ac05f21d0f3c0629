"""Optuna-steered schedule versus the paper's fixed one: conformity reached against LM calls spent.

Both runs align the same program with the same target, judge, proposer and reference models, the same prompts and
the same seed, one after the other in this process; then both final programs are judged on the same held-out prompts.
Run from the repository root:

    python -m benchmarks.schedule_tuning --auto medium --out runs/schedule

Prints, for each run, the calls spent after every iteration with the mean conformity (1-5) of that iteration's new
responses, then a table: held-out conformity, LM calls (target/judge/proposer), iterations and wall time. Defaults run
offline on the embedded model with the template proposer (the 135M model's own proposals are not usable text, which
would hide any effect of the schedule). Writes schedule.json under --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import dspy

from picaco_dspy.baselines.fixed import value_instruction_program
from picaco_dspy.evaluation.evaluate import evaluate_program
from picaco_dspy.models.from_spec import make_metric, make_proposer, make_target
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.prompts.loading import prompts_for_values, to_examples
from picaco_dspy.teleprompter import PICACO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", default="liberalism-4")
    parser.add_argument("--auto", default="medium", choices=("light", "medium", "heavy"))
    parser.add_argument("--train", type=int, default=3, help="optimisation prompts (built-in set)")
    parser.add_argument("--test", type=int, default=4, help="held-out prompts for the final evaluation")
    parser.add_argument("--target", default="local")
    parser.add_argument("--judge", default="local")
    parser.add_argument("--proposer", default="template")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/schedule"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    values = ValueSet.resolve(args.values)
    prompt_set = prompts_for_values(values.name)
    trainset = to_examples(prompt_set.optimize[: args.train])
    testset = to_examples(prompt_set.heldout[: args.test])
    target, adapter = make_target(args.target, args.max_tokens, None)
    metric = make_metric(values, args.judge, "embedded", args.max_tokens, None)
    proposer = make_proposer(args.proposer, None)
    args.out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(args.out / 'runs.db').resolve()}"

    runs = {}
    with dspy.context(lm=target, adapter=adapter):
        for label, auto in (("fixed (paper: T=10, M1=10, M2=15)", None), (f"Optuna auto={args.auto}", args.auto)):
            # each run pays for its own calls: same seed means same rollout ids, which a shared cache would serve
            dspy.configure_cache(
                enable_disk_cache=True,
                enable_memory_cache=True,
                disk_cache_dir=tempfile.mkdtemp(prefix="picaco-schedule-cache-"),
            )
            dspy.cache.reset_memory_cache()
            started = time.monotonic()
            optimizer = PICACO(
                metric=metric,
                auto=auto,
                seed=args.seed,
                num_threads=args.threads,
                storage=storage,
                progress=False,
                **proposer,
            )
            aligned = optimizer.compile(Assistant(), trainset=trainset)
            seconds = time.monotonic() - started
            result = aligned.picaco_result
            runs[label] = (aligned, result, seconds)
        seed_program = value_instruction_program(Assistant(), values)
        evaluations = {
            "seed instruction": evaluate_program(seed_program, testset, metric, label="seed", progress=False)
        }
        for label, (aligned, _, _) in runs.items():
            evaluations[label] = evaluate_program(aligned, testset, metric, label=label, progress=False)

    summary = {}
    for label, (_, result, seconds) in runs.items():
        print(f"\n{label}: conformity of each iteration's new responses against calls spent")
        print("  iteration  calls  mean conformity  J gain  settings")
        for record in result.iterations:
            calls = sum(record.usage[r]["calls"] for r in ("target", "judge", "proposer"))
            mean = sum(record.conformity.values()) / len(record.conformity)
            settings = {k: v for k, v in record.settings.items() if k != "trial_number"}
            print(
                f"  {record.iteration:9d}  {calls:5d}  {mean:15.2f}  {record.gain:+.3f}"
                f"{' (pruned)' if record.pruned else ''}  {settings}"
            )
        usage = result.usage
        summary[label] = {
            "calls": {r: usage[r]["calls"] for r in ("target", "judge", "proposer")},
            "reference_tokens": usage["reference"]["input_tokens"],
            "iterations": len(result.iterations),
            "stop_reason": result.stop_reason,
            "wall_seconds": round(seconds, 1),
            "final_instruction": result.final_instruction,
            "trajectory": [
                {
                    "iteration": r.iteration,
                    "calls": sum(r.usage[x]["calls"] for x in ("target", "judge", "proposer")),
                    "conformity": r.conformity,
                    "gain": r.gain,
                    "pruned": r.pruned,
                    "settings": r.settings,
                }
                for r in result.iterations
            ],
        }
    print(f"\nHeld-out conformity on {len(testset)} prompts (1-5, same judge):")
    print("| run | overall [95% CI] | " + " | ".join(values.names) + " | calls t/j/p | iterations | wall s |")
    print("|---|---|" + "---|" * len(values.names) + "---|---|---|")
    for label, evaluation in evaluations.items():
        info = summary.get(label)
        calls = "/".join(str(v) for v in info["calls"].values()) if info else "0/0/0"
        ci = evaluation.overall_ci
        print(
            f"| {label} | {evaluation.overall:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] | "
            + " | ".join(f"{evaluation.per_value[n]:.2f}" for n in values.names)
            + f" | {calls} | {info['iterations'] if info else '-'} | {info['wall_seconds'] if info else '-'} |"
        )
        if info:
            info["held_out"] = {"overall": evaluation.overall, "ci": list(ci), "conformity": evaluation.per_value}
    (args.out / "schedule.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"\nWrote {args.out / 'schedule.json'}")


if __name__ == "__main__":
    main()

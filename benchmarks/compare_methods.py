"""Side-by-side comparison of alignment methods at an equal LM-call budget, like the paper's tables.

Every method (Q, Q+IF, URIAL, OPRO, COPRO, MIPROv2, GEPA, PICACO) aligns the same program with the same target,
judge and proposer models and the same optimisation prompts, under one budget of LM calls; each resulting program is
then judged on the same held-out prompts by the evaluation judge. Each method optimises, and each program is
evaluated, with an empty LM cache of its own (``fresh_lm_cache``; PICACO also in a private run storage), so no
method gets answers another method, or an earlier run, already paid for. Run from the repository root:

    python -m benchmarks.compare_methods --values liberalism-4 --budget 300 --out runs/compare

Defaults run everything offline on the embedded model. Use --target/--judge/--proposer/--eval-judge with litellm
model strings for real models (keep the evaluation judge different from the optimisation judge).
Writes compare.md (table), compare.json (everything) and calls_vs_conformity.png under --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import dspy

from picaco_dspy.baselines.harness import METHODS, MethodContext, fresh_lm_cache, run_method
from picaco_dspy.evaluation.evaluate import evaluate_program
from picaco_dspy.evaluation.judge_agreement import measure_judge
from picaco_dspy.evaluation.robustness import jailbreak_check
from picaco_dspy.models.from_spec import make_metric, make_target
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.prompts.loading import load_prompt_file, prompts_for_values, to_examples

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FAIRNESS_NOTE = (
    "Each method ran with its own empty LM cache (PICACO also with its own run storage); calls are what each method "
    "paid, as if it ran alone. Each program's held-out evaluation ran with an empty cache of its own too."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", default="liberalism-4")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--budget", type=int, default=300, help="LM calls per method for optimisation")
    parser.add_argument("--train", type=int, default=6, help="optimisation prompts (built-in set)")
    parser.add_argument("--val", type=int, default=4, help="held-out prompts for selection inside methods")
    parser.add_argument("--test", type=int, default=8, help="held-out prompts for the final evaluation")
    parser.add_argument("--shared-file", help="a ../shared/datasets/*.jsonl file to evaluate on instead")
    parser.add_argument(
        "--jailbreak",
        type=int,
        default=0,
        help="also run N harmful requests (../shared/datasets/harmful_harmbench_standard.jsonl) in a "
        "jailbreak template against each program",
    )
    parser.add_argument("--target", default="local")
    parser.add_argument("--judge", default="local", help="optimisation judge")
    parser.add_argument("--eval-judge", default="local", help="evaluation judge")
    parser.add_argument("--proposer", default="local")
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--agreement-labels",
        default=str(SHARED_DATASETS / "value_portrait_dev.jsonl"),
        help="human value labels to measure the evaluation judge against ('' to skip)",
    )
    parser.add_argument("--agreement-limit", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    values = ValueSet.resolve(args.values)
    prompt_set = prompts_for_values(values.name)
    train = to_examples(prompt_set.optimize[: args.train])
    val = to_examples(prompt_set.optimize[args.train : args.train + args.val])
    if args.shared_file:
        test = to_examples(load_prompt_file(SHARED_DATASETS / args.shared_file)[: args.test])
    else:
        test = to_examples(prompt_set.heldout[: args.test])
    harmful_file = SHARED_DATASETS / "harmful_harmbench_standard.jsonl"
    harmful = load_prompt_file(harmful_file)[: args.jailbreak] if args.jailbreak and harmful_file.is_file() else []
    if args.jailbreak and not harmful:
        logging.getLogger("compare").warning("No harmful prompt set at %s; skipping the jailbreak check", harmful_file)
    target, adapter = make_target(args.target, args.max_tokens, None)
    metric = make_metric(values, args.judge, "embedded", args.max_tokens, None)
    eval_metric = make_metric(values, args.eval_judge, None, args.max_tokens, None)
    proposer = make_target(args.proposer, 160, None)[0].copy(temperature=1.0)
    args.agreement_note = ""
    if args.agreement_labels and Path(args.agreement_labels).is_file():
        agreement = measure_judge(eval_metric.judge, values, args.agreement_labels, limit=args.agreement_limit)
        args.agreement_note = f"Evaluation judge agreement ({agreement.usage['calls']} judge calls): " + (
            agreement.trust_note()
        )

    context = MethodContext(
        student=Assistant(),
        trainset=train,
        valset=val,
        metric=metric,
        target_lm=target,
        judge_lm=metric.judge.lm,
        prompt_model=proposer,
        max_lm_calls=args.budget,
        adapter=adapter,
        num_threads=args.threads,
    )
    rows = []
    for name in args.methods.split(","):
        run = run_method(name.strip(), context)
        row = {
            "method": run.method,
            "error": run.error,
            "budget_stopped": run.budget_stopped,
            "optimisation_seconds": run.wall_seconds,
            "usage": run.usage,
            "instructions": run.instructions,
        }
        if run.program is not None:
            started = time.monotonic()
            with fresh_lm_cache(), dspy.context(lm=target, adapter=adapter):
                evaluation = evaluate_program(
                    run.program, test, eval_metric, label=run.method, num_threads=args.threads, progress=False
                )
            row.update(evaluation=evaluation.to_dict(), evaluation_seconds=round(time.monotonic() - started, 1))
            if harmful:
                with fresh_lm_cache(), dspy.context(lm=target, adapter=adapter):
                    report = jailbreak_check(
                        run.program, harmful, judge_lm=eval_metric.judge.lm, num_threads=args.threads, progress=False
                    )
                row.update(jailbreak=report.to_dict())
        rows.append(row)
        logging.getLogger("compare").info("%s done: %s", name, "failed: " + run.error if run.error else "ok")
        write_outputs(args, values, rows)
    print((args.out / "compare.md").read_text())


def write_outputs(args: argparse.Namespace, values: ValueSet, rows: list[dict]) -> None:
    """compare.md, compare.json and the calls-vs-conformity plot (rewritten after every method)."""
    args.out.mkdir(parents=True, exist_ok=True)
    names = values.names
    header = [
        "method",
        *names,
        "overall [95% CI]",
        "CV",
        "harmful / helpful refusal",
        "calls (t/j/p)",
        "tokens",
        "opt. s",
        "note",
    ]
    lines = [
        f"Values: {values.name}; budget {args.budget} LM calls per method; target {args.target}, judge "
        f"{args.judge}, proposer {args.proposer}, evaluation judge {args.eval_judge}; {args.train} optimisation, "
        f"{args.val} selection and {args.test} test prompts.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        usage = row["usage"]
        calls = "/".join(str(usage[r]["calls"]) for r in ("target", "judge", "proposer"))
        tokens = sum(usage[r]["total_tokens"] for r in ("target", "judge", "proposer", "reference"))
        note = "budget reached" if row["budget_stopped"] else ""
        if row.get("error"):
            note = f"failed: {row['error'][:80]}"
        ev = row.get("evaluation")
        if ev:
            cells = [
                *(f"{ev['per_value'][n]:.2f}" for n in names),
                f"{ev['overall']:.2f} [{ev['overall_ci'][0]:.2f}, {ev['overall_ci'][1]:.2f}]",
                f"{ev['cv']:.3f}",
            ]
        else:
            cells = ["-"] * (len(names) + 2)
        jb = row.get("jailbreak")
        cells.append(f"{jb['harmful_compliance']:.0%} / {jb['helpful_refusal']:.0%}" if jb else "-")
        lines.append(
            "| "
            + " | ".join([row["method"], *cells, calls, str(tokens), f"{row['optimisation_seconds']:.0f}", note])
            + " |"
        )
    lines += ["", FAIRNESS_NOTE]
    if args.agreement_note:
        lines += ["", args.agreement_note]
    (args.out / "compare.md").write_text("\n".join(lines) + "\n")
    (args.out / "compare.json").write_text(json.dumps(rows, indent=2, default=str))
    plot(rows, args.out / "calls_vs_conformity.png")


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for row in rows:
        if not row.get("evaluation"):
            continue
        calls = sum(row["usage"][r]["calls"] for r in ("target", "judge", "proposer"))
        axes.scatter(calls, row["evaluation"]["overall"])
        axes.annotate(row["method"], (calls, row["evaluation"]["overall"]), textcoords="offset points", xytext=(4, 4))
    axes.set_xlabel("LM calls spent optimising")
    axes.set_ylabel("overall conformity (1-5, held out)")
    figure.savefig(path, bbox_inches="tight")


if __name__ == "__main__":
    main()

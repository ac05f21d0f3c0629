"""Judges against human value labels, side by side: mean Spearman [95 % CI] and pairwise accuracy per judge.

Reads a labelled file (Value Portrait's dev split from ``../shared/datasets/`` by default; never copied into the
repository) and scores every response with each judge named, next to a response-length baseline.

    python -m benchmarks.judge_agreement --values liberalism-4 --judges local [--limit 20]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "value_portrait_dev.jsonl"


def main() -> None:
    from picaco_dspy.evaluation.judge_agreement import agreement_table, judge_agreement, load_labelled
    from picaco_dspy.models.from_spec import make_metric
    from picaco_dspy.objective.values import ValueSet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--values", default="liberalism-4")
    parser.add_argument("--judges", nargs="*", default=["local"], help="model strings, as picaco's --judge")
    parser.add_argument(
        "--likelihood", action="store_true", help="also the likelihood (PMI) readings of the embedded model"
    )
    parser.add_argument("--api-base")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()

    values = ValueSet.resolve(args.values)
    queries = load_labelled(args.labels, values, limit=args.limit)
    reports = [
        judge_agreement(
            lambda _p, response: dict.fromkeys(values.names, float(len(response))), queries, name="response length"
        )
    ]
    for spec in args.judges:
        judge = make_metric(values, spec, None, 256, args.api_base).judge
        reports.append(
            judge_agreement(lambda p, r, j=judge: j.judge(p, r, values).conformity, queries, name=f"judge {spec}")
        )
    if args.likelihood:
        from picaco_dspy.objective.likelihood_judge import ValueStatementLikelihood

        for contrast in (False, True):
            reader = ValueStatementLikelihood(contrast=contrast)
            label = "likelihood PMI" + (", contrasted" if contrast else "")
            reports.append(judge_agreement(lambda p, r, j=reader: j.scores(p, r, values), queries, name=label))
    responses = sum(len(q.responses) for q in queries)
    print(f"{args.labels.name}: {len(queries)} queries, {responses} responses, values {', '.join(values.names)}")
    print(agreement_table(reports))
    for report in reports[1:]:
        print(f"\n{report.name}, per value:")
        print("\n".join(report.per_value_lines()))


if __name__ == "__main__":
    main()

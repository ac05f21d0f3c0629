"""``picaco judge-check``: how well a judge agrees with human value labels, before you trust its scores."""

from __future__ import annotations

import argparse
from typing import Any

from picaco_dspy.cli.errors import CliError
from picaco_dspy.cli.settings import add_setting_arguments


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "judge-check",
        help="measure a judge's agreement with human value labels",
        description=(
            "Score every labelled response with the judge and print, per value and overall, the mean Spearman "
            "correlation between its scores and the labels (95 % bootstrap interval over queries) and its pairwise "
            "ordering accuracy, next to a response-length baseline. An interval that includes 0 means the judge "
            "cannot tell these responses apart by value."
        ),
    )
    add_setting_arguments(parser, ["values", "judge", "api_base", "adapter"])
    parser.add_argument(
        "--labels",
        required=True,
        help="JSONL: {prompt, responses, labels: {value: [one number per response]}} per line, or Value Portrait",
    )
    parser.add_argument("--limit", type=int, help="use only the first N queries")
    parser.add_argument("--margin", type=float, default=0.1, help="label gap below which a pair is not counted")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from picaco_dspy.evaluation.judge_agreement import agreement_table, judge_agreement, load_labelled
    from picaco_dspy.models.from_spec import check_api_base, check_model_spec, make_metric
    from picaco_dspy.objective.values import ValueSet

    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit must be at least 1, got {args.limit}")
    values = ValueSet.resolve(args.values)
    check_model_spec(args.judge, "judge")
    check_api_base(args.api_base)
    queries = load_labelled(args.labels, values, limit=args.limit)
    judge = make_metric(values, args.judge, None, 256, args.api_base, adapter=args.adapter).judge
    baseline = judge_agreement(
        lambda _prompt, response: dict.fromkeys(values.names, float(len(response))),
        queries,
        name="response length (baseline)",
        margin=args.margin,
    )
    report = judge_agreement(
        lambda prompt, response: judge.judge(prompt, response, values).conformity,
        queries,
        name=f"judge {args.judge}",
        margin=args.margin,
    )
    print(f"{len(queries)} queries, {report.judgements} responses, values {', '.join(values.names)}\n")
    print(agreement_table([baseline, report]))
    print("\nPer value (judge):")
    print("\n".join(report.per_value_lines()))
    print(f"\n{report.trust_note()}")
    return 0

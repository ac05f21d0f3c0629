"""``picaco evaluate``: per-value conformity of one or several saved programs, side by side."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from picaco_dspy.cli.errors import CliError
from picaco_dspy.cli.settings import add_setting_arguments


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="per-value conformity of one or several saved programs, side by side",
        description="Judge fresh responses of each program on the prompts: per-value mean (1-5), "
        "overall mean and balance (coefficient of variation, lower is better).",
    )
    add_setting_arguments(parser, ["program", "values", "target", "judge", "api_base", "adapter", "response_tokens"])
    parser.add_argument(
        "--prompts", required=True, help="prompts: a JSONL/CSV file, a built-in prompt set, or hf:<dataset>[:<split>]"
    )
    parser.add_argument("--prompt-column", help="column holding the prompt (default: prompt/query/question/...)")
    parser.add_argument(
        "--state",
        action="append",
        default=[],
        type=Path,
        help="a saved program (DSPy JSON) to load into --program; repeat for several",
    )
    parser.add_argument("--no-bare", action="store_true", help="do not include the program as given")
    parser.add_argument(
        "--win-rate",
        action="store_true",
        help="judge every program pairwise against the first one (win rate with a bootstrap interval)",
    )
    parser.add_argument(
        "--agreement-labels",
        help="also measure the judge against this human-labelled file (as `picaco judge-check --labels`) and say "
        "under the table how far its scores can be trusted",
    )
    parser.add_argument(
        "--agreement-limit", type=int, default=20, help="labelled queries used by --agreement-labels (default 20)"
    )
    parser.add_argument("--threads", type=int, default=1, help="parallel LM calls (keep 1 for local models)")
    parser.add_argument("--out", type=Path, help="write evaluation.json, evaluation.md and radar.png here")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import dspy

    from picaco_dspy.cli.program_loader import load_program
    from picaco_dspy.evaluation.evaluate import add_win_rate, comparison_table, evaluate_program
    from picaco_dspy.evaluation.judge_agreement import load_labelled, measure_judge
    from picaco_dspy.evaluation.pairwise import PairwiseJudge
    from picaco_dspy.evaluation.report import radar_chart
    from picaco_dspy.models.from_spec import make_metric, make_target
    from picaco_dspy.objective.values import ValueSet
    from picaco_dspy.prompts.loading import load_prompts, to_examples

    if args.threads < 1:
        raise CliError(f"--threads must be at least 1, got {args.threads}")
    if args.agreement_limit < 1:
        raise CliError(f"--agreement-limit must be at least 1, got {args.agreement_limit}")
    values = ValueSet.resolve(args.values)
    # a bad labels file fails here, before any model is loaded or called
    labelled = (
        load_labelled(args.agreement_labels, values, limit=args.agreement_limit) if args.agreement_labels else None
    )
    program, input_field = load_program(args.program)
    examples = to_examples(load_prompts(args.prompts, args.prompt_column), input_field)
    if args.no_bare and not args.state:
        raise CliError("nothing to evaluate: give --state files or drop --no-bare")
    candidates = [] if args.no_bare else [("as given", program)]
    for path in args.state:
        if not path.is_file():
            raise CliError(f"saved program {str(path)!r} does not exist")
        loaded = program.deepcopy()
        try:
            loaded.load(str(path))  # JSON state only: no code from the file runs
        except Exception as exc:
            raise CliError(f"{path} is not a saved state of {args.program!r}: {exc}") from exc
        candidates.append((str(path), loaded))
    target, adapter = make_target(args.target, args.response_tokens, args.api_base, args.adapter)
    metric = make_metric(values, args.judge, None, args.response_tokens, args.api_base, adapter=args.adapter)
    progress = not args.no_progress
    with dspy.context(lm=target, adapter=adapter):
        evaluations = [
            evaluate_program(candidate, examples, metric, label=label, num_threads=args.threads, progress=progress)
            for label, candidate in candidates
        ]
        if args.win_rate and len(evaluations) > 1:
            judge = PairwiseJudge(lm=metric.judge.lm)
            for evaluation in evaluations[1:]:
                add_win_rate(evaluation, evaluations[0], judge, values, num_threads=args.threads, progress=progress)
    agreement = None
    if labelled is not None:
        agreement = measure_judge(metric.judge, values, labelled)
    table = comparison_table(evaluations, agreement)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "evaluation.json").write_text(json.dumps([e.to_dict() for e in evaluations], indent=2))
        (args.out / "evaluation.md").write_text(table + "\n")
        radar_chart({e.label: e.per_value for e in evaluations}, args.out / "radar.png", title=values.name)
        if agreement is not None:
            (args.out / "judge_agreement.json").write_text(json.dumps(dataclasses.asdict(agreement), indent=2))
        print(f"\nWrote {args.out / 'evaluation.json'}, {args.out / 'evaluation.md'}, {args.out / 'radar.png'}")
    return 0

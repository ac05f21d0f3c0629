"""``picaco compile``: align a program on prompts, write it, its run log and a report (PICACO or a baseline)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from picaco_dspy.cli.errors import CliError
from picaco_dspy.cli.settings import CompileSettings, add_compile_arguments


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "compile",
        help="align a program and write it, its run log and a report",
        description="Align a DSPy program with PICACO. Models are litellm strings "
        "(openai/gpt-4o-mini, anthropic/..., openai/<name> with --api-base for vLLM/llama.cpp) or "
        "'local' for the embedded model.",
    )
    add_compile_arguments(parser)
    parser.add_argument(
        "--prompts", required=True, help="prompts: a JSONL/CSV file, a built-in prompt set, or hf:<dataset>[:<split>]"
    )
    parser.add_argument(
        "--valset", help="held-out prompts (same forms as --prompts); default: split off --val-fraction"
    )
    parser.add_argument("--val-fraction", type=float, help="share of --prompts held out (default 1/3)")
    parser.add_argument("--limit", type=int, help="use only the first N prompts of --prompts")
    parser.add_argument("--val-limit", type=int, help="use only the first N prompts of --valset")
    parser.add_argument("--prompt-column", help="column holding the prompt (default: prompt/query/question/...)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the projected calls, tokens and USD per role for this schedule and the paper's, then exit: no "
        "model is loaded or called and nothing is written",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from picaco_dspy.prompts.loading import load_prompts

    if args.valset and args.val_fraction is not None:
        raise CliError("--val-fraction splits --prompts when there is no --valset; give one or the other")
    val_fraction = 1 / 3 if args.val_fraction is None else args.val_fraction
    if not 0 < val_fraction < 1:
        raise CliError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if args.prompt_column is not None and not args.prompt_column.strip():
        raise CliError("--prompt-column is empty; name the column that holds the prompts")
    for flag, value in (("--limit", args.limit), ("--val-limit", args.val_limit)):
        if value is not None and value < 1:
            raise CliError(f"{flag} must be at least 1, got {value}")
    if args.method != "PICACO":
        picaco_only = [
            flag
            for flag, value in (
                ("--auto", args.auto),
                ("--budget-tokens", args.max_tokens),
                ("--budget-usd", args.max_cost_usd),
                ("--run", args.run_name),
                ("--dry-run", args.dry_run or None),
            )
            if value is not None
        ]
        if picaco_only:
            raise CliError(f"{', '.join(picaco_only)} apply to PICACO only, not to --method {args.method}")
    settings = CompileSettings.from_args(args)  # every setting checked before prompts or models are loaded
    settings.check_inputs()
    prompts = load_prompts(args.prompts, args.prompt_column)[: args.limit]
    if args.valset:
        train, val = prompts, load_prompts(args.valset, args.prompt_column)[: args.val_limit]
    else:
        cut = max(1, round(len(prompts) * (1 - val_fraction)))
        train, val = prompts[:cut], prompts[cut:]
        if not val:
            raise CliError(f"{len(prompts)} prompt(s) leave none to hold out; give more prompts or --valset")
    if settings.method != "PICACO":
        from picaco_dspy.cli.baseline_run import compile_baseline

        return compile_baseline(settings, train, val)
    return compile_and_report(settings, train, val, dry_run=args.dry_run)


def compile_and_report(settings: CompileSettings, train: list[str], val: list[str], *, dry_run: bool = False) -> int:
    """Run PICACO with ``settings`` on the prompts, write the aligned program and report, print a summary.

    With ``dry_run``, print the projected spending of this schedule and of the paper's instead (see
    :meth:`PICACO.estimate`): the program, models and metric are built but no model is loaded or called, and nothing
    is written.
    """
    import dspy

    from picaco_dspy.cli.program_loader import load_program, preflight
    from picaco_dspy.evaluation.report import markdown_report, radar_chart
    from picaco_dspy.models.from_spec import make_proposer
    from picaco_dspy.objective.values import ValueSet
    from picaco_dspy.prompts.loading import to_examples
    from picaco_dspy.teleprompter import PICACO

    started = time.monotonic()
    values = ValueSet.resolve(settings.values)
    program, input_field = load_program(settings.program)
    target, adapter, metric = settings.models(values)
    trainset, valset = to_examples(train, input_field), to_examples(val, input_field)
    out = Path(settings.out)
    with dspy.context(lm=target, adapter=adapter):
        optimizer = PICACO.from_settings(  # built first: bad arguments are named before any model runs
            metric,
            settings.picaco,
            run_spec={"command": "compile", "settings": settings.to_run_spec(), "train": train, "val": val},
            **make_proposer(settings.proposer, settings.api_base, settings.adapter),
        )
        if dry_run:
            print(optimizer.estimate(program, trainset, valset).format_table())
            print("\nDry run: no model was loaded or called and nothing was written; run it without --dry-run.")
            return 0
        preflight(program, trainset[0], metric)
        aligned = optimizer.compile(program, trainset=trainset, valset=valset)
    result = aligned.picaco_result
    table = result.conformity_table()
    chart = radar_chart(table, out / "radar.png", title=f"{values.name}: conformity before/after") if table else None
    (out / "report.md").write_text(markdown_report(result, chart=chart.name if chart else None), encoding="utf-8")
    print_conformity(values.names, table)
    print(f"\nFinal instruction:\n{result.final_instruction}\n")
    if result.final_instruction == result.seed_instruction:
        print(
            "PICACO kept the seed instruction: no candidate scored higher. With the embedded 135M judge the scores "
            "are nearly flat; point --target/--judge/--proposer at a real model for real alignment.\n"
        )
    usage, paid_here = result.usage, result.worker_usage
    cost = sum(u["cost_usd"] for u in usage.values())
    print(
        "Calls: "
        + ", ".join(f"{role} {u['calls']}" for role, u in usage.items() if role != "reference")
        + f"; reference tokens {usage['reference']['input_tokens']}"
        + (f"; cost ${cost:.4f}" if cost else "")
        + f". This process paid {sum(paid_here[r]['calls'] for r in ('target', 'judge', 'proposer'))} of them and "
        f"reused {result.reused_results} stored results. Wall time {time.monotonic() - started:.0f} s."
    )
    if result.stop_reason:
        print(f"Stopped: {result.stop_reason}.")
    print(
        f"Run {result.run_name!r} in {result.storage}: the same command resumes it; more workers join it with "
        f"`picaco worker --storage <URL> --run {result.run_name}`."
    )
    print(
        f"Wrote {out / 'program.json'} (aligned program), {out / 'run.json'} (run log), {out / 'pools.json'}, "
        f"{out / 'report.md'}" + (f", {chart}" if chart else "")
    )
    return 0


def print_conformity(names: list[str], table: dict[str, dict[str, float]]) -> None:
    """The seed-versus-final per-value conformity table, on standard output."""
    if not table:
        return
    width = max(12, *(len(n) + 2 for n in names))
    print("\nPer-value conformity on held-out prompts (1-5):")
    print(f"{'':<8}" + "".join(f"{n:>{width}}" for n in names) + f"{'mean':>8}")
    for label, row in table.items():
        print(f"{label:<8}" + "".join(f"{row[n]:>{width}.2f}" for n in names) + f"{sum(row.values()) / len(row):>8.2f}")

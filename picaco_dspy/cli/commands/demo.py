"""``picaco demo``: align the shipped assistant offline on the embedded model with built-in prompts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from picaco_dspy.cli.errors import CliError
from picaco_dspy.cli.settings import CompileSettings
from picaco_dspy.settings import PICACOSettings

DEMO_SCHEDULE: dict[str, Any] = dict(
    num_candidates=3,
    aligned_pool_size=3,
    noisy_pool_size=1,
    noisy_samples_per_prompt=2,
    samples_per_prompt=1,
    num_threads=1,
    seed=0,
)  # small enough for 2 CPU cores in minutes


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="align the shipped assistant offline on the embedded model (a few minutes)",
        description="Align the example assistant to a built-in value set with built-in prompts, "
        "entirely offline on the embedded SmolLM2 model, and print conformity before and after.",
    )
    parser.add_argument("--values", default="liberalism-4", help="built-in value set (default: liberalism-4)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--train", type=int, default=6, help="optimisation prompts (default 6)")
    parser.add_argument("--val", type=int, default=4, help="held-out prompts (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from picaco_dspy.cli.commands.compile import compile_and_report
    from picaco_dspy.objective.values import ValueSet
    from picaco_dspy.prompts.loading import prompts_for_values

    if args.values not in ValueSet.builtin_names():
        raise CliError(f"unknown built-in value set {args.values!r}; `picaco values list` shows them")
    prompt_set = prompts_for_values(args.values)
    if not 1 <= args.train <= len(prompt_set.optimize) or not 1 <= args.val <= len(prompt_set.heldout):
        raise CliError(f"--train must be 1-{len(prompt_set.optimize)} and --val 1-{len(prompt_set.heldout)}")
    settings = CompileSettings(
        values=args.values,
        program="assistant",
        proposer="template",
        response_tokens=80,
        out=str(args.out),
        picaco=PICACOSettings(
            num_iterations=args.iterations, log_dir=str(args.out), progress=not args.no_progress, **DEMO_SCHEDULE
        ),
    )
    print(
        f"picaco demo: aligning the example assistant to {args.values} on the embedded SmolLM2-135M model, "
        f"{args.train} prompts from '{prompt_set.name}', {args.val} held out, {args.iterations} iterations.\n"
        "The embedded model is tiny: expect weak answers; the point is the whole method running offline.\n"
        "Its judge agrees with human value labels no better than chance (docs/judges.md): the "
        "before/after table below is a plumbing check, not a measurement.",
        file=sys.stderr,
    )
    return compile_and_report(settings, list(prompt_set.optimize[: args.train]), list(prompt_set.heldout[: args.val]))

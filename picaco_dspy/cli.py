"""The ``picaco`` command: demo, compile, evaluate, values."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from picaco_dspy.errors import ConfigurationError, PicacoError

logger = logging.getLogger("picaco_dspy.cli")

EXIT_USAGE = 2
REPO_PROGRAMS = Path(__file__).resolve().parents[1] / "programs"


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


# ====================================================================== argument parsing
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="picaco", description="Align DSPy programs to several human values at once with PICACO (arXiv 2507.16679)."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="align programs/assistant.py offline on the embedded model (a few minutes)",
        description="Align the example assistant to a built-in value set with built-in prompts, "
        "entirely offline on the embedded SmolLM2 model, and print conformity before and after.",
    )
    demo.add_argument("--values", default="liberalism-4", help="built-in value set (default: liberalism-4)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    demo.add_argument("--iterations", type=int, default=2)
    demo.add_argument("--train", type=int, default=6, help="optimisation prompts (default 6)")
    demo.add_argument("--val", type=int, default=4, help="held-out prompts (default 4)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")

    comp = sub.add_parser(
        "compile",
        help="align a program and write it, its run log and a report",
        description="Align a DSPy program with PICACO. Models are litellm strings "
        "(openai/gpt-4o-mini, anthropic/..., openai/<name> with --api-base for vLLM/llama.cpp) or "
        "'local' for the embedded model.",
    )
    _add_program_args(comp)
    comp.add_argument("--values", required=True, help="built-in value set name or a YAML/JSON file")
    comp.add_argument(
        "--prompts", required=True, help="prompts: a JSONL/CSV file, a built-in prompt set, or hf:<dataset>[:<split>]"
    )
    comp.add_argument("--valset", help="held-out prompts (same forms as --prompts); default: split off --val-fraction")
    comp.add_argument("--val-fraction", type=float, default=1 / 3, help="share of --prompts held out (default 1/3)")
    comp.add_argument("--limit", type=int, help="use only the first N prompts of --prompts")
    comp.add_argument("--val-limit", type=int, help="use only the first N prompts of --valset")
    comp.add_argument("--prompt-column", help="column holding the prompt (default: prompt/query/question/...)")
    _add_model_args(comp)
    comp.add_argument(
        "--proposer",
        default="local",
        help="litellm model, 'local' (embedded), local:<HF id or folder>, or 'template' (no LM); default local",
    )
    comp.add_argument("--reference", default="embedded", help="reference model: 'embedded', HF id or folder")
    comp.add_argument(
        "--method",
        default="PICACO",
        choices=["PICACO", "Q+IF", "URIAL", "OPRO", "COPRO", "MIPROv2", "GEPA"],
        help="PICACO (default) or a baseline to run on the same models and budget",
    )
    comp.add_argument("--budget", type=int, help="LM calls (target + judge + proposer) the method may spend")
    comp.add_argument("--budget-tokens", type=int, help="PICACO: input + output tokens of those calls")
    comp.add_argument("--budget-usd", type=float, help="PICACO: US dollars, priced from litellm's price table")
    comp.add_argument(
        "--auto",
        choices=["light", "medium", "heavy"],
        help="PICACO: let Optuna steer a schedule of this size (default: the paper's fixed schedule)",
    )
    comp.add_argument("--iterations", type=int, help="T (default 10; with --auto, the preset's most iterations)")
    comp.add_argument("--candidates", type=int, help="instructions proposed per iteration (default 4)")
    comp.add_argument("--aligned-pool", type=int, help="M1, responses kept per prompt (default 10)")
    comp.add_argument("--noisy-pool", type=int, help="M2, parroting bare responses kept per prompt (default 15)")
    comp.add_argument("--noisy-samples", type=int, help="bare responses sampled per prompt (default 2 x M2)")
    comp.add_argument("--samples", type=int, help="new responses per prompt per iteration (default 2)")
    comp.add_argument("--beta", type=float, default=1.0, help="weight of the conformity term")
    comp.add_argument("--seed", type=int, default=0)
    _add_storage_args(comp)
    comp.add_argument("--run", help="PICACO: run name to start or join (default: derived from the configuration)")
    comp.add_argument("--out", type=Path, required=True, help="output folder")

    worker = sub.add_parser(
        "worker",
        help="join a PICACO run started by `picaco compile` and share its work",
        description="Work on a run stored in a shared database: the same configuration as the `picaco compile` that "
        "started it, the same stored results; jobs are split between the workers and none is paid twice. Every "
        "worker writes the final program. The program file and the models must be reachable from this machine.",
    )
    _add_storage_args(worker, required=True)
    worker.add_argument("--run", required=True, help="the run's name (printed by `picaco compile`)")
    worker.add_argument("--out", type=Path, help="output folder (default: the one the run was started with)")
    worker.add_argument("--threads", type=int, help="parallel LM calls of this worker (default: the run's)")
    worker.add_argument("--no-progress", action="store_true", help="hide progress bars")

    runs = sub.add_parser("runs", help="list the PICACO runs kept in a storage")
    _add_storage_args(runs)

    ev = sub.add_parser(
        "evaluate",
        help="per-value conformity of one or several saved programs, side by side",
        description="Judge fresh responses of each program on the prompts: per-value mean (1-5), "
        "overall mean and balance (coefficient of variation, lower is better).",
    )
    _add_program_args(ev)
    ev.add_argument(
        "--state",
        action="append",
        default=[],
        type=Path,
        help="a saved program (DSPy JSON) to load into --program; repeat for several",
    )
    ev.add_argument("--no-bare", action="store_true", help="do not include the program as given")
    ev.add_argument("--values", required=True)
    ev.add_argument("--prompts", required=True)
    ev.add_argument("--prompt-column")
    _add_model_args(ev)
    ev.add_argument("--win-rate", action="store_true",
                    help="judge every program pairwise against the first one (win rate with a bootstrap interval)")
    ev.add_argument("--out", type=Path, help="write evaluation.json, evaluation.md and radar.png here")

    values = sub.add_parser("values", help="list or show value sets")
    vsub = values.add_subparsers(dest="values_command", metavar="ACTION")
    vsub.required = True
    vsub.add_parser("list", help="list the built-in value sets")
    show = vsub.add_parser("show", help="show a value set's members and definitions")
    show.add_argument("name", help="built-in name or a YAML/JSON file")
    return parser


def _add_storage_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--storage",
        required=required,
        default=None if required else "default",
        help="where PICACO keeps every paid result: an SQLite file, sqlite:///path, "
        "postgresql+psycopg://user@host/db (shared by workers), or 'default' ($PICACO_STORAGE or "
        "~/.cache/picaco-dspy/runs.db)" + ("" if required else "; rerunning a command resumes its run"),
    )


def _add_program_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--program",
        default="assistant",
        help="path.py:attr, path.py, or a name from programs/ (assistant, draft_and_revise, advisor)",
    )
    parser.add_argument("--threads", type=int, default=1, help="parallel LM calls (keep 1 for local models)")
    parser.add_argument("--max-tokens", type=int, default=256, help="response length cap")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        default="local",
        help="target model: litellm string, 'local' (embedded, default) or local:<HF id or folder>",
    )
    parser.add_argument(
        "--judge",
        default="local",
        help="judge model: litellm string, 'local' (embedded, default) or local:<HF id or folder>",
    )
    parser.add_argument("--api-base", help="base URL for an OpenAI-compatible server (vLLM, llama.cpp, Ollama)")


# ====================================================================== entry point
def main(argv: list[str] | None = None) -> int:
    """Run the ``picaco`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.debug)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    handlers = {
        "demo": run_demo,
        "compile": run_compile,
        "worker": run_worker,
        "runs": run_runs,
        "evaluate": run_evaluate,
        "values": run_values,
    }
    try:
        return handlers[args.command](args) or 0
    except KeyboardInterrupt:
        print("picaco: interrupted", file=sys.stderr)
        return 130
    except (CliError, PicacoError, ConfigurationError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"picaco: error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
        return EXIT_USAGE


def _configure_logging(debug: bool) -> None:
    package = logging.getLogger("picaco_dspy")
    package.setLevel(logging.DEBUG if debug else logging.INFO)
    if not any(getattr(h, "_picaco_cli", False) for h in package.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler._picaco_cli = True
        package.addHandler(handler)
    dspy_lm = logging.getLogger("dspy.clients.lm")
    dspy_lm.removeFilter(_hide_truncation_warnings)
    if not debug:  # the embedded judge's one-word verdicts trip DSPy's truncation warning on every call
        dspy_lm.addFilter(_hide_truncation_warnings)


def _hide_truncation_warnings(record: logging.LogRecord) -> bool:
    return "was truncated" not in record.getMessage()


# ====================================================================== values
def run_values(args: argparse.Namespace) -> int:
    from picaco_dspy.objective.values import ValueSet

    if args.values_command == "list":
        for name in ValueSet.builtin_names():
            values = ValueSet.builtin(name)
            print(f"{name:<16} {', '.join(values.names)}")
        return 0
    values = ValueSet.resolve(args.name)
    print(f"{values.name}: {values.description}\n" if values.description else f"{values.name}\n")
    for value in values:
        weight = f" (weight {value.weight:g})" if value.weight != 1 else ""
        print(f"- {value.name}{weight}: {value.definition}")
    return 0


# ====================================================================== demo
def run_demo(args: argparse.Namespace) -> int:
    from picaco_dspy.objective.values import ValueSet
    from picaco_dspy.prompts.loading import prompts_for_values

    if args.values not in ValueSet.builtin_names():
        raise CliError(f"unknown built-in value set {args.values!r}; `picaco values list` shows them")
    prompt_set = prompts_for_values(args.values)
    if not 1 <= args.train <= len(prompt_set.optimize) or not 1 <= args.val <= len(prompt_set.heldout):
        raise CliError(f"--train must be 1-{len(prompt_set.optimize)} and --val 1-{len(prompt_set.heldout)}")
    print(
        f"picaco demo: aligning programs/assistant.py to {args.values} on the embedded SmolLM2-135M model, "
        f"{args.train} prompts from '{prompt_set.name}', {args.val} held out, {args.iterations} iterations.\n"
        "The embedded model is tiny: expect weak answers; the point is the whole method running offline.",
        file=sys.stderr,
    )
    settings = argparse.Namespace(
        program="assistant",
        values=args.values,
        target="local",
        judge="local",
        proposer="template",
        reference="embedded",
        api_base=None,
        iterations=args.iterations,
        candidates=3,
        aligned_pool=3,
        noisy_pool=1,
        noisy_samples=2,
        samples=1,
        beta=1.0,
        seed=0,
        threads=1,
        max_tokens=80,
        out=args.out,
        no_progress=args.no_progress,
        auto=None,
        storage="default",
        run=None,
    )
    train, val = list(prompt_set.optimize[: args.train]), list(prompt_set.heldout[: args.val])
    return _compile_and_report(settings, train, val)


# ====================================================================== compile
def run_compile(args: argparse.Namespace) -> int:
    from picaco_dspy.prompts.loading import load_prompts

    if not 0 < args.val_fraction < 1:
        raise CliError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    for flag, value in (("--limit", args.limit), ("--val-limit", args.val_limit)):
        if value is not None and value < 1:
            raise CliError(f"{flag} must be at least 1, got {value}")
    prompts = load_prompts(args.prompts, args.prompt_column)[: args.limit]
    if args.valset:
        train, val = prompts, load_prompts(args.valset, args.prompt_column)[: args.val_limit]
    else:
        cut = max(1, round(len(prompts) * (1 - args.val_fraction)))
        train, val = prompts[:cut], prompts[cut:]
        if not val:
            raise CliError(f"{len(prompts)} prompt(s) leave none to hold out; give more prompts or --valset")
    if args.budget is not None and args.budget < 1:
        raise CliError(f"--budget must be at least 1, got {args.budget}")
    if args.method != "PICACO":
        picaco_only = [flag for flag, value in (("--auto", args.auto), ("--budget-tokens", args.budget_tokens),
                                                 ("--budget-usd", args.budget_usd), ("--run", args.run))
                       if value is not None]
        if picaco_only:
            raise CliError(f"{', '.join(picaco_only)} apply to PICACO only, not to --method {args.method}")
        return _compile_baseline(args, train, val)
    return _compile_and_report(args, train, val)


def run_worker(args: argparse.Namespace) -> int:
    from picaco_dspy.runtime.store import RunStore, resolve_storage_url

    store = RunStore(resolve_storage_url(args.storage))
    try:
        spec = store.run_spec(args.run)
    finally:
        store.close()
    if not spec or spec.get("command") != "compile":
        raise CliError(
            f"run {args.run!r} was started from Python, not by `picaco compile`: start more workers by running the "
            "same script (same configuration, same storage URL and run_name) on each machine"
        )
    settings = argparse.Namespace(**spec["args"])
    settings.storage, settings.run = args.storage, args.run
    settings.out = args.out or Path(spec["args"]["out"])
    settings.threads = args.threads or settings.threads
    settings.no_progress = args.no_progress or settings.no_progress
    print(f"picaco worker: joining run {args.run!r}", file=sys.stderr)
    return _compile_and_report(settings, spec["train"], spec["val"])


def run_runs(args: argparse.Namespace) -> int:
    from picaco_dspy.runtime.store import RunStore, redact_url, resolve_storage_url

    url = resolve_storage_url(args.storage)
    store = RunStore(url)
    try:
        runs = store.runs()
    finally:
        store.close()
    if not runs:
        print(f"No runs in {redact_url(url)}.")
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run["created_at"]))
        print(f"{run['name']}  started {started}  {run['results']} stored results")
    return 0


def _compile_baseline(args: argparse.Namespace, train: list[str], val: list[str]) -> int:
    """Run a baseline method, then judge it and the plain value instruction (Q+IF) on the held-out prompts."""
    import dspy

    from picaco_dspy.baselines.fixed import value_instruction_program
    from picaco_dspy.baselines.harness import MethodContext, run_method
    from picaco_dspy.evaluation.evaluate import comparison_table, evaluate_program
    from picaco_dspy.evaluation.report import radar_chart
    from picaco_dspy.objective.values import ValueSet
    from picaco_dspy.optimize.result import write_json
    from picaco_dspy.prompts.loading import to_examples

    if args.proposer == "template" and args.method in ("OPRO", "COPRO", "MIPROv2", "GEPA"):
        raise CliError(f"--method {args.method} needs an LM proposer; --proposer template works with PICACO only")
    values = ValueSet.resolve(args.values)
    program, input_field = load_program(args.program)
    target, adapter = make_target(args.target, args.max_tokens, args.api_base)
    metric = make_metric(values, args.judge, args.reference, args.max_tokens, args.api_base, beta=args.beta)
    proposer = make_target(args.proposer, 200, args.api_base)[0].copy(temperature=1.0)
    trainset, valset = to_examples(train, input_field), to_examples(val, input_field)
    context = MethodContext(
        student=program,
        trainset=trainset,
        valset=valset,
        metric=metric,
        target_lm=target,
        judge_lm=metric.judge.lm or target,
        prompt_model=proposer,
        max_lm_calls=args.budget or 10**9,
        adapter=adapter,
        num_threads=args.threads,
        seed=args.seed,
        progress=not args.no_progress,
    )
    with dspy.context(lm=target, adapter=adapter):
        preflight(program, trainset[0], metric)
    run = run_method(args.method, context)
    if run.error:
        raise CliError(f"{args.method} failed: {run.error}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run.program.save(str(out / "program.json"))
    write_json(
        out / "run.json",
        {
            "method": run.method,
            "usage": run.usage,
            "wall_seconds": run.wall_seconds,
            "budget_stopped": run.budget_stopped,
            "instructions": run.instructions,
        },
    )
    with dspy.context(lm=target, adapter=adapter):
        evaluations = [
            evaluate_program(
                value_instruction_program(program, values),
                valset,
                metric,
                label="Q+IF",
                num_threads=args.threads,
                progress=not args.no_progress,
            ),
            evaluate_program(
                run.program, valset, metric, label=args.method, num_threads=args.threads, progress=not args.no_progress
            ),
        ]
    table = comparison_table(evaluations)
    chart = radar_chart({e.label: e.per_value for e in evaluations}, out / "radar.png", title=values.name)
    calls = ", ".join(f"{role} {u['calls']}" for role, u in run.usage.items() if role != "reference")
    (out / "report.md").write_text(
        f"# {args.method} run: {values.name}\n\n{table}\n\n![radar](radar.png)\n\n"
        f"Optimisation calls: {calls}; {run.wall_seconds:.0f} s"
        f"{' (budget reached)' if run.budget_stopped else ''}.\n",
        encoding="utf-8",
    )
    print(table)
    print(
        f"\nOptimisation calls: {calls}. Wrote {out / 'program.json'}, {out / 'run.json'}, {out / 'report.md'}, {chart}"
    )
    return 0


def _compile_and_report(args: argparse.Namespace, train: list[str], val: list[str]) -> int:
    import dspy

    from picaco_dspy.evaluation.report import markdown_report, radar_chart
    from picaco_dspy.objective.values import ValueSet
    from picaco_dspy.prompts.loading import to_examples
    from picaco_dspy.teleprompter import PICACO

    started = time.monotonic()
    values = ValueSet.resolve(args.values)
    program, input_field = load_program(args.program)
    target, adapter = make_target(args.target, args.max_tokens, args.api_base)
    metric = make_metric(values, args.judge, args.reference, args.max_tokens, args.api_base, beta=args.beta)
    proposer_kwargs = make_proposer(args.proposer, args.api_base)
    trainset, valset = to_examples(train, input_field), to_examples(val, input_field)
    out = Path(args.out)
    with dspy.context(lm=target, adapter=adapter):
        optimizer = PICACO(  # built first: bad arguments are named before any model runs
            metric=metric,
            auto=args.auto,
            num_iterations=args.iterations,
            num_candidates=args.candidates,
            aligned_pool_size=args.aligned_pool,
            noisy_pool_size=args.noisy_pool,
            noisy_samples_per_prompt=args.noisy_samples,
            samples_per_prompt=args.samples,
            num_threads=args.threads,
            seed=args.seed,
            max_lm_calls=getattr(args, "budget", None),
            max_tokens=getattr(args, "budget_tokens", None),
            max_cost_usd=getattr(args, "budget_usd", None),
            storage=args.storage,
            run_name=args.run,
            run_spec={"command": "compile", "args": _json_args(args), "train": train, "val": val},
            log_dir=out,
            progress=not args.no_progress,
            **proposer_kwargs,
        )
        preflight(program, trainset[0], metric)
        aligned = optimizer.compile(program, trainset=trainset, valset=valset)
    result = aligned.picaco_result
    table = result.conformity_table()
    chart = radar_chart(table, out / "radar.png", title=f"{values.name}: conformity before/after") if table else None
    (out / "report.md").write_text(markdown_report(result, chart=chart.name if chart else None), encoding="utf-8")
    _print_table(values.names, table)
    print(f"\nFinal instruction:\n{result.final_instruction}\n")
    if result.final_instruction == result.seed_instruction:
        print(
            "PICACO kept the seed instruction: no candidate scored higher. With the embedded 135M judge the scores "
            "are nearly flat; point --target/--judge/--proposer at a real model for real alignment.\n"
        )
    usage, paid_here = result.usage, result.worker_usage
    print(
        "Calls: "
        + ", ".join(f"{role} {u['calls']}" for role, u in usage.items() if role != "reference")
        + f"; reference tokens {usage['reference']['input_tokens']}"
        + (f"; cost ${sum(u['cost_usd'] for u in usage.values()):.4f}" if any(u["cost_usd"] for u in usage.values())
           else "")
        + f". This process paid {sum(paid_here[r]['calls'] for r in ('target', 'judge', 'proposer'))} of them and "
        f"reused {result.reused_results} stored results. Wall time {time.monotonic() - started:.0f} s."
    )
    if result.stop_reason:
        print(f"Stopped: {result.stop_reason}.")
    print(f"Run {result.run_name!r} in {result.storage}: the same command resumes it; more workers join it with "
          f"`picaco worker --storage <URL> --run {result.run_name}`.")
    print(
        f"Wrote {out / 'program.json'} (aligned program), {out / 'run.json'} (run log), {out / 'pools.json'}, "
        f"{out / 'report.md'}" + (f", {chart}" if chart else "")
    )
    return 0


def _json_args(args: argparse.Namespace) -> dict[str, Any]:
    """The compile arguments a worker needs to rebuild the same run (storage and run name excepted)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in {"storage", "run", "debug", "command"}}


def _print_table(names: list[str], table: dict[str, dict[str, float]]) -> None:
    if not table:
        return
    width = max(12, *(len(n) + 2 for n in names))
    print("\nPer-value conformity on held-out prompts (1-5):")
    print(f"{'':<8}" + "".join(f"{n:>{width}}" for n in names) + f"{'mean':>8}")
    for label, row in table.items():
        print(f"{label:<8}" + "".join(f"{row[n]:>{width}.2f}" for n in names) + f"{sum(row.values()) / len(row):>8.2f}")


# ====================================================================== evaluate
def run_evaluate(args: argparse.Namespace) -> int:
    import dspy

    from picaco_dspy.evaluation.evaluate import add_win_rate, comparison_table, evaluate_program
    from picaco_dspy.evaluation.pairwise import PairwiseJudge
    from picaco_dspy.evaluation.report import radar_chart
    from picaco_dspy.objective.values import ValueSet
    from picaco_dspy.prompts.loading import load_prompts, to_examples

    values = ValueSet.resolve(args.values)
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
    target, adapter = make_target(args.target, args.max_tokens, args.api_base)
    metric = make_metric(values, args.judge, None, args.max_tokens, args.api_base)
    evaluations = []
    with dspy.context(lm=target, adapter=adapter):
        for label, candidate in candidates:
            evaluations.append(
                evaluate_program(
                    candidate, examples, metric, label=label, num_threads=args.threads, progress=not args.no_progress
                )
            )
        if args.win_rate and len(evaluations) > 1:
            judge = PairwiseJudge(lm=metric.judge.lm)
            for evaluation in evaluations[1:]:
                add_win_rate(evaluation, evaluations[0], judge, values, num_threads=args.threads,
                             progress=not args.no_progress)
    table = comparison_table(evaluations)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "evaluation.json").write_text(json.dumps([e.to_dict() for e in evaluations], indent=2))
        (args.out / "evaluation.md").write_text(table + "\n")
        radar_chart({e.label: e.per_value for e in evaluations}, args.out / "radar.png", title=values.name)
        print(f"\nWrote {args.out / 'evaluation.json'}, {args.out / 'evaluation.md'}, {args.out / 'radar.png'}")
    return 0


# ====================================================================== building blocks
def load_program(spec: str) -> tuple[Any, str]:
    """Instantiate a program from ``path.py:attr``, ``path.py`` or a name from ``programs/``.

    Returns:
        The program and the name of its input field (its ``forward`` parameter).
    """
    import dspy

    path_text, _, attr = spec.partition(":")
    path = Path(path_text)
    if path.suffix != ".py":
        candidates = [Path("programs") / f"{spec}.py", REPO_PROGRAMS / f"{spec}.py"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            names = (
                sorted(p.stem for p in REPO_PROGRAMS.glob("*.py") if not p.stem.startswith("_"))
                if REPO_PROGRAMS.is_dir()
                else []
            )
            raise CliError(f"unknown program {spec!r}; give path.py[:attr] or one of: {', '.join(names) or '(none)'}")
        attr = ""
    if not path.is_file():
        raise CliError(f"program file {str(path)!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"picaco_user_program_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise CliError(f"could not import {path}: {type(exc).__name__}: {exc}") from exc
    if attr:
        if not hasattr(module, attr):
            raise CliError(f"{path} has no attribute {attr!r}")
        obj = getattr(module, attr)
    else:
        classes = [
            v
            for v in vars(module).values()
            if inspect.isclass(v) and issubclass(v, dspy.Module) and v.__module__ == module.__name__
        ]
        if len(classes) != 1:
            raise CliError(f"{path} defines {len(classes)} DSPy modules; name one as {path}:ClassName")
        obj = classes[0]
    program = obj() if inspect.isclass(obj) else obj
    if not isinstance(program, dspy.Module):
        raise CliError(f"{spec} is not a DSPy module")
    params = [
        p
        for p in inspect.signature(type(program).forward).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    ]
    if len(params) != 1:
        raise CliError(
            f"{spec}.forward takes {[p.name for p in params]}; the CLI feeds one prompt field, so the "
            "program needs exactly one input (use the Python API for more)"
        )
    return program, params[0].name


def make_target(model: str, max_tokens: int, api_base: str | None) -> tuple[Any, Any]:
    """The target LM and the adapter it needs (plain text for the embedded model)."""
    import dspy

    from picaco_dspy.models.adapters import PlainTextAdapter
    from picaco_dspy.models.embedded import embedded_lm

    if _is_local(model):
        return embedded_lm(max_tokens=max_tokens, model=_local_model(model)), PlainTextAdapter()
    return _litellm_lm(model, api_base, max_tokens=max_tokens), dspy.ChatAdapter()


def make_metric(values, judge: str, reference: str | None, max_tokens: int, api_base: str | None, *, beta: float = 1.0):
    """The objective with the requested judge and reference model."""
    from picaco_dspy.models.embedded import embedded_judge
    from picaco_dspy.objective.bound import TotalCorrelationBound
    from picaco_dspy.objective.judge import ValueJudge
    from picaco_dspy.objective.reference import ReferenceModel

    if _is_local(judge):
        judge_module = embedded_judge(model=_local_model(judge))
    else:
        judge_module = ValueJudge(lm=_litellm_lm(judge, api_base, temperature=0.0))
    ref = ReferenceModel(reference, max_response_tokens=max_tokens) if reference else None
    return TotalCorrelationBound(values, judge=judge_module, reference=ref, beta=beta)


def make_proposer(proposer: str, api_base: str | None) -> dict[str, Any]:
    """Keyword arguments for PICACO selecting the proposer."""
    from picaco_dspy.models.adapters import PlainTextAdapter
    from picaco_dspy.models.embedded import embedded_lm
    from picaco_dspy.optimize.proposer import InstructionProposer, TemplateProposer

    if proposer == "template":
        return {"proposer": TemplateProposer()}
    if _is_local(proposer):
        lm = embedded_lm(temperature=1.0, max_tokens=160, model=_local_model(proposer))
        return {"proposer": _AdaptedProposer(InstructionProposer(lm), PlainTextAdapter())}
    return {"prompt_model": _litellm_lm(proposer, api_base, temperature=1.0)}


class _AdaptedProposer:
    """Runs a proposer under a given adapter (the embedded model needs plain text)."""

    def __init__(self, proposer: Any, adapter: Any) -> None:
        self.proposer, self.adapter = proposer, adapter

    def __call__(self, *args: Any, **kwargs: Any):
        import dspy

        with dspy.context(adapter=self.adapter):
            return self.proposer(*args, **kwargs)


def _is_local(model: str) -> bool:
    return model == "local" or model.startswith("local:")


def _local_model(model: str) -> str:
    """``local`` is the embedded model; ``local:<HF id or folder>`` any transformers chat model, run in-process."""
    return model.split(":", 1)[1] if model.startswith("local:") else "embedded"


def _litellm_lm(model: str, api_base: str | None, **kwargs: Any):
    import dspy

    if "/" not in model:
        raise CliError(f"model {model!r} is not a litellm model string like 'openai/gpt-4o-mini' (or use 'local')")
    if api_base:
        kwargs.update(api_base=api_base, api_key=os.environ.get("OPENAI_API_KEY", "unused"))
    return dspy.LM(model, **kwargs)


def preflight(program: Any, example: Any, metric: Any) -> None:
    """Run the program and the judge once, so unreachable models and format problems fail fast with their message."""
    from picaco_dspy.objective.bound import prompt_text, response_text
    from picaco_dspy.optimize.program_edit import require_text_output, target_predictors

    try:  # a program PICACO cannot align is named before any model runs
        require_text_output(program, target_predictors(program, None)[-1])
        response = response_text(program(**example.inputs()), metric.response_field)
    except (PicacoError, ConfigurationError) as exc:
        raise CliError(f"the program cannot run: {exc}") from exc
    except Exception as exc:
        raise CliError(f"the target model failed on the first prompt: {type(exc).__name__}: {exc}") from exc
    try:
        metric.judge.judge(prompt_text(example), response, metric.values)
    except Exception as exc:
        raise CliError(f"the judge failed on the first response: {exc}") from exc


if __name__ == "__main__":
    sys.exit(main())

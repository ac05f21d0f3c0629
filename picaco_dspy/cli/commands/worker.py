"""``picaco worker``: join a run started by ``picaco compile`` in a shared storage and share its work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from picaco_dspy.cli.errors import CliError
from picaco_dspy.cli.settings import CompileSettings, add_storage_argument


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "worker",
        help="join a PICACO run started by `picaco compile` and share its work",
        description="Work on a run stored in a shared database: the same configuration as the `picaco compile` that "
        "started it, the same stored results; jobs are split between the workers and none is paid twice. Every "
        "worker writes the final program. The program file and the models must be reachable from this machine.",
    )
    add_storage_argument(parser, required=True)
    parser.add_argument("--run", required=True, help="the run's name (printed by `picaco compile`)")
    parser.add_argument("--out", type=Path, help="output folder (default: the one the run was started with)")
    parser.add_argument("--threads", type=int, help="parallel LM calls of this worker (default: the run's)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from picaco_dspy.cli.commands.compile import compile_and_report
    from picaco_dspy.runtime.storage_url import resolve_storage_url
    from picaco_dspy.runtime.store import RunStore

    store = RunStore(resolve_storage_url(args.storage))
    try:
        spec = store.run_spec(args.run)
    finally:
        store.close()
    if not spec or spec.get("command") != "compile" or "settings" not in spec:
        raise CliError(
            f"run {args.run!r} was started from Python, not by `picaco compile`: start more workers by running the "
            "same script (same configuration, same storage URL and run_name) on each machine"
        )
    stored = spec["settings"]
    out = str(args.out) if args.out else stored["out"]
    overrides: dict[str, Any] = {"storage": args.storage, "run_name": args.run, "log_dir": out}
    if args.threads:
        overrides["num_threads"] = args.threads
    if args.no_progress:
        overrides["progress"] = False
    settings = CompileSettings.from_run_spec({**stored, "out": out}, **overrides)
    print(f"picaco worker: joining run {args.run!r}", file=sys.stderr)
    return compile_and_report(settings, spec["train"], spec["val"])

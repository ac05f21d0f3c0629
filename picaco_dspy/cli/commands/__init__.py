"""One module per ``picaco`` sub-command, each with ``register(subparsers)`` and ``run(args)``."""

from picaco_dspy.cli.commands import compile, demo, evaluate, judge_check, runs, values, worker

COMMANDS = (demo, compile, worker, runs, evaluate, judge_check, values)

__all__ = ["COMMANDS"]

"""The ``picaco`` command: ``demo``, ``compile``, ``worker``, ``runs``, ``evaluate``, ``values``.

Problems the user can fix print one line and exit with code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, NoReturn

from picaco_dspy.cli.commands import COMMANDS
from picaco_dspy.cli.errors import EXIT_USAGE, CliError
from picaco_dspy.errors import ConfigurationError, PicacoError

__all__ = ["CliError", "build_parser", "main"]


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line plus where to look, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        given = sys.argv[1:] if args is None else list(args)
        single = {o for a in self._actions if a.nargs is None and a.option_strings for o in a.option_strings}
        flags = [arg.split("=", 1)[0] for arg in given if arg.startswith("--")]
        repeated = sorted({flag for flag in flags if flag in single and flags.count(flag) > 1})
        if repeated:
            self.error(f"{repeated[0]} is given twice; give it once")
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = _OneLineParser(
        prog="picaco", description="Align DSPy programs to several human values at once with PICACO (arXiv 2507.16679)."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``picaco`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.debug)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("picaco: interrupted", file=sys.stderr)
        return 130
    except (CliError, PicacoError, ConfigurationError, OSError) as exc:
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
        handler._picaco_cli = True  # type: ignore[attr-defined]
        package.addHandler(handler)
    dspy_lm = logging.getLogger("dspy.clients.lm")
    dspy_lm.removeFilter(_hide_truncation_warnings)
    if not debug:  # the embedded judge's one-word verdicts trip DSPy's truncation warning on every call
        dspy_lm.addFilter(_hide_truncation_warnings)


def _hide_truncation_warnings(record: logging.LogRecord) -> bool:
    return "was truncated" not in record.getMessage()

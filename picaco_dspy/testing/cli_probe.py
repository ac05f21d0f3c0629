"""Run ``picaco`` on one set of inputs and report what it did before it stopped: the exit code, what it printed,
whether it touched a model, and which files it wrote. Used by the hostile-input tests and ``benchmarks/fuzz_inputs``.

A *clean refusal* is: exit code 2, exactly one line on standard error, no traceback, no model loaded or called, no
file written (the working folder holds only the inputs afterwards).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from unittest import mock

ACCEPTED = {  # frozen cases that are valid by design, reported apart
    "prompts-scalar-lines": "a JSONL line may be a bare JSON string: it is the prompt (documented in docs/cli.md)",
    "final-candidates-exceed-candidates": "the final selection draws from every iteration's candidates, not one's",
}


def frozen_cases() -> list[dict[str, Any]]:
    """The frozen hostile-input list."""
    data = resources.files("picaco_dspy.testing.corpora").joinpath("hostile_cli.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))


def run_case(case: dict[str, Any]) -> ProbeResult:
    """Probe one case in a fresh working folder."""
    folder = Path(tempfile.mkdtemp(prefix="picaco-fuzz-"))
    write_inputs(folder, case["files"])
    result = probe(["compile", *case["args"]], folder)
    result.files_written = [p for p in result.files_written if "__pycache__" not in p]
    return result


class ModelTouched(BaseException):
    """Raised in place of a model load or call while probing (a BaseException, so no handler in the CLI hides it)."""


@dataclass
class ProbeResult:
    """What one ``picaco`` invocation did.

    Attributes:
        exit_code: The exit code (``None`` when a model was touched and the run was stopped there).
        stderr: What it printed on standard error.
        model_touches: Model loads and LM calls it attempted, by kind (``"load"``, ``"call"``).
        files_written: Paths (relative to the working folder) that were not there before.
        crashed: An exception escaped ``main`` (its type and message).
    """

    exit_code: int | None
    stderr: str
    model_touches: list[str] = field(default_factory=list)
    files_written: list[str] = field(default_factory=list)
    crashed: str | None = None

    @property
    def traceback(self) -> bool:
        """Whether a traceback or an escaped exception was shown."""
        return self.crashed is not None or "Traceback (most recent call last)" in self.stderr

    @property
    def clean(self) -> bool:
        """Exit code 2, one line on stderr, no traceback, no model touched, no file written."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return (
            self.exit_code == 2
            and len(lines) == 1
            and not self.traceback
            and not self.model_touches
            and not self.files_written
        )


def write_inputs(folder: Path, files: Mapping[str, Mapping[str, str]]) -> None:
    """Write ``{"name": {"text": ...} | {"base64": ...}}`` into ``folder``."""
    for name, content in files.items():
        path = folder / name
        if "base64" in content:
            path.write_bytes(base64.b64decode(content["base64"]))
        else:
            path.write_text(content["text"], encoding="utf-8", newline="")


def probe(args: Sequence[str], folder: Path) -> ProbeResult:
    """Run ``picaco <args>`` with ``folder`` as the working folder and models fenced off."""
    from picaco_dspy.cli import main

    before = _listing(folder)
    stderr = io.StringIO()
    touches: list[str] = []
    exit_code: int | None = None
    crashed = None
    with (
        _working_folder(folder),
        _fenced_models(touches),
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            exit_code = main(list(args))
        except SystemExit as exc:
            exit_code = exc.code if isinstance(exc.code, int) else 1
        except ModelTouched:
            exit_code = None
        except Exception as exc:  # an escaped exception is what the probe reports, not what stops it
            crashed = f"{type(exc).__name__}: {exc}"[:300]
    written = sorted(str(p) for p in _listing(folder) - before)
    return ProbeResult(exit_code, stderr.getvalue(), touches, written, crashed)


def _listing(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@contextlib.contextmanager
def _working_folder(folder: Path) -> Iterator[None]:
    previous = Path.cwd()
    # litellm's price table from its local copy: probing must not wait for the network
    environment = {"PICACO_STORAGE": str(folder / "default-runs.db"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    os.chdir(folder)
    try:
        with mock.patch.dict(os.environ, environment):
            yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _fenced_models(touches: list[str]) -> Iterator[None]:
    def touched(kind: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            touches.append(kind)
            raise ModelTouched(kind)

        return refuse

    targets = {
        "transformers.AutoModelForCausalLM.from_pretrained": "load",
        "transformers.AutoModel.from_pretrained": "load",
        "picaco_dspy.models.engine.TransformersEngine.complete": "call",
        "litellm.completion": "call",
        "litellm.acompletion": "call",
        "litellm.text_completion": "call",
    }
    with contextlib.ExitStack() as stack:
        for target, kind in targets.items():
            stack.enter_context(mock.patch(target, touched(kind)))
        yield

"""Loading the program to align from ``path.py:attr``, ``path.py`` or a shipped example name, and the preflight
call that makes an unreachable model fail in seconds."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

import dspy

from picaco_dspy.cli.errors import CliError
from picaco_dspy.errors import ConfigurationError, PicacoError
from picaco_dspy.objective.bound import TotalCorrelationBound, prompt_text, response_text
from picaco_dspy.optimize.program_edit import require_text_output, target_predictors

_SHIPPED = "picaco_dspy.programs"


def shipped_programs() -> list[str]:
    """Names of the example programs shipped with the package."""
    from importlib import resources

    return sorted(
        f.name[:-3]
        for f in resources.files(_SHIPPED).iterdir()
        if f.name.endswith(".py") and not f.name.startswith("_")
    )


def load_program(spec: str) -> tuple[dspy.Module, str]:
    """Instantiate a program from ``path.py:attr``, ``path.py``, or a name (``programs/<name>.py`` in the current
    folder, else a shipped example).

    Returns:
        The program and the name of its input field (its ``forward`` parameter).
    """
    path_text, _, attr = spec.partition(":")
    if Path(path_text).suffix == ".py":
        module = _import_file(Path(path_text))
    elif (Path("programs") / f"{spec}.py").is_file():
        module, attr = _import_file(Path("programs") / f"{spec}.py"), ""
    elif spec in shipped_programs():
        module, attr = importlib.import_module(f"{_SHIPPED}.{spec}"), ""
    else:
        raise CliError(f"unknown program {spec!r}; give path.py[:attr] or one of: {', '.join(shipped_programs())}")
    if attr:
        if not hasattr(module, attr):
            raise CliError(f"{path_text} has no attribute {attr!r}")
        obj = getattr(module, attr)
    else:
        classes = [
            v
            for v in vars(module).values()
            if inspect.isclass(v) and issubclass(v, dspy.Module) and v.__module__ == module.__name__
        ]
        if len(classes) != 1:
            raise CliError(f"{path_text} defines {len(classes)} DSPy modules; name one as {path_text}:ClassName")
        obj = classes[0]
    try:
        program = obj() if inspect.isclass(obj) else obj
    except Exception as exc:
        raise CliError(f"{spec}: building the program failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
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


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise CliError(f"program file {str(path)!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"picaco_user_program_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise CliError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SystemExit as exc:  # a script that exits on import: never let it end the command silently
        raise CliError(
            f"{path} calls sys.exit({exc.code!r}) when imported; guard it with if __name__ == '__main__'"
        ) from exc
    except Exception as exc:
        raise CliError(f"could not import {path}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return module


def preflight(program: dspy.Module, example: dspy.Example, metric: TotalCorrelationBound) -> None:
    """Load the reference model, then run the program and the judge once, so unknown models, unreachable providers
    and format problems fail fast with their message (the reference model first: it costs nothing)."""
    try:  # a program PICACO cannot align is named before any model runs
        require_text_output(program, target_predictors(program, None)[-1])
    except (PicacoError, ConfigurationError) as exc:
        raise CliError(f"the program cannot run: {exc}") from exc
    load = getattr(metric.reference, "load", None)
    if load is not None:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # one line on failure, not a half-drawn bar
        try:
            load()
        except Exception as exc:
            raise CliError(f"the reference model cannot be loaded: {' '.join(str(exc).split())[:300]}") from exc
        finally:
            transformers_logging.enable_progress_bar()
    try:
        response = response_text(program(**example.inputs()), metric.response_field)
    except (PicacoError, ConfigurationError) as exc:
        raise CliError(f"the program cannot run: {exc}") from exc
    except Exception as exc:
        raise CliError(f"the target model failed on the first prompt: {type(exc).__name__}: {exc}") from exc
    try:
        metric.judge.judge(prompt_text(example), response, metric.values)
    except Exception as exc:
        raise CliError(f"the judge failed on the first response: {exc}") from exc


__all__ = ["load_program", "preflight", "shipped_programs"]

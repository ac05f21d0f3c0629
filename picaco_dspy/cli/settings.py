"""What one ``picaco compile`` run is: :class:`CompileSettings`, the single source of the compile flags, of the
PICACO keyword arguments they become, and of the run spec stored for ``picaco worker``."""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from picaco_dspy._validation import excerpt
from picaco_dspy.errors import ConfigurationError
from picaco_dspy.settings import PICACOSettings

METHODS = ("PICACO", "Q+IF", "URIAL", "OPRO", "COPRO", "MIPROv2", "GEPA")
_NOT_STORED = ("storage", "run_name")  # where a run lives is not part of what it is


def _option(default: Any, help: str, flag: str | None, **metadata: Any) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag, **metadata})


@dataclass
class CompileSettings:
    """The program, values, models and outputs of a compile, plus PICACO's own settings (:attr:`picaco`)."""

    values: str = _option("", "built-in value set name or a YAML/JSON file", "--values", required=True)
    program: str = _option(
        "assistant", "path.py:attr, path.py, or a shipped program (assistant, draft_and_revise, advisor)", "--program"
    )
    target: str = _option(
        "local", "target model: litellm string, 'local' (embedded, default) or local:<HF id or folder>", "--target"
    )
    judge: str = _option(
        "local",
        "judge model: litellm string, 'local' (embedded, default) or local:<HF id or folder>; 'likelihood' or "
        "likelihood:<HF id or folder> reads value-statement likelihoods instead of asking (docs/judges.md)",
        "--judge",
    )
    proposer: str = _option(
        "local",
        "litellm model, 'local' (embedded), local:<HF id or folder>, or 'template' (no LM); default local",
        "--proposer",
    )
    reference: str = _option(
        "embedded",
        "reference model: 'embedded', HF id or folder, or 'server' (the served target's exact likelihoods; "
        "embedded when the server cannot echo them)",
        "--reference",
    )
    api_base: str | None = _option(
        None, "base URL for an OpenAI-compatible server (vLLM, llama.cpp, Ollama)", "--api-base"
    )
    adapter: str = _option(
        "auto",
        "how served models are prompted: 'auto' (DSPy's chat format), 'chat', or 'plain' (plain text and a yes/no "
        "judge, for small models that cannot follow DSPy's field formats)",
        "--adapter",
        choices=("auto", "chat", "plain"),
    )
    method: str = _option(
        "PICACO", "PICACO (default) or a baseline to run on the same models and budget", "--method", choices=METHODS
    )
    beta: float = _option(1.0, "weight of the conformity term", "--beta")
    response_tokens: int = _option(256, "response length cap (tokens)", "--max-tokens")
    out: str = _option("", "output folder", "--out", required=True)
    picaco: PICACOSettings = field(default_factory=PICACOSettings)

    def check_inputs(self) -> None:
        """Everything about this compile that can be checked before a model is loaded or called: the value set, the
        model strings and server URL, the response length, and the output folder (writable, not a file, not someone
        else's non-empty folder, not the storage file).

        Raises:
            ConfigurationError: naming the flag and the fix (a :class:`~picaco_dspy.errors.ValueSetError` for values).
        """
        from picaco_dspy.models.from_spec import check_api_base, check_model_spec, check_reference_spec
        from picaco_dspy.objective.values import ValueSet

        ValueSet.resolve(self.values)
        for role in ("target", "judge", "proposer"):
            check_model_spec(getattr(self, role), role, template_allowed=role == "proposer")
        check_reference_spec(self.reference, self.target, self.api_base)
        check_api_base(self.api_base)
        if not isinstance(self.response_tokens, int) or not 1 <= self.response_tokens <= 1_000_000:
            raise ConfigurationError(
                f"--max-tokens must be a whole number from 1 to 1,000,000, got {self.response_tokens}."
            )
        if not math.isfinite(self.beta) or self.beta < 0:
            raise ConfigurationError(f"--beta must be a finite number of at least 0, got {self.beta}.")
        _check_out_folder(self.out, self.picaco.storage)

    def models(self, values: Any) -> tuple[Any, Any, Any]:
        """The target LM, its adapter and the objective (judge and reference model) these settings name."""
        from picaco_dspy.models.from_spec import make_metric, make_target

        target, adapter = make_target(self.target, self.response_tokens, self.api_base, self.adapter)
        metric = make_metric(
            values,
            self.judge,
            self.reference,
            self.response_tokens,
            self.api_base,
            beta=self.beta,
            adapter=self.adapter,
            target=self.target,
        )
        return target, adapter, metric

    def to_run_spec(self) -> dict[str, Any]:
        """JSON-ready settings to store with the run (storage and run name excepted: a worker brings its own)."""
        data = asdict(self)
        data["picaco"] = {k: v for k, v in self.picaco.to_dict().items() if k not in _NOT_STORED}
        return data

    @classmethod
    def from_run_spec(cls, data: dict[str, Any], **picaco_overrides: Any) -> CompileSettings:
        """Settings from :meth:`to_run_spec` output, with PICACO settings overridden (storage, run name, ...)."""
        data = dict(data)
        picaco = PICACOSettings.from_dict({**data.pop("picaco", {}), **picaco_overrides})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"the stored run spec has unknown settings {unknown}; it was written by another "
                "version of picaco-dspy: start the run again with `picaco compile`"
            )
        return cls(**data, picaco=picaco)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CompileSettings:
        """Settings from parsed ``compile`` arguments (see :func:`add_compile_arguments`)."""
        own = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "picaco"}
        own["out"] = str(own["out"])
        picaco = {f.name: getattr(args, f.name) for f in fields(PICACOSettings) if f.metadata.get("flag")}
        picaco.update(log_dir=own["out"], progress=not args.no_progress)
        try:
            return cls(**own, picaco=PICACOSettings(**picaco))
        except ConfigurationError as exc:  # name the flag the user typed, not the Python argument
            message = str(exc)
            for f in fields(PICACOSettings):
                if f.metadata.get("flag"):
                    message = re.sub(rf"\b{f.name}\b", f.metadata["flag"], message)
            raise ConfigurationError(message) from None


_OUTPUTS = ("program.json", "run.json", "pools.json", "report.md")


def _check_out_folder(out: str, storage: str | None) -> None:
    from picaco_dspy.runtime.storage_url import can_create_in, nearest_existing_folder

    if not out.strip():
        raise ConfigurationError("--out is empty; name the folder to write the aligned program into.")
    path = Path(out).expanduser()
    try:
        exists, is_dir = path.exists(), path.is_dir()
        foreign = is_dir and any(path.iterdir()) and not any((path / name).exists() for name in _OUTPUTS)
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ConfigurationError(f"--out {excerpt(out, 60)} is not a usable path ({exc.strerror}).") from None
    if exists and not is_dir:
        raise ConfigurationError(f"--out {excerpt(out, 60)} is a file; give a folder (it is created if missing).")
    if foreign:
        raise ConfigurationError(
            f"--out {excerpt(out, 60)} is a folder that already holds other files; name a new or empty folder (or the "
            "--out of an earlier compile, whose outputs are replaced)."
        )
    folder = nearest_existing_folder(path)
    if folder is None or not can_create_in(folder):
        raise ConfigurationError(f"--out {excerpt(out, 60)} cannot be created or written to here.")
    plain_storage = storage and "://" not in storage and storage != "default"
    if plain_storage and Path(str(storage)).expanduser().resolve() == path.resolve():
        raise ConfigurationError("--storage and --out name the same path; keep the run storage outside the folder.")


def add_compile_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every :class:`CompileSettings` field and every flagged :class:`PICACOSettings` field."""
    add_setting_arguments(parser, [f.name for f in fields(CompileSettings) if f.name != "picaco"])
    for f in fields(PICACOSettings):
        if f.metadata.get("flag"):
            _add(parser, f.name, f.metadata, f.metadata.get("cli_default", f.default), _flag_type(f.type))
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_setting_arguments(parser: argparse.ArgumentParser, names: list[str]) -> None:
    """Add the flags of the named :class:`CompileSettings` fields (for commands that share them, like evaluate)."""
    by_name = {f.name: f for f in fields(CompileSettings)}
    for name in names:
        f = by_name[name]
        _add(parser, f.name, f.metadata, f.default, type(f.default) if f.default not in ("", None) else str)


def _add(parser: argparse.ArgumentParser, dest: str, metadata: Any, default: Any, kind: type) -> None:
    kwargs: dict[str, Any] = {"dest": dest, "help": metadata["help"]}
    if metadata.get("required"):
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    if metadata.get("choices"):
        kwargs["choices"] = list(metadata["choices"])
    else:
        kwargs["type"] = kind
    parser.add_argument(metadata["flag"], **kwargs)


def _flag_type(annotation: Any) -> type:
    text = str(annotation)
    return int if text.startswith("int") else float if text.startswith("float") else str


def add_storage_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--storage`` for commands that read a run storage (``compile`` derives its flag from the settings)."""
    help_text = PICACOSettings.__dataclass_fields__["storage"].metadata["help"]
    parser.add_argument("--storage", required=required, default=None if required else "default", help=help_text)


def _metavar(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_").upper()

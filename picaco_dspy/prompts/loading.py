"""Prompt sets: the built-in ones (written by this project) and loaders for users' JSONL/CSV files."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import dspy

from picaco_dspy._validation import read_text_file
from picaco_dspy.errors import ConfigurationError

_PACKAGE = "picaco_dspy.prompts.prompt_sets"
PROMPT_COLUMNS = ("prompt", "query", "question", "instruction", "input", "text")

# Which built-in prompt sets suit which built-in value set (compositions not listed use values-dilemmas).
PROMPTS_FOR_VALUES = {
    "helpfulness-4": ("everyday-help",),
    "harmlessness-4": ("careful-requests",),
    "hh-balance-8": ("everyday-help", "careful-requests"),
    "liberalism-4": ("values-dilemmas",),
    "confucianism-4": ("values-dilemmas",),
    "schwartz-10": ("values-dilemmas",),
}
DEFAULT_PROMPT_SETS = ("values-dilemmas",)


MAX_PROMPT_CHARS = 20_000
MAX_PROMPT_FILE_BYTES = 200_000_000


class PromptFileError(ConfigurationError):
    """A prompt file is missing, empty, malformed or lacks a prompt column."""


@dataclass(frozen=True)
class PromptSet:
    """Prompts split into an optimisation part and a held-out part."""

    name: str
    optimize: tuple[str, ...]
    heldout: tuple[str, ...]


def builtin_prompt_set_names() -> list[str]:
    """Names of the prompt sets shipped with the package."""
    return sorted(f.name[: -len(".jsonl")] for f in resources.files(_PACKAGE).iterdir() if f.name.endswith(".jsonl"))


def builtin_prompt_set(name: str) -> PromptSet:
    """Load a built-in prompt set (40 optimisation and 20 held-out prompts each)."""
    if name not in builtin_prompt_set_names():
        raise PromptFileError(f"Unknown prompt set {name!r}; choose one of: {', '.join(builtin_prompt_set_names())}.")
    rows = _read_jsonl(resources.files(_PACKAGE).joinpath(f"{name}.jsonl").read_text(encoding="utf-8"), name)
    return PromptSet(
        name,
        tuple(r["prompt"] for r in rows if r.get("split") != "heldout"),
        tuple(r["prompt"] for r in rows if r.get("split") == "heldout"),
    )


def prompts_for_values(value_set_name: str) -> PromptSet:
    """The built-in prompts suited to a value set (merged when several sets apply)."""
    sets = [builtin_prompt_set(n) for n in PROMPTS_FOR_VALUES.get(value_set_name, DEFAULT_PROMPT_SETS)]
    return PromptSet(
        "+".join(s.name for s in sets),
        tuple(p for s in sets for p in s.optimize),
        tuple(p for s in sets for p in s.heldout),
    )


def load_prompt_file(path: str | Path, column: str | None = None) -> list[str]:
    """Read prompts from a JSONL or CSV file (data only).

    Args:
        path: ``.jsonl``/``.json`` (one object per line) or ``.csv`` (with a header row).
        column: The prompt column; None takes the first of ``prompt, query, question, instruction, input, text``.

    Raises:
        PromptFileError: the file is missing, not UTF-8, malformed, has no such column, or holds no prompts.
    """
    path = Path(path)
    text = read_text_file(path, kind="Prompt file", error=PromptFileError, max_bytes=MAX_PROMPT_FILE_BYTES)
    if not text.strip():
        raise PromptFileError(f"Prompt file {str(path)!r} is empty.")
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise PromptFileError(f"Prompt file {str(path)!r}, line {line}: holds a NUL byte; save it as plain UTF-8 text.")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = _read_jsonl(text, str(path))
    elif suffix == ".csv":
        rows = _read_csv(text, str(path))
    else:
        raise PromptFileError(f"Prompt file {str(path)!r}: use a .jsonl or .csv file.")
    if not rows:
        raise PromptFileError(f"Prompt file {str(path)!r} holds no rows.")
    columns = list(rows[0].keys())
    chosen = column or next((c for c in PROMPT_COLUMNS if c in columns), None)
    if chosen is None or chosen not in columns:
        wanted = repr(column) if column else f"one of {', '.join(PROMPT_COLUMNS)}"
        raise PromptFileError(
            f"Prompt file {str(path)!r} has no column {wanted}; its columns are {columns}. "
            "Pass the column name (e.g. --prompt-column)."
        )
    prompts = []
    for number, row in enumerate(rows, start=1):
        value = row.get(chosen)
        if not isinstance(value, str) or not value.strip():
            raise PromptFileError(f"Prompt file {str(path)!r}, row {number}: {chosen!r} is empty or not text.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PromptFileError(
                f"Prompt file {str(path)!r}, row {number}: the prompt holds an unpaired surrogate "
                f"({exc.object[exc.start]!r}) that no model can read; fix the escape."
            ) from None
        if len(value) > MAX_PROMPT_CHARS:
            raise PromptFileError(
                f"Prompt file {str(path)!r}, row {number}: the prompt is {len(value):,} characters, over the limit of "
                f"{MAX_PROMPT_CHARS:,} (it would not fit the judge's context next to a response); shorten or split it."
            )
        prompts.append(value.strip())
    return prompts


def to_examples(prompts: list[str] | tuple[str, ...], field: str = "query") -> list[dspy.Example]:
    """DSPy examples with the prompt as their only input field."""
    return [dspy.Example(**{field: p}).with_inputs(field) for p in prompts]


def _read_csv(text: str, origin: str) -> list[dict]:
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise PromptFileError(
                f"Prompt file {origin!r}: the header names the column {repeated[0]!r} twice; name every column once."
            )
        rows = []
        for number, row in enumerate(reader, start=1):
            if None in row:  # more fields than the header names
                raise PromptFileError(
                    f"Prompt file {origin!r}, row {number}: {len(header) + len(row[None])} fields under a header of "
                    f"{len(header)}; quote fields that contain commas."
                )
            rows.append(row)
        return rows
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (128 KiB), or a broken quote
        raise PromptFileError(f"Prompt file {origin!r} is not a usable CSV file: {exc}.") from exc


def _read_jsonl(text: str, origin: str) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptFileError(f"{origin}, line {number}: not valid JSON ({exc.msg}).") from exc
        except RecursionError as exc:
            raise PromptFileError(f"{origin}, line {number}: nested too deeply to be a prompt row.") from exc
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict):
            raise PromptFileError(f"{origin}, line {number}: expected a JSON object with a prompt field.")
        rows.append(row)
    return rows


def load_prompts(source: str | Path, column: str | None = None) -> list[str]:
    """Prompts from a built-in prompt-set name, a JSONL/CSV file, or ``hf:<dataset>[:<split>]`` (needs ``datasets``).

    Raises:
        PromptFileError: the source cannot be read; the message says why.
    """
    source = str(source)
    if source.startswith("hf:"):
        return _load_hf(source[3:], column)
    if source in builtin_prompt_set_names() and not Path(source).exists():
        prompt_set = builtin_prompt_set(source)
        return list(prompt_set.optimize + prompt_set.heldout)
    return load_prompt_file(source, column)


def _load_hf(spec: str, column: str | None) -> list[str]:
    name, _, split = spec.partition(":")
    try:
        import datasets  # optional: only for hf: sources
    except ImportError:
        raise PromptFileError("hf: prompt sources need the `datasets` package: pip install datasets") from None
    try:
        data = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # network, unknown dataset, unknown split
        raise PromptFileError(f"Could not load the dataset {name!r} (split {split or 'train'!r}): {exc}") from exc
    columns = list(data.column_names)
    chosen = column or next((c for c in PROMPT_COLUMNS if c in columns), None)
    if chosen is None or chosen not in columns:
        raise PromptFileError(f"Dataset {name!r} has no prompt column; its columns are {columns}.")
    return [str(p).strip() for p in data[chosen] if str(p).strip()]

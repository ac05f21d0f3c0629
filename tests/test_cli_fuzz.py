"""``picaco compile`` under hostile files and arguments (hypothesis): every refusal is one line, exit 2, no
traceback, no model loaded or called, no file written (``picaco_dspy.testing.cli_probe``)."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from picaco_dspy.errors import ValueSetError
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.prompts.loading import PromptFileError, load_prompt_file
from picaco_dspy.testing.cli_probe import probe

PROMPTS = "\n".join(json.dumps({"prompt": p}) for p in ("Plan a picnic.", "Fix a bike.", "Learn chess.")) + "\n"
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
value_file_texts = (
    json_values.map(json.dumps)
    | st.text(alphabet=string.printable, max_size=200)
    | st.builds(
        lambda names, defs: "values:\n" + "".join(f"  - name: {n}\n    definition: {d}\n" for n, d in zip(names, defs)),
        st.lists(st.text(max_size=30), max_size=4),
        st.lists(st.text(max_size=30), max_size=4),
    )
)


def _compile(folder: Path, *extra: str, values: str = "liberalism-4", prompts: str = "p.jsonl") -> list[str]:
    return [
        "compile", "--values", values, "--prompts", prompts, "--out", "out", "--proposer", "template",
        "--no-progress", *extra,
    ]  # fmt: skip


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="picaco-fuzz-"))


@given(value_file_texts, st.sampled_from(["v.yaml", "v.json", "v.yml"]))
@FUZZ
def test_a_hostile_value_file_is_refused_cleanly(text, name):
    folder = _folder()
    (folder / name).write_text(text, encoding="utf-8")
    (folder / "p.jsonl").write_text(PROMPTS, encoding="utf-8")
    try:
        ValueSet.from_file(folder / name)
        assume(False)  # a valid file: not a hostile input
    except ValueSetError:
        pass
    result = probe(_compile(folder, values=name), folder)
    assert result.clean, result


@given(
    st.binary(max_size=300)
    | st.lists(json_values, max_size=5).map(lambda rows: "\n".join(map(json.dumps, rows)).encode()),
    st.sampled_from(["p.jsonl", "p.csv"]),
)
@FUZZ
def test_a_hostile_prompt_file_is_refused_cleanly(blob, name):
    folder = _folder()
    (folder / name).write_bytes(blob)
    try:
        prompts = load_prompt_file(folder / name)
        assume(len(prompts) < 2)  # two or more usable prompts make a valid file
    except PromptFileError:
        pass
    result = probe(_compile(folder, prompts=name), folder)
    assert result.clean, result


NUMBER_FLAGS = {
    "--budget": ["0", "-3", "nan", "1.5", "1e309", "ten", "", "0x10"],
    "--budget-usd": ["nan", "inf", "-0.5", "0", "1e309", "$1"],
    "--budget-tokens": ["0", "-1", "inf", "9" * 40 + ".5"],
    "--iterations": ["0", "-1", "2.5", "nan", "1e3"],
    "--candidates": ["0", "-2", "many"],
    "--threads": ["0", "-1", "1.0"],
    "--beta": ["nan", "inf", "-1", "beta"],
    "--request-timeout": ["0", "-5", "nan", "inf", "soon"],
    "--response-temperature": ["-0.1", "nan", "99", "hot"],
    "--val-fraction": ["0", "1", "1.5", "-0.2", "nan"],
    "--max-tokens": ["0", "-64", "1e9", "lots"],
    "--limit": ["0", "-1", "one"],
}


@given(st.sampled_from(sorted(NUMBER_FLAGS)).flatmap(lambda f: st.tuples(st.just(f), st.sampled_from(NUMBER_FLAGS[f]))))
@FUZZ
def test_a_hostile_number_is_refused_cleanly(flag_and_value):
    flag, value = flag_and_value
    folder = _folder()
    (folder / "p.jsonl").write_text(PROMPTS, encoding="utf-8")
    result = probe(_compile(folder, f"{flag}={value}"), folder)
    assert result.clean, result


@pytest.mark.parametrize(
    "extra, setup",
    [
        (["--storage", "store"], lambda f: (f / "store").mkdir()),
        (["--storage", "notes.txt"], lambda f: (f / "notes.txt").write_text("not a database")),
        (["--storage", "ftp://host/db"], None),
        (["--program", "missing.py"], None),
        (["--program", "prog.py"], lambda f: (f / "prog.py").write_text("raise RuntimeError('boom on import')")),
        (["--program", "prog.py"], lambda f: (f / "prog.py").write_text("import sys\nsys.exit(0)")),
        (["--program", "prog.py:nothing"], lambda f: (f / "prog.py").write_text("x = 1")),
    ],
)
def test_hostile_paths_and_programs_are_refused_cleanly(extra, setup):
    folder = _folder()
    (folder / "p.jsonl").write_text(PROMPTS, encoding="utf-8")
    if setup:
        setup(folder)
    result = probe(_compile(folder, *extra), folder)
    result.files_written = [p for p in result.files_written if not p.startswith("__pycache__")]
    assert result.clean, result


def test_the_probe_sees_a_model_being_loaded_when_the_inputs_are_valid():
    folder = _folder()
    (folder / "p.jsonl").write_text(PROMPTS, encoding="utf-8")
    result = probe(_compile(folder, "--budget", "50"), folder)
    assert result.model_touches and not result.clean  # the fence around the models works, so clean means clean


def _frozen_cases():
    from picaco_dspy.testing.cli_probe import ACCEPTED, frozen_cases

    return [case for case in frozen_cases() if case["id"] not in ACCEPTED]


@pytest.mark.parametrize("case", _frozen_cases(), ids=lambda case: case["id"])
def test_the_frozen_hostile_input_list_is_refused_cleanly(case):
    # 177 cases written from the --help text by a helper who never saw the code (picaco_dspy/testing/corpora)
    from picaco_dspy.testing.cli_probe import run_case

    result = run_case(case)
    assert result.clean, (case["why"], result)

"""Loaders and parsers under hostile input: property-based (hypothesis) and hand-written attacks on safe loading.

Every loader either returns well-formed data or raises the library's own, specific error; none executes code from a
file (no pickle, no YAML object tags).
"""

from __future__ import annotations

import contextlib
import json
import pickle
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picaco_dspy.cli import main
from picaco_dspy.errors import ValueSetError
from picaco_dspy.objective.judge_parsing import JudgementParseError, parse_ratings, parse_single_score, parse_verdict
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.prompts.loading import PromptFileError, load_prompt_file

NAMES = ["Universalism", "Self-direction", "Hedonism", "Stimulation"]
FILES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


# ---------------------------------------------------------------------------------------------- judge answer parsers
@given(st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_ratings_parser_returns_in_range_scores_for_every_value_or_refuses(text):
    try:
        parsed = parse_ratings(text, NAMES)
    except JudgementParseError:
        return
    assert set(parsed) == set(NAMES) and all(1 <= p.score <= 5 for p in parsed.values())


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_single_score_and_verdict_parsers_never_guess(text):
    with contextlib.suppress(JudgementParseError):
        assert 1 <= parse_single_score(text).score <= 5
    with contextlib.suppress(JudgementParseError):
        assert parse_verdict(text) in (True, False)


@given(st.dictionaries(st.sampled_from(NAMES), st.integers(min_value=-3, max_value=9), min_size=4, max_size=4))
def test_ratings_are_read_exactly_when_every_value_is_in_range(ratings):
    text = "\n".join(f"{name}: {score}" for name, score in ratings.items())
    if all(1 <= s <= 5 for s in ratings.values()):
        assert {n: p.score for n, p in parse_ratings(text, NAMES).items()} == ratings
    else:
        with pytest.raises(JudgementParseError):
            parse_ratings(text, NAMES)


# ---------------------------------------------------------------------------------------------- value files
@given(json_values)
@FILES
def test_any_json_value_file_loads_or_fails_with_a_value_set_error(tmp_path, data):
    path = tmp_path / "values.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        loaded = ValueSet.from_file(path)
    except ValueSetError as exc:
        assert str(exc)  # a message naming the problem
        return
    assert len(loaded) >= 1 and all(v.name.strip() and v.definition.strip() for v in loaded.values)


@given(st.text(alphabet=string.printable, max_size=300))
@FILES
def test_any_yaml_text_loads_or_fails_with_a_value_set_error(tmp_path, text):
    path = tmp_path / "values.yaml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(ValueSetError):
        ValueSet.from_file(path)


@given(st.binary(max_size=200))
@FILES
def test_any_bytes_as_a_value_file_fail_cleanly(tmp_path, blob):
    path = tmp_path / "values.yaml"
    path.write_bytes(blob)
    with contextlib.suppress(ValueSetError):
        ValueSet.from_file(path)


def test_a_huge_value_file_or_composition_is_refused_with_its_size(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("values:\n" + "".join(f"  - name: V{i}\n    definition: {'x' * 200}\n" for i in range(30000)))
    with pytest.raises(ValueSetError, match="too large .*bytes; the limit is 1,000,000"):
        ValueSet.from_file(path)
    many = {"values": [{"name": f"V{i}", "definition": "something"} for i in range(65)]}
    with pytest.raises(ValueSetError, match="too many values \\(65; at most 64\\)"):
        ValueSet.from_dict(many)


def test_a_100_kb_prompt_is_refused_with_its_row(tmp_path, capsys):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "short"}) + "\n" + json.dumps({"prompt": "x" * 100_000}))
    with pytest.raises(PromptFileError, match="row 2: the prompt is 100,000 characters"):
        load_prompt_file(path)
    code = main(["compile", "--values", "liberalism-4", "--prompts", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "100,000 characters" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- prompt files
@given(st.lists(json_values, max_size=6), st.sampled_from(["prompt", "text", None]))
@FILES
def test_any_jsonl_prompt_file_loads_or_fails_with_a_prompt_file_error(tmp_path, rows, column):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    try:
        prompts = load_prompt_file(path, column)
    except PromptFileError as exc:
        assert str(exc)
        return
    assert prompts and all(isinstance(p, str) and p.strip() for p in prompts)


@given(st.binary(max_size=300), st.sampled_from([".jsonl", ".csv"]))
@FILES
def test_any_bytes_as_a_prompt_file_fail_cleanly(tmp_path, blob, suffix):
    path = tmp_path / f"prompts{suffix}"
    path.write_bytes(blob)
    with contextlib.suppress(PromptFileError):
        load_prompt_file(path)


# ---------------------------------------------------------------------------------------------- safe loading
def test_yaml_object_tags_are_data_errors_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8")
    with pytest.raises(ValueSetError, match="not valid YAML"):
        ValueSet.from_file(path)
    assert not marker.exists()


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_program_state_is_refused_and_never_unpickled(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "program.pkl"
    evil.write_bytes(pickle.dumps(_Exploit(marker)))
    code = main(["evaluate", "--values", "liberalism-4", "--prompts", "everyday-help", "--state", str(evil)])
    err = capsys.readouterr().err
    assert code == 2 and "pickle" in err.lower() and err.count("\n") == 1
    assert not marker.exists()


# ---------------------------------------------------------------------- inputs from the issue-12 report
ALIAS_BOMB = "\n".join(
    ["a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']"]
    + [f"{chr(ord('b') + i)}: &{chr(ord('b') + i)} [{','.join(['*' + chr(ord('a') + i)] * 9)}]" for i in range(8)]
)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bomb.yaml", ALIAS_BOMB, "YAML alias"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("deep.yaml", "values: " + "[" * 5_000 + "]" * 5_000, "nested too deeply|not valid YAML"),
        ("colon.yaml", "values:\n  - {name: 'Care: for others', definition: d}", "contains ':'"),
        ("long.yaml", f"values:\n  - {{name: '{'x' * 200}', definition: d}}", "at most 80"),
        ("bidi.yaml", 'values:\n  - {name: "Care\\u202e", definition: d}', "control or invisible"),
        ("control.yaml", 'values:\n  - {name: "Ca\\x07re", definition: d}', "control or invisible"),
        ("huge-entry.yaml", "values:\n  - " + "x" * 500_000, "must be a mapping"),
    ],
)
def test_hostile_value_files_give_one_short_specific_error(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueSetError, match=message) as caught:
        ValueSet.from_file(path)
    assert len(str(caught.value)) < 400  # quotes an excerpt, never the whole input
    code = main(["values", "show", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and len(err) < 500


def test_a_csv_field_over_the_csv_limit_is_a_clear_error(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("prompt\n" + "x" * 200_000 + "\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match="not a usable CSV file.*field larger than field limit"):
        load_prompt_file(path)
    nested = tmp_path / "deep.jsonl"
    nested.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match="nested too deeply"):
        load_prompt_file(nested)

import json

import pytest

from picaco_dspy.objective.values import ValueSet
from picaco_dspy.prompts.loading import (
    PROMPTS_FOR_VALUES,
    PromptFileError,
    builtin_prompt_set,
    builtin_prompt_set_names,
    load_prompt_file,
    load_prompts,
    prompts_for_values,
    to_examples,
)


def test_every_builtin_value_set_has_at_least_60_prompts_40_of_them_for_optimisation():
    for name in ValueSet.builtin_names():
        prompts = prompts_for_values(name)
        assert len(prompts.optimize) >= 40 and len(prompts.heldout) >= 20, name
        assert not set(prompts.optimize) & set(prompts.heldout), name
    assert set(PROMPTS_FOR_VALUES) == set(ValueSet.builtin_names())


def test_builtin_sets_are_distinct_real_prompts():
    seen = set()
    for name in builtin_prompt_set_names():
        prompt_set = builtin_prompt_set(name)
        prompts = prompt_set.optimize + prompt_set.heldout
        assert len(prompts) == 60 and len(set(prompts)) == 60
        assert all(len(p) > 15 and p[0].isupper() for p in prompts)
        assert not seen & set(prompts)
        seen |= set(prompts)


def test_hh_balance_gets_help_and_careful_requests():
    prompts = prompts_for_values("hh-balance-8")
    assert len(prompts.optimize) == 80 and len(prompts.heldout) == 40


def test_jsonl_and_csv_files(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        json.dumps({"question": "Why is the sky blue?"}) + "\n\n" + json.dumps({"question": " Hi? "}) + "\n"
    )
    assert load_prompt_file(jsonl) == ["Why is the sky blue?", "Hi?"]
    csv_file = tmp_path / "p.csv"
    csv_file.write_text('id,prompt\n1,"Hello, world"\n2,Second\n')
    assert load_prompts(str(csv_file)) == ["Hello, world", "Second"]
    assert len(load_prompts("everyday-help")) == 60


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("", ".jsonl", "empty"),
        ('{"prompt": "a"}\nnot json\n', ".jsonl", "line 2: not valid JSON"),
        ('{"body": "a"}\n', ".jsonl", "has no column"),
        ('{"prompt": ""}\n', ".jsonl", "row 1"),
        ("[1, 2]\n", ".jsonl", "line 1: expected a JSON object"),
        ("prompt\n", ".csv", "holds no rows"),
        ("hello", ".txt", "use a .jsonl or .csv"),
    ],
)
def test_bad_prompt_files_name_the_problem(tmp_path, content, suffix, message):
    path = tmp_path / f"p{suffix}"
    path.write_text(content)
    with pytest.raises(PromptFileError, match=message):
        load_prompt_file(path)


def test_missing_and_badly_encoded_files(tmp_path):
    with pytest.raises(PromptFileError, match="does not exist"):
        load_prompt_file(tmp_path / "nope.jsonl")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("prompt\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(PromptFileError, match="not UTF-8"):
        load_prompt_file(latin)


def test_explicit_column_and_examples(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "ignored", "ask": "used"}) + "\n")
    assert load_prompt_file(path, column="ask") == ["used"]
    with pytest.raises(PromptFileError, match="no column 'missing'"):
        load_prompt_file(path, column="missing")
    example = to_examples(["hello"], field="dilemma")[0]
    assert dict(example.inputs()) == {"dilemma": "hello"}

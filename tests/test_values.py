import json

import pytest

from picaco_dspy import ValueSet
from picaco_dspy.errors import ValueSetError
from picaco_dspy.objective.values import Value


def test_every_builtin_loads_with_definitions_and_unique_names():
    names = ValueSet.builtin_names()
    assert {"helpfulness-4", "harmlessness-4", "hh-balance-8", "confucianism-4", "liberalism-4", "schwartz-10"} <= set(
        names
    )
    sizes = {n: len(ValueSet.builtin(n)) for n in names}
    assert sizes["hh-balance-8"] == 8 and sizes["schwartz-10"] == 10 and sizes["liberalism-4"] == 4
    for name in names:
        values = ValueSet.builtin(name)
        assert all(len(v.definition) > 20 for v in values)


def test_liberalism_members_are_the_papers():
    assert ValueSet.builtin("liberalism-4").names == ["Universalism", "Self-direction", "Hedonism", "Stimulation"]


def test_hh_balance_is_helpfulness_plus_harmlessness():
    hh = ValueSet.builtin("hh-balance-8").names
    assert hh == ValueSet.builtin("helpfulness-4").names + ValueSet.builtin("harmlessness-4").names


def test_seed_instruction_lists_every_value_in_order():
    seed = ValueSet.builtin("liberalism-4").seed_instruction()
    assert seed.endswith("Universalism, Self-direction, Hedonism, and Stimulation.")


def test_weights_are_rescaled_to_mean_one():
    vs = ValueSet("w", (Value("A", "aa"), Value("B", "bb", 3.0)))
    assert vs.weights == pytest.approx([0.5, 1.5])


def test_lookup_ignores_case_spaces_and_hyphens():
    vs = ValueSet.builtin("liberalism-4")
    assert vs["self direction"].name == "Self-direction"
    with pytest.raises(ValueSetError, match="not a value"):
        vs.index("Tradition")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "x", "values": []}, "empty"),
        ({"name": "x", "values": [{"name": "A", "definition": "a"}, {"name": "a", "definition": "b"}]}, "twice"),
        ({"name": "x", "values": [{"name": "A"}]}, "no definition"),
        ({"name": "x", "values": [{"name": "A", "definition": "  "}]}, "no definition"),
        ({"name": "x", "values": [{"name": "A", "definition": "a", "weight": -1}]}, "weight"),
        ({"name": "x", "values": [{"name": "A", "definition": "a", "weight": "heavy"}]}, "weight"),
        ({"name": "x", "values": [{"name": "A", "definition": "a", "weight": float("nan")}]}, "weight"),
        ({"name": "x", "values": [{"name": "A", "definition": "a", "colour": 1}]}, "unknown keys"),
        ({"name": "x", "values": "A, B"}, "list"),
        ({"name": "x"}, "values"),
    ],
)
def test_bad_value_sets_raise_specific_errors(data, message):
    with pytest.raises(ValueSetError, match=message):
        ValueSet.from_dict(data)


def test_from_file_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text("name: mine\nvalues:\n  - name: Honesty\n    definition: Tells the truth.\n    weight: 2\n")
    vs = ValueSet.from_file(yaml_file)
    assert vs.name == "mine" and vs["Honesty"].weight == 2.0
    json_file = tmp_path / "flat.json"
    json_file.write_text(json.dumps({"Honesty": "Tells the truth.", "Kindness": "Is kind."}))
    assert ValueSet.from_file(json_file).names == ["Honesty", "Kindness"]


def test_file_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueSetError, match="does not exist"):
        ValueSet.from_file(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ValueSetError, match="empty"):
        ValueSet.from_file(empty)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueSetError, match="not valid JSON"):
        ValueSet.from_file(broken)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9".encode("latin-1"))
    with pytest.raises(ValueSetError, match="UTF-8"):
        ValueSet.from_file(latin)


def test_yaml_is_parsed_as_data_only(tmp_path):
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ValueSetError, match="not valid YAML"):
        ValueSet.from_file(hostile)


def test_unknown_builtin_lists_the_choices():
    with pytest.raises(ValueSetError, match="liberalism-4"):
        ValueSet.builtin("stoicism-3")


def test_resolve_accepts_names_paths_mappings_and_sets(tmp_path):
    vs = ValueSet.builtin("liberalism-4")
    assert ValueSet.resolve(vs) is vs
    assert ValueSet.resolve("liberalism-4") == vs
    assert ValueSet.resolve({"A": "a thing"}).names == ["A"]
    with pytest.raises(ValueSetError, match="neither a built-in"):
        ValueSet.resolve("no-such-set")

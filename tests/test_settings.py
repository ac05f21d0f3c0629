"""One settings object: PICACO's keyword arguments, the CLI flags and the stored run spec all come from
PICACOSettings, and PICACO keeps its constructor arguments as given."""

import inspect
from dataclasses import fields

import pytest

from picaco_dspy import PICACO, ConfigurationError, PICACOSettings
from picaco_dspy.cli import build_parser
from picaco_dspy.cli.settings import CompileSettings

OBJECTS = {"metric", "prompt_model", "proposer", "retry_policy", "run_spec", "callbacks"}


def test_constructor_arguments_are_exactly_the_settings_plus_the_objects():
    arguments = set(inspect.signature(PICACO.__init__).parameters) - {"self"}
    assert arguments == {f.name for f in fields(PICACOSettings)} | OBJECTS
    defaults = {k: p.default for k, p in inspect.signature(PICACO.__init__).parameters.items() if k not in OBJECTS}
    defaults.pop("self")
    assert defaults == PICACOSettings.defaults()


def test_get_params_returns_the_arguments_as_given(scripted_metric):
    optimizer = PICACO(scripted_metric, num_iterations=3, noisy_pool_size=2, predictor_names=("respond",), seed=7)
    params = optimizer.get_params()
    assert set(params) == {f.name for f in fields(PICACOSettings)} | OBJECTS
    assert params["num_iterations"] == 3 and params["noisy_samples_per_prompt"] is None and params["seed"] == 7
    assert params["predictor_names"] == ["respond"] and params["retry_policy"] is None
    settings = optimizer.settings
    assert settings.noisy_samples == 4 and settings.schedule().max_iterations == 3
    rebuilt = PICACO.from_settings(scripted_metric, settings)
    assert rebuilt.get_params() == params


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_iterations": 0}, "num_iterations must be an integer between 1 and"),
        ({"max_cost_usd": float("nan")}, "max_cost_usd must be a finite non-negative number"),
        ({"max_cost_usd": float("inf")}, "max_cost_usd must be a finite"),
        ({"request_timeout": 0}, "request_timeout must be a positive number"),
        ({"noisy_pool_size": 5, "noisy_samples_per_prompt": 3}, "noisy_samples_per_prompt"),
        ({"auto": "huge"}, "auto must be one of"),
        ({"predictor_names": "respond"}, "predictor_names must be a list"),
    ],
)
def test_bad_settings_are_named_when_built(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        PICACOSettings(**kwargs)


def test_every_flagged_setting_is_a_compile_flag_with_its_help():
    compile_parser = build_parser()._subparsers._group_actions[0].choices["compile"]
    by_dest = {action.dest: action for action in compile_parser._actions}
    for f in fields(PICACOSettings):
        if f.metadata.get("flag"):
            action = by_dest[f.name]
            assert f.metadata["flag"] in action.option_strings and action.help == f.metadata["help"]
    for f in fields(CompileSettings):
        if f.name != "picaco":
            assert f.metadata["flag"] in by_dest[f.name].option_strings


def test_compile_flags_become_settings_and_the_run_spec_round_trips(tmp_path):
    parser = build_parser()
    args = parser.parse_args(
        [
            "compile",
            "--values",
            "liberalism-4",
            "--prompts",
            "p.jsonl",
            "--out",
            str(tmp_path),
            "--iterations",
            "3",
            "--budget-usd",
            "1.5",
            "--max-tokens",
            "64",
            "--run",
            "mine",
            "--storage",
            str(tmp_path / "r.db"),
        ]
    )
    settings = CompileSettings.from_args(args)
    assert settings.response_tokens == 64 and settings.picaco.num_iterations == 3
    assert settings.picaco.max_cost_usd == 1.5 and settings.picaco.log_dir == str(tmp_path)
    spec = settings.to_run_spec()
    assert "storage" not in spec["picaco"] and "run_name" not in spec["picaco"]
    again = CompileSettings.from_run_spec(spec, storage="elsewhere.db", run_name="mine")
    assert (
        again.picaco.num_iterations == 3 and again.picaco.storage == "elsewhere.db" and again.values == "liberalism-4"
    )
    with pytest.raises(ConfigurationError, match="unknown settings"):
        CompileSettings.from_run_spec({**spec, "colour": "red"})

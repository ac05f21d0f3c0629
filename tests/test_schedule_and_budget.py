"""Optuna-steered schedules, presets and overrides, early stop, pruning, and call/token/cost budgets."""

from __future__ import annotations

import dspy
import litellm
import optuna
import pytest

from picaco_dspy import PICACO
from picaco_dspy.errors import ConfigurationError
from picaco_dspy.optimize.schedule import Range, StepSettings, resolve_schedule
from picaco_dspy.optimize.steering import ScheduleSteering
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.testing.scripted_world import compile_program, covers_all, prompts

BUDGET_ROLES = ("target", "judge", "proposer")


def spent(result, what="calls"):
    return sum(result.usage[r][what] for r in BUDGET_ROLES)


def forget_dspy_cache(tmp_path, name):
    """A new, empty DSPy cache: from here on every call reaches the engine (and costs) again."""
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(tmp_path / name))
    dspy.cache.reset_memory_cache()


def steered(metric, lm, storage=None, **kwargs):
    optimizer = PICACO(
        metric=metric,
        prompt_model=lm,
        auto="light",
        num_threads=1,
        progress=False,
        noisy_pool_size=2,
        storage=storage,
        **kwargs,
    )
    with dspy.context(lm=lm):
        return optimizer.compile(Assistant(), trainset=prompts(6), valset=prompts(3, offset=100))


def test_presets_grow_and_explicit_arguments_fix_their_setting():
    light, medium, heavy = (resolve_schedule(p, {}) for p in ("light", "medium", "heavy"))
    assert light.max_iterations < medium.max_iterations < heavy.max_iterations
    assert light.num_candidates.high <= medium.num_candidates.high <= heavy.num_candidates.high
    assert all(s.steered and s.patience for s in (light, medium, heavy))
    fixed = resolve_schedule("medium", {"num_candidates": 3, "num_iterations": 5, "proposal_temperature": None})
    assert fixed.num_candidates == Range(3, 3) and fixed.max_iterations == 5
    assert fixed.proposal_temperature == medium.proposal_temperature  # None means "not given"
    paper = resolve_schedule(None, {})
    assert (paper.max_iterations, paper.pool_capacity, paper.noisy_pool_size) == (10, 10, 15)
    assert not paper.steered and paper.patience is None
    with pytest.raises(ConfigurationError, match="auto must be one of"):
        resolve_schedule("extreme", {})


def test_optuna_steers_each_step_within_the_preset_and_the_study_is_stored(scripted_metric, scripted_lm, tmp_path):
    storage = f"sqlite:///{tmp_path / 'steer.db'}"
    verbosity = optuna.logging.get_verbosity()
    result = steered(scripted_metric, scripted_lm, storage=storage, num_candidates=3).picaco_result
    assert optuna.logging.get_verbosity() == verbosity  # Optuna's own settings are the user's
    schedule = resolve_schedule("light", {"num_candidates": 3})
    assert 1 <= len(result.iterations) <= schedule.max_iterations
    for record in result.iterations:
        s = record.settings
        assert s["num_candidates"] == 3  # given explicitly: fixed in every step
        assert schedule.samples_per_prompt.low <= s["samples_per_prompt"] <= schedule.samples_per_prompt.high
        assert schedule.proposal_temperature.low <= s["proposal_temperature"] <= schedule.proposal_temperature.high
        assert schedule.aligned_pool_size.low <= s["aligned_pool_size"] <= schedule.aligned_pool_size.high
        assert 1 <= s["minibatch_size"] <= 6
        assert record.new_responses == 6 * s["samples_per_prompt"]
    # one trial per step, in the run's own study, in the same database
    study = optuna.load_study(study_name=result.run_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == len(result.iterations)
    assert [t.user_attrs["iteration"] for t in trials] == [r.iteration for r in result.iterations]
    assert [r.settings["trial_number"] for r in result.iterations[1:]] == [t.number for t in trials[1:]]
    for trial, record in zip(trials, result.iterations):
        assert trial.state.name == ("PRUNED" if record.pruned else "COMPLETE")
        if not record.pruned:
            assert trial.value == pytest.approx(record.gain)
    assert covers_all(result.final_instruction)


def test_a_run_stops_early_when_J_stops_improving(scripted_metric, scripted_lm):
    result = steered(scripted_metric, scripted_lm, patience=1, min_improvement=100.0).picaco_result
    assert len(result.iterations) == 1 and "early stop" in result.stop_reason
    assert not result.budget_stopped


def test_the_median_pruner_drops_a_step_whose_intermediate_gain_lags():
    schedule = resolve_schedule("light", {})
    steering = ScheduleSteering(schedule, storage=None, study_name="prune", seed=0, n_prompts=8)
    for iteration, gain in ((1, 0.5), (2, 0.6), (3, 0.55)):
        settings = steering.ask(iteration)
        for step in range(3):
            assert not steering.report(settings, step, gain)
        steering.tell(iteration, settings, gain, False, {0: gain, 1: gain, 2: gain})
    lagging = steering.ask(4)
    assert isinstance(lagging, StepSettings) and lagging.trial_number is not None
    assert steering.report(lagging, 0, 0.0)  # far below the median of the earlier steps at the same point


def test_the_same_seed_asks_the_same_settings():
    schedule = resolve_schedule("medium", {})
    runs = []
    for _ in range(2):
        steering = ScheduleSteering(schedule, storage=None, study_name="same", seed=3, n_prompts=10)
        asked = []
        for iteration in range(1, 5):
            settings = steering.ask(iteration)
            asked.append(settings)
            steering.tell(iteration, settings, 0.1 * iteration, False, {0: 0.1 * iteration})
        runs.append(asked)
    assert runs[0] == runs[1]


@pytest.fixture
def short_lm(engine):
    """The scripted target with a response cap near its real answers' length: before any call, a budget projects the
    first phase at the caps (the only projection that cannot be exceeded), so a 512-token cap would dwarf the run."""
    return dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=64)


def test_a_token_budget_stops_cleanly_and_is_respected(scripted_metric, short_lm, tmp_path):
    full = compile_program(Assistant(), scripted_metric, short_lm, storage=None).picaco_result
    forget_dspy_cache(tmp_path, "again")
    limit = spent(full, "total_tokens") // 2
    result = compile_program(Assistant(), scripted_metric, short_lm, max_tokens=limit).picaco_result
    assert result.budget_stopped and "max_tokens" in result.stop_reason
    assert len(result.iterations) < len(full.iterations)
    assert spent(result, "total_tokens") <= limit
    assert result.finished and result.final_instruction  # the best program so far is returned


@pytest.fixture
def priced_world():
    """Give the scripted model a price, as litellm.register_model does for any custom model."""
    litellm.register_model(
        {
            "scripted/world": {
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 4e-6,
                "litellm_provider": "openai",
                "mode": "chat",
            }
        }
    )
    yield
    litellm.model_cost.pop("scripted/world", None)


def test_a_cost_budget_prices_calls_from_litellm_and_stops_cleanly(scripted_metric, short_lm, priced_world, tmp_path):
    full = compile_program(Assistant(), scripted_metric, short_lm, storage=None).picaco_result
    forget_dspy_cache(tmp_path, "again")
    assert spent(full, "cost_usd") == pytest.approx(
        sum(full.usage[r]["input_tokens"] * 1e-6 + full.usage[r]["output_tokens"] * 4e-6 for r in BUDGET_ROLES)
    )
    limit = spent(full, "cost_usd") * 0.6
    result = compile_program(Assistant(), scripted_metric, short_lm, max_cost_usd=limit).picaco_result
    assert result.budget_stopped and "max_cost_usd" in result.stop_reason
    assert 0 < spent(result, "cost_usd") <= limit


def test_a_cost_budget_needs_a_price_for_every_model(scripted_metric, scripted_lm):
    with pytest.raises(ConfigurationError, match=r"litellm has none for \['scripted/world'\].*register_model"):
        compile_program(Assistant(), scripted_metric, scripted_lm, max_cost_usd=1.0)


def test_a_budget_stopped_run_continues_with_a_larger_budget(scripted_metric, scripted_lm, engine, tmp_path):
    uninterrupted = compile_program(Assistant(), scripted_metric, scripted_lm, storage=None).picaco_result
    forget_dspy_cache(tmp_path, "stopped")
    stopped = compile_program(Assistant(), scripted_metric, scripted_lm, max_lm_calls=70).picaco_result
    assert stopped.budget_stopped
    paid_before = sum(engine.calls.values())
    forget_dspy_cache(tmp_path, "continued")
    resumed = compile_program(Assistant(), scripted_metric, scripted_lm).picaco_result
    assert resumed.run_name == stopped.run_name and not resumed.budget_stopped
    assert resumed.final_instruction == uninterrupted.final_instruction
    assert [r.J for r in resumed.iterations] == [r.J for r in uninterrupted.iterations]
    # the continuation paid only for what the stopped run had not (the DSPy cache was wiped between them)
    assert sum(engine.calls.values()) - paid_before == spent(uninterrupted) - spent(stopped)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"auto": "huge"}, "auto must be one of"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_cost_usd": -1.0}, "max_cost_usd"),
        ({"minibatch_size": 0}, "minibatch_size"),
        ({"patience": 0}, "patience"),
        ({"claim_timeout": 0.5}, "claim_timeout"),
        ({"run_name": ""}, "run_name"),
        ({"storage": 3}, "storage must be"),
    ],
)
def test_bad_schedule_budget_and_storage_arguments_are_named(scripted_metric, scripted_lm, kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        compile_program(Assistant(), scripted_metric, scripted_lm, **kwargs)


def test_a_budget_too_small_for_the_first_phase_is_refused_before_any_call(scripted_metric, scripted_lm, engine):
    with pytest.raises(ConfigurationError, match="first phase.*nothing was spent"):
        compile_program(Assistant(), scripted_metric, scripted_lm, max_tokens=2000)
    with pytest.raises(ConfigurationError, match="first phase.*nothing was spent"):
        compile_program(Assistant(), scripted_metric, scripted_lm, max_lm_calls=10)
    assert sum(engine.calls.values()) == 0


def test_a_budget_that_pays_the_noisy_pool_but_no_iteration_returns_the_seed_program(
    scripted_metric, scripted_lm, engine
):
    # noisy pool: 4 prompts x 4 bare samples + 4 x 2 kept judged = 24 calls; iteration 1 needs 8 + 8 + 4 more
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, max_lm_calls=30)
    result = aligned.picaco_result
    assert result.budget_stopped and "iteration-1" in result.stop_reason and not result.iterations
    assert result.final_instruction == result.seed_instruction and result.finished
    assert sum(result.usage[r]["calls"] for r in ("target", "judge", "proposer")) <= 30
    assert aligned.candidate_programs and aligned.candidate_programs[0]["instruction"] == result.seed_instruction

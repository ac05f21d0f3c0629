"""Observability: callback dispatch and its failure policy, and the MLflow tracker against a local SQLite store.

The MLflow events are synthetic (real ``IterationRecord``/``PICACOResult`` objects, no compile): wiring the events into
``PICACO.compile`` is tested with the run loop.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from picaco_dspy.observe import CallbackList, MLflowCallback, PICACOCallback, default_callbacks, dispatch
from picaco_dspy.observe.mlflow_tracking import entity_key, flatten, name_part, truncate
from picaco_dspy.optimize.result import CandidateRecord, IterationRecord, PICACOResult, SelectionRecord
from picaco_dspy.runtime.usage import RoleUsage

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline: no usage pings from mlflow

VALUES = ["Relevance", "Care & Fairness"]  # "&" is not allowed in MLflow names: logged as "Care _ Fairness"
SEED = "Answer helpfully and fairly."


class Recorder(PICACOCallback):
    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self.name, self.calls = name, calls

    def on_optimization_start(self, event: Any) -> None:
        self.calls.append((self.name, "on_optimization_start"))

    def on_iteration_end(self, event: Any) -> None:
        self.calls.append((self.name, f"on_iteration_end {event['iteration']}"))


class Broken(PICACOCallback):
    def on_iteration_end(self, event: Any) -> None:
        raise RuntimeError("dashboard is down")


# -- dispatch -------------------------------------------------------------------------------------------------------


def test_dispatch_calls_every_callback_in_order_and_a_raising_one_is_logged_and_skipped(caplog):
    calls: list[tuple[str, str]] = []
    callbacks = [Recorder("a", calls), Broken(), Recorder("b", calls)]
    with caplog.at_level(logging.ERROR, logger="picaco_dspy.observe.callbacks"):
        dispatch(callbacks, "on_iteration_end", {"iteration": 3})
    assert calls == [("a", "on_iteration_end 3"), ("b", "on_iteration_end 3")]
    [failure] = caplog.records
    assert "Broken" in failure.getMessage() and "on_iteration_end" in failure.getMessage()
    assert failure.exc_info is not None and "dashboard is down" in str(failure.exc_info[1])


def test_dispatch_skips_objects_without_the_method_and_refuses_unknown_events():
    calls: list[tuple[str, str]] = []
    dispatch([object(), Recorder("a", calls)], "on_optimization_start", {})
    dispatch([PICACOCallback()], "on_optimization_end", {})  # the base class is a no-op
    assert calls == [("a", "on_optimization_start")]
    with pytest.raises(ValueError, match="on_iteration_ends"):
        dispatch([], "on_iteration_ends", {})


def test_callback_list_forwards_each_event_with_the_same_policy(caplog):
    calls: list[tuple[str, str]] = []
    callbacks = CallbackList([Recorder("a", calls), Broken(), Recorder("b", calls)])
    with caplog.at_level(logging.ERROR):
        callbacks.on_optimization_start(
            {"run_name": "r", "config": {}, "values": [], "seed_instruction": "", "schedule": {}}
        )
        callbacks.on_iteration_end({"iteration": 1, "record": None, "result": None})
        callbacks.on_optimization_end({"result": None})
    assert len(callbacks) == 3
    assert calls == [("a", "on_optimization_start"), ("b", "on_optimization_start"), ("a", "on_iteration_end 1"),
                     ("b", "on_iteration_end 1")]  # fmt: skip
    assert len(caplog.records) == 1


def test_importing_picaco_dspy_never_imports_mlflow():
    code = "import sys, picaco_dspy, picaco_dspy.observe; print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_names_and_params_fit_mlflow_limits():
    out: dict[str, str] = {}
    flatten("config", {"models": {"target": "openai/gpt-4o-mini"}, "auto": None, "ids": [1, 2], "a/b": {}}, out)
    assert out == {"config.models.target": "openai/gpt-4o-mini", "config.auto": "None", "config.ids": "[1, 2]",
                   "config.a_b": "{}"}  # fmt: skip
    assert truncate("x" * 10, 10) == "x" * 10
    cut = truncate("x" * 600, 500)
    assert len(cut) == 500 and cut.endswith("...[truncated]")
    assert name_part("Care & Fairness") == "Care _ Fairness" and name_part("a/b") == "a_b" and name_part("..") == "_"
    long = "k" * 300
    assert len(entity_key(long)) == 250 and entity_key(long) != entity_key(long[:-1] + "j")


# -- MLflow ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> Iterator[Any]:
    """mlflow pointed at a fresh SQLite store and artifact folder (the file store is refused by MLflow 3.x)."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.create_experiment("picaco-tests", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    try:
        yield mlflow
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


@pytest.fixture
def mlflow(mlflow_store) -> Iterator[Any]:
    yield mlflow_store
    while mlflow_store.active_run() is not None:  # a failed test leaves no run open for the next one
        mlflow_store.end_run()


def usage(calls: dict[str, int]) -> dict[str, dict[str, Any]]:
    return {role: RoleUsage(n, n * 100, n * 10, 0, n * 0.001, 0).to_dict() for role, n in calls.items()}


def iteration(i: int, J: float, gain: float, reward: float, conformity: list[float], calls: dict[str, int]):
    return IterationRecord(
        iteration=i,
        sampled_under=SEED if i == 1 else f"instruction {i - 1}",
        new_responses=4,
        failed_rollouts=i - 1,
        mean_reward=reward,
        conformity=dict(zip(VALUES, conformity)),
        aligned_pool_mean_reward=reward + 0.1,
        candidates=[CandidateRecord(f"instruction {i}", J, i, "proposed")],
        instruction=f"instruction {i}",
        J=J,
        usage=usage(calls),
        wall_seconds=10.0 * i,
        gain=gain,
    )


def make_result() -> PICACOResult:
    values = {"name": "helpfulness-2", "description": "", "values": [{"name": v, "definition": v} for v in VALUES]}
    config = {
        "run_name": "run-1",
        "models": {"target": "openai/gpt-4o-mini", "judge": "openai/gpt-4o"},
        "budget": {"max_calls": 500, "max_cost_usd": None},
        "notes": "n" * 7000,  # over MLflow's 6000-character param limit
    }
    return PICACOResult(
        values=values,
        predictor_names=["answer"],
        seed_instruction=SEED,
        config=config,
        run_name="run-1",
        schedule={"max_iterations": 2, "noisy_pool_size": 15, "candidates": 4},
    )


def run_events(callback: MLflowCallback, result: PICACOResult, *, error: BaseException | None = None) -> None:
    """A two-iteration run's events, in the order the run loop sends them (the callback is called directly, so any
    failure in it fails the test instead of being logged by dispatch)."""
    values = [v["name"] for v in result.values["values"]]
    callback.on_optimization_start(
        {
            "run_name": result.run_name,
            "config": result.config,
            "values": values,
            "seed_instruction": result.seed_instruction,
            "schedule": result.schedule,
        }
    )
    result.noisy_pool = {"sampled": 30, "kept": 20, "failed": 1, "mean_redundancy": 0.25}
    callback.on_noisy_pool_built({"noisy_pool": result.noisy_pool, "result": result})
    records = [
        iteration(1, 0.5, 0.2, 0.6, [3.0, 2.5], {"target": 10, "judge": 20, "proposer": 1}),
        iteration(2, 0.75, 0.1, 0.7, [4.0, 3.5], {"target": 20, "judge": 40, "proposer": 2}),
    ]
    for record in records:
        result.iterations.append(record)
        result.seed_J = result.seed_J if result.seed_J is not None else 0.3
        callback.on_iteration_end({"iteration": record.iteration, "record": record, "result": result})
    if error is None:
        final = "instruction 2"
        result.selection = SelectionRecord(
            on="valset",
            scores={SEED: 0.4, final: 0.7},
            conformity={SEED: dict(zip(VALUES, [3.0, 2.0])), final: dict(zip(VALUES, [4.5, 4.0]))},
        )
        result.final_instruction, result.finished = final, True
        callback.on_optimization_end({"result": result})
    else:
        callback.on_optimization_end({"result": result, "error": error})


def history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def artifact_text(mlflow: Any, run_id: str, path: str, dst: Path) -> str:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst))
    return Path(local).read_text(encoding="utf-8")


def test_mlflow_callback_logs_params_metrics_and_artifacts_into_a_run_it_starts_and_ends(mlflow, tmp_path):
    callback, result = MLflowCallback(), make_result()
    run_events(callback, result)
    assert mlflow.active_run() is None  # it started the run, so it ended it
    client = mlflow.MlflowClient()
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run-1"
    # per-iteration metrics at step=iteration
    assert history(client, run.info.run_id, "J") == [(1, 0.5), (2, 0.75)]
    assert history(client, run.info.run_id, "gain") == [(1, 0.2), (2, 0.1)]
    assert history(client, run.info.run_id, "mean_reward") == [(1, 0.6), (2, 0.7)]
    assert history(client, run.info.run_id, "conformity/Relevance") == [(1, 3.0), (2, 4.0)]
    assert history(client, run.info.run_id, "conformity/Care _ Fairness") == [(1, 2.5), (2, 3.5)]
    assert history(client, run.info.run_id, "calls/judge") == [(1, 20.0), (2, 40.0)]
    assert history(client, run.info.run_id, "calls/proposer") == [(1, 1.0), (2, 2.0)]
    assert history(client, run.info.run_id, "input_tokens/target") == [(1, 1000.0), (2, 2000.0)]
    assert history(client, run.info.run_id, "output_tokens/target") == [(1, 100.0), (2, 200.0)]
    assert history(client, run.info.run_id, "cost_usd/judge") == [(1, pytest.approx(0.02)), (2, pytest.approx(0.04))]
    assert history(client, run.info.run_id, "failed_rollouts") == [(1, 0.0), (2, 1.0)]
    assert history(client, run.info.run_id, "noisy_pool/kept") == [(0, 20.0)]
    # end-of-run metrics
    metrics = run.data.metrics
    assert metrics["seed_J"] == 0.3 and metrics["final/selection_score"] == 0.7
    assert metrics["final_conformity/Relevance"] == 4.5 and metrics["seed_conformity/Care _ Fairness"] == 2.0
    # params: prefixed, flattened, long values cut to MLflow's limit
    params = run.data.params
    assert params["picaco.run_name"] == "run-1"
    assert params["picaco.values"] == "Relevance, Care & Fairness" and params["picaco.n_values"] == "2"
    assert params["picaco.seed_instruction"] == SEED
    assert params["picaco.config.models.judge"] == "openai/gpt-4o"
    assert params["picaco.config.budget.max_calls"] == "500" and params["picaco.config.budget.max_cost_usd"] == "None"
    assert params["picaco.schedule.max_iterations"] == "2" and params["picaco.schedule.noisy_pool_size"] == "15"
    assert len(params["picaco.config.notes"]) == 6000 and params["picaco.config.notes"].endswith("...[truncated]")
    assert run.data.tags["picaco.finished"] == "True" and "picaco.error" not in run.data.tags
    # artifacts
    assert artifact_text(mlflow, run.info.run_id, "final_instruction.txt", tmp_path) == "instruction 2"
    logged = json.loads(artifact_text(mlflow, run.info.run_id, "picaco_result.json", tmp_path))
    assert logged == json.loads(json.dumps(result.to_dict()))
    report = artifact_text(mlflow, run.info.run_id, "report.md", tmp_path)
    assert report.startswith("# PICACO run: helpfulness-2") and "![per-value conformity](radar.png)" in report
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"radar.png", "report.md"}


def test_mlflow_callback_logs_into_an_active_run_and_leaves_it_running(mlflow):
    with mlflow.start_run(run_name="user-run") as outer:
        callback = MLflowCallback()
        run_events(callback, make_result())
        assert callback.run_id == outer.info.run_id and not callback.owns_run
        assert mlflow.active_run() is not None and mlflow.active_run().info.run_id == outer.info.run_id
        client = mlflow.MlflowClient()
        assert client.get_run(outer.info.run_id).info.status == "RUNNING"
        assert history(client, outer.info.run_id, "J") == [(1, 0.5), (2, 0.75)]

        # a second PICACO run in the same MLflow run cannot change its params: it gets a nested run
        second = MLflowCallback()
        run_events(second, make_result())
        assert second.run_id != outer.info.run_id
        child = client.get_run(second.run_id)
        assert child.data.tags["mlflow.parentRunId"] == outer.info.run_id and child.info.status == "FINISHED"
        assert mlflow.active_run().info.run_id == outer.info.run_id
    assert client.get_run(outer.info.run_id).info.status == "FINISHED"


def test_a_failed_run_ends_the_callbacks_own_run_as_failed_with_the_partial_result(mlflow, tmp_path):
    callback, result = MLflowCallback(log_report=False), make_result()
    run_events(callback, result, error=RuntimeError("every rollout failed"))
    assert mlflow.active_run() is None
    run = mlflow.MlflowClient().get_run(callback.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["picaco.error"] == "RuntimeError: every rollout failed"
    assert run.data.tags["picaco.finished"] == "False"
    logged = json.loads(artifact_text(mlflow, run.info.run_id, "picaco_result.json", tmp_path))
    assert len(logged["iterations"]) == 2 and logged["final_instruction"] is None
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)} == {"picaco_result.json"}


def test_default_callbacks_follow_the_active_run(mlflow):
    assert default_callbacks() == []  # mlflow imported, no active run, autologging off
    with mlflow.start_run():
        [callback] = default_callbacks()
        assert isinstance(callback, MLflowCallback)
    assert default_callbacks() == []


def test_default_callbacks_do_not_import_mlflow_for_a_process_that_has_not(monkeypatch):
    monkeypatch.delitem(sys.modules, "mlflow", raising=False)
    assert default_callbacks() == []
    assert "mlflow" not in sys.modules


def test_dspy_autolog_wraps_picaco_compile_and_turns_default_callbacks_on(tmp_path):
    """``mlflow.dspy.autolog`` patches ``Teleprompter.__subclasses__()`` as they are when it is called: PICACO's
    compile is wrapped (and runs inside an MLflow run with ``log_compiles=True``) when picaco_dspy was imported first.
    Run in a fresh interpreter: autologging changes dspy's global settings and patches classes for good."""
    script = textwrap.dedent(
        """
        import json
        from picaco_dspy import PICACO
        from picaco_dspy.observe import default_callbacks
        import mlflow, mlflow.dspy

        original = PICACO.__dict__["compile"]
        off = default_callbacks()
        mlflow.dspy.autolog(log_compiles=True)
        patched = PICACO.__dict__["compile"]
        print(json.dumps({
            "off": [type(c).__name__ for c in off],
            "on": [type(c).__name__ for c in default_callbacks()],
            "wrapped": patched is not original and "mlflow" in patched.__code__.co_filename,
        }))
        """
    )
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'a.db'}"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"off": [], "on": ["MLflowCallback"], "wrapped": True}


# -- wired into PICACO.compile ---------------------------------------------------------------------------------------


def test_compile_tells_callbacks_every_event_and_a_broken_one_does_not_stop_it(scripted_metric, scripted_lm):
    from picaco_dspy.programs.assistant import Assistant
    from picaco_dspy.testing.scripted_world import compile_program

    class Collects(PICACOCallback):
        def __init__(self) -> None:
            self.events: list[tuple[str, Any]] = []

        def on_optimization_start(self, event: Any) -> None:
            self.events.append(("start", event["values"]))

        def on_noisy_pool_built(self, event: Any) -> None:
            self.events.append(("noisy", event["noisy_pool"]["kept"]))

        def on_iteration_end(self, event: Any) -> None:
            self.events.append(("iteration", (event["iteration"], event["record"].J)))

        def on_optimization_end(self, event: Any) -> None:
            self.events.append(("end", (event["result"].final_instruction, "error" in event)))

    collects = Collects()
    aligned = compile_program(
        Assistant(), scripted_metric, scripted_lm, num_iterations=2, callbacks=[Broken(), collects]
    )
    result = aligned.picaco_result
    kinds = [kind for kind, _ in collects.events]
    assert kinds == ["start", "noisy", "iteration", "iteration", "end"]
    assert collects.events[0][1] == scripted_metric.values.names
    assert [payload for kind, payload in collects.events if kind == "iteration"] == [
        (r.iteration, r.J) for r in result.iterations
    ]
    assert collects.events[-1][1] == (result.final_instruction, False)


def test_a_compile_inside_an_mlflow_run_logs_each_iteration_there(mlflow, scripted_metric, scripted_lm):
    from picaco_dspy.programs.assistant import Assistant
    from picaco_dspy.testing.scripted_world import compile_program

    with mlflow.start_run() as run:
        aligned = compile_program(Assistant(), scripted_metric, scripted_lm, num_iterations=2)  # default callbacks
        assert mlflow.active_run().info.run_id == run.info.run_id  # left running
    result = aligned.picaco_result
    client = mlflow.MlflowClient()
    assert history(client, run.info.run_id, "J") == [(r.iteration, pytest.approx(r.J)) for r in result.iterations]
    calls = history(client, run.info.run_id, "calls/judge")
    assert [c for _, c in calls] == [r.usage["judge"]["calls"] for r in result.iterations]
    assert len(history(client, run.info.run_id, "conformity/Universalism")) == 2

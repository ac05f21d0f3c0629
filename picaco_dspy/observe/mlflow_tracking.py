"""MLflow tracking of a PICACO run: parameters at the start, metrics per iteration, the result at the end.

mlflow is optional (``pip install 'picaco-dspy[mlflow]'``): nothing here imports it at module import time, and
:func:`default_callbacks` does not import it either unless the process already has.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from picaco_dspy.observe.callbacks import (
    IterationEndEvent,
    NoisyPoolBuiltEvent,
    OptimizationEndEvent,
    OptimizationStartEvent,
    PICACOCallback,
)

if TYPE_CHECKING:
    from picaco_dspy.optimize.result import PICACOResult

logger = logging.getLogger(__name__)

PARAM_PREFIX = "picaco."
MAX_KEY_CHARS = 250  # MLflow's limit on param, metric and tag keys
MAX_TAG_CHARS = 8000
_FALLBACK_PARAM_CHARS = 500  # MLflow before 2.x; the installed client's limit is used when it can be read
_TRUNCATED = "...[truncated]"
# MLflow also allows "/" (it separates our name segments) and ":" (refused on Windows)
_BAD_NAME_CHARS = re.compile(r"[^\w.\- ]")


def mlflow_available() -> bool:
    """Whether mlflow can be imported (without importing it)."""
    return importlib.util.find_spec("mlflow") is not None


class MLflowCallback(PICACOCallback):
    """Logs a PICACO run to MLflow.

    At the start it logs the run's name, flattened config, values and schedule as params (``picaco.`` prefix) into
    the active MLflow run; without one it starts a run of its own (ended at the end, ``FAILED`` if the run raised).
    An active run that already holds a PICACO run's params (a second compile in one run) gets a nested child run
    instead, since MLflow params cannot change. Per iteration it logs metrics at ``step=iteration``; at the end,
    ``final_instruction.txt``, ``picaco_result.json`` and (``log_report``) ``report.md`` with ``radar.png``.

    Args:
        run_name: Name of a run it starts (default: the PICACO run's name).
        experiment_name: Experiment of a run it starts (created if missing; default: MLflow's current experiment).
        log_report: Also log the Markdown report and, with a valset, the per-value radar chart.

    Raises:
        ImportError: mlflow is not installed.
    """

    def __init__(
        self, *, run_name: str | None = None, experiment_name: str | None = None, log_report: bool = True
    ) -> None:
        if not mlflow_available():
            raise ImportError("MLflowCallback needs mlflow: pip install 'picaco-dspy[mlflow]'")
        self.run_name = run_name
        self.experiment_name = experiment_name
        self.log_report = log_report
        self.run_id: str | None = None
        self.owns_run = False
        self._client: Any = None

    def on_optimization_start(self, event: OptimizationStartEvent) -> None:
        import mlflow

        self.run_id, self.owns_run = None, False
        self._client = client = mlflow.MlflowClient()
        active = mlflow.active_run()
        if active is not None and PARAM_PREFIX + "run_name" not in client.get_run(active.info.run_id).data.params:
            self.run_id = active.info.run_id
        else:
            experiment_id = active.info.experiment_id if active is not None else self._experiment_id(client)
            run = mlflow.start_run(
                run_name=self.run_name or event["run_name"] or None,
                experiment_id=experiment_id,
                nested=active is not None,
            )
            self.run_id, self.owns_run = run.info.run_id, True
        logger.info("Logging PICACO run %s to MLflow run %s", event["run_name"], self.run_id)
        self._log_params(start_params(event))

    def on_noisy_pool_built(self, event: NoisyPoolBuiltEvent) -> None:
        pool = event["noisy_pool"]
        self._log_metrics({f"noisy_pool/{name_part(k)}": v for k, v in pool.items()}, step=0)

    def on_iteration_end(self, event: IterationEndEvent) -> None:
        self._log_metrics(iteration_metrics(event), step=event["iteration"])

    def on_optimization_end(self, event: OptimizationEndEvent) -> None:
        if self.run_id is None:
            logger.warning("MLflowCallback: the run ended without a logged start; nothing to log")
            return
        result, error = event["result"], event.get("error")
        tags = {
            "picaco.finished": str(result.finished),
            "picaco.budget_stopped": str(result.budget_stopped),
            "picaco.stop_reason": result.stop_reason,
        }
        if error is not None:
            tags["picaco.error"] = truncate(f"{type(error).__name__}: {error}", 1000)
        try:
            self._log_metrics(final_metrics(result), step=len(result.iterations))
            self._log_tags(tags)
            if result.final_instruction is not None:
                self._client.log_text(self.run_id, result.final_instruction, "final_instruction.txt")
            payload = json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str)
            self._client.log_text(self.run_id, payload, "picaco_result.json")
            if self.log_report:
                self._log_report(result)
        finally:
            if self.owns_run:
                self._end_run("FAILED" if error is not None else "FINISHED")

    def _experiment_id(self, client: Any) -> str | None:
        if self.experiment_name is None:
            return None
        experiment = client.get_experiment_by_name(self.experiment_name)
        return str(experiment.experiment_id if experiment else client.create_experiment(self.experiment_name))

    def _log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        limit = _param_value_limit()
        entries = [Param(entity_key(k), truncate(v, limit)) for k, v in params.items()]
        self._client.log_batch(self.run_id, params=entries)

    def _log_metrics(self, metrics: Mapping[str, Any], *, step: int) -> None:
        if self.run_id is None:  # the start failed (and was logged): nothing to log into
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(entity_key(k), float(v), now, step) for k, v in metrics.items() if _is_number(v)]
        if entries:
            self._client.log_batch(self.run_id, metrics=entries)

    def _log_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, truncate(v, MAX_TAG_CHARS)) for k, v in tags.items()])

    def _log_report(self, result: PICACOResult) -> None:
        """Log ``report.md`` (and ``radar.png`` when the result has a valset conformity table), as the CLI writes."""
        from picaco_dspy.evaluation.report import markdown_report, radar_chart

        try:
            with tempfile.TemporaryDirectory(prefix="picaco-mlflow-") as folder:
                table = result.conformity_table()
                chart = None
                if table:
                    title = f"{result.values.get('name', '')}: conformity before/after"
                    chart = radar_chart(table, Path(folder) / "radar.png", title=title)
                    self._client.log_artifact(self.run_id, str(chart))
                report = markdown_report(result, chart=chart.name if chart else None)
                self._client.log_text(self.run_id, report, "report.md")
        except Exception:  # optional extra: the instruction and the result JSON are already logged
            logger.warning("MLflowCallback: could not log the report", exc_info=True)

    def _end_run(self, status: str) -> None:
        import mlflow

        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            mlflow.end_run(status=status)
        else:  # the run is no longer this thread's active run: close it by id, leaving the active one alone
            self._client.set_terminated(self.run_id, status=status)
        self.owns_run = False


def default_callbacks() -> list[PICACOCallback]:
    """``[MLflowCallback()]`` when mlflow is importable and an MLflow run is active or DSPy autologging is on.

    Only looks when the process has already imported mlflow: a run can be active, or autologging on, only then, so a
    user who does not use MLflow never pays mlflow's import.
    """
    if "mlflow" not in sys.modules or not mlflow_available():
        return []
    import mlflow

    try:
        if mlflow.active_run() is not None or dspy_autolog_enabled():
            return [MLflowCallback()]
    except Exception:
        logger.warning("Could not tell whether MLflow tracking is on; not logging to MLflow", exc_info=True)
    return []


def dspy_autolog_enabled() -> bool:
    """Whether ``mlflow.dspy.autolog()`` (or ``mlflow.autolog()``) is on (imports mlflow)."""
    from mlflow.utils.autologging_utils import autologging_is_disabled

    return not autologging_is_disabled("dspy")


def start_params(event: OptimizationStartEvent) -> dict[str, str]:
    """The params logged at the start: run name, values, seed instruction, flattened config and schedule."""
    params = {
        "run_name": event["run_name"],
        "values": ", ".join(event["values"]),
        "n_values": str(len(event["values"])),
        "seed_instruction": event["seed_instruction"],
    }
    flatten("config", event["config"], params)
    flatten("schedule", event["schedule"], params)
    return {PARAM_PREFIX + key: value for key, value in params.items()}


def iteration_metrics(event: IterationEndEvent) -> dict[str, float]:
    """The metrics of one iteration: J, gain, rewards, per-value conformity and cumulative usage per role."""
    record = event["record"]
    metrics: dict[str, float] = {
        "J": record.J,
        "gain": record.gain,
        "mean_reward": record.mean_reward,
        "aligned_pool_mean_reward": record.aligned_pool_mean_reward,
        "new_responses": record.new_responses,
        "failed_rollouts": record.failed_rollouts,
        "proposal_failures": len(record.proposal_failures),
        "pruned": float(record.pruned),
        "wall_seconds": record.wall_seconds,
    }
    for value, score in record.conformity.items():
        metrics[f"conformity/{name_part(value)}"] = score
    for role, usage in record.usage.items():
        for key, amount in usage.items():
            if _is_number(amount):
                metrics[f"{name_part(key)}/{name_part(role)}"] = amount
    return metrics


def final_metrics(result: PICACOResult) -> dict[str, float]:
    """Metrics of the finished run: seed J, the final instruction's selection score, valset conformity."""
    metrics: dict[str, float] = {}
    if result.seed_J is not None:
        metrics["seed_J"] = result.seed_J
    selection = result.selection
    if selection is not None and result.final_instruction in selection.scores:
        metrics["final/selection_score"] = selection.scores[result.final_instruction]
    for label, row in result.conformity_table().items():  # label: "seed" or "final"
        for value, score in row.items():
            metrics[f"{label}_conformity/{name_part(value)}"] = score
    return metrics


def flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    """Write ``value`` into ``out`` as ``prefix.key.subkey`` -> text; lists and other leaves become JSON text."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            flatten(f"{prefix}.{name_part(key)}", item, out)
        return
    if isinstance(value, str):
        out[prefix] = value
    elif value is None or isinstance(value, bool | int | float):
        out[prefix] = str(value)
    else:
        out[prefix] = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked as cut when it was."""
    if len(text) <= limit:
        return text
    if limit <= len(_TRUNCATED):
        return text[:limit]
    return text[: limit - len(_TRUNCATED)] + _TRUNCATED


def name_part(name: str) -> str:
    """One segment of a metric name: characters MLflow refuses (and ``/``) become ``_``; never ``.``/``..``/empty."""
    part = _BAD_NAME_CHARS.sub("_", str(name)).strip()
    return "_" if part in ("", ".", "..") else part


def entity_key(key: str) -> str:
    """A key within MLflow's 250-character limit; a longer one keeps its start and gets a short hash for uniqueness."""
    if len(key) <= MAX_KEY_CHARS:
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"{key[: MAX_KEY_CHARS - 9]}-{digest}"


def _param_value_limit() -> int:
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:
        return _FALLBACK_PARAM_CHARS
    return int(MAX_PARAM_VAL_LENGTH)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)  # bool included: logged as 0/1

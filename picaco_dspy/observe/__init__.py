"""Observability: progress events of a PICACO run for callbacks, and an MLflow tracker built on them.

mlflow is optional (``pip install 'picaco-dspy[mlflow]'``); importing this package never imports it.
"""

from picaco_dspy.observe.callbacks import (
    CallbackList,
    IterationEndEvent,
    NoisyPoolBuiltEvent,
    OptimizationEndEvent,
    OptimizationStartEvent,
    PICACOCallback,
    dispatch,
)
from picaco_dspy.observe.mlflow_tracking import MLflowCallback, default_callbacks

__all__ = [
    "CallbackList",
    "IterationEndEvent",
    "MLflowCallback",
    "NoisyPoolBuiltEvent",
    "OptimizationEndEvent",
    "OptimizationStartEvent",
    "PICACOCallback",
    "default_callbacks",
    "dispatch",
]

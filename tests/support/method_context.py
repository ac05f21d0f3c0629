"""The comparison context the baseline tests share: the scripted world, 4 training and 3 held-out prompts."""

from __future__ import annotations

from typing import Any

import dspy

from picaco_dspy.baselines.harness import MethodContext
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.testing.scripted_world import scripted_metric


def method_context(lm: dspy.LM, budget: int, **kwargs: Any) -> MethodContext:
    """Every role on ``lm``; liberalism-4 with the scripted reference and hashing embeddings; ``budget`` LM calls."""
    train = [dspy.Example(query=f"How should I spend day {i}?").with_inputs("query") for i in range(4)]
    val = [dspy.Example(query=f"What about evening {i}?").with_inputs("query") for i in range(3)]
    return MethodContext(
        student=Assistant(),
        trainset=train,
        valset=val,
        metric=scripted_metric(lm),
        target_lm=lm,
        judge_lm=lm,
        prompt_model=lm,
        max_lm_calls=budget,
        **kwargs,
    )

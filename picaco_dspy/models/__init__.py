"""Local LMs run in-process with transformers (:mod:`.engine`), the embedded default model (:mod:`.embedded`), and
model strings turned into LMs (:mod:`.from_spec`)."""

from picaco_dspy.models.adapters import PlainTextAdapter
from picaco_dspy.models.engine import TransformersEngine, local_lm

__all__ = ["PlainTextAdapter", "TransformersEngine", "local_lm"]

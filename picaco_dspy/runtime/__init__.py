"""Paid work done once: stored (:mod:`.store`), shared between workers (:mod:`.work_board`), run in parallel,
retried (:mod:`.retries`) and counted (:mod:`.usage`, :mod:`.metering`); :mod:`.session` is what the algorithm sees."""

from picaco_dspy.runtime.retries import RetryPolicy
from picaco_dspy.runtime.store import RunStore
from picaco_dspy.runtime.usage import RoleUsage, UsageMeter

__all__ = ["RetryPolicy", "RoleUsage", "RunStore", "UsageMeter"]

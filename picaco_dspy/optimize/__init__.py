"""The PICACO algorithm: pools, proposals, the schedule, budgets and the loop of Response Enhancement and
Instruction Refinement (:mod:`.loop`). No storage code: paid work goes through :mod:`picaco_dspy.runtime.session`."""

from picaco_dspy.optimize.budget import Budget
from picaco_dspy.optimize.pools import PooledResponse, PromptPool
from picaco_dspy.optimize.proposer import InstructionProposer, TemplateProposer
from picaco_dspy.optimize.result import CandidateRecord, IterationRecord, PICACOResult, SelectionRecord
from picaco_dspy.optimize.schedule import Schedule, StepSettings, resolve_schedule

__all__ = [
    "Budget",
    "CandidateRecord",
    "InstructionProposer",
    "IterationRecord",
    "PICACOResult",
    "PooledResponse",
    "PromptPool",
    "Schedule",
    "SelectionRecord",
    "StepSettings",
    "TemplateProposer",
    "resolve_schedule",
]

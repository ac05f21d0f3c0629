"""picaco-dspy: teach any DSPy program to honour several human values at once (PICACO, arXiv 2507.16679).

Library code logs through ``logging.getLogger(__name__)`` and adds no handlers; enable output with e.g.
``logging.basicConfig(level=logging.INFO)``.
"""

from picaco_dspy.adapters import PlainTextAdapter
from picaco_dspy.bound import InstructionScore, PoolItem, ResponseScore, TotalCorrelationBound
from picaco_dspy.errors import (
    ConfigurationError,
    JudgeError,
    PicacoError,
    ProgramError,
    ProviderUnavailable,
    ValueSetError,
)
from picaco_dspy.evaluation import ProgramEvaluation, add_win_rate, evaluate_program
from picaco_dspy.judge import Judgement, ValueJudge
from picaco_dspy.local_engine import TransformersEngine, local_lm
from picaco_dspy.opro import OPRO
from picaco_dspy.pairwise import PairwiseJudge
from picaco_dspy.proposer import InstructionProposer, TemplateProposer
from picaco_dspy.redundancy import HashingEmbedder, LiteLLMEmbedder, RedundancyScorer, TransformersEmbedder
from picaco_dspy.reference import LikelihoodRequest, ReferenceModel, ResponseLikelihood
from picaco_dspy.result import PICACOResult
from picaco_dspy.retries import RetryPolicy
from picaco_dspy.schedule import Schedule, resolve_schedule
from picaco_dspy.teleprompter import PICACO
from picaco_dspy.usage import UsageMeter
from picaco_dspy.values import Value, ValueSet

__version__ = "0.1.0"

__all__ = [
    "OPRO",
    "PICACO",
    "ConfigurationError",
    "HashingEmbedder",
    "InstructionProposer",
    "InstructionScore",
    "JudgeError",
    "Judgement",
    "LikelihoodRequest",
    "LiteLLMEmbedder",
    "PICACOResult",
    "PairwiseJudge",
    "PicacoError",
    "PlainTextAdapter",
    "PoolItem",
    "ProgramEvaluation",
    "ProgramError",
    "ProviderUnavailable",
    "RedundancyScorer",
    "ReferenceModel",
    "ResponseLikelihood",
    "ResponseScore",
    "RetryPolicy",
    "Schedule",
    "TemplateProposer",
    "TotalCorrelationBound",
    "TransformersEmbedder",
    "TransformersEngine",
    "UsageMeter",
    "Value",
    "ValueJudge",
    "ValueSet",
    "ValueSetError",
    "add_win_rate",
    "evaluate_program",
    "local_lm",
    "resolve_schedule",
]

"""What "aligned" means: the value set, the judge ``q_omega``, the redundancy ``q_phi``, the reference model
``p_e`` and the total-correlation bound that combines them into ``r(x, y)`` and ``J(e)``."""

from picaco_dspy.objective.bound import InstructionScore, PoolItem, ResponseScore, TotalCorrelationBound
from picaco_dspy.objective.judge import Judgement, ValueJudge
from picaco_dspy.objective.redundancy import HashingEmbedder, LiteLLMEmbedder, RedundancyScorer, TransformersEmbedder
from picaco_dspy.objective.reference import LikelihoodRequest, ReferenceModel, ResponseLikelihood
from picaco_dspy.objective.values import Value, ValueSet

__all__ = [
    "HashingEmbedder",
    "InstructionScore",
    "Judgement",
    "LikelihoodRequest",
    "LiteLLMEmbedder",
    "PoolItem",
    "RedundancyScorer",
    "ReferenceModel",
    "ResponseLikelihood",
    "ResponseScore",
    "TotalCorrelationBound",
    "TransformersEmbedder",
    "Value",
    "ValueJudge",
    "ValueSet",
]

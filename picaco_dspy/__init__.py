"""picaco-dspy: teach any DSPy program to honour several human values at once (PICACO, arXiv 2507.16679).

The top level holds what a DSPy developer uses; extension types live in the subpackages: :mod:`.objective` (what
"aligned" means: values, judge, redundancy, reference model, the bound), :mod:`.optimize` (the algorithm),
:mod:`.runtime` (paid work stored, shared, retried and counted), :mod:`.models` (local and embedded LMs),
:mod:`.evaluation`, :mod:`.baselines`, :mod:`.prompts`, :mod:`.testing` (a scripted LM world for tests).

Library code logs through ``logging.getLogger(__name__)`` and adds no handlers; enable output with e.g.
``logging.basicConfig(level=logging.INFO)``.
"""

from importlib.metadata import PackageNotFoundError, version

from picaco_dspy.composition import KeepValueInstruction
from picaco_dspy.errors import ConfigurationError, PicacoError
from picaco_dspy.evaluation.evaluate import evaluate_program
from picaco_dspy.models.adapters import PlainTextAdapter
from picaco_dspy.models.embedded import embedded_lm, embedded_metric
from picaco_dspy.models.engine import local_lm
from picaco_dspy.objective.bound import TotalCorrelationBound
from picaco_dspy.objective.judge import ValueJudge
from picaco_dspy.objective.redundancy import RedundancyScorer
from picaco_dspy.objective.reference import ReferenceModel
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.optimize.proposer import InstructionProposer, TemplateProposer
from picaco_dspy.optimize.result import PICACOResult
from picaco_dspy.prompts.loading import prompts_for_values, to_examples
from picaco_dspy.runtime.retries import RetryPolicy
from picaco_dspy.settings import PICACOSettings
from picaco_dspy.teleprompter import PICACO

try:
    __version__ = version("picaco-dspy")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "PICACO",
    "ConfigurationError",
    "InstructionProposer",
    "KeepValueInstruction",
    "PICACOResult",
    "PICACOSettings",
    "PicacoError",
    "PlainTextAdapter",
    "RedundancyScorer",
    "ReferenceModel",
    "RetryPolicy",
    "TemplateProposer",
    "TotalCorrelationBound",
    "ValueJudge",
    "ValueSet",
    "embedded_lm",
    "embedded_metric",
    "evaluate_program",
    "local_lm",
    "prompts_for_values",
    "to_examples",
]

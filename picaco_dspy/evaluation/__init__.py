"""Judging saved programs side by side: per-value conformity, pairwise win rates, jailbreak robustness, reports."""

from picaco_dspy.evaluation.evaluate import ProgramEvaluation, add_win_rate, comparison_table, evaluate_program
from picaco_dspy.evaluation.pairwise import PairwiseJudge

__all__ = ["PairwiseJudge", "ProgramEvaluation", "add_win_rate", "comparison_table", "evaluate_program"]

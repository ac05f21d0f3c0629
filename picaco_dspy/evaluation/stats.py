"""Small statistics used by evaluations: balance across values and bootstrap confidence intervals over prompts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Population standard deviation over mean (0 for a single value or a zero mean); lower is more balanced."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size < 2 or array.mean() == 0:
        return 0.0
    return float(array.std() / array.mean())


def bootstrap_ci(
    samples: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``samples`` (rows are resampled with replacement).

    Args:
        samples: One value per prompt, or one row per prompt (2-D) when ``statistic`` needs several columns.
        statistic: Function of a resampled array.
        resamples: Bootstrap replicates.
        confidence: Coverage of the interval.
        seed: Seed of the resampling, so intervals are reproducible.

    Returns:
        ``(low, high)``; both equal the statistic when there is a single sample.
    """
    data = np.asarray(samples, dtype=np.float64)
    if data.shape[0] == 0:
        raise ValueError("bootstrap_ci needs at least one sample")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if data.shape[0] == 1:
        value = float(statistic(data))
        return value, value
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, data.shape[0], size=(resamples, data.shape[0]))
    replicates = np.asarray([statistic(data[row]) for row in indices], dtype=np.float64)
    alpha = (1 - confidence) / 2
    return float(np.quantile(replicates, alpha)), float(np.quantile(replicates, 1 - alpha))

"""Bootstrap confidence intervals that resample lesions, not images.

Views of one lesion are correlated; resampling images would understate the
uncertainty. Each resample draws lesions with replacement and takes all their images.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def group_resamples(groups: np.ndarray, n_resamples: int, seed: int):
    """Yield row-index arrays, each a resample of whole groups drawn with replacement."""
    codes, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(codes)))
    ends = np.append(starts[1:], len(order))
    rows_of = [order[s:e] for s, e in zip(starts, ends)]
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        picked = rng.integers(0, len(codes), len(codes))
        yield np.concatenate([rows_of[g] for g in picked])


def bootstrap_ci(
    statistic: Callable[[np.ndarray], dict[str, float]],
    groups: np.ndarray,
    names: tuple[str, ...] | list[str],
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile CI of each named value of ``statistic(rows)`` over group resamples."""
    draws = {name: [] for name in names}
    for rows in group_resamples(groups, n_resamples, seed):
        values = statistic(rows)
        for name in names:
            draws[name].append(values[name])
    alpha = (1 - ci) / 2
    out = {}
    for name, values in draws.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        out[name] = (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if len(v) else (np.nan, np.nan)
    return out

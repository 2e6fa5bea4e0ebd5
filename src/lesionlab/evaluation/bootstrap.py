"""Bootstrap confidence intervals that resample lesions, not images.

Views of one lesion are correlated; resampling images would understate the
uncertainty. Each resample draws lesions with replacement and takes all their images.
"""

from __future__ import annotations

from collections.abc import Callable

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


# --- every resample at once ------------------------------------------------------------------------------------
# A resample is a vector of multiplicities (how often each row was drawn); metrics computed with those weights
# equal the metrics of the resampled rows. One (resamples x rows) matrix then serves every model, task and
# subgroup, and paired differences are differences of the same draws.


def resample_weights(groups: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_rows) multiplicities; resample b draws the same lesions as ``group_resamples`` does."""
    codes, inverse = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, len(inverse)), dtype=np.float64)
    for b in range(n_resamples):
        counts = np.bincount(rng.integers(0, len(codes), len(codes)), minlength=len(codes))
        out[b] = counts[inverse]
    return out


def weighted_balanced_accuracy(weights: np.ndarray, y: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Per resample: mean recall over the classes drawn (metrics.balanced_accuracy on the resampled rows)."""
    onehot = np.eye(k)[np.asarray(y)]
    support = weights @ onehot
    hits = weights @ (onehot * (np.asarray(predicted) == np.asarray(y))[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
    present = np.isfinite(recall)
    return np.where(present.any(axis=1), np.nansum(recall, axis=1) / np.maximum(present.sum(axis=1), 1), np.nan)


def weighted_auc(weights: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per resample: the Mann-Whitney AUC (ties count one half) of the resampled rows; NaN without both outcomes.

    The larger outcome's weights are summed cumulatively in score order once; each row of the other outcome
    looks up the weight scoring below it and tied with it (binary search). With integer multiplicities every sum
    is exact, so the result does not depend on the order of summation."""
    positive = np.asarray(positive, dtype=bool)
    score, weights = np.asarray(score), np.asarray(weights, dtype=float)
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    swap = len(pos) > len(neg)  # then the negatives are looked up in the positives' cumulative sums
    ref, probe = (pos, neg) if swap else (neg, pos)
    order = ref[np.argsort(score[ref], kind="mergesort")]
    cum = np.zeros((len(weights), len(order) + 1))
    np.cumsum(weights[:, order], axis=1, out=cum[:, 1:])
    ranked = score[order]
    lo, hi = np.searchsorted(ranked, score[probe], side="left"), np.searchsorted(ranked, score[probe], side="right")
    w_probe = weights[:, probe]
    won = (w_probe * (cum[:, lo] + 0.5 * (cum[:, hi] - cum[:, lo]))).sum(axis=1)  # pairs the probe side outscores
    n_probe, n_ref = w_probe.sum(axis=1), cum[:, -1]
    n_pos, n_neg = (n_ref, n_probe) if swap else (n_probe, n_ref)
    num = n_pos * n_neg - won if swap else won
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), num / (n_pos * n_neg), np.nan)


def weighted_confusion(weights: np.ndarray, y: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(n_resamples, k, k) confusion matrices of the resampled rows (rows = true class, columns = predicted)."""
    cell = np.asarray(y) * k + np.asarray(predicted)
    return (weights @ np.eye(k * k)[cell]).reshape(len(weights), k, k)


def weighted_sensitivity_at_specificity(
    weights: np.ndarray, positive: np.ndarray, score: np.ndarray, specificity: float
) -> np.ndarray:
    """Per resample: tasks.sensitivity_at_specificity of the resampled rows. The threshold sits just above the
    negative score that keeps ``specificity`` of the (weighted) negatives below it; NaN without both outcomes."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    order = np.argsort(score[~positive], kind="mergesort")
    neg, w_neg, w_pos = score[~positive][order], weights[:, ~positive][:, order], weights[:, positive]
    n_neg, n_pos = w_neg.sum(axis=1), w_pos.sum(axis=1)
    allowed = np.floor((1 - specificity) * n_neg + 1e-9)  # negatives that may score >= the threshold
    position = n_neg - allowed - 1  # 0-based, in the resample's sorted negatives
    cumulative = np.cumsum(w_neg, axis=1)
    at = np.minimum((cumulative <= position[:, None]).sum(axis=1), max(len(neg) - 1, 0))
    cut = neg[at] if len(neg) else np.full(len(weights), np.inf)
    above = (score[positive][None, :] > cut[:, None]) | (allowed >= n_neg)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), (w_pos * above).sum(axis=1) / n_pos, np.nan)


def weighted_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per resample: the mean of ``values`` over the resampled rows (NaN values are left out)."""
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    total = weights[:, ok].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights[:, ok] @ values[ok] / total, np.nan)


def percentile_ci(draws: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite draws (NaN, NaN when there are none)."""
    v = np.asarray(draws, dtype=float)
    v = v[np.isfinite(v)]
    alpha = (1 - ci) / 2
    return (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if len(v) else (np.nan, np.nan)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test on paired right/wrong decisions: counts of discordant pairs and the two-sided p-value
    (binomial, p = 1/2). It treats images as independent, which views of one lesion are not; read it beside the
    lesion-bootstrap CI."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_a_correct": only_a, "only_b_correct": only_b, "mcnemar_p": float(p)}

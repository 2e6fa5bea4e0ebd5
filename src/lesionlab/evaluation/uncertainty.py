"""Uncertainty flags and selective prediction (pure functions).

A prediction is flagged **uncertain** when its top probability is below ``max_prob_below`` or its
normalised entropy (entropy / log k, in [0, 1]) is above ``entropy_above`` (params.yaml ``uncertainty:``).
Flagged cases are the ones a workflow would send to a human. The coverage curve shows what accuracy
the model keeps on the cases it does not abstain from, as the abstention threshold moves.
"""

from __future__ import annotations

import numpy as np

from lesionlab.evaluation.metrics import balanced_accuracy, confusion_matrix


def normalized_entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row divided by log(k): 0 = certain, 1 = uniform."""
    p = np.clip(np.asarray(proba, dtype=float), 1e-12, 1.0)
    k = p.shape[1]
    return -(p * np.log(p)).sum(axis=1) / np.log(k) if k > 1 else np.zeros(len(p))


def uncertain_flags(proba: np.ndarray, max_prob_below: float, entropy_above: float) -> np.ndarray:
    """True where max p < ``max_prob_below`` or normalised entropy > ``entropy_above``."""
    proba = np.asarray(proba, dtype=float)
    return (proba.max(axis=1) < max_prob_below) | (normalized_entropy(proba) > entropy_above)


def selective_summary(y: np.ndarray, proba: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """Coverage (share not flagged) and accuracy / balanced accuracy on the covered and the flagged cases."""
    y, decided, flags = np.asarray(y), np.asarray(proba).argmax(axis=1), np.asarray(flags, dtype=bool)
    k = np.asarray(proba).shape[1]
    kept = ~flags

    def acc(mask):
        return float((decided[mask] == y[mask]).mean()) if mask.any() else float("nan")

    return {
        "coverage": float(kept.mean()) if len(y) else float("nan"),
        "accuracy_covered": acc(kept),
        "balanced_accuracy_covered": balanced_accuracy(confusion_matrix(y[kept], decided[kept], k))
        if kept.any()
        else float("nan"),
        "accuracy_flagged": acc(flags),
        "n_flagged": int(flags.sum()),
    }


def coverage_curve(
    y: np.ndarray, proba: np.ndarray, score: str = "max_prob", coverages: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Accuracy when only the most confident share ``c`` of cases is kept, for each coverage ``c``.

    ``score`` ranks confidence: ``max_prob`` (higher = more confident) or ``entropy`` (lower = more confident).
    """
    y, proba = np.asarray(y), np.asarray(proba, dtype=float)
    if score == "max_prob":
        confidence = proba.max(axis=1)
    elif score == "entropy":
        confidence = -normalized_entropy(proba)
    else:
        raise ValueError(f"score must be 'max_prob' or 'entropy', got {score!r}")
    coverages = np.linspace(0.05, 1.0, 20) if coverages is None else np.asarray(coverages, dtype=float)
    order = np.argsort(-confidence, kind="stable")
    correct = (proba.argmax(axis=1) == y)[order]
    k = proba.shape[1]
    acc, bacc = [], []
    for c in coverages:
        n = max(1, int(round(c * len(y))))
        acc.append(float(correct[:n].mean()))
        kept = order[:n]
        bacc.append(balanced_accuracy(confusion_matrix(y[kept], proba[kept].argmax(axis=1), k)))
    return {"coverage": coverages, "accuracy": np.array(acc), "balanced_accuracy": np.array(bacc)}

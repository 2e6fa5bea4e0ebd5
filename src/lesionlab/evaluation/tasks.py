"""The clinical task views, computed from the same 7-class predictions (pure functions, no I/O).

- **diagnosis**: the classes as trained (7 for HAM10000);
- **binary**: malignant (taxonomy.MALIGNANT_CODES: mel + bcc + akiec) vs benign; P(malignant) is the sum
  of the malignant classes' probabilities; sensitivity is read at fixed specificities;
- **triage**: low / moderate / high risk (taxonomy.TRIAGE); P(level) sums the classes of the level and
  the decision is the most probable level.
"""

from __future__ import annotations

import numpy as np

from lesionlab.data.taxonomy import TRIAGE_LEVELS, malignant_classes, triage_level
from lesionlab.evaluation.metrics import (
    balanced_accuracy,
    binary_auc,
    class_indices,
    confusion_matrix,
    macro_auc,
    malignant_score,
    per_class_recall,
)

TASKS = ("diagnosis", "binary", "triage")
SPECIFICITIES = (0.90, 0.95)


def threshold_for_specificity(negative_scores: np.ndarray, specificity: float) -> float:
    """The lowest threshold t (``score >= t`` = positive) that keeps at least ``specificity`` of these negatives
    below it. Ties are never split, so the threshold is attainable."""
    neg = np.sort(np.asarray(negative_scores, dtype=float))
    if len(neg) == 0:
        return float("nan")
    allowed = int(np.floor((1 - specificity) * len(neg) + 1e-9))  # negatives that may score >= t
    if allowed >= len(neg):
        return float("-inf")
    return float(np.nextafter(neg[len(neg) - allowed - 1], np.inf))


def sensitivity_at_specificity(positive: np.ndarray, score: np.ndarray, specificity: float) -> float:
    """Highest sensitivity of a threshold whose specificity is >= ``specificity`` (read off the ROC curve)."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    if positive.all() or not positive.any():
        return float("nan")
    return float((score[positive] >= threshold_for_specificity(score[~positive], specificity)).mean())


def binary_view(y: np.ndarray, proba: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
    """(is_malignant, P(malignant)) of every row."""
    return np.isin(y, class_indices(classes, malignant_classes(classes))), malignant_score(proba, classes)


def triage_matrix(classes) -> np.ndarray:
    """(k classes, 3 levels) 0/1 matrix: which level each class belongs to."""
    m = np.zeros((len(classes), len(TRIAGE_LEVELS)))
    for i, c in enumerate(classes):
        m[i, TRIAGE_LEVELS.index(triage_level(c))] = 1
    return m


def triage_view(y: np.ndarray, proba: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
    """(true level index, (n, 3) level probabilities) with levels ordered low, moderate, high."""
    m = triage_matrix(classes)
    return m[np.asarray(y)].argmax(axis=1), np.asarray(proba) @ m


def binary_metrics(y: np.ndarray, proba: np.ndarray, classes) -> dict[str, float]:
    positive, score = binary_view(y, proba, classes)
    out = {"malignant_auc": binary_auc(positive, score)}
    for spec in SPECIFICITIES:
        out[f"sensitivity_at_{round(spec * 100)}_specificity"] = sensitivity_at_specificity(positive, score, spec)
    decided = score >= 0.5
    out["sensitivity_at_0.5"] = float(decided[positive].mean()) if positive.any() else float("nan")
    out["specificity_at_0.5"] = float((~decided[~positive]).mean()) if (~positive).any() else float("nan")
    return out


def triage_metrics(y: np.ndarray, proba: np.ndarray, classes) -> dict[str, float]:
    """3-level balanced accuracy and macro AUC; high-risk sensitivity; under-triage = a true high-risk lesion
    sent to 'low' (the costly error); over-triage = a true low-risk lesion sent to 'high'."""
    level, p = triage_view(y, proba, classes)
    decided = p.argmax(axis=1)
    cm = confusion_matrix(level, decided, len(TRIAGE_LEVELS))
    high, low = TRIAGE_LEVELS.index("high"), TRIAGE_LEVELS.index("low")
    recall = per_class_recall(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        under = cm[high, low] / cm[high].sum() if cm[high].sum() else float("nan")
        over = cm[low, high] / cm[low].sum() if cm[low].sum() else float("nan")
    return {
        "triage_balanced_accuracy": balanced_accuracy(cm),
        "triage_macro_auc": macro_auc(level, p),
        "high_risk_sensitivity": float(recall[high]),
        "under_triage_rate": float(under),
        "over_triage_rate": float(over),
    }


#: leaderboard columns of each task view (bootstrap CIs are computed for these)
TASK_HEADLINE = {
    "binary": ("malignant_auc", "sensitivity_at_90_specificity", "sensitivity_at_95_specificity"),
    "triage": ("triage_balanced_accuracy", "triage_macro_auc", "high_risk_sensitivity", "under_triage_rate"),
}
TASK_METRICS = {"binary": binary_metrics, "triage": triage_metrics}

"""Classification metrics: small pure functions over arrays (no I/O, no framework).

``y_true`` holds class indices into ``classes``; ``proba`` is (n, k) with rows summing
to 1; decisions are the arg-max. Malignant = the classes in taxonomy.MALIGNANT_CODES (mel + bcc + akiec for HAM10000).
A metric that is undefined on the given sample (an AUC without both outcomes) is NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import rankdata

from lesionlab.data.taxonomy import malignant_classes

if TYPE_CHECKING:
    import pandas as pd

#: metrics reported for every variant, in leaderboard order
HEADLINE = ("accuracy", "balanced_accuracy", "macro_auc", "malignant_auc", "melanoma_sensitivity", "macro_f1")


#: metric column -> the name reports and docs show
METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_auc": "macro AUC (OvR)",
    "malignant_auc": "malignant AUC",
    "melanoma_auc": "melanoma AUC",
    "melanoma_sensitivity": "melanoma sensitivity",
    "macro_f1": "macro F1",
    "sensitivity_at_90_specificity": "sensitivity at 90 % specificity",
    "sensitivity_at_95_specificity": "sensitivity at 95 % specificity",
    "triage_balanced_accuracy": "triage balanced accuracy",
    "triage_macro_auc": "triage macro AUC",
    "high_risk_sensitivity": "high-risk sensitivity",
    "under_triage_rate": "under-triage (high → low)",
    "malignant_sensitivity": "malignant sensitivity",
    "mask_energy": "Grad-CAM energy in mask",
    "pointing_hit_rate": "pointing-game hits",
}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    return np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall (sensitivity) per true class; NaN for classes absent from the sample."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in the sample (scikit-learn's definition)."""
    r = per_class_recall(cm)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean F1 over classes that occur as truth or prediction (scikit-learn's default labels)."""
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean()) if present.any() else float("nan")


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney statistic (ties count one half); NaN without both outcomes."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def one_vs_rest_auc(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """AUC of each class against the rest (NaN where a class is absent or alone)."""
    return np.array([binary_auc(y_true == j, proba[:, j]) for j in range(proba.shape[1])])


def macro_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    aucs = one_vs_rest_auc(y_true, proba)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def class_indices(classes, names) -> list[int]:
    return [list(classes).index(c) for c in names if c in classes]


def malignant_score(proba: np.ndarray, classes) -> np.ndarray:
    """P(malignant) = sum of the malignant classes' probabilities."""
    return proba[:, class_indices(classes, malignant_classes(classes))].sum(axis=1)


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins."""
    if len(y_true) == 0:
        return float("nan")
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def brier_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Multi-class Brier score: mean squared distance to the one-hot truth."""
    onehot = np.eye(proba.shape[1])[y_true]
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def _headline(y_true: np.ndarray, proba: np.ndarray, classes: list[str], cm: np.ndarray) -> dict[str, float]:
    malignant = np.isin(y_true, class_indices(classes, malignant_classes(classes)))
    return {
        "accuracy": accuracy(y_true, proba.argmax(axis=1)),
        "balanced_accuracy": balanced_accuracy(cm),
        "macro_auc": macro_auc(y_true, proba),
        "malignant_auc": binary_auc(malignant, malignant_score(proba, classes)),
        "melanoma_sensitivity": float(per_class_recall(cm)[classes.index("mel")]) if "mel" in classes else float("nan"),
        "macro_f1": macro_f1(cm),
    }


def headline_metrics(y_true: np.ndarray, proba: np.ndarray, classes) -> dict[str, float]:
    """The leaderboard's metrics (HEADLINE) only: cheap enough for thousands of bootstrap resamples."""
    classes, y_true = list(classes), np.asarray(y_true)
    return _headline(y_true, proba, classes, confusion_matrix(y_true, proba.argmax(axis=1), len(classes)))


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, classes) -> dict[str, float]:
    """Every flat metric of contract 4, for one split: the headline ones, calibration, per-class recall."""
    classes, y_true = list(classes), np.asarray(y_true)
    cm = confusion_matrix(y_true, proba.argmax(axis=1), len(classes))
    out = _headline(y_true, proba, classes, cm)
    out.update(
        {
            "melanoma_auc": float("nan"),
            "ece": expected_calibration_error(y_true, proba),
            "brier": brier_score(y_true, proba),
            "n": int(len(y_true)),
        }
    )
    if "mel" in classes:
        m = classes.index("mel")
        out["melanoma_auc"] = binary_auc(y_true == m, proba[:, m])
    for c, r in zip(classes, per_class_recall(cm)):
        out[f"recall_{c}"] = float(r)
    return out


def metrics_from_predictions(pred: pd.DataFrame, classes) -> dict[str, float]:
    """Test metrics under their own names, validation metrics prefixed ``val_``."""
    index = {c: i for i, c in enumerate(classes)}
    pcols = [f"p_{c}" for c in classes]
    out: dict[str, float] = {}
    for split, prefix in (("test", ""), ("val", "val_")):
        part = pred[pred["split"] == split]
        m = compute_metrics(part["label"].map(index).to_numpy(), part[pcols].to_numpy(dtype=float), classes)
        out.update({f"{prefix}{k}": v for k, v in m.items() if not (prefix and k.startswith("recall_"))})
    return out

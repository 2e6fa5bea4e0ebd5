"""Metrics checked against scikit-learn; bootstrap resamples whole lesions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from lesionlab.data.taxonomy import HAM10000_CLASSES, MALIGNANT
from lesionlab.evaluation import metrics as M
from lesionlab.evaluation.bootstrap import bootstrap_ci, group_resamples

K = len(HAM10000_CLASSES)


@pytest.fixture(params=[0, 1, 2])
def sample(request):
    rng = np.random.default_rng(request.param)
    n = 300
    y = rng.choice(K, n, p=[0.05, 0.07, 0.1, 0.03, 0.12, 0.6, 0.03])
    logits = rng.normal(size=(n, K)) + 2.0 * np.eye(K)[y] * rng.random((n, 1))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p


def test_against_sklearn(sample):
    y, p = sample
    pred = p.argmax(axis=1)
    cm = M.confusion_matrix(y, pred, K)
    assert np.array_equal(cm, skm.confusion_matrix(y, pred, labels=range(K)))
    assert M.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert M.balanced_accuracy(cm) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert M.macro_f1(cm) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert M.macro_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    malignant = np.isin(y, [HAM10000_CLASSES.index(c) for c in MALIGNANT])
    score = M.malignant_score(p, HAM10000_CLASSES)
    assert M.binary_auc(malignant, score) == pytest.approx(skm.roc_auc_score(malignant, score))
    out = M.compute_metrics(y, p, HAM10000_CLASSES)
    mel = HAM10000_CLASSES.index("mel")
    assert out["melanoma_sensitivity"] == pytest.approx(skm.recall_score(y == mel, pred == mel))
    assert out["melanoma_auc"] == pytest.approx(skm.roc_auc_score(y == mel, p[:, mel]))
    onehot = np.eye(K)[y]
    assert out["brier"] == pytest.approx(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def test_auc_ties_count_half():
    assert M.binary_auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(M.binary_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_ece_known_values():
    # two predictions at 0.9 confidence, one right and one wrong: |0.5 - 0.9| = 0.4
    p = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert M.expected_calibration_error(np.array([0, 1]), p) == pytest.approx(0.4)
    # perfectly calibrated and confident
    assert M.expected_calibration_error(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.0)


def test_balanced_accuracy_ignores_absent_classes():
    cm = M.confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 3)
    assert M.balanced_accuracy(cm) == pytest.approx((0.5 + 1.0) / 2)


def test_group_resamples_keep_lesions_whole():
    groups = np.array(["a", "a", "a", "b", "c", "c"])
    for rows in group_resamples(groups, 50, seed=0):
        picked = groups[rows]
        for g in "abc":
            assert (picked == g).sum() % (groups == g).sum() == 0


def test_bootstrap_ci_brackets_the_estimate(sample):
    y, p = sample
    groups = np.arange(len(y)) // 2
    point = M.compute_metrics(y, p, HAM10000_CLASSES)["balanced_accuracy"]
    lo, hi = bootstrap_ci(
        lambda r: M.compute_metrics(y[r], p[r], HAM10000_CLASSES),
        groups,
        ["balanced_accuracy"],
        n_resamples=200,
        seed=0,
    )["balanced_accuracy"]
    assert lo < point < hi
    assert hi - lo < 0.5


def test_binary_source_has_a_malignant_view():
    """ISIC 2020's benign / malignant classes: the malignant AUC is the malignant column's AUC; no melanoma class."""
    from lesionlab.evaluation.metrics import compute_metrics

    y = np.array([0, 0, 1, 1, 0])
    p_mal = np.array([0.1, 0.4, 0.35, 0.8, 0.2])
    m = compute_metrics(y, np.column_stack([1 - p_mal, p_mal]), ("benign", "malignant"))
    assert m["malignant_auc"] == pytest.approx(5 / 6)
    assert np.isnan(m["melanoma_auc"]) and np.isnan(m["melanoma_sensitivity"])

"""The task views (binary malignant, 3-level triage) from the same 7-class predictions."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.data.taxonomy import HAM10000_CLASSES, TRIAGE_LEVELS, triage_level
from lesionlab.evaluation.tasks import (
    binary_metrics,
    sensitivity_at_specificity,
    threshold_for_specificity,
    triage_metrics,
    triage_view,
)

C = list(HAM10000_CLASSES)  # akiec bcc bkl df mel nv vasc


def test_triage_mapping_of_every_ham10000_class():
    assert {c: triage_level(c) for c in C} == {
        "akiec": "moderate",
        "bcc": "moderate",
        "bkl": "low",
        "df": "low",
        "mel": "high",
        "nv": "low",
        "vasc": "low",
    }
    assert triage_level("scc") == "moderate" and triage_level("malignant") == "high" and triage_level("benign") == "low"
    with pytest.raises(KeyError, match="no triage level"):
        triage_level("psoriasis")  # never silently 'low'


def test_triage_view_sums_the_classes_of_each_level():
    proba = np.array([[0.1, 0.2, 0.05, 0.05, 0.3, 0.2, 0.1]])
    level, p = triage_view(np.array([C.index("bcc")]), proba, C)
    assert TRIAGE_LEVELS == ("low", "moderate", "high")
    assert level.tolist() == [1]  # bcc -> moderate
    np.testing.assert_allclose(p, [[0.05 + 0.05 + 0.2 + 0.1, 0.1 + 0.2, 0.3]])


def test_under_and_over_triage_on_a_hand_made_case():
    eye = np.eye(len(C))
    y = np.array([C.index("mel"), C.index("mel"), C.index("nv"), C.index("nv")])
    # mel -> nv (under-triage), mel -> mel, nv -> mel (over-triage), nv -> nv
    proba = eye[[C.index("nv"), C.index("mel"), C.index("mel"), C.index("nv")]]
    m = triage_metrics(y, proba, C)
    assert m["under_triage_rate"] == 0.5 and m["over_triage_rate"] == 0.5 and m["high_risk_sensitivity"] == 0.5


def test_sensitivity_at_specificity_known_answer():
    positive = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    score = np.array([0.9, 0.8, 0.35, 0.1, 0.7, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.0])
    # 10 negatives: 90 % specificity allows 1 negative at or above the threshold -> t just above 0.4
    assert threshold_for_specificity(score[~positive], 0.9) == pytest.approx(0.4)
    assert sensitivity_at_specificity(positive, score, 0.9) == 0.5  # 0.9, 0.8 pass; 0.35 does not
    assert sensitivity_at_specificity(positive, score, 1.0) == 0.5  # above 0.7 still catches 0.9, 0.8
    assert sensitivity_at_specificity(positive, score, 0.0) == 1.0
    # ties are never split: with two negatives at 0.3 a threshold cannot keep just one of them
    assert sensitivity_at_specificity(positive, score, 0.75) == 0.75  # 2 negatives allowed: t above 0.3


def test_binary_metrics_of_a_perfect_ranking():
    y = np.array([C.index("mel"), C.index("bcc"), C.index("nv"), C.index("bkl")])
    proba = np.full((4, len(C)), 0.01)
    proba[0, C.index("mel")] = proba[1, C.index("bcc")] = 0.94
    proba[2, C.index("nv")] = proba[3, C.index("bkl")] = 0.94
    proba /= proba.sum(axis=1, keepdims=True)
    m = binary_metrics(y, proba, C)
    assert m["malignant_auc"] == 1.0 and m["sensitivity_at_95_specificity"] == 1.0
    assert m["sensitivity_at_0.5"] == 1.0 and m["specificity_at_0.5"] == 1.0

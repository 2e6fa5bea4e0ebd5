"""Temperature scaling fitted on validation, and the uncertainty flags / selective prediction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from lesionlab.evaluation.calibration import apply_temperature, calibrate, fit_temperature, reliability_bins
from lesionlab.evaluation.metrics import expected_calibration_error
from lesionlab.evaluation.uncertainty import coverage_curve, normalized_entropy, selective_summary, uncertain_flags


def _miscalibrated(n: int, seed: int, sharpen: float = 3.0):
    """Labels drawn from softmax(z); the 'model' reports softmax(sharpen * z): over-confident by a factor 3."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, size=(n, 5))
    truth = softmax(z, axis=1)
    y = np.array([rng.choice(5, p=row) for row in truth])
    return y, softmax(sharpen * z, axis=1)


def test_temperature_recovers_the_overconfidence_and_lowers_ece():
    y_val, p_val = _miscalibrated(3000, 0)
    y_test, p_test = _miscalibrated(3000, 1)
    t = fit_temperature(y_val, p_val)
    assert t == pytest.approx(3.0, rel=0.15)
    cal = calibrate(y_val, p_val, y_test, p_test)
    assert cal.ece_after < 0.5 * cal.ece_before
    assert cal.brier_after < cal.brier_before and cal.nll_after < cal.nll_before


def test_temperature_keeps_decisions_and_one_is_identity():
    _, p = _miscalibrated(200, 2)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-9)
    for t in (0.3, 2.5):
        q = apply_temperature(p, t)
        np.testing.assert_allclose(q.sum(axis=1), 1.0)
        assert (q.argmax(axis=1) == p.argmax(axis=1)).all()


def test_a_calibrated_model_keeps_temperature_near_one():
    y, p = _miscalibrated(4000, 3, sharpen=1.0)
    assert fit_temperature(y, p) == pytest.approx(1.0, abs=0.12)


def test_reliability_bins_count_every_row():
    y, p = _miscalibrated(500, 4)
    bins = reliability_bins(y, p, bins=10)
    assert bins["count"].sum() == 500
    ece = float(np.nansum(bins["count"] / 500 * np.abs(bins["accuracy"] - bins["confidence"])))
    assert ece == pytest.approx(expected_calibration_error(y, p, bins=10))


def test_uncertain_flags_on_hand_made_rows():
    proba = np.array(
        [
            [0.97, 0.01, 0.01, 0.01],  # confident
            [0.45, 0.45, 0.05, 0.05],  # top below 0.5
            [0.25, 0.25, 0.25, 0.25],  # uniform
            [0.60, 0.20, 0.10, 0.10],
        ]
    )  # top 0.6 but spread out
    np.testing.assert_allclose(normalized_entropy(proba[[2]]), [1.0])
    assert normalized_entropy(np.eye(4)[[0]])[0] == pytest.approx(0.0, abs=1e-9)
    assert uncertain_flags(proba, 0.5, 1.0).tolist() == [False, True, True, False]
    assert uncertain_flags(proba, 0.0, 0.7).tolist() == [False, True, True, True]
    s = selective_summary(np.array([0, 1, 3, 0]), proba, uncertain_flags(proba, 0.5, 1.0))
    assert s["coverage"] == 0.5 and s["n_flagged"] == 2 and s["accuracy_covered"] == 1.0


def test_coverage_curve_keeps_the_most_confident_cases():
    y, p = _miscalibrated(2000, 5)
    curve = coverage_curve(y, p, coverages=np.array([0.1, 0.5, 1.0]))
    assert curve["accuracy"][-1] == pytest.approx((p.argmax(1) == y).mean())
    assert curve["accuracy"][0] > curve["accuracy"][1] > curve["accuracy"][2]  # confidence is informative here
    with pytest.raises(ValueError, match="max_prob"):
        coverage_curve(y, p, score="margin")

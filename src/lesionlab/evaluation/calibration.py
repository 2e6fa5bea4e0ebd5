"""Temperature scaling fitted on validation, and the reliability diagram's numbers (pure functions).

Temperature scaling divides the log-probabilities by one scalar T > 0 and renormalises: it changes
confidence, never the arg-max decision, so accuracy and balanced accuracy are unchanged while ECE and
the Brier score usually drop. T is fitted on the validation split by minimising the negative
log-likelihood (Guo et al., 2017) and applied to the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from lesionlab.evaluation.metrics import brier_score, expected_calibration_error

_EPS = 1e-12
T_BOUNDS = (0.05, 20.0)


def _log(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, dtype=float), _EPS, 1.0))


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), row by row."""
    z = _log(proba) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    return float(-_log(proba)[np.arange(len(y)), np.asarray(y)].mean())


def fit_temperature(y: np.ndarray, proba: np.ndarray) -> float:
    """The T in T_BOUNDS minimising the NLL of ``apply_temperature(proba, T)`` (searched on log T)."""
    if len(y) == 0:
        raise ValueError("cannot fit a temperature on an empty split")
    lo, hi = np.log(T_BOUNDS)
    res = minimize_scalar(
        lambda log_t: nll(y, apply_temperature(proba, np.exp(log_t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(res.x))


@dataclass(frozen=True)
class Calibration:
    temperature: float
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float
    nll_before: float
    nll_after: float

    def as_row(self) -> dict[str, float]:
        return dict(self.__dict__)


def calibrate(y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray) -> Calibration:
    """Fit T on validation, report test ECE / Brier / NLL before and after."""
    t = fit_temperature(y_val, p_val)
    after = apply_temperature(p_test, t)
    return Calibration(
        t,
        expected_calibration_error(y_test, p_test),
        expected_calibration_error(y_test, after),
        brier_score(y_test, p_test),
        brier_score(y_test, after),
        nll(y_test, p_test),
        nll(y_test, after),
    )


def reliability_bins(y: np.ndarray, proba: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (top-label; empty bins NaN)."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, weights=confidence, minlength=bins) / count
        acc = np.bincount(which, weights=correct, minlength=bins) / count
    return {"edges": edges, "confidence": conf, "accuracy": acc, "count": count}

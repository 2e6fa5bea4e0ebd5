"""The ``ensemble@<name>`` stage: combine trained models through their predictions files only.

Members may come from any framework (Keras CNNs, PyTorch backbones, the LightGBM metadata model):
an ensemble never imports one. Methods (params.yaml ``ensemble:`` / ``ensembles:``):

- ``mean``: soft voting, the unweighted mean of the members' probabilities;
- ``weighted``: a weighted mean whose weights (non-negative, summing to 1) minimise the validation
  log-loss (class-balanced when ``class_weights``);
- ``stacking``: a meta-learner on the members' log-probabilities (log-linear pooling: a weight per
  member and a bias per class, see :class:`PooledMetaLearner`), fitted on
  **validation rows only** and **cross-fitted**: validation rows are scored by a model fitted on the
  other folds (folds group lesions), train and test rows by the model fitted on all validation rows.
  No row is ever scored by a model that saw it.

The image + metadata meta-ensemble is a stacking ensemble whose members include a ``tabulars:`` model;
its image-only twin (same members without it) measures what metadata adds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import EnsembleConfig, Params
from lesionlab.data.taxonomy import probability_columns
from lesionlab.models import runlog
from lesionlab.models.outputs import write_skipped, write_stage_files
from lesionlab.paths import ensemble_dir, fresh_dir
from lesionlab.pipeline.contracts import ContractError, read_predictions, write_predictions

_EPS = 1e-12


@dataclass
class Members:
    """Aligned member predictions: ``proba`` is (members, rows, classes); rows sorted by image_id."""

    names: list[str]
    frame: pd.DataFrame  # image_id, split, label
    proba: np.ndarray
    classes: list[str]

    def y(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return self.frame["label"].map(index).to_numpy()

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.frame["split"].to_numpy() == split)


def align_members(preds: dict[str, pd.DataFrame], classes) -> Members:
    """Stack member predictions; every member must cover the same images with the same split and label."""
    names = list(preds)
    ref_name = names[0]
    ref = preds[ref_name].sort_values("image_id").reset_index(drop=True)
    key = ref[["image_id", "split", "label"]]
    stacked = []
    for name in names:
        df = preds[name].sort_values("image_id").reset_index(drop=True)
        if not df[["image_id", "split", "label"]].equals(key):
            ids = set(df["image_id"]) ^ set(key["image_id"])
            what = f"image_ids differ (e.g. {sorted(ids)[:3]})" if ids else "splits or labels differ"
            raise ContractError(
                f"ensemble members {ref_name!r} and {name!r} do not describe the same rows: {what}; "
                "re-run `dvc repro` so that every member uses the current splits"
            )
        stacked.append(df[probability_columns(classes)].to_numpy(dtype=float))
    return Members(names, key.copy(), np.stack(stacked), list(classes))


def mean_ensemble(proba: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean over members of (members, rows, classes) probabilities."""
    w = np.full(len(proba), 1 / len(proba)) if weights is None else np.asarray(weights, dtype=float)
    return np.tensordot(w / w.sum(), proba, axes=1)


def balanced_sample_weights(y: np.ndarray, k: int) -> np.ndarray:
    """Per row n / (k_present * count(class)): every class weighs the same in a loss."""
    from lesionlab.models.fitting import balanced_class_weights

    return balanced_class_weights(y, k)[y]


def fit_mean_weights(proba: np.ndarray, y: np.ndarray, class_weights: bool = False) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the (optionally class-balanced) log-loss of the weighted
    mean on these rows."""
    from scipy.optimize import minimize

    sample_w = balanced_sample_weights(y, proba.shape[2]) if class_weights else np.ones(len(y))

    def loss(theta):
        w = np.exp(theta - theta.max())
        p = mean_ensemble(proba, w)[np.arange(len(y)), y]
        return float(-(sample_w * np.log(np.clip(p, _EPS, 1))).sum() / sample_w.sum())

    res = minimize(loss, np.zeros(len(proba)), method="L-BFGS-B")
    w = np.exp(res.x - res.x.max())
    return w / w.sum()


LOG_FLOOR = np.log(1e-4)  # log-probabilities below this carry no extra information and only add leverage


def stack_features(proba: np.ndarray) -> np.ndarray:
    """(members, rows, classes) -> the meta-learner's input: log-probabilities floored at LOG_FLOOR."""
    return np.maximum(np.log(np.clip(proba, _EPS, 1.0)), LOG_FLOOR)


class PooledMetaLearner:
    """Log-linear pooling with class biases: logit_c = sum_m w_m * log p_mc + b_c, softmax over c.

    M + k parameters (a weight per member, a bias per class) instead of a full logistic regression's
    M * k * k: robust on a validation split of a few hundred rows. ``class_weights`` weighs every class
    equally in the log-loss, which moves the biases towards the balanced-accuracy decision. ``C`` is the
    inverse strength of an L2 penalty on the biases and on the weights' distance from 1 / M.
    """

    def __init__(self, C: float = 1.0, class_weights: bool = True):
        self.C, self.class_weights = C, class_weights

    def _logits(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        m = x.shape[0]
        return np.tensordot(theta[:m], x, axes=1) + theta[m:]

    def fit(self, x: np.ndarray, y: np.ndarray) -> PooledMetaLearner:
        from scipy.optimize import minimize
        from scipy.special import log_softmax

        m, _, k = x.shape
        sample_w = balanced_sample_weights(y, k) if self.class_weights else np.ones(len(y))
        prior = np.concatenate([np.full(m, 1 / m), np.zeros(k)])
        rows = np.arange(len(y))

        def loss(theta):
            z = log_softmax(self._logits(theta, x), axis=1)
            penalty = ((theta - prior) ** 2).sum() / (2 * self.C * len(y))
            return float(-(sample_w * z[rows, y]).sum() / sample_w.sum() + penalty)

        res = minimize(loss, prior.copy(), method="L-BFGS-B", bounds=[(0, None)] * m + [(None, None)] * k)
        self.theta_, self.n_members_ = res.x, m
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import softmax

        return softmax(self._logits(self.theta_, x), axis=1)

    @classmethod
    def from_record(cls, record: dict, names: list[str], classes: list[str]) -> PooledMetaLearner:
        """The fitted meta-learner back from ``ensemble.json`` (what :meth:`describe` wrote)."""
        meta = cls(record["config"]["C"], record["config"]["class_weights"])
        meta.theta_ = np.array(
            [record["member_weights"][m] for m in names] + [record["class_biases"][c] for c in classes]
        )
        meta.n_members_ = len(names)
        return meta

    def describe(self, names: list[str], classes: list[str]) -> dict:
        m = self.n_members_
        return {
            "member_weights": dict(zip(names, self.theta_[:m].tolist())),
            "class_biases": dict(zip(classes, self.theta_[m:].tolist())),
        }


@dataclass
class CrossFit:
    """Stacking output: probabilities of every row and, per fitted model, the rows it was fitted on / scored."""

    proba: np.ndarray
    fits: list[dict] = field(default_factory=list)  # {"fitted_on": idx, "scored": idx}
    final: PooledMetaLearner | None = None


def cross_fit_stacking(
    x: np.ndarray,
    y: np.ndarray,
    fit_rows: np.ndarray,
    groups: np.ndarray,
    folds: int,
    seed: int,
    C: float = 1.0,
    class_weights: bool = True,
) -> CrossFit:
    """Meta-learner fitted on ``fit_rows`` only; those rows are scored out-of-fold (lesion-grouped, stratified
    folds), every other row by the model fitted on all of ``fit_rows``. ``x``: (members, rows, classes)."""
    import warnings

    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    fit_rows = np.asarray(fit_rows)
    proba = np.zeros((x.shape[1], x.shape[2]))
    fits = []
    n_groups = len(np.unique(groups[fit_rows]))
    folds = min(folds, n_groups)
    if folds < 2:
        raise ValueError(f"stacking needs at least 2 lesions in the validation split, got {n_groups}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        if np.bincount(y[fit_rows]).max() < folds:  # no class fills every fold (a tiny validation split): the
            print(
                f"[stacking] every class has fewer than {folds} validation rows: lesion-grouped folds, not stratified",
                flush=True,
            )  # folds can only be grouped, as StratifiedGroupKFold refuses
            splitter = GroupKFold(n_splits=folds)
        for inner_fit, inner_score in splitter.split(fit_rows, y[fit_rows], groups[fit_rows]):
            fitted_on, scored = fit_rows[inner_fit], fit_rows[inner_score]
            meta = PooledMetaLearner(C, class_weights).fit(x[:, fitted_on], y[fitted_on])
            proba[scored] = meta.predict_proba(x[:, scored])
            fits.append({"fitted_on": fitted_on, "scored": scored})
    others = np.setdiff1d(np.arange(x.shape[1]), fit_rows)
    final = PooledMetaLearner(C, class_weights).fit(x[:, fit_rows], y[fit_rows])
    proba[others] = final.predict_proba(x[:, others])
    fits.append({"fitted_on": fit_rows, "scored": others})
    return CrossFit(proba, fits, final)


def combine(members: Members, cfg: EnsembleConfig, lesion_of: dict[str, str], seed: int) -> tuple[np.ndarray, dict]:
    """The ensemble's probabilities for every row, and a record of what was fitted."""
    y, val = members.y(), members.rows("val")
    if cfg.method == "mean":
        return mean_ensemble(members.proba), {
            "weights": dict(zip(members.names, [1 / len(members.names)] * len(members.names)))
        }
    if cfg.method == "weighted":
        if not len(val):
            raise ContractError("a weighted ensemble is fitted on the validation split, which is empty")
        w = fit_mean_weights(members.proba[:, val], y[val], cfg.class_weights)
        return mean_ensemble(members.proba, w), {"weights": dict(zip(members.names, w.tolist())), "fitted_on": "val"}
    groups = members.frame["image_id"].map(lesion_of).to_numpy()
    fit = cross_fit_stacking(stack_features(members.proba), y, val, groups, cfg.folds, seed, cfg.C, cfg.class_weights)
    return fit.proba, {
        "fitted_on": "val",
        "folds": len(fit.fits) - 1,
        **fit.final.describe(members.names, members.classes),
    }


def training_record(root: Path, dataset: str, params: Params, cfg: EnsembleConfig, classes: list[str]) -> dict:
    """The training-record fields of an ensemble: its members' frameworks joined, the largest input size among them
    (predict decodes each image at every member's size), their shared image preprocessing."""
    from lesionlab.models.record import read_record
    from lesionlab.paths import variant_dir

    members = [read_record(variant_dir(root, dataset, m.removesuffix("+tta"))) for m in cfg.members]
    return {
        "kind": "ensemble",
        "framework": "+".join(sorted({m.framework for m in members})),
        "classes": classes,
        "input_size": max(m.input_size for m in members),
        "preprocess": members[0].preprocess,
        "seed": params.base.seed,
        "config": cfg.model_dump(),
        "device": "cpu",
    }


@runlog.logged
def build_ensemble(root: Path, params: Params, name: str) -> dict:
    """Read the members' predictions, combine them, write the predictions contract and metrics."""
    from lesionlab.data.prepare import load_prepared
    from lesionlab.evaluation.compare import row_predictions_file, skipped_rows
    from lesionlab.evaluation.metrics import metrics_from_predictions

    cfg = params.ensemble_config(name)
    ds = params.dataset
    data = load_prepared(root, ds)
    classes = list(data.classes)
    skipped = {
        m: r for m, r in skipped_rows(root, ds, params).items() if m in {x.removesuffix("+tta") for x in cfg.members}
    }
    if skipped:
        return write_skipped(
            root,
            ds,
            name,
            fresh_dir(ensemble_dir(root, ds, name)),
            "member " + "; ".join(f"{m} was skipped ({r})" for m, r in skipped.items()),
            training_record(root, ds, params, cfg, classes),
        )
    lesion_of = dict(zip(data.table["image_id"], data.table["lesion_id"]))
    preds = {m: read_predictions(row_predictions_file(root, ds, m, params), classes) for m in cfg.members}
    members = align_members(preds, classes)
    print(
        f"[ensemble@{name}] {cfg.method} of {len(members.names)} members {members.names}; "
        f"{len(members.rows('val'))} val rows to fit on",
        flush=True,
    )
    started = time.perf_counter()
    proba, record = combine(members, cfg, lesion_of, params.base.seed)
    seconds = time.perf_counter() - started
    out = fresh_dir(ensemble_dir(root, ds, name))
    pred = write_predictions(
        out / "predictions.csv",
        members.frame["image_id"],
        members.frame["split"],
        members.frame["label"],
        proba,
        classes,
    )
    metrics = metrics_from_predictions(pred, classes)
    metrics.update({"n_members": len(members.names), "fit_seconds": round(seconds, 2)})
    (out / "ensemble.json").write_text(
        json.dumps({"name": name, "config": cfg.model_dump(), **record}, indent=1) + "\n"
    )
    write_stage_files(
        root,
        ds,
        name,
        out,
        metrics,
        None,
        {**training_record(root, ds, params, cfg, classes), "weights_file": "ensemble.json"},
        predictions=pred,
    )
    print(
        f"[ensemble@{name}] test balanced accuracy {metrics['balanced_accuracy']:.3f}, macro AUC "
        f"{metrics['macro_auc']:.3f}, malignant AUC {metrics['malignant_auc']:.3f} ({seconds:.1f} s)",
        flush=True,
    )
    member_metrics = {m: metrics_from_predictions(preds[m], classes) for m in cfg.members}
    return {
        "config": cfg,
        "metrics": metrics,
        "predictions": pred,
        "classes": classes,
        "record": record,
        "member_metrics": member_metrics,
    }

"""The ``tabular@<name>`` stage: a model of the metadata alone (age, sex, body site).

``dx_type`` (how the diagnosis was confirmed) is never a feature: it is assigned *after* the
diagnosis (histopathology for lesions that looked suspicious), so it leaks the label.

Missing values are explicit, never silently imputed away:

- age: missing stays NaN for the gradient-boosting model (LightGBM routes it down its own branch);
  the logistic model gets the training median plus an ``age_missing`` indicator, then standardisation;
- sex and site: one-hot over the categories seen in the training split, with ``unknown`` always a
  category of its own; empty values and categories never seen in training count as ``unknown``.

Writes the predictions contract like every image model, so ensembles can combine them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import Params, TabularParams
from lesionlab.data.datasets import FEATURE_COLUMNS, LEAKY_COLUMNS, unrecorded_features
from lesionlab.evaluation.metrics import balanced_accuracy, confusion_matrix
from lesionlab.models import runlog
from lesionlab.models.fitting import balanced_class_weights
from lesionlab.models.outputs import write_skipped, write_stage_files
from lesionlab.models.record import read_record
from lesionlab.paths import fresh_dir, variant_dir
from lesionlab.pipeline.contracts import write_predictions

UNKNOWN = "unknown"


@dataclass
class MetadataEncoder:
    """Column layout learned on the training rows; ``transform`` gives the same columns for any table."""

    features: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    age_median: float = float("nan")
    age_mean: float = 0.0
    age_std: float = 1.0

    @staticmethod
    def _category(values: pd.Series) -> pd.Series:
        v = values.fillna("").astype(str).str.strip().str.lower()
        return v.where(v != "", UNKNOWN)

    @classmethod
    def fit(cls, table: pd.DataFrame, features: list[str]) -> MetadataEncoder:
        leaky = [f for f in features if f in LEAKY_COLUMNS]
        if leaky:
            raise ValueError(f"{leaky} may not be a metadata feature: it leaks the label (datasets.LEAKY_COLUMNS)")
        other = [f for f in features if f not in FEATURE_COLUMNS]
        if other:
            raise ValueError(f"{other} is not a metadata feature; allowed: {list(FEATURE_COLUMNS)}")
        missing = [f for f in features if f not in table.columns]
        if missing:
            raise ValueError(f"the dataset table has no column(s) {missing}; columns: {list(table.columns)}")
        enc = cls(list(features))
        for col in ("sex", "site"):
            if col in features:
                seen = set(cls._category(table[col]))
                enc.categories[col] = sorted(seen - {UNKNOWN}) + [UNKNOWN]
        if "age" in features:
            age = pd.to_numeric(table["age"], errors="coerce")
            enc.age_median = float(age.median()) if age.notna().any() else 0.0
            filled = age.fillna(enc.age_median)
            enc.age_mean, enc.age_std = float(filled.mean()), float(filled.std(ddof=0) or 1.0)
        return enc

    def columns(self, impute: bool) -> list[str]:
        cols = []
        if "age" in self.features:
            cols += ["age", "age_missing"] if impute else ["age"]
        for col in ("sex", "site"):
            if col in self.features:
                cols += [f"{col}={c}" for c in self.categories[col]]
        return cols

    def transform(self, table: pd.DataFrame, impute: bool) -> pd.DataFrame:
        """Numeric design matrix. ``impute``: median-filled, standardised age + missing flag (logistic model)."""
        parts = {}
        if "age" in self.features:
            age = pd.to_numeric(table["age"], errors="coerce")
            if impute:
                parts["age"] = (age.fillna(self.age_median) - self.age_mean) / self.age_std
                parts["age_missing"] = age.isna().astype(float)
            else:
                parts["age"] = age.astype(float)
        for col in ("sex", "site"):
            if col in self.features:
                values = self._category(table[col])
                values = values.where(values.isin(self.categories[col]), UNKNOWN)
                for c in self.categories[col]:
                    parts[f"{col}={c}"] = (values == c).astype(float)
        return pd.DataFrame(parts, index=table.index)[self.columns(impute)]

    def unseen(self, table: pd.DataFrame) -> dict[str, int]:
        """How many rows carry a category the training split never showed (they are encoded as unknown)."""
        out = {}
        for col in ("sex", "site"):
            if col in self.features:
                values = self._category(table[col])
                out[col] = int((~values.isin(self.categories[col])).sum())
        return out

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TabularFit:
    proba: np.ndarray
    history: pd.DataFrame
    best_iteration: int
    train_seconds: float
    model_file: str
    n_params: int


def lightgbm_feature_names(columns) -> list[str]:
    """Column names LightGBM accepts: a one-hot column of a user's site or sex value may hold the JSON characters
    LightGBM refuses (``"`` ``,`` ``:`` ``[`` ``]`` ``{`` ``}``); such a column is called ``feature_<i>`` in the
    model file (``training.json`` keeps the real names, in the same order)."""
    return [c if not re.search(r'["\\,:\[\]{}]', str(c)) else f"feature_{i}" for i, c in enumerate(columns)]


def _fit_gbm(
    cfg: TabularParams, x: pd.DataFrame, y: np.ndarray, train: np.ndarray, val: np.ndarray, k: int, seed: int, out: Path
) -> TabularFit:
    import lightgbm as lgb

    weights = balanced_class_weights(y[train], k)[y] if cfg.class_weights else np.ones(len(y))
    x = x.set_axis(lightgbm_feature_names(x.columns), axis=1)  # model.txt keeps its own names; training.json the real
    dtrain = lgb.Dataset(x.iloc[train], y[train], weight=weights[train], free_raw_data=False)
    dval = lgb.Dataset(x.iloc[val], y[val], reference=dtrain, free_raw_data=False)

    def accuracy_metrics(preds, data):
        truth = data.get_label().astype(int)
        decided = np.asarray(preds).reshape(len(truth), k).argmax(axis=1) if np.ndim(preds) == 1 else preds.argmax(1)
        return [
            ("accuracy", float((decided == truth).mean()), True),
            ("balanced_accuracy", balanced_accuracy(confusion_matrix(truth, decided, k)), True),
        ]

    booster_params = {
        "objective": "multiclass",
        "num_class": k,
        "metric": "multi_logloss",
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_child_samples": cfg.min_child_samples,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    log: dict = {}
    started = time.perf_counter()
    booster = lgb.train(
        booster_params,
        dtrain,
        num_boost_round=cfg.n_estimators,
        valid_sets=[dtrain, dval],
        valid_names=["train", "val"],
        feval=accuracy_metrics,
        callbacks=[lgb.record_evaluation(log), lgb.early_stopping(cfg.patience, first_metric_only=True, verbose=False)],
    )
    seconds = time.perf_counter() - started
    best = int(booster.best_iteration or booster.current_iteration())
    history = pd.DataFrame(
        {
            "epoch": np.arange(1, len(log["val"]["multi_logloss"]) + 1),
            "loss": log["train"]["multi_logloss"],
            "accuracy": log["train"]["accuracy"],
            "val_loss": log["val"]["multi_logloss"],
            "val_accuracy": log["val"]["accuracy"],
            "val_balanced_accuracy": log["val"]["balanced_accuracy"],
            "learning_rate": cfg.learning_rate,
        }
    )
    booster.save_model(str(out / "model.txt"), num_iteration=best)
    proba = booster.predict(x, num_iteration=best)
    n_leaves = sum(t["num_leaves"] for t in booster.dump_model(num_iteration=best)["tree_info"])
    return TabularFit(proba, history, best, seconds, "model.txt", int(n_leaves))


def _fit_logistic(
    cfg: TabularParams, x: pd.DataFrame, y: np.ndarray, train: np.ndarray, val: np.ndarray, k: int, seed: int, out: Path
) -> TabularFit:
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y[train])
    started = time.perf_counter()
    model = LogisticRegression(
        C=cfg.C, class_weight="balanced" if cfg.class_weights else None, max_iter=2000, random_state=seed
    )
    model.fit(x.iloc[train].to_numpy(), y[train])
    seconds = time.perf_counter() - started
    proba = np.zeros((len(x), k))
    proba[:, present] = model.predict_proba(x.to_numpy())
    decided = proba.argmax(axis=1)

    def loss(rows):
        return float(-np.log(np.clip(proba[rows, y[rows]], 1e-12, 1)).mean())

    history = pd.DataFrame(
        [
            {
                "epoch": 1,
                "loss": loss(train),
                "accuracy": float((decided[train] == y[train]).mean()),
                "val_loss": loss(val),
                "val_accuracy": float((decided[val] == y[val]).mean()),
                "val_balanced_accuracy": balanced_accuracy(confusion_matrix(y[val], decided[val], k)),
                "learning_rate": 0.0,
            }
        ]
    )
    (out / "model.json").write_text(
        json.dumps(
            {
                "classes_present": present.tolist(),
                "coef": model.coef_.tolist(),
                "intercept": model.intercept_.tolist(),
                "columns": list(x.columns),
            },
            indent=1,
        )
        + "\n"
    )
    return TabularFit(proba, history, 1, seconds, "model.json", int(model.coef_.size + model.intercept_.size))


def missing_metadata_reason(train: pd.DataFrame, features) -> str | None:
    """Why a metadata model cannot be trained on these training rows (no feature has a single known value), or
    None. A model fitted on nothing but 'missing' would only learn the class priors."""
    if not set(features) <= set(unrecorded_features(train)):
        return None
    return (
        f"no usable metadata: the dataset records none of {list(features)} for any training image "
        "(a model of missing values would only learn the class priors)"
    )


@runlog.logged
def train_tabular(root: Path, params: Params, name: str) -> dict:
    """Fit ``tabulars.<name>`` on the train split (early stopping on val), predict every row, write the outputs."""
    from lesionlab.data.prepare import load_rows
    from lesionlab.evaluation.metrics import metrics_from_predictions

    cfg = params.tabular_variant(name)
    ds, seed = params.dataset, params.base.seed
    rows = load_rows(root, ds)
    table, classes = rows.data.table, rows.data.classes
    train, val = rows.train, rows.val
    reason = missing_metadata_reason(table.iloc[train], cfg.features)
    if reason:
        return write_skipped(
            root,
            ds,
            name,
            fresh_dir(variant_dir(root, ds, name)),
            reason,
            training_record(params, cfg, rows),
            history_columns=["epoch"],
        )
    encoder = MetadataEncoder.fit(table.iloc[train], cfg.features)
    impute = cfg.model == "logistic"
    x = encoder.transform(table, impute=impute)
    unseen = encoder.unseen(table)
    print(
        f"[tabular@{name}] {ds}: {cfg.model} on {cfg.features} -> {x.shape[1]} columns; {len(train)} train / "
        f"{len(val)} val rows; age missing in {int(pd.to_numeric(table['age'], errors='coerce').isna().sum())} rows; "
        f"categories unseen in training (encoded as unknown): {unseen}",
        flush=True,
    )
    out = fresh_dir(variant_dir(root, ds, name))
    fit = (_fit_gbm if cfg.model == "gbm" else _fit_logistic)(cfg, x, rows.y, train, val, len(classes), seed, out)
    pred = write_predictions(out / "predictions.csv", table["image_id"], rows.split, table["label"], fit.proba, classes)
    metrics = metrics_from_predictions(pred, classes)
    metrics.update(
        {
            "epochs": len(fit.history),
            "best_epoch": fit.best_iteration,
            "n_params": fit.n_params,
            "train_seconds": round(fit.train_seconds, 2),
            "train_images_per_second": round(len(train) * len(fit.history) / max(fit.train_seconds, 1e-9), 1),
        }
    )
    write_stage_files(
        root,
        ds,
        name,
        out,
        metrics,
        fit.history,
        {
            **training_record(params, cfg, rows),
            "weights_file": fit.model_file,
            "details": {"encoder": encoder.to_json(), "columns": list(x.columns), "unseen_categories": unseen},
        },
        predictions=pred,
    )
    print(
        f"[tabular@{name}] best iteration {fit.best_iteration}/{len(fit.history)}: test balanced accuracy "
        f"{metrics['balanced_accuracy']:.3f}, macro AUC {metrics['macro_auc']:.3f}, malignant AUC "
        f"{metrics['malignant_auc']:.3f} ({fit.train_seconds:.1f} s)",
        flush=True,
    )
    return {
        "config": cfg,
        "metrics": metrics,
        "history": fit.history,
        "predictions": pred,
        "classes": classes,
        "encoder": encoder,
        "design": x,
        "split": rows.split,
    }


def training_record(params: Params, cfg: TabularParams, rows) -> dict:
    """The training-record fields of a metadata model (:class:`lesionlab.models.record.TrainingRecord`). It reads no
    pixels: its input size is the side the dataset's rows were decoded at (predict still checks each image opens)."""
    return {
        "kind": "tabular",
        "framework": "lightgbm" if cfg.model == "gbm" else "scikit-learn",
        "classes": list(rows.data.classes),
        "input_size": int(rows.data.images.shape[1]),
        "preprocess": params.preprocess(),
        "seed": params.base.seed,
        "config": cfg.model_dump(),
        "device": "cpu",
    }


def feature_importance(root: Path, dataset: str, name: str) -> pd.Series:
    """Per design column: LightGBM total split gain, or the logistic model's largest |coefficient| over classes."""
    out = variant_dir(root, dataset, name)
    columns = read_record(out).details["columns"]
    if (out / "model.txt").is_file():
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(out / "model.txt"))
        return pd.Series(booster.feature_importance("gain"), index=columns, name="total gain")
    model = json.loads((out / "model.json").read_text())
    return pd.Series(np.abs(np.asarray(model["coef"])).max(axis=0), index=columns, name="max |coefficient|")


def load_predictor(root, dataset: str, variant: str, record):
    """A metadata model: reads age / sex / site from the input CSV (the images are not used)."""
    from lesionlab.models.predictor import Predictor
    from lesionlab.pipeline.contracts import ContractError

    folder = variant_dir(root, dataset, variant)
    enc = MetadataEncoder(**record.details["encoder"])
    classes = tuple(record.classes)
    impute = record.config["model"] == "logistic"
    if impute:
        model = json.loads((folder / "model.json").read_text())
        coef, intercept = np.asarray(model["coef"]), np.asarray(model["intercept"])
    else:
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(folder / "model.txt"))

    def combine(images, rows: pd.DataFrame, tta: bool) -> np.ndarray:
        missing = [f for f in enc.features if f not in rows.columns]
        if missing:
            raise ContractError(
                f"{variant} is a metadata model: the input CSV needs the column(s) {missing} "
                f"(a folder of images has no metadata)"
            )
        x = enc.transform(rows, impute=impute).to_numpy(dtype=float)
        if not impute:
            return booster.predict(x)
        from scipy.special import expit, softmax

        logits = x @ coef.T + intercept
        if coef.shape[0] == 1:  # scikit-learn keeps one row of coefficients when training saw two classes
            present = np.column_stack([1 - expit(logits[:, 0]), expit(logits[:, 0])])
        else:
            present = softmax(logits, axis=1)
        out = np.zeros((len(x), len(classes)))
        out[:, model["classes_present"]] = present
        return out

    return Predictor(variant, "tabular", record.framework, classes, record.input_size, lambda x: None, combine=combine)

"""The ``compare`` stage: every variant on the same test split, with lesion-level bootstrap CIs.

Reads predictions files only (contract 3), so it never imports a framework.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.bootstrap import bootstrap_ci
from lesionlab.contracts import ContractError, read_predictions
from lesionlab.metrics import HEADLINE, compute_metrics, headline_metrics
from lesionlab.paths import variant_dir
from lesionlab.train import metrics_file
from lesionlab.taxonomy import probability_columns

METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_auc": "macro AUC (OvR)",
    "malignant_auc": "malignant AUC",
    "melanoma_sensitivity": "melanoma sensitivity",
    "macro_f1": "macro F1",
}


TTA_SUFFIX = "+tta"


def predictions_file(root: Path, dataset: str, name: str) -> Path:
    """``<variant>/predictions.csv``, or ``predictions_tta.csv`` for the row ``<variant>+tta``."""
    if name.endswith(TTA_SUFFIX):
        return variant_dir(root, dataset, name[:-len(TTA_SUFFIX)]) / "predictions_tta.csv"
    return variant_dir(root, dataset, name) / "predictions.csv"


def leaderboard_rows(params) -> list[str]:
    """Every row of the comparison: CNN ladder, probes, fine-tunes, each followed by its ``+tta`` twin if any."""
    rows = []
    for name in params.all_variants():
        rows.append(name)
        if name not in params.variants and params.backbone_variant(name).tta:
            rows.append(name + TTA_SUFFIX)
    return rows


def load_predictions(root: Path, dataset: str, variants: list[str], classes) -> dict[str, pd.DataFrame]:
    """Each variant's predictions, checked to share one test set (same images, same labels)."""
    preds = {v: read_predictions(predictions_file(root, dataset, v), classes) for v in variants}
    reference = None
    for name, df in preds.items():
        test = df[df["split"] == "test"].sort_values("image_id")[["image_id", "label"]].reset_index(drop=True)
        if reference is None:
            reference, ref_name = test, name
        elif not test.equals(reference):
            raise ContractError(f"variants {ref_name!r} and {name!r} were scored on different test sets; "
                                "re-run `dvc repro` so that every variant uses the current splits.csv")
    return preds


def split_arrays(pred: pd.DataFrame, classes, lesion_of: dict[str, str], split: str = "test"):
    """(y_true, proba, lesion groups) of one split, rows sorted by image_id."""
    part = pred[pred["split"] == split].sort_values("image_id")
    index = {c: i for i, c in enumerate(classes)}
    return (part["label"].map(index).to_numpy(), part[probability_columns(classes)].to_numpy(dtype=float),
            part["image_id"].map(lesion_of).to_numpy())


def leaderboard(preds: dict[str, pd.DataFrame], classes, lesion_of: dict[str, str], n_resamples: int = 1000,
                ci: float = 0.95, seed: int = 0, extra: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per variant: headline test metrics with ``_lo``/``_hi`` bootstrap CI columns.

    Every variant is resampled with the same seed, hence the same lesions, so intervals are comparable.
    """
    rows = []
    for name, pred in preds.items():
        y, p, groups = split_arrays(pred, classes, lesion_of)
        point = compute_metrics(y, p, classes)
        cis = bootstrap_ci(lambda r: headline_metrics(y[r], p[r], classes), groups, HEADLINE,
                           n_resamples=n_resamples, ci=ci, seed=seed)
        row = {"variant": name, "n_test_images": len(y), "n_test_lesions": len(set(groups))}
        for m in HEADLINE:
            row[m], (row[f"{m}_lo"], row[f"{m}_hi"]) = point[m], cis[m]
        row["ece"] = point["ece"]
        row.update((extra or {}).get(name, {}))
        rows.append(row)
    return pd.DataFrame(rows)


def format_ci(value: float, lo: float, hi: float, digits: int = 3, bold: bool = False) -> str:
    """'value [lo, hi]', the one way the reports and the README write an estimate with its CI."""
    shown = f"<b>{value:.{digits}f}</b>" if bold else f"{value:.{digits}f}"
    return f"{shown} [{lo:.{digits}f}, {hi:.{digits}f}]"


def with_ci_text(board: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Display table: 'value [lo, hi]' per headline metric, best value of each column in bold (HTML)."""
    shown = pd.DataFrame({"variant": board["variant"]})
    for m in HEADLINE:
        best = board[m].max()
        shown[METRIC_LABELS[m]] = [
            format_ci(v, lo, hi, digits, bold=bool(np.isclose(v, best)))
            for v, lo, hi in zip(board[m], board[f"{m}_lo"], board[f"{m}_hi"])
        ]
    return shown


def headline(board: pd.DataFrame, baseline: str, metric: str = "balanced_accuracy") -> str:
    """One sentence for reviewers: the best variant on ``metric`` against the baseline, with CIs."""
    def fmt(row) -> str:
        return format_ci(row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"])

    best = board.loc[board[metric].idxmax()]
    base = board.set_index("variant").loc[baseline]
    label = METRIC_LABELS.get(metric, metric)
    if best["variant"] == baseline:
        return f"Best {label}: the baseline <b>{baseline}</b>, {fmt(base)}."
    overlap = best[f"{metric}_lo"] <= base[f"{metric}_hi"]
    return (f"Best {label}: <b>{best['variant']}</b>, {fmt(best)}, against {fmt(base)} for the baseline "
            f"<b>{baseline}</b> ({best[metric] - base[metric]:+.3f}; the two intervals "
            f"{'overlap' if overlap else 'do not overlap'}).")


def write_leaderboard(board: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    board.to_csv(path, index=False, float_format="%.4f")


def read_training_figures(root: Path, dataset: str, variants: list[str]) -> dict[str, dict]:
    """Training figures from each variant's metrics file (epochs, time, throughput)."""
    keys = ("epochs", "best_epoch", "n_params", "train_seconds", "train_images_per_second")
    out = {}
    for v in variants:
        data = json.loads(metrics_file(root, dataset, v.removesuffix(TTA_SUFFIX)).read_text())
        out[v] = {k: data.get(k) for k in keys}
    return out


def backbone_table(root: Path, dataset: str, params) -> pd.DataFrame:
    """Per probe / fine-tune: backbone, strategy, the weights it started from (file + sha256), device, cost."""
    rows = []
    for name in [*params.probes, *params.finetunes]:
        cfg = params.backbone_variant(name)
        info = json.loads((variant_dir(root, dataset, name) / "training.json").read_text())
        weights = info["weights"]
        started = ("random initialisation" if weights["weights"] == "random"
                   else f"ImageNet <code>{weights['file']}</code><br><small>sha256 {weights['sha256']}</small>")
        metrics = json.loads(metrics_file(root, dataset, name).read_text())
        rows.append({"variant": name, "backbone": cfg.backbone, "strategy": cfg.strategy,
                     "input px": info.get("image_size"), "weights": started, "device": info.get("device"),
                     "trainable params": metrics.get("n_trainable_params"),
                     "train s": metrics.get("train_seconds"), "train img/s": metrics.get("train_images_per_second")})
    return pd.DataFrame(rows)

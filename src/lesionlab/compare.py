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
from lesionlab.calibration import apply_temperature, calibrate
from lesionlab.metrics import HEADLINE, compute_metrics, headline_metrics
from lesionlab.tasks import TASK_HEADLINE, TASK_METRICS
from lesionlab.uncertainty import selective_summary, uncertain_flags
from lesionlab.paths import ensemble_dir, variant_dir
from lesionlab.train import metrics_file
from lesionlab.taxonomy import probability_columns

METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_auc": "macro AUC (OvR)",
    "malignant_auc": "malignant AUC",
    "melanoma_sensitivity": "melanoma sensitivity",
    "macro_f1": "macro F1",
    "sensitivity_at_90_specificity": "sensitivity at 90 % specificity",
    "sensitivity_at_95_specificity": "sensitivity at 95 % specificity",
    "triage_balanced_accuracy": "triage balanced accuracy",
    "triage_macro_auc": "triage macro AUC",
    "high_risk_sensitivity": "high-risk sensitivity",
    "under_triage_rate": "under-triage (high → low)",
}
#: metrics where lower is better (bold marks the minimum)
LOWER_IS_BETTER = {"under_triage_rate", "over_triage_rate", "ece", "brier"}


TTA_SUFFIX = "+tta"


def predictions_file(root: Path, dataset: str, name: str) -> Path:
    """``<variant>/predictions.csv``, or ``predictions_tta.csv`` for the row ``<variant>+tta``."""
    if name.endswith(TTA_SUFFIX):
        return variant_dir(root, dataset, name[:-len(TTA_SUFFIX)]) / "predictions_tta.csv"
    return variant_dir(root, dataset, name) / "predictions.csv"


def row_predictions_file(root: Path, dataset: str, name: str, params) -> Path:
    """The predictions file of any leaderboard row: an ensemble's, a model's or a model's ``+tta`` scoring."""
    if name in params.ensembles:
        return ensemble_dir(root, dataset, name) / "predictions.csv"
    return predictions_file(root, dataset, name)


def row_report(name: str, params) -> str:
    """The row's page, relative to reports/<ds>/index.html."""
    if name in params.ensembles:
        return f"ensembles/{name}.html"
    return f"variants/{name.removesuffix(TTA_SUFFIX)}.html"


def leaderboard_rows(params) -> list[str]:
    """Every row of the comparison: CNN ladder, probes, fine-tunes (each followed by its ``+tta`` twin if any),
    metadata models, then ensembles."""
    return [*params.scored_rows(), *params.ensembles]


def load_predictions(root: Path, dataset: str, variants: list[str], classes, params=None) -> dict[str, pd.DataFrame]:
    """Each row's predictions, checked to share one test set (same images, same labels)."""
    preds = {v: read_predictions(predictions_file(root, dataset, v) if params is None
                                 else row_predictions_file(root, dataset, v, params), classes) for v in variants}
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
    board = task_leaderboard(preds, classes, lesion_of, "diagnosis", n_resamples, ci, seed)
    eces = {name: compute_metrics(*split_arrays(pred, classes, lesion_of)[:2], classes)["ece"]
            for name, pred in preds.items()}
    board["ece"] = board["variant"].map(eces)
    for col in sorted({k for v in (extra or {}).values() for k in v}):
        board[col] = board["variant"].map(lambda n: (extra or {}).get(n, {}).get(col))
    return board


def task_headline(task: str) -> tuple[str, ...]:
    return HEADLINE if task == "diagnosis" else TASK_HEADLINE[task]


def task_statistic(task: str, classes):
    """metrics(y, proba) of a task view: the diagnosis headline or the binary / triage view's metrics."""
    if task == "diagnosis":
        return lambda y, p: headline_metrics(y, p, classes)
    return lambda y, p: TASK_METRICS[task](y, p, classes)


def task_leaderboard(preds: dict[str, pd.DataFrame], classes, lesion_of: dict[str, str], task: str,
                     n_resamples: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per variant for one task view (tasks.TASKS): test metrics + lesion-bootstrap CI columns."""
    names, statistic = task_headline(task), task_statistic(task, classes)
    rows = []
    for name, pred in preds.items():
        y, p, groups = split_arrays(pred, classes, lesion_of)
        point = statistic(y, p)
        cis = bootstrap_ci(lambda r: statistic(y[r], p[r]), groups, names, n_resamples=n_resamples, ci=ci, seed=seed)
        row = {"variant": name, "n_test_images": len(y), "n_test_lesions": len(set(groups))}
        for m in names:
            row[m], (row[f"{m}_lo"], row[f"{m}_hi"]) = point[m], cis[m]
        rows.append(row)
    return pd.DataFrame(rows)


def paired_differences(preds: dict[str, pd.DataFrame], classes, lesion_of: dict[str, str], pairs: list[list[str]],
                       metrics: tuple[str, ...] = ("balanced_accuracy", "macro_auc", "malignant_auc"),
                       n_resamples: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """For each pair (a, b): a - b of each metric with a paired lesion-bootstrap CI (both scored on the same
    resampled lesions), and whether the CI excludes 0."""
    rows = []
    for a, b in pairs:
        ya, pa, groups = split_arrays(preds[a], classes, lesion_of)
        yb, pb, _ = split_arrays(preds[b], classes, lesion_of)

        def diff(r):
            ma, mb = headline_metrics(ya[r], pa[r], classes), headline_metrics(yb[r], pb[r], classes)
            return {m: ma[m] - mb[m] for m in metrics}

        point = diff(np.arange(len(ya)))
        cis = bootstrap_ci(diff, groups, metrics, n_resamples=n_resamples, ci=ci, seed=seed)
        for m in metrics:
            lo, hi = cis[m]
            rows.append({"a": a, "b": b, "metric": m, "difference": point[m], "lo": lo, "hi": hi,
                         "ci_excludes_zero": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(rows)


def metadata_pairs(params) -> list[list[str]]:
    """[meta-ensemble, image-only twin]: ensembles whose members differ exactly by metadata (tabular) models,
    with the same method."""
    out = []
    for a, ea in params.ensembles.items():
        for b, eb in params.ensembles.items():
            extra, missing = set(ea.members) - set(eb.members), set(eb.members) - set(ea.members)
            if (a != b and extra and not missing and extra <= set(params.tabulars)
                    and params.ensemble_config(a).method == params.ensemble_config(b).method):
                out.append([a, b])
    return out


def calibration_table(preds: dict[str, pd.DataFrame], classes, lesion_of: dict[str, str], uncertainty) -> pd.DataFrame:
    """Per row: temperature fitted on val; test ECE / Brier / NLL before and after; abstention on test with the
    ``uncertainty:`` thresholds (on calibrated probabilities when ``uncertainty.calibrated``)."""
    rows = []
    for name, pred in preds.items():
        yv, pv, _ = split_arrays(pred, classes, lesion_of, split="val")
        yt, pt, _ = split_arrays(pred, classes, lesion_of)
        cal = calibrate(yv, pv, yt, pt)
        scored = apply_temperature(pt, cal.temperature) if uncertainty.calibrated else pt
        flags = uncertain_flags(scored, uncertainty.max_prob_below, uncertainty.entropy_above)
        rows.append({"variant": name, **cal.as_row(), **selective_summary(yt, scored, flags)})
    return pd.DataFrame(rows)


def format_ci(value: float, lo: float, hi: float, digits: int = 3, bold: bool = False) -> str:
    """'value [lo, hi]', the one way the reports and the README write an estimate with its CI."""
    shown = f"<b>{value:.{digits}f}</b>" if bold else f"{value:.{digits}f}"
    return f"{shown} [{lo:.{digits}f}, {hi:.{digits}f}]"


def with_ci_text(board: pd.DataFrame, digits: int = 3, metrics: tuple[str, ...] = HEADLINE) -> pd.DataFrame:
    """Display table: 'value [lo, hi]' per metric, best value of each column in bold (HTML)."""
    shown = pd.DataFrame({"variant": board["variant"]})
    for m in metrics:
        best = board[m].min() if m in LOWER_IS_BETTER else board[m].max()
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


def metadata_verdict(paired: pd.DataFrame, meta: str, twin: str) -> str:
    """One sentence: does the meta-ensemble beat its image-only twin, metric by metric, with the paired CI?"""
    part = paired[(paired["a"] == meta) & (paired["b"] == twin)]
    pieces, gains, losses = [], [], []
    for _, r in part.iterrows():
        label = METRIC_LABELS.get(r["metric"], r["metric"])
        pieces.append(f"{label} {r['difference']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]")
        if r["ci_excludes_zero"]:
            (gains if r["difference"] > 0 else losses).append(label)
    if gains and not losses:
        verdict = f"metadata adds measurable value ({', '.join(gains)}: the paired CI excludes 0)"
    elif losses and not gains:
        verdict = f"metadata measurably <b>hurts</b> ({', '.join(losses)})"
    elif gains and losses:
        verdict = f"mixed: better {', '.join(gains)}, worse {', '.join(losses)}"
    else:
        verdict = "metadata adds <b>no measurable value</b> here: every paired CI includes 0"
    return (f"<b>{meta}</b> (image + metadata) minus its image-only twin <b>{twin}</b>: " + "; ".join(pieces)
            + f". Verdict: {verdict}.")

"""The ``compare`` stage: every variant on the same test split, with lesion-level bootstrap CIs.

Reads predictions files only (contract 3), so it never imports a framework.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.data.taxonomy import TRIAGE_LEVELS, malignant_classes, probability_columns
from lesionlab.evaluation.bootstrap import (
    mcnemar,
    percentile_ci,
    resample_weights,
    weighted_auc,
    weighted_balanced_accuracy,
    weighted_confusion,
    weighted_mean,
    weighted_sensitivity_at_specificity,
)
from lesionlab.evaluation.calibration import apply_temperature, calibrate
from lesionlab.evaluation.metrics import (
    HEADLINE,
    METRIC_LABELS,
    class_indices,
    compute_metrics,
    headline_metrics,
    malignant_score,
)
from lesionlab.evaluation.tasks import SPECIFICITIES, TASK_HEADLINE, TASK_METRICS, triage_view
from lesionlab.evaluation.uncertainty import selective_summary, uncertain_flags
from lesionlab.models import families
from lesionlab.models.record import RECORD_FILE, read_record
from lesionlab.paths import ensemble_dir, metrics_file, row_dir, variant_dir
from lesionlab.pipeline.contracts import ContractError, read_predictions
from lesionlab.reporting.report import Html, esc

#: metrics where lower is better (bold marks the minimum)
LOWER_IS_BETTER = {"under_triage_rate", "over_triage_rate", "ece", "brier"}


TTA_SUFFIX = "+tta"


def predictions_file(root: Path, dataset: str, name: str) -> Path:
    """``<variant>/predictions.csv``, or ``predictions_tta.csv`` for the row ``<variant>+tta``."""
    if name.endswith(TTA_SUFFIX):
        return variant_dir(root, dataset, name[: -len(TTA_SUFFIX)]) / "predictions_tta.csv"
    return variant_dir(root, dataset, name) / "predictions.csv"


def row_predictions_file(root: Path, dataset: str, name: str, params) -> Path:
    """The predictions file of any leaderboard row: an ensemble's, a model's or a model's ``+tta`` scoring."""
    if name in params.ensembles:
        return ensemble_dir(root, dataset, name) / "predictions.csv"
    return predictions_file(root, dataset, name)


def row_report(name: str, params) -> str:
    """The row's page, relative to reports/<ds>/index.html."""
    base = name.removesuffix(TTA_SUFFIX)
    return f"{families.of_row(params, base).outputs}/{base}.html"


def leaderboard_rows(params, skipped: dict[str, str] | None = None) -> list[str]:
    """Every row of the comparison: CNN ladder, probes, fine-tunes (each followed by its ``+tta`` twin if any),
    metadata models, then ensembles; less the ``skipped`` ones (see :func:`skipped_rows`)."""
    return [r for r in [*params.scored_rows(), *params.ensembles] if r.removesuffix(TTA_SUFFIX) not in (skipped or {})]


def skipped_rows(root: Path, dataset: str, params) -> dict[str, str]:
    """Rows whose stage ran but could not train on this dataset (a metadata model without metadata, an ensemble
    with such a member): name -> the reason its training record (``training.json``) gives. They have no
    predictions."""
    out = {}
    for family in families.FAMILIES.values():
        for name in getattr(params, family.section):
            folder = row_dir(root, dataset, family.outputs, name)
            reason = read_record(folder).skipped if (folder / RECORD_FILE).is_file() else None
            if reason:
                out[name] = reason
    return out


def task_view_reasons(classes, summary: dict) -> dict[str, str | None]:
    """Per task view: why it cannot be computed on this dataset (None: it can). The diagnosis view always can."""
    from lesionlab.data.taxonomy import binary_view_reason, triage_view_reason

    return {
        "diagnosis": None,
        "binary": binary_view_reason(classes, summary.get("malignant") is not None),
        "triage": triage_view_reason(classes),
    }


def load_predictions(root: Path, dataset: str, variants: list[str], classes, params=None) -> dict[str, pd.DataFrame]:
    """Each row's predictions, checked to share one test set (same images, same labels)."""
    preds = {
        v: read_predictions(
            predictions_file(root, dataset, v) if params is None else row_predictions_file(root, dataset, v, params),
            classes,
        )
        for v in variants
    }
    reference = None
    for name, df in preds.items():
        test = df[df["split"] == "test"].sort_values("image_id")[["image_id", "label"]].reset_index(drop=True)
        if reference is None:
            reference, ref_name = test, name
        elif not test.equals(reference):
            raise ContractError(
                f"variants {ref_name!r} and {name!r} were scored on different test sets; "
                "re-run `dvc repro` so that every variant uses the current splits.csv"
            )
    return preds


# --- seed replicates --------------------------------------------------------------------------------------------
# A neural row is trained once per seed of base.training_seeds (params.replicates). Its leaderboard value is the
# MEAN OF THE RUNS' METRICS, not the metric of the runs' averaged probabilities: the ablation asks what one trained
# model of that recipe scores, and averaging probabilities would score a seed ensemble, better than any run and
# unlike what the recipe delivers. The CI resamples both levels: per bootstrap draw, the runs are drawn with
# replacement (runs of one row: independent training runs) and the lesions too (the same lesion draws for every
# row, so differences stay paired over lesions). Tables that need one model's decisions (subgroup slices,
# calibration, McNemar's counts, Grad-CAM, ensembles, external sets, `lesionlab predict`) use the first run.


def load_replicates(
    root: Path, dataset: str, rows: list[str], classes, params, preds: dict[str, pd.DataFrame]
) -> dict[str, list[pd.DataFrame]]:
    """Row -> the predictions of each of its training runs, first run first (``preds[row]``); only rows with more
    than one run. A run that has not been trained is an error naming its dvc.yaml stage."""
    out = {}
    for row in rows:
        runs = params.replicates(row)
        if len(runs) < 2:
            continue
        frames, first = [preds[row]], test_ids({row: preds[row]})
        for run in runs[1:]:
            path = predictions_file(root, dataset, run)
            if not path.is_file():
                raise ContractError(
                    f"{path}: the seed replicate {run!r} of {row!r} has not been trained; run `dvc repro` "
                    "(base.replicate_seeds lists its seed)"
                )
            frame = read_predictions(path, classes)
            test = frame[frame["split"] == "test"]["image_id"].sort_values().reset_index(drop=True)
            if not test.equals(first):
                raise ContractError(f"{run!r} was scored on another test set than {row!r}; re-run `dvc repro`")
            frames.append(frame)
        out[row] = frames
    return out


def run_weights(name: str, n_runs: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_runs) multiplicities of ``name``'s runs drawn with replacement, one draw per lesion resample;
    its own stream per row (runs of different rows are independent training runs)."""
    import zlib

    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), n_runs])
    draws = rng.integers(0, n_runs, (n_resamples, n_runs))
    return np.stack([np.bincount(d, minlength=n_runs) for d in draws]).astype(float)


def over_runs(per_run: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Per resample b: the mean of ``per_run[r][b]`` over the runs drawn (``weights[b, r]`` times each); NaN draws
    are left out, NaN when every drawn run's is."""
    d = np.stack(per_run, axis=1)
    ok = np.isfinite(d)
    w = weights * ok
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (np.where(ok, d, 0.0) * w).sum(axis=1) / total, np.nan)


def draws_over_runs(name: str, per_run: list[np.ndarray], n_resamples: int, seed: int) -> np.ndarray:
    """A row's per-resample draws of one metric: its run's, or the mean over its runs drawn per resample
    (:func:`run_weights`, :func:`over_runs`)."""
    if len(per_run) == 1:
        return per_run[0]
    return over_runs(per_run, run_weights(name, len(per_run), n_resamples, seed))


def runs_mean(values: list[float]) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else np.nan


def seed_spread(
    preds: dict[str, pd.DataFrame],
    replicates: dict[str, list[pd.DataFrame]],
    classes,
    lesion_of: dict[str, str],
    params,
    metrics: tuple[str, ...] = ("balanced_accuracy", "macro_auc", "malignant_auc"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, spread): one row per training run (row, run, seed, test metrics) and, per row with replicates, the
    mean, sd (n - 1), min and max over its runs of each metric."""
    seeds = params.base.training_seeds
    runs, spread = [], []
    for name, frames in replicates.items():
        values = {m: [] for m in metrics}
        for i, (run, frame) in enumerate(zip(params.replicates(name), frames)):
            y, p, _ = split_arrays(frame, classes, lesion_of)
            point = headline_metrics(y, p, classes)
            runs.append({"variant": name, "run": run, "seed": seeds[i], **{m: point[m] for m in metrics}})
            for m in metrics:
                values[m].append(point[m])
        row = {"variant": name, "n_runs": len(frames)}
        for m in metrics:
            v = np.asarray(values[m], dtype=float)
            v = v[np.isfinite(v)]  # a metric undefined in a run (no malignant class) is left out
            row[f"{m}_mean"] = float(v.mean()) if len(v) else np.nan
            row[f"{m}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else np.nan
            row[f"{m}_min"], row[f"{m}_max"] = (float(v.min()), float(v.max())) if len(v) else (np.nan, np.nan)
        spread.append(row)
    return pd.DataFrame(runs), pd.DataFrame(spread)


def split_arrays(pred: pd.DataFrame, classes, lesion_of: dict[str, str], split: str = "test"):
    """(y_true, proba, lesion groups) of one split, rows sorted by image_id."""
    part = pred[pred["split"] == split].sort_values("image_id")
    index = {c: i for i, c in enumerate(classes)}
    return (
        part["label"].map(index).to_numpy(),
        part[probability_columns(classes)].to_numpy(dtype=float),
        part["image_id"].map(lesion_of).to_numpy(),
    )


def leaderboard(
    preds: dict[str, pd.DataFrame],
    classes,
    lesion_of: dict[str, str],
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    extra: dict[str, dict] | None = None,
    weights: np.ndarray | None = None,
    replicates: dict[str, list[pd.DataFrame]] | None = None,
    cache: dict | None = None,
) -> pd.DataFrame:
    """One row per variant: headline test metrics with ``_lo``/``_hi`` bootstrap CI columns.

    Every variant is scored on the same lesion resamples (``weights``, else :func:`test_weights`), so intervals
    are comparable. A row with seed ``replicates`` (:func:`load_replicates`) shows the mean over its runs, with a
    CI that resamples runs and lesions, and its runs' spread (``n_runs``, ``balanced_accuracy_sd``).
    """
    board = task_leaderboard(
        preds,
        classes,
        lesion_of,
        "diagnosis",
        n_resamples,
        ci,
        seed,
        weights=weights,
        replicates=replicates,
        cache=cache,
    )
    eces = {
        name: runs_mean(
            [
                compute_metrics(*split_arrays(frame, classes, lesion_of)[:2], classes)["ece"]
                for frame in (replicates or {}).get(name, [pred])
            ]
        )
        for name, pred in preds.items()
    }
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


def task_leaderboard(
    preds: dict[str, pd.DataFrame],
    classes,
    lesion_of: dict[str, str],
    task: str,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    weights: np.ndarray | None = None,
    replicates: dict[str, list[pd.DataFrame]] | None = None,
    cache: dict | None = None,
) -> pd.DataFrame:
    """One row per variant for one task view (tasks.TASKS): test metrics + bootstrap CI columns (lesions; and runs,
    for a row with seed ``replicates``: then the value is the mean over its runs, see :func:`load_replicates`).

    The CIs come from the resample matrix (:func:`resampled_task_metrics`): the same draws, and the same numbers,
    as evaluating the task's metrics on each explicitly resampled test set, at a fraction of the cost."""
    names = task_headline(task)
    weights = test_weights(preds, lesion_of, n_resamples, seed) if weights is None else weights
    rows = []
    for name, pred in preds.items():
        y, _, groups = split_arrays(pred, classes, lesion_of)
        point, draws, n_runs = row_draws(name, pred, task, classes, lesion_of, weights, seed, replicates, cache)
        row = {"variant": name, "n_test_images": len(y), "n_test_lesions": len(set(groups)), "n_runs": n_runs}
        for m in names:
            row[m], (row[f"{m}_lo"], row[f"{m}_hi"]) = point[m], percentile_ci(draws[m], ci)
        rows.append(row)
    return pd.DataFrame(rows)


def row_draws(
    name: str,
    pred: pd.DataFrame,
    task: str,
    classes,
    lesion_of: dict[str, str],
    weights: np.ndarray,
    seed: int,
    replicates: dict[str, list[pd.DataFrame]] | None = None,
    cache: dict | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray], int]:
    """(point estimates, per-resample draws, number of runs) of a row's task metrics: one run's, or the mean over
    the row's seed replicates with draws that resample runs as well as lesions (:func:`over_runs`).

    ``cache``: a dict shared by the tables of one comparison (the same ``preds``, ``weights``, ``seed`` and
    ``replicates``), so that a row's draws are computed once per task however many tables use them."""
    if cache is not None:
        key = (name, task)
        if key not in cache:
            cache[key] = row_draws(name, pred, task, classes, lesion_of, weights, seed, replicates)
        return cache[key]
    statistic = task_statistic(task, classes)
    frames = (replicates or {}).get(name, [pred])
    points, per_run = [], []
    for frame in frames:
        y, p, _ = split_arrays(frame, classes, lesion_of)
        points.append(statistic(y, p))
        per_run.append(resampled_task_metrics(task, y, p, classes, weights))
    if len(frames) == 1:
        return points[0], per_run[0], 1
    chosen = run_weights(name, len(frames), len(weights), seed)
    point = {m: runs_mean([pt[m] for pt in points]) for m in points[0]}
    draws = {m: over_runs([d[m] for d in per_run], chosen) for m in per_run[0]}
    return point, draws, len(frames)


#: the metrics with per-resample draws (paired differences, subgroups)
RESAMPLED = ("balanced_accuracy", "macro_auc", "malignant_auc")


def test_ids(preds: dict[str, pd.DataFrame]) -> pd.Series:
    """The test split's image ids in image_id order: the column order of :func:`test_weights` and the row order
    of :func:`split_arrays` (``load_predictions`` checked that every row shares them)."""
    first = next(iter(preds.values()))
    return first[first["split"] == "test"]["image_id"].sort_values().reset_index(drop=True)


def test_weights(preds: dict[str, pd.DataFrame], lesion_of: dict[str, str], n_resamples: int, seed: int) -> np.ndarray:
    """The lesion resamples of the test split as (resamples x test images) multiplicities, images in image_id
    order (as :func:`split_arrays`); every row of the comparison is scored on these same draws. Build it once
    per comparison and pass it to each table (``weights=``)."""
    return resample_weights(test_ids(preds).map(lesion_of).to_numpy(), n_resamples, seed)


def _mean_over_present(values: np.ndarray, axis: int) -> np.ndarray:
    """nanmean along ``axis``; NaN (without a warning) where every value is NaN, as the metrics module does."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without a class: that class is left out
        return np.nanmean(values, axis=axis)


def _recall(cm: np.ndarray) -> np.ndarray:
    """(resamples, k) recall per true class from (resamples, k, k) confusion matrices; NaN for absent classes."""
    support = cm.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diagonal(cm, axis1=1, axis2=2) / support, np.nan)


def resampled_task_metrics(
    task: str, y: np.ndarray, proba: np.ndarray, classes, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Every metric of a task view's leaderboard (:func:`task_headline`) for every resample (rows of ``weights``)
    at once; each equals metrics.headline_metrics / tasks.TASK_METRICS evaluated on the resampled rows."""
    classes, y = list(classes), np.asarray(y)
    malignant = np.isin(y, class_indices(classes, malignant_classes(classes)))
    score = malignant_score(proba, classes)
    if task == "binary":
        out = {"malignant_auc": weighted_auc(weights, malignant, score)}
        for spec in SPECIFICITIES:
            out[f"sensitivity_at_{round(spec * 100)}_specificity"] = weighted_sensitivity_at_specificity(
                weights, malignant, score, spec
            )
        return out
    if task == "triage":
        level, p = triage_view(y, proba, classes)
        cm = weighted_confusion(weights, level, p.argmax(axis=1), len(TRIAGE_LEVELS))
        recall = _recall(cm)
        high, low = TRIAGE_LEVELS.index("high"), TRIAGE_LEVELS.index("low")
        with np.errstate(invalid="ignore", divide="ignore"):
            under = cm[:, high, low] / cm[:, high].sum(axis=1)
        aucs = np.stack([weighted_auc(weights, level == j, p[:, j]) for j in range(len(TRIAGE_LEVELS))])
        return {
            "triage_balanced_accuracy": _mean_over_present(recall, 1),
            "triage_macro_auc": _mean_over_present(aucs, 0),
            "high_risk_sensitivity": recall[:, high],
            "under_triage_rate": under,
        }
    k, predicted = len(classes), proba.argmax(axis=1)
    cm = weighted_confusion(weights, y, predicted, k)
    recall = _recall(cm)
    tp, support, called = np.diagonal(cm, axis1=1, axis2=2), cm.sum(axis=2), cm.sum(axis=1)
    denom = support + called
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        macro_f1 = np.where(present.any(axis=1), (f1 * present).sum(axis=1) / present.sum(axis=1), np.nan)
        accuracy = tp.sum(axis=1) / support.sum(axis=1)
    per_class = np.stack([weighted_auc(weights, y == j, proba[:, j]) for j in range(k)])
    return {
        "accuracy": accuracy,
        "balanced_accuracy": _mean_over_present(recall, 1),
        "macro_auc": _mean_over_present(per_class, 0),
        "malignant_auc": weighted_auc(weights, malignant, score),
        "melanoma_sensitivity": recall[:, classes.index("mel")] if "mel" in classes else np.full(len(weights), np.nan),
        "macro_f1": macro_f1,
    }


def paired_differences(
    preds: dict[str, pd.DataFrame],
    classes,
    lesion_of: dict[str, str],
    pairs: list[list[str]],
    metrics: tuple[str, ...] = RESAMPLED,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    comparison: list[str] | None = None,
    weights: np.ndarray | None = None,
    replicates: dict[str, list[pd.DataFrame]] | None = None,
    cache: dict | None = None,
) -> pd.DataFrame:
    """For each pair (a, b): a - b of each metric with a paired bootstrap CI (both scored on the same resampled
    lesions; a row with seed ``replicates``: the mean over its runs, its runs resampled too, independently of the
    other row's), whether the CI excludes 0, and McNemar's exact test on the first runs' right/wrong decisions.
    ``comparison`` labels each pair (e.g. 'vs baseline'); ``cache``: as :func:`row_draws`."""
    weights = test_weights(preds, lesion_of, n_resamples, seed) if weights is None else weights
    scores: dict[str, tuple] = {}

    def scored(name):
        if name not in scores:
            y, p, _ = split_arrays(preds[name], classes, lesion_of)
            point, draws, _ = row_draws(
                name, preds[name], "diagnosis", classes, lesion_of, weights, seed, replicates, cache
            )
            scores[name] = (
                {m: np.array([point[m]]) for m in RESAMPLED},
                {m: draws[m] for m in RESAMPLED},
                p.argmax(axis=1) == y,
            )
        return scores[name]

    rows = []
    for i, (a, b) in enumerate(pairs):
        (pa, da, ca), (pb, db, cb) = scored(a), scored(b)
        test = mcnemar(ca, cb)
        for m in metrics:
            lo, hi = percentile_ci(da[m] - db[m], ci)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "comparison": comparison[i] if comparison else "listed",
                    "metric": m,
                    "difference": float(pa[m][0] - pb[m][0]),
                    "lo": lo,
                    "hi": hi,
                    "ci_excludes_zero": bool(lo > 0 or hi < 0),
                    **test,
                }
            )
    return pd.DataFrame(rows)


def reference_pairs(board: pd.DataFrame, baseline: str, metric: str = "balanced_accuracy") -> tuple[list, list, str]:
    """(pairs, labels, best): every row against the baseline and against the best row on ``metric``."""
    best = str(board.loc[board[metric].idxmax(), "variant"])
    pairs, labels = [], []
    for ref, label in ((baseline, "vs baseline"), (best, "vs best")):
        for v in board["variant"]:
            if v != ref:
                pairs.append([v, ref])
                labels.append(label)
    return pairs, labels, best


def difference_marks(paired: pd.DataFrame, comparison: str, metric: str = "balanced_accuracy") -> dict[str, str]:
    """Display text per row 'a': '+0.012 [-0.010, +0.035]', with ▲ / ▼ when the paired CI excludes 0."""
    part = paired[(paired["comparison"] == comparison) & (paired["metric"] == metric)]
    return {r["a"]: signed_ci(r["difference"], r["lo"], r["hi"], r["ci_excludes_zero"]) for _, r in part.iterrows()}


# --- subgroups ---------------------------------------------------------------------------------------------------


def age_bands(age: pd.Series, edges: list[float]) -> pd.Series:
    """'<30', '30-44', ..., '≥75' from the band edges; a missing age is 'unknown'."""
    labels = [f"<{edges[0]:g}"] + [f"{a:g}-{b - 1:g}" for a, b in zip(edges, edges[1:])] + [f"≥{edges[-1]:g}"]
    band = pd.cut(pd.to_numeric(age, errors="coerce"), [-np.inf, *edges, np.inf], right=False, labels=labels)
    return band.astype(object).where(band.notna(), "unknown")


_ATTRIBUTE_NAMES = {"sex": "sex", "age": "ages", "site": "body sites", "skin tone": "skin-tone estimates"}


def slice_attributes(
    table: pd.DataFrame, ids: pd.Series, age_edges: list[float], skin_tone: dict[str, str] | None = None
) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """The subgroup attributes of the test images (sex, age band, body site, and the ITA skin-tone category of
    ``skin_tone``: image_id -> category, :mod:`lesionlab.data.skin`), and for each attribute the dataset does not
    record on any test image, the reason it is skipped."""
    meta = table.set_index("image_id").loc[ids]
    values = {
        "sex": meta["sex"].fillna("unknown").astype(str),
        "age": age_bands(meta["age"], age_edges),
        "site": meta["site"].fillna("unknown").astype(str),
    }
    if skin_tone is not None:
        values["skin tone"] = pd.Series([skin_tone.get(i, "unknown") for i in ids], index=meta.index)
    kept, skipped = {}, {}
    for name, v in values.items():
        if v.eq("unknown").all():
            skipped[name] = f"no {_ATTRIBUTE_NAMES[name]} in this dataset (every test image: unknown)"
        else:
            kept[name] = v
    return kept, skipped


def subgroup_slices(
    preds: dict[str, pd.DataFrame],
    classes,
    lesion_of: dict[str, str],
    table: pd.DataFrame,
    age_edges: list[float],
    min_lesions: int = 30,
    min_malignant: int = 10,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    weights: np.ndarray | None = None,
    skin_tone: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Per row and subgroup (sex, age band, body site, skin tone: those the dataset records, :func:`slice_attributes`):
    balanced accuracy, malignant AUC and malignant sensitivity (a malignant lesion's arg-max is a malignant
    class), with lesion-bootstrap CIs and counts. Slices with fewer than ``min_lesions`` lesions (or
    ``min_malignant`` malignant images, for the two malignant metrics) are marked ``too_small``, not dropped."""
    weights = test_weights(preds, lesion_of, n_resamples, seed) if weights is None else weights
    ids = test_ids(preds)
    attributes, _ = slice_attributes(table, ids, age_edges, skin_tone)
    groups = ids.map(lesion_of).to_numpy()
    classes = list(classes)
    malignant_idx = class_indices(classes, malignant_classes(classes))
    rows = []
    for name, pred in preds.items():
        y, p, _ = split_arrays(pred, classes, lesion_of)
        predicted = p.argmax(axis=1)
        malignant, flagged = np.isin(y, malignant_idx), np.isin(predicted, malignant_idx)
        score = malignant_score(p, classes)
        for attribute, values in attributes.items():
            for value in _slice_order(attribute, values, age_edges):
                cols = np.flatnonzero(values.to_numpy() == value)
                w, one = weights[:, cols], np.ones((1, len(cols)))
                pos = cols[malignant[cols]]
                row = {
                    "variant": name,
                    "attribute": attribute,
                    "slice": f"{attribute}: {value}",
                    "n_images": len(cols),
                    "n_lesions": len(set(groups[cols])),
                    "n_malignant": len(pos),
                }
                for metric, fn in (
                    (
                        "balanced_accuracy",
                        lambda ww: weighted_balanced_accuracy(ww, y[cols], predicted[cols], len(classes)),
                    ),
                    ("malignant_auc", lambda ww: weighted_auc(ww, malignant[cols], score[cols])),
                    (
                        "malignant_sensitivity",
                        lambda ww: weighted_mean(ww[:, malignant[cols]], flagged[pos].astype(float)),
                    ),
                ):
                    row[metric] = float(fn(one)[0])
                    row[f"{metric}_lo"], row[f"{metric}_hi"] = percentile_ci(fn(w), ci)
                row["too_small"] = row["n_lesions"] < min_lesions
                row["too_few_malignant"] = row["n_malignant"] < min_malignant
                rows.append(row)
    return pd.DataFrame(rows, columns=SLICE_COLUMNS)


SLICE_COLUMNS = [
    "variant",
    "attribute",
    "slice",
    "n_images",
    "n_lesions",
    "n_malignant",
    *[f"{m}{s}" for m in ("balanced_accuracy", "malignant_auc", "malignant_sensitivity") for s in ("", "_lo", "_hi")],
    "too_small",
    "too_few_malignant",
]


def _slice_order(attribute: str, values: pd.Series, age_edges: list[float]) -> list[str]:
    """Age bands young to old; other attributes by size (largest first); 'unknown' last."""
    present = set(values)
    if attribute == "age":
        order = list(age_bands(pd.Series([-1.0, *age_edges]), age_edges)) + ["unknown"]
        return [v for v in order if v in present]
    if attribute == "skin tone":
        from lesionlab.data.skin import category_order

        return [v for v in category_order() if v in present]
    counts = values.value_counts()
    return sorted(present, key=lambda v: (v == "unknown", -counts[v], v))


def worst_slice(slices: pd.DataFrame, variant: str, metric: str = "balanced_accuracy") -> str:
    """One sentence: the subgroup served worst by ``variant`` among slices large enough to say anything."""
    part = slices[(slices["variant"] == variant) & ~slices["too_small"] & slices[metric].notna()]
    if part.empty:
        return Html(f"No subgroup of {esc(variant)} has enough lesions to compare.")
    worst = part.loc[part[metric].idxmin()]
    same = part[part["attribute"] == worst["attribute"]]
    best = same.loc[same[metric].idxmax()]
    label = METRIC_LABELS.get(metric, metric)
    return Html(
        f"<b>{esc(variant)}</b> serves <b>{esc(worst['slice'])}</b> worst on {label}: "
        f"{format_ci(worst[metric], worst[f'{metric}_lo'], worst[f'{metric}_hi'])} "
        f"({worst['n_images']} images, {worst['n_lesions']} lesions), against "
        f"{format_ci(best[metric], best[f'{metric}_lo'], best[f'{metric}_hi'])} for {esc(best['slice'])}."
    )


# --- explanations -------------------------------------------------------------------------------------------------


def explanation_summary(
    explained: dict[str, pd.DataFrame],
    preds: dict[str, pd.DataFrame],
    lesion_of: dict[str, str],
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per explained variant: mean share of Grad-CAM energy inside the lesion mask and pointing-game hit rate, with
    lesion-bootstrap CIs (the test images with a mask), and chance (the mean mask area)."""
    weights = test_weights(preds, lesion_of, n_resamples, seed) if weights is None else weights
    ids = test_ids(preds)
    rows = []
    for name, per_image in explained.items():
        t = per_image.set_index("image_id").reindex(ids)
        if t["label"].isna().any():
            raise ContractError(
                f"explanations of {name!r} do not cover the current test split; re-run `dvc repro explain`"
            )
        row = {"variant": name, "n_with_mask": int(t["has_mask"].astype(bool).sum())}
        for col, metric in (("energy_in_mask", "mask_energy"), ("pointing_hit", "pointing_hit_rate")):
            values = t[col].to_numpy(dtype=float)
            row[metric] = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
            row[f"{metric}_lo"], row[f"{metric}_hi"] = percentile_ci(weighted_mean(weights, values), ci)
        row["chance"] = float(np.nanmean(t["mask_area"].to_numpy(dtype=float))) if row["n_with_mask"] else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=EXPLANATION_COLUMNS)


EXPLANATION_COLUMNS = [
    "variant",
    "n_with_mask",
    "mask_energy",
    "mask_energy_lo",
    "mask_energy_hi",
    "pointing_hit_rate",
    "pointing_hit_rate_lo",
    "pointing_hit_rate_hi",
    "chance",
]


def has_mask_scores(explained: pd.DataFrame) -> bool:
    """Whether any explained variant could be scored against lesion masks (the test split has masked images)."""
    return bool(len(explained)) and bool(explained["mask_energy"].notna().any())


def _change(key: str, new, old) -> str:
    """``key=value``; for lists (an ensemble's members, a CNN's filters) what was added and removed."""
    if isinstance(new, list) and isinstance(old, list) and all(isinstance(v, str) for v in new + old):
        added = [f"+{v}" for v in new if v not in old]
        removed = [f"−{v}" for v in old if v not in new]
        return f"{key} {' '.join(added + removed) or '(order)'}"
    return f"{key}={new}"


def ladder_steps(params) -> list[tuple[str, str, str]]:
    """(rung, parent, what changed) for every row that names a ``parent:`` in params.yaml (any family: the CNN
    ladder, probe -> partial -> full fine-tune, metadata), in params.yaml order, then each ``<row>+tta`` against
    its row (test-time augmentation as a step of its own)."""
    from lesionlab.params_base import ROW_ONLY

    family_of = functools.partial(families.of_row, params)
    steps = []
    for family in families.FAMILIES.values():
        for rung in getattr(params, family.section):
            parent = params.parent(rung)
            if parent is None:
                continue
            a, b = family.config(params, rung).model_dump(), family_of(parent).config(params, parent).model_dump()
            changed = [
                _change(k, a.get(k), b.get(k))
                for k in sorted(set(a) | set(b))
                if k not in ROW_ONLY and a.get(k) != b.get(k)
            ]
            if family_of(parent) is not family:
                changed.insert(0, f"{family_of(parent).label} → {family.label}")
            steps.append((rung, parent, ", ".join(changed) or "same config"))
    tta = [r for r in params.scored_rows() if r.endswith(TTA_SUFFIX)]
    return steps + [(r, r.removesuffix(TTA_SUFFIX), "test-time augmentation") for r in tta]


def step_effects(paired: pd.DataFrame, params, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """The ablation's step effects: each rung minus its parent (:func:`ladder_steps`) on ``metric``, with the
    paired CI over lesions and seeds (rows of ``paired`` whose comparison is ``"step"``); ``robust`` when the CI
    excludes 0."""
    part = paired[(paired["comparison"] == "step") & (paired["metric"] == metric)].set_index(["a", "b"])
    rows = []
    for rung, parent, change in ladder_steps(params):
        if (rung, parent) in part.index:
            r = part.loc[(rung, parent)]
            rows.append(
                {
                    "step": f"{rung} vs {parent}",
                    "change": change,
                    "effect": r["difference"],
                    "lo": r["lo"],
                    "hi": r["hi"],
                    "ci_excludes_zero": bool(r["ci_excludes_zero"]),
                }
            )
    return pd.DataFrame(rows, columns=["step", "change", "effect", "lo", "hi", "ci_excludes_zero"])


def cost_table(board: pd.DataFrame, params) -> pd.DataFrame:
    """Training cost of every trained row (ensembles fit no network: left out), formatted for reading."""
    trained = set(params.all_variants())
    rows = []
    for _, r in board.iterrows():
        if r["variant"] not in trained:
            continue

        def num(col, fmt):
            return fmt.format(r[col]) if col in r and pd.notna(r[col]) else "–"

        rows.append(
            {
                "variant": r["variant"],
                "epochs (best)": f"{num('epochs', '{:.0f}')} ({num('best_epoch', '{:.0f}')})",
                "parameters": num("n_params", "{:,.0f}"),
                "training time (s)": num("train_seconds", "{:,.1f}"),
                "training images/s": num("train_images_per_second", "{:,.0f}"),
            }
        )
    return pd.DataFrame(rows)


def metadata_pairs(params) -> list[list[str]]:
    """[meta-ensemble, image-only twin]: ensembles whose members differ exactly by metadata (tabular) models,
    with the same method."""
    out = []
    for a, ea in params.ensembles.items():
        for b, eb in params.ensembles.items():
            extra, missing = set(ea.members) - set(eb.members), set(eb.members) - set(ea.members)
            if (
                a != b
                and extra
                and not missing
                and extra <= set(params.tabulars)
                and params.ensemble_config(a).method == params.ensemble_config(b).method
            ):
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
    """'value [lo, hi]', the one way the reports and the README write an estimate with its CI ('–' when the
    estimate is undefined on this data, e.g. melanoma sensitivity without a melanoma class)."""
    if not np.isfinite(value):
        return Html("–")
    shown = f"<b>{value:.{digits}f}</b>" if bold else f"{value:.{digits}f}"
    return Html(f"{shown} [{lo:.{digits}f}, {hi:.{digits}f}]")


def with_ci_text(board: pd.DataFrame, digits: int = 3, metrics: tuple[str, ...] = HEADLINE) -> pd.DataFrame:
    """Display table: 'value [lo, hi]' per metric, best value of each column in bold (HTML)."""
    shown = pd.DataFrame({"variant": board["variant"]})
    if "n_runs" in board:
        shown["runs"] = board["n_runs"].fillna(1).astype(int)
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
        return Html(f"Best {label}: the baseline <b>{esc(baseline)}</b>, {fmt(base)}.")
    overlap = best[f"{metric}_lo"] <= base[f"{metric}_hi"]
    return Html(
        f"Best {label}: <b>{esc(best['variant'])}</b>, {fmt(best)}, against {fmt(base)} for the baseline "
        f"<b>{esc(baseline)}</b> ({best[metric] - base[metric]:+.3f}; the two intervals "
        f"{'overlap' if overlap else 'do not overlap'})."
    )


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
        record = read_record(variant_dir(root, dataset, name))
        weights = record.weights
        started = (
            "random initialisation"
            if weights["weights"] == "random"
            else Html(f"ImageNet <code>{esc(weights['file'])}</code><br><small>sha256 {esc(weights['sha256'])}</small>")
        )
        metrics = json.loads(metrics_file(root, dataset, name).read_text())
        rows.append(
            {
                "variant": name,
                "backbone": cfg.backbone,
                "strategy": cfg.strategy,
                "input px": record.input_size,
                "weights": started,
                "device": record.device,
                "trainable params": metrics.get("n_trainable_params"),
                "train s": metrics.get("train_seconds"),
                "train img/s": metrics.get("train_images_per_second"),
            }
        )
    return pd.DataFrame(rows)


def metadata_verdict(paired: pd.DataFrame, meta: str, twin: str) -> str:
    """One sentence: does the meta-ensemble beat its image-only twin, metric by metric, with the paired CI?"""
    part = paired[(paired["a"] == meta) & (paired["b"] == twin)]
    if "comparison" in part and (part["comparison"] == "metadata").any():  # the pair may also be a ladder step
        part = part[part["comparison"] == "metadata"]
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
    return Html(
        f"<b>{esc(meta)}</b> (image + metadata) minus its image-only twin <b>{esc(twin)}</b>: "
        + "; ".join(pieces)
        + f". Verdict: {verdict}."
    )


# --- display tables (HTML cells) ----------------------------------------------------------------------------------


def signed_ci(d: float, lo: float, hi: float, excludes: bool) -> str:
    mark = (" <b style='color:#1a7f37'>▲</b>" if d > 0 else " <b style='color:#b42318'>▼</b>") if excludes else ""
    return Html(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}")


def steps_display(steps: pd.DataFrame) -> pd.DataFrame:
    """One line per step: what changed, the effect with its CI (▲ / ▼ when it excludes 0) and the verdict."""
    return pd.DataFrame(
        {
            "step": steps["step"],
            "change": steps["change"],
            "Δ balanced accuracy [95 % CI]": [
                signed_ci(r["effect"], r["lo"], r["hi"], r["ci_excludes_zero"]) for _, r in steps.iterrows()
            ],
            "verdict": [
                ("robust gain" if r["effect"] > 0 else "robust loss") if r["ci_excludes_zero"] else "not robust"
                for _, r in steps.iterrows()
            ],
        }
    )


def spread_display(spread: pd.DataFrame, metrics: tuple[str, ...] = ("balanced_accuracy", "macro_auc")) -> pd.DataFrame:
    """Per replicated row: runs, and per metric 'mean ± sd (min–max)' over its runs."""
    shown = pd.DataFrame({"variant": spread["variant"], "runs": spread["n_runs"]})
    for m in metrics:
        shown[METRIC_LABELS.get(m, m)] = [
            "–"
            if not np.isfinite(r[f"{m}_mean"])
            else f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_sd']:.3f} ({r[f'{m}_min']:.3f}–{r[f'{m}_max']:.3f})"
            for _, r in spread.iterrows()
        ]
    return shown


def paired_display(paired: pd.DataFrame) -> pd.DataFrame:
    """One line per pair: a − b [CI] per metric (▲ / ▼ when the CI excludes 0), McNemar's counts and p-value."""
    rows = []
    for (a, b), part in paired.groupby(["a", "b"], sort=False):
        first = part.iloc[0]
        row = {"a": a, "b": b}
        for _, r in part.iterrows():
            row[f"Δ {METRIC_LABELS.get(r['metric'], r['metric'])}"] = signed_ci(
                r["difference"], r["lo"], r["hi"], r["ci_excludes_zero"]
            )
        row["only a right / only b right"] = f"{first['only_a_correct']} / {first['only_b_correct']}"
        row["McNemar p"] = f"{first['mcnemar_p']:.2g}" if first["mcnemar_p"] >= 1e-4 else "<1e-4"
        rows.append(row)
    return pd.DataFrame(rows)


def slices_display(slices: pd.DataFrame) -> pd.DataFrame:
    """Slice, counts, and each metric as 'value [lo, hi]'; values of slices too small to say anything are greyed
    and marked."""

    def cell(r, m, small):
        if not np.isfinite(r[m]):
            return "–"
        text = format_ci(r[m], r[f"{m}_lo"], r[f"{m}_hi"])
        return Html(f"<span style='color:#999'>{text} (too small)</span>") if small else text

    return pd.DataFrame(
        [
            {
                "slice": r["slice"],
                "images": r["n_images"],
                "lesions": r["n_lesions"],
                "malignant": r["n_malignant"],
                "balanced accuracy": cell(r, "balanced_accuracy", r["too_small"]),
                "malignant AUC": cell(r, "malignant_auc", r["too_small"] or r["too_few_malignant"]),
                "malignant sensitivity": cell(r, "malignant_sensitivity", r["too_small"] or r["too_few_malignant"]),
            }
            for _, r in slices.iterrows()
        ]
    )


def explanation_display(explained: pd.DataFrame) -> pd.DataFrame:
    first = ["page"] if "page" in explained else ["variant"]
    return pd.DataFrame(
        {
            first[0]: explained[first[0]],
            "Grad-CAM energy in mask": [
                format_ci(v, lo, hi)
                for v, lo, hi in zip(explained["mask_energy"], explained["mask_energy_lo"], explained["mask_energy_hi"])
            ],
            "pointing-game hits": [
                format_ci(v, lo, hi)
                for v, lo, hi in zip(
                    explained["pointing_hit_rate"], explained["pointing_hit_rate_lo"], explained["pointing_hit_rate_hi"]
                )
            ],
            "chance (mask area)": explained["chance"].map(lambda x: f"{x:.3f}"),
            "images with a mask": explained["n_with_mask"],
        }
    )


def explanation_verdict(explained: pd.DataFrame) -> str:
    """Which variants' explanations fall mostly outside the lesion (energy share < 1/2), and which do no better
    than chance (the CI's upper end below or at the mask area)."""
    explained = explained[explained["mask_energy"].notna()]
    if explained.empty:
        return Html("Grad-CAM-in-mask scores skipped: no test image has a lesion mask.")
    outside = explained[explained["mask_energy"] < 0.5]["variant"].tolist()
    blind = explained[explained["mask_energy_hi"] <= explained["chance"]]["variant"].tolist()
    best = explained.loc[explained["mask_energy"].idxmax()]
    parts = [
        f"Most focused on the lesion: <b>{esc(best['variant'])}</b> "
        f"({format_ci(best['mask_energy'], best['mask_energy_lo'], best['mask_energy_hi'])} of its energy inside the "
        f"mask; chance {best['chance']:.3f})."
    ]
    parts.append(
        f"Mostly <b>outside</b> the lesion (less than half the energy inside): {esc(', '.join(outside))}."
        if outside
        else "Every explained variant puts at least half its energy inside the lesion."
    )
    if blind:
        parts.append(f"No better than chance (CI at or below the mask area): {esc(', '.join(blind))}.")
    off = explained[explained["pointing_hit_rate_hi"] < explained["chance"]]["variant"].tolist()
    if off:
        parts.append(
            "Maximum outside the lesion more often than a blind map's would be (pointing-game CI below "
            f"chance): {esc(', '.join(off))}."
        )
    return Html(" ".join(parts))

"""``lesionlab predict``: a trained variant + an image folder or a CSV of paths -> predictions (+ metrics).

Images of any size and common format (JPEG, PNG, BMP, TIFF, WebP, 16-bit, CMYK, EXIF-rotated)
are decoded and resized exactly as the prepare stage does (:func:`lesionlab.data.quality.load_image`).
A file that cannot be read is reported and skipped; the batch goes on. With labels (a ``label``
column in the CSV, HAM10000 codes or their usual names) the metrics of :mod:`lesionlab.evaluation.metrics`
are printed and written beside the predictions.

Research and education only: not for diagnosis.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.data.taxonomy import probability_columns
from lesionlab.models.predictor import (
    Predictor,
    row_record,  # noqa: F401
)
from lesionlab.models.record import TrainingRecord
from lesionlab.pipeline.contracts import ContractError

METADATA_COLUMNS = ("age", "sex", "site")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def load_predictor(root: Path, dataset: str, variant: str) -> Predictor:
    """Rebuild a trained variant (or an ensemble of them) from its stage outputs: the model file and its training
    record, which also says how its images were decoded (nothing is read from the prepare stage)."""
    record = row_record(root, dataset, variant, check_weights=True)
    if record.skipped:
        raise ContractError(f"{variant!r} of {dataset!r} trained nothing: {record.skipped}")
    return replace(_load_predictor(root, dataset, variant, record), preprocess=record.preprocessing())


def _load_predictor(root: Path, dataset: str, variant: str, record: TrainingRecord) -> Predictor:
    from lesionlab.models.families import FAMILIES, discover

    discover()
    if record.kind not in FAMILIES:
        raise ContractError(
            f"{variant!r} of {dataset!r}: its training record names the model family {record.kind!r}, "
            f"which this code does not have (families: {list(FAMILIES)})"
        )
    return FAMILIES[record.kind].call("load", root, dataset, variant, record)


def load_ensemble(root: Path, dataset: str, name: str, record: TrainingRecord) -> Predictor:
    """An ensemble (the family's loader): each member rebuilt through its own family, then combined as
    ``ensemble.json`` records (weights or the meta-learner)."""
    from lesionlab.models.ensemble import PooledMetaLearner, mean_ensemble, stack_features
    from lesionlab.paths import ensemble_dir

    combination = json.loads((ensemble_dir(root, dataset, name) / "ensemble.json").read_text())
    members = record.config["members"]
    loaded = {m: load_predictor(root, dataset, m.removesuffix("+tta")) for m in members}
    classes = tuple(record.classes)
    sizes = sorted({p.input_size for p in loaded.values()})
    meta = (
        PooledMetaLearner.from_record(combination, members, list(classes))
        if record.config["method"] == "stacking"
        else None
    )

    def combine(images: dict, rows: pd.DataFrame, tta: bool) -> np.ndarray:
        proba = np.stack([p.batch_proba(images, rows, m.endswith("+tta")) for m, p in loaded.items()])
        if meta is not None:
            return meta.predict_proba(stack_features(proba))
        return mean_ensemble(proba, [combination["weights"][m] for m in members])

    return Predictor(
        name,
        "ensemble",
        record.framework,
        classes,
        sizes[-1],
        lambda x: None,
        extra_sizes=tuple(sizes[:-1]),
        combine=combine,
    )


def list_inputs(source: Path, info=None) -> pd.DataFrame:
    """``image_id, path, label`` from a folder (recursively; no labels) or a CSV (``path`` + optional ``label``,
    mapped as the dataset ``info`` maps its labels: its card's label_map, its own classes, the built-in spellings)."""
    from lesionlab.data.datasets import map_labels

    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{source}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return pd.DataFrame(
            {
                "image_id": [str(p.relative_to(source).with_suffix("")) for p in files],
                "path": [str(p) for p in files],
                "label": "",
            }
        )
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such folder or CSV file")
    table = pd.read_csv(source, dtype=str, keep_default_na=False)
    if "path" not in table.columns:
        raise ContractError(f"{source}: a CSV of inputs needs a 'path' column (found {list(table.columns)})")
    paths = [str(p if Path(p).is_absolute() else source.parent / p) for p in table["path"]]
    ids = table["image_id"] if "image_id" in table.columns else [Path(p).stem for p in table["path"]]
    labels = map_labels(table["label"], info) if "label" in table.columns else ""
    out = pd.DataFrame({"image_id": list(ids), "path": paths, "label": labels})
    for col in METADATA_COLUMNS:  # metadata models (and ensembles holding one) read these
        if col in table.columns:
            out[col] = table[col].to_numpy()
    return out


def _prediction_frame(rows: list, classes) -> pd.DataFrame:
    """``image_id, path, label, p_<class>..., predicted`` of (input row, probabilities) pairs."""
    out = pd.DataFrame(
        {
            "image_id": [r["image_id"] for r, _ in rows],
            "path": [r["path"] for r, _ in rows],
            "label": [r["label"] for r, _ in rows],
        }
    )
    proba = np.array([p for _, p in rows]).reshape(len(rows), len(classes))
    proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
    for j, col in enumerate(probability_columns(classes)):
        out[col] = proba[:, j]
    out["predicted"] = [classes[i] for i in proba.argmax(axis=1)] if len(rows) else []
    return out


def run_predictions(
    predictor: Predictor,
    inputs: pd.DataFrame,
    tta: bool = False,
    batch_size: int = 64,
    progress: bool = True,
    min_side: int = 0,
    on_batch: Callable[[pd.DataFrame], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, skipped): one row per readable image; unreadable ones (and images whose shorter side is below
    ``min_side`` px) listed with the reason. ``on_batch`` receives each scored batch as soon as it is scored."""
    from tqdm.auto import tqdm

    from lesionlab.data.quality import BadImage, load_image

    sizes = (predictor.input_size, *predictor.extra_sizes)
    frames, skipped, batch, batch_rows = [], [], {size: [] for size in sizes}, []

    def flush():
        if batch_rows:
            images = {size: np.stack(batch[size]) for size in sizes}
            proba = predictor.batch_proba(images, pd.DataFrame(batch_rows), tta)
            frames.append(_prediction_frame(list(zip(batch_rows, proba)), predictor.classes))
            if on_batch is not None:
                on_batch(frames[-1])
            for size in sizes:
                batch[size].clear()
            batch_rows.clear()

    for _, row in tqdm(
        inputs.iterrows(),
        total=len(inputs),
        desc=f"predict {predictor.variant}",
        unit="img",
        disable=not progress,
        mininterval=2,
    ):
        try:
            decoded = dict(zip(sizes, load_image(row["path"], sizes, predictor.preprocess, min_side=min_side)[0]))
        except BadImage as bad:
            skipped.append({"image_id": row["image_id"], "path": row["path"], "problem": bad.check})
            continue
        for size in sizes:
            batch[size].append(decoded[size])
        batch_rows.append(row)
        if len(batch_rows) >= batch_size:
            flush()
    flush()
    pred = pd.concat(frames, ignore_index=True) if frames else _prediction_frame([], predictor.classes)
    return pred, pd.DataFrame(skipped, columns=["image_id", "path", "problem"])


def validation_temperature(root: Path, dataset: str, row: str) -> float | None:
    """The temperature the comparison fitted on validation for this leaderboard row (None if not compared yet)."""
    from lesionlab.paths import reports_dir

    table = reports_dir(root, dataset) / "calibration.csv"
    if not table.is_file():
        return None
    cal = pd.read_csv(table)
    match = cal.loc[cal["variant"] == row, "temperature"]
    return float(match.iloc[0]) if len(match) else None


def flag_uncertain(
    pred: pd.DataFrame, classes, max_prob_below: float, entropy_above: float, temperature: float | None = None
) -> pd.DataFrame:
    """Add ``confidence`` (top probability), ``entropy`` (normalised) and ``uncertain`` (either threshold crossed),
    computed after ``temperature`` when given. The p_ columns stay the model's own probabilities."""
    from lesionlab.evaluation.calibration import apply_temperature
    from lesionlab.evaluation.uncertainty import normalized_entropy, uncertain_flags

    proba = pred[probability_columns(classes)].to_numpy(dtype=float)
    if temperature and len(proba):
        proba = apply_temperature(proba, temperature)
    out = pred.copy()
    out["confidence"] = proba.max(axis=1) if len(proba) else []
    out["entropy"] = normalized_entropy(proba) if len(proba) else []
    out["uncertain"] = uncertain_flags(proba, max_prob_below, entropy_above) if len(proba) else []
    return out


def labelled_metrics(pred: pd.DataFrame, classes) -> tuple[dict, pd.DataFrame]:
    """Metrics over the rows whose label is one of ``classes``; the others are returned for the report."""
    from lesionlab.evaluation.metrics import compute_metrics

    known = pred["label"].isin(classes)
    unknown = pred[pred["label"].ne("") & ~known]
    part = pred[known]
    if part.empty:
        return {}, unknown
    index = {c: i for i, c in enumerate(classes)}
    metrics = compute_metrics(
        part["label"].map(index).to_numpy(), part[probability_columns(classes)].to_numpy(float), classes
    )
    metrics["n_images"] = int(len(part))
    return metrics, unknown


def owned_files(out: Path) -> dict[str, Path]:
    """The files one ``lesionlab predict --out OUT`` writes: removed before each run, so none is left from an
    earlier one."""
    return {
        "predictions": out,
        "partial": out.with_name(out.name + ".partial"),
        "skipped": out.with_name(out.stem + ".skipped.csv"),
        "metrics": out.with_name(out.stem + ".metrics.json"),
    }


def predict_command(args) -> int:
    from lesionlab.config import find_project_root, load_params
    from lesionlab.data.datasets import dataset_info

    root = find_project_root()
    params = load_params(root / "params.yaml")
    dataset = args.dataset or params.dataset
    inputs = list_inputs(Path(args.inputs), dataset_info(dataset, root))
    predictor = load_predictor(root, dataset, args.variant)
    tta = args.tta and predictor.kind in ("cnn", "probe", "finetune")
    if args.tta and not tta:
        print(
            f"[predict] --tta does not apply to {predictor.variant} ({predictor.kind}): "
            + (
                "each member is scored as the ensemble records it (a '+tta' member over 8 views)"
                if predictor.kind == "ensemble"
                else "a metadata model reads no image"
            ),
            flush=True,
        )
    print(
        f"[predict] {predictor.variant} ({predictor.kind}, {predictor.framework}, {predictor.input_size} px"
        f"{', TTA over 8 views' if tta else ''}) on {len(inputs)} image(s) from {args.inputs}. "
        "Research and education only: not for diagnosis.",
        flush=True,
    )
    row = args.variant + ("+tta" if tta and predictor.kind in ("probe", "finetune") else "")
    u = params.uncertainty
    thresholds = (
        u.max_prob_below if args.max_prob_below is None else args.max_prob_below,
        u.entropy_above if args.entropy_above is None else args.entropy_above,
    )
    temperature = validation_temperature(root, dataset, row) if u.calibrated else None

    files = owned_files(Path(args.out))
    files["predictions"].parent.mkdir(parents=True, exist_ok=True)
    for f in files.values():
        f.unlink(missing_ok=True)

    flagged: list[pd.DataFrame] = []

    def write_batch(batch: pd.DataFrame) -> None:  # scored rows reach the disk batch by batch
        flagged.append(flag_uncertain(batch, predictor.classes, *thresholds, temperature))
        flagged[-1].to_csv(files["partial"], mode="a", header=len(flagged) == 1, index=False, float_format="%.6f")

    try:
        pred, skipped = run_predictions(
            predictor,
            inputs,
            tta=tta,
            batch_size=args.batch_size,
            min_side=params.prepare.min_image_side,
            on_batch=write_batch,
        )
    except BaseException:
        if files["partial"].exists():
            print(f"[predict] stopped: the rows scored so far are in {files['partial']}", file=sys.stderr, flush=True)
        raise
    pred = (
        pd.concat(flagged, ignore_index=True)
        if flagged
        else flag_uncertain(pred, predictor.classes, *thresholds, temperature)
    )
    print(
        f"[predict] uncertain (max p < {thresholds[0]} or entropy / log k > {thresholds[1]}"
        + (
            f", after the validation temperature T = {temperature:.3f} of {row}"
            if temperature
            else ", on uncalibrated probabilities"
            + ("" if not u.calibrated else f": no temperature for {row} in reports/{dataset}/calibration.csv")
        )
        + f"): {int(pred['uncertain'].sum())} of {len(pred)} image(s)",
        flush=True,
    )
    if files["partial"].exists():
        files["partial"].replace(files["predictions"])  # the complete file appears at once
    else:
        pred.to_csv(files["predictions"], index=False, float_format="%.6f")
    print(f"[predict] {len(pred)} prediction(s) written to {files['predictions']}")
    if len(skipped):
        print(f"[predict] skipped {len(skipped)} unreadable file(s):")
        for _, bad in skipped.iterrows():
            print(f"  {bad['path']}: {bad['problem']}")
        skipped.to_csv(files["skipped"], index=False)
    metrics, unknown = labelled_metrics(pred, predictor.classes)
    if len(unknown):
        print(
            f"[predict] {len(unknown)} row(s) with a label outside {list(predictor.classes)} are not scored, "
            f"e.g. {unknown['label'].iloc[0]!r} ({unknown['path'].iloc[0]})"
        )
    if metrics:
        keep = ["n_images", "accuracy", "balanced_accuracy", "macro_auc", "malignant_auc", "macro_f1", "ece"]
        shown = {k: metrics[k] for k in keep if k in metrics}
        print(
            "[predict] metrics on the labelled rows: "
            + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
        )
        files["metrics"].write_text(
            json.dumps(
                {k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in metrics.items()}, indent=2
            )
            + "\n"
        )
    return 0 if len(pred) else 2

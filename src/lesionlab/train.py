"""The ``train@<variant>`` stage: fit one variant and write its contract files.

Writes, for dataset *ds* and variant *v*:

- ``results/ds/variants/v/predictions.csv``  predictions contract for every image (train/val/test);
- ``results/ds/variants/v/model.keras``      the trained model (best epoch);
- ``results/ds/metrics/v.json``              flat test metrics (+ ``val_`` ones and training figures);
- ``results/ds/history/v.csv``               per-epoch history (DVC plots).

The framework-specific part (here Keras) only turns images into probabilities.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import Params
from lesionlab.contracts import read_splits, write_predictions
from lesionlab.metrics import compute_metrics
from lesionlab.paths import results_dir, splits_file, variant_dir
from lesionlab.prepare import load_prepared


def metrics_file(root: Path, dataset: str, variant: str) -> Path:
    return results_dir(root, dataset) / "metrics" / f"{variant}.json"


def history_file(root: Path, dataset: str, variant: str) -> Path:
    return results_dir(root, dataset) / "history" / f"{variant}.csv"


def _rounded(d: dict, digits: int = 6) -> dict:
    return {k: (round(v, digits) if isinstance(v, float) and np.isfinite(v) else v if not isinstance(v, float) else None)
            for k, v in d.items()}


def metrics_from_predictions(pred: pd.DataFrame, classes) -> dict[str, float]:
    """Test metrics under their own names, validation metrics prefixed ``val_``."""
    index = {c: i for i, c in enumerate(classes)}
    pcols = [f"p_{c}" for c in classes]
    out: dict[str, float] = {}
    for split, prefix in (("test", ""), ("val", "val_")):
        part = pred[pred["split"] == split]
        m = compute_metrics(part["label"].map(index).to_numpy(), part[pcols].to_numpy(dtype=float), classes)
        out.update({f"{prefix}{k}": v for k, v in m.items() if not (prefix and k.startswith("recall_"))})
    return out


def train_variant(root: Path, params: Params, variant: str, progress: bool = True) -> dict:
    """Fit ``variant`` on the train split (early stopping on val), predict every image, write the outputs."""
    from lesionlab import keras_cnn

    cfg = params.variant(variant)
    ds, seed = params.dataset, params.base.seed
    data = load_prepared(root, ds)
    splits = read_splits(splits_file(root, ds), data.table)
    split = data.table[["image_id"]].merge(splits, on="image_id", how="left")["split"].to_numpy()
    index = {c: i for i, c in enumerate(data.classes)}
    y = data.table["label"].map(index).to_numpy()
    preprocess = params.preprocess(variant)
    if preprocess == params.preprocess():
        images = np.asarray(data.images)
    else:   # a preprocessing ablation: the same rows, decoded again with the variant's own settings
        from lesionlab.prepare import decode_images

        print(f"[train@{variant}] decoding {len(data.table)} images with {preprocess}", flush=True)
        images, _ = decode_images(data.table, root, data.images.shape[1], preprocess, progress=progress)
    train, val = split == "train", split == "val"
    print(f"[train@{variant}] {ds}: {train.sum()} train / {val.sum()} val / {(split == 'test').sum()} test images, "
          f"config {cfg.model_dump()}", flush=True)

    out = variant_dir(root, ds, variant)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model = keras_cnn.build_cnn(cfg, params.augment, data.images.shape[1], len(data.classes), seed)
    fit = keras_cnn.fit(model, images[train], y[train], images[val], y[val], cfg, len(data.classes), seed, progress)
    started = time.perf_counter()
    proba = keras_cnn.predict(model, images)
    predict_seconds = time.perf_counter() - started
    model.save(out / "model.keras")

    pred = write_predictions(out / "predictions.csv", data.table["image_id"], split, data.table["label"], proba, data.classes)
    metrics = metrics_from_predictions(pred, data.classes)
    metrics.update({
        "epochs": len(fit.history),
        "best_epoch": fit.best_epoch,
        "n_params": fit.n_params,
        "train_seconds": round(fit.train_seconds, 1),
        "train_images_per_second": round(fit.images_seen / max(fit.train_seconds, 1e-9), 1),
        "predict_images_per_second": round(len(images) / max(predict_seconds, 1e-9), 1),
    })
    mfile, hfile = metrics_file(root, ds, variant), history_file(root, ds, variant)
    mfile.parent.mkdir(parents=True, exist_ok=True)
    hfile.parent.mkdir(parents=True, exist_ok=True)
    mfile.write_text(json.dumps(_rounded(metrics), indent=2, sort_keys=True) + "\n")
    history = pd.DataFrame(fit.history)
    history.drop(columns=["seconds"]).to_csv(hfile, index=False, float_format="%.6f")
    (out / "training.json").write_text(json.dumps({
        "variant": variant, "dataset": ds, "seed": seed, "config": cfg.model_dump(),
        "preprocess": dataclasses.asdict(preprocess),   # what `lesionlab predict` decodes its inputs with
        "framework": cfg.framework, "device": "cpu", "python": platform.python_version(),
        "epoch_seconds": [row["seconds"] for row in fit.history],
    }, indent=2) + "\n")
    print(f"[train@{variant}] best epoch {fit.best_epoch}/{len(fit.history)}: test balanced accuracy "
          f"{metrics['balanced_accuracy']:.3f}, macro AUC {metrics['macro_auc']:.3f} ({fit.train_seconds:.0f} s)", flush=True)
    return {"config": cfg, "metrics": metrics, "history": history, "predictions": pred, "classes": data.classes}

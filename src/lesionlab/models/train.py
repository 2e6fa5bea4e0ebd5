"""The ``train@<variant>`` stage: fit one variant and write its contract files.

Writes, for dataset *ds* and variant *v*:

- ``results/ds/variants/v/predictions.csv``  predictions contract for every image (train/val/test);
- ``results/ds/variants/v/model.keras``      the trained model (best epoch);
- ``results/ds/metrics/v.json``              flat test metrics (+ ``val_`` ones and training figures);
- ``results/ds/history/v.csv``               per-epoch history (DVC plots).

The framework-specific part (here Keras) only turns images into probabilities.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import Params
from lesionlab.data.prepare import load_prepared
from lesionlab.evaluation.metrics import metrics_from_predictions
from lesionlab.models import runlog
from lesionlab.models.outputs import write_stage_files
from lesionlab.paths import fresh_dir, splits_file, variant_dir
from lesionlab.pipeline.contracts import read_splits, write_predictions


@runlog.logged
def train_variant(root: Path, params: Params, variant: str, progress: bool = True) -> dict:
    """Fit ``variant`` on the train split (early stopping on val), predict every image, write the outputs."""
    from lesionlab.models import keras_cnn, keras_common

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
    else:  # a preprocessing ablation: the same rows, decoded again with the variant's own settings
        from lesionlab.data.prepare import decode_images

        print(f"[train@{variant}] decoding {len(data.table)} images with {preprocess}", flush=True)
        images, _ = decode_images(data.table, root, data.images.shape[1], preprocess, progress=progress)
    train, val = split == "train", split == "val"
    print(
        f"[train@{variant}] {ds}: {train.sum()} train / {val.sum()} val / {(split == 'test').sum()} test images, "
        f"config {cfg.model_dump()}",
        flush=True,
    )

    out = fresh_dir(variant_dir(root, ds, variant))
    run = keras_common.compute_of(params.compute, seed)  # sets Keras' backend before Keras is imported
    print(f"[train@{variant}] compute: {run.describe()}", flush=True)
    model = keras_cnn.build_cnn(cfg, params.augment, data.images.shape[1], len(data.classes), seed)
    fit = keras_cnn.fit(model, images[train], y[train], images[val], y[val], cfg, len(data.classes), seed, progress)
    started = time.perf_counter()
    proba = keras_cnn.predict(model, images)
    predict_seconds = time.perf_counter() - started
    model.save(out / "model.keras")

    pred = write_predictions(
        out / "predictions.csv", data.table["image_id"], split, data.table["label"], proba, data.classes
    )
    metrics = metrics_from_predictions(pred, data.classes)
    metrics.update(
        {
            "epochs": len(fit.history),
            "best_epoch": fit.best_epoch,
            "n_params": fit.n_params,
            "train_seconds": round(fit.train_seconds, 1),
            "train_images_per_second": round(fit.images_seen / max(fit.train_seconds, 1e-9), 1),
            "predict_images_per_second": round(len(images) / max(predict_seconds, 1e-9), 1),
        }
    )
    history = pd.DataFrame(fit.history)
    write_stage_files(
        root,
        ds,
        variant,
        out,
        metrics,
        history.drop(columns=["seconds"]),
        dict(
            kind="cnn",
            framework=cfg.framework,
            classes=list(data.classes),
            input_size=int(data.images.shape[1]),
            preprocess=preprocess,  # what `lesionlab predict` decodes its inputs with
            weights_file="model.keras",
            seed=seed,
            config=cfg.model_dump(),
            device=run.device,
            compute=run.to_dict(),
            epoch_seconds=[row["seconds"] for row in fit.history],
        ),
        predictions=pred,
    )
    print(
        f"[train@{variant}] best epoch {fit.best_epoch}/{len(fit.history)}: test balanced accuracy "
        f"{metrics['balanced_accuracy']:.3f}, macro AUC {metrics['macro_auc']:.3f} ({fit.train_seconds:.0f} s)",
        flush=True,
    )
    return {"config": cfg, "metrics": metrics, "history": history, "predictions": pred, "classes": data.classes}

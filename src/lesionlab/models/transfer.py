"""The transfer-learning stages: ``embed@<backbone>``, ``probe@<variant>``, ``finetune@<variant>``.

- ``embed@<backbone>`` runs a frozen pretrained backbone once over the backbone image cache, for
  all 8 dihedral views of every image, and keeps the pooled embeddings
  (``results/<ds>/embeddings/<backbone>/features.npy``, float16, shape (N, 8, D)).
- ``probe@<variant>`` trains a head on those embeddings (strategy ``linear_probe``): seconds, not
  hours, and every probe of a backbone reuses the same cached file.
- ``finetune@<variant>`` trains the last stages (``partial``) or all of a backbone (``full``).

Every variant writes the same files as the CNN ladder (predictions contract, metrics, history,
``training.json`` with the device and the weights provenance). With ``tta: true`` it also writes
``predictions_tta.csv`` (mean over the 8 views; val/test rows, train rows keep the single view) and
``tta_`` metrics, which the comparison shows as the row ``<variant>+tta``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import BackboneParams, Params
from lesionlab.data.prepare import Rows, load_backbone_cache, load_prepared, load_rows
from lesionlab.evaluation.metrics import metrics_from_predictions
from lesionlab.models import compute, distributed, runlog
from lesionlab.models.backbones import backbone_spec
from lesionlab.models.outputs import write_stage_files
from lesionlab.models.tta import N_VIEWS, dihedral, predict_with_tta
from lesionlab.models.weights import WeightsRecord, resolve_weights
from lesionlab.paths import embeddings_dir, fresh_dir, variant_dir
from lesionlab.pipeline.contracts import write_predictions

# --- embed@<backbone> ---------------------------------------------------------------------


def embed_backbone(root: Path, params: Params, backbone: str, progress: bool = True) -> Path:
    """Embeddings of all 8 views of every image by the frozen backbone (``embed.weights``)."""
    spec = backbone_spec(backbone)
    ds, size = params.dataset, params.prepare.backbone_image_size
    data = load_prepared(root, ds)
    images = load_backbone_cache(root, ds, data.table)
    record = resolve_weights(spec, params.embed.weights, size, root)
    print(
        f"[embed@{backbone}] {len(images)} images x {N_VIEWS} views at {size} px; weights: {record.describe()}",
        flush=True,
    )
    out = fresh_dir(embeddings_dir(root, ds, backbone))
    started = time.perf_counter()
    if spec.framework == "torch":
        from lesionlab.models import torch_models

        torch_models.seed_everything(params.base.seed)
        run = compute.resolve(params.compute)
        print(f"[embed@{backbone}] compute: {run.describe()}", flush=True)
        features = _torch_embeddings(spec, record, images, size, params.embed.batch_size, run, progress)
    else:
        from lesionlab.models import keras_backbone

        run = keras_backbone.compute_of(params.compute, params.base.seed)
        features = keras_backbone.embeddings(
            spec, record, images, size, params.embed.batch_size, params.base.seed, progress
        )
    seconds = time.perf_counter() - started
    device = run.device
    np.save(out / "features.npy", features.astype(np.float16))
    info = {
        "backbone": backbone,
        "framework": spec.framework,
        "image_size": size,
        "views": N_VIEWS,
        "shape": list(features.shape),
        "weights": record.to_dict(),
        "device": device,
        "compute": run.to_dict(),
        "seconds": round(seconds, 1),
        "images_per_second": round(len(images) * N_VIEWS / max(seconds, 1e-9), 1),
    }
    (out / "embed.json").write_text(json.dumps(info, indent=2) + "\n")
    print(
        f"[embed@{backbone}] features {features.shape} in {seconds:.0f} s "
        f"({info['images_per_second']} img/s on {device})",
        flush=True,
    )
    return out


def _torch_embeddings(
    spec, record: WeightsRecord, images, size: int, batch_size: int, run: compute.Compute, progress: bool
) -> np.ndarray:
    import torch
    from tqdm.auto import tqdm

    from lesionlab.models import torch_models

    features = torch_models.build_features(spec, record.path)
    model = torch_models.BackboneNet(spec, features, torch.nn.Identity(), size)
    model = run.prepare_model(model).eval()
    out = np.zeros((len(images), N_VIEWS, spec.features), dtype=np.float32)
    bar = tqdm(total=len(images) * N_VIEWS, desc=f"embed {spec.name}", disable=not progress, mininterval=5, unit="img")
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            batch = np.asarray(images[i : i + batch_size])
            for view in range(N_VIEWS):
                x = torch.from_numpy(dihedral(batch, view)).to(run.device)
                with run.autocast():
                    out[i : i + len(batch), view] = model.embed(x).float().cpu().numpy()
                bar.update(len(batch))
    bar.close()
    return out


def load_embeddings(root: Path, dataset: str, backbone: str) -> tuple[np.ndarray, dict]:
    folder = embeddings_dir(root, dataset, backbone)
    if not (folder / "features.npy").is_file():
        raise FileNotFoundError(f"{folder / 'features.npy'} not found: run `dvc repro embed@{backbone}` first")
    return np.load(folder / "features.npy"), json.loads((folder / "embed.json").read_text())


# --- outputs shared by probes and fine-tunes -------------------------------------------------


def _write_outputs(
    root: Path,
    params: Params,
    name: str,
    kind: str,
    cfg: BackboneParams,
    rows: Rows,
    proba: np.ndarray,
    proba_tta: np.ndarray | None,
    fit,
    weights: dict,
    run: compute.Compute,
    n_params: tuple[int, int],
    predict_seconds: float,
    input_size: int,
    weights_file: str,
    details: dict | None = None,
) -> dict:
    device = run.device
    ds, classes, table = params.dataset, rows.data.classes, rows.data.table
    out = variant_dir(root, ds, name)
    pred = write_predictions(out / "predictions.csv", table["image_id"], rows.split, table["label"], proba, classes)
    metrics = metrics_from_predictions(pred, classes)
    if proba_tta is not None:
        pred_tta = write_predictions(
            out / "predictions_tta.csv", table["image_id"], rows.split, table["label"], proba_tta, classes
        )
        metrics.update(
            {f"tta_{k}": v for k, v in metrics_from_predictions(pred_tta, classes).items() if not k.startswith("val_")}
        )
    metrics.update(
        {
            "epochs": len(fit.history),
            "best_epoch": fit.best_epoch,
            "n_params": n_params[0],
            "n_trainable_params": n_params[1],
            "train_seconds": round(fit.train_seconds, 1),
            "train_images_per_second": round(fit.images_seen / max(fit.train_seconds, 1e-9), 1),
            "predict_images_per_second": round(len(table) / max(predict_seconds, 1e-9), 1),
        }
    )
    history = pd.DataFrame(fit.history)
    spec = backbone_spec(cfg.backbone)
    write_stage_files(
        root,
        ds,
        name,
        out,
        metrics,
        history.drop(columns=["seconds"]),
        dict(
            kind=kind,
            framework=spec.framework,
            classes=list(classes),
            input_size=int(input_size),
            preprocess=params.preprocess(),
            weights_file=weights_file,
            seed=params.base.seed,
            config=cfg.model_dump(),
            device=device,
            compute=run.to_dict(),
            epoch_seconds=[row["seconds"] for row in fit.history],
            backbone=cfg.backbone,
            weights=weights,
            details=details or {},
        ),
        predictions=pred,
    )
    tta = (
        f", with TTA {metrics['tta_balanced_accuracy']:.3f} / {metrics['tta_macro_auc']:.3f}"
        if proba_tta is not None
        else ""
    )
    print(
        f"[{kind}@{name}] best epoch {fit.best_epoch}/{len(fit.history)}: test balanced accuracy "
        f"{metrics['balanced_accuracy']:.3f}, macro AUC {metrics['macro_auc']:.3f}{tta} "
        f"({fit.train_seconds:.0f} s on {device})",
        flush=True,
    )
    return {
        "config": cfg,
        "metrics": metrics,
        "history": history,
        "predictions": pred,
        "classes": classes,
        "weights": weights,
        "device": run.describe(),  # device, precision, layout and why: shown on the variant's page
    }


# --- probe@<variant> ------------------------------------------------------------------------


@runlog.logged
def train_probe(root: Path, params: Params, name: str, progress: bool = True) -> dict:
    """A head on the cached embeddings of ``cfg.backbone``: random view per epoch when ``augment``."""
    import torch

    from lesionlab.models import torch_models, torch_train

    cfg = params.backbone_variant(name)
    rows = load_rows(root, params.dataset)
    features, embed_info = load_embeddings(root, params.dataset, cfg.backbone)
    if len(features) != len(rows.y):
        raise FileNotFoundError(
            f"embeddings of {cfg.backbone} have {len(features)} rows, the dataset {len(rows.y)}: "
            f"re-run `dvc repro embed@{cfg.backbone}`"
        )
    torch_models.seed_everything(params.base.seed)
    # a head on cached embeddings: float32 (nothing to gain from bfloat16 or a memory layout in a linear layer)
    run = replace(compute.resolve(params.compute), precision="float32", channels_last=False, reason="probe head")
    device = run.device
    feats = torch.from_numpy(features.astype(np.float32))
    train, val = rows.train, rows.val
    mean, std = feats[train].mean(dim=(0, 1)), feats[train].std(dim=(0, 1)) + 1e-6
    n_classes = len(rows.data.classes)
    head = torch.nn.Sequential(
        torch_models.Standardize(mean, std),
        torch_models.make_head(feats.shape[-1], n_classes, cfg.head, cfg.hidden_units, cfg.dropout),
    ).to(device)
    rng = np.random.default_rng(params.base.seed + 1)
    print(
        f"[probe@{name}] head on {cfg.backbone} embeddings {tuple(features.shape)}: {len(train)} train / "
        f"{len(val)} val; config {cfg.model_dump()}",
        flush=True,
    )
    fresh_dir(variant_dir(root, params.dataset, name))

    def make_batch(idx, training):
        views = rng.integers(N_VIEWS, size=len(idx)) if (training and cfg.augment) else np.zeros(len(idx), int)
        return feats[train[idx], views]

    def head_proba(model, rows_idx, view):
        with torch.no_grad():
            return torch.softmax(model(feats[rows_idx, view].to(device)), dim=1).cpu().numpy().astype(np.float64)

    fit = torch_train.fit(
        head,
        make_batch,
        rows.y[train],
        lambda m: head_proba(m, val, 0),
        rows.y[val],
        cfg,
        n_classes,
        params.base.seed,
        device,
        progress,
        label=f"[probe@{name}] ",
    )
    started = time.perf_counter()
    everything = np.arange(len(rows.y))
    proba = head_proba(head, everything, 0)
    proba_tta = None
    if cfg.tta:  # like fine-tunes: val/test rows are scored over the 8 views, train rows keep the single view
        proba_tta = proba.copy()
        proba_tta[rows.scored] = np.mean([head_proba(head, rows.scored, v) for v in range(N_VIEWS)], axis=0)
    predict_seconds = time.perf_counter() - started
    out = variant_dir(root, params.dataset, name)
    torch.save(
        {"state_dict": head.state_dict(), "n_features": int(feats.shape[-1]), "n_classes": n_classes}, out / "head.pt"
    )
    return _write_outputs(
        root,
        params,
        name,
        "probe",
        cfg,
        rows,
        proba,
        proba_tta,
        fit,
        embed_info["weights"],
        run,
        torch_models.count_parameters(head),
        predict_seconds,
        embed_info["image_size"],
        "head.pt",
        {"embedding": embed_info},
    )


def build_probe_head(n_features: int, n_classes: int, cfg: BackboneParams):
    """An untrained probe head of the variant's architecture (weights come from head.pt)."""
    import torch

    from lesionlab.models import torch_models

    zeros = torch.zeros(n_features)
    return torch.nn.Sequential(
        torch_models.Standardize(zeros, zeros + 1),
        torch_models.make_head(n_features, n_classes, cfg.head, cfg.hidden_units, cfg.dropout),
    )


# --- finetune@<variant> ---------------------------------------------------------------------


@runlog.logged
def train_finetune(root: Path, params: Params, name: str, progress: bool = True) -> dict:
    cfg = params.backbone_variant(name)
    spec = backbone_spec(cfg.backbone)
    rows = load_rows(root, params.dataset)
    images = load_backbone_cache(root, params.dataset, rows.data.table)
    record = resolve_weights(spec, cfg.weights, cfg.image_size, root)
    print(
        f"[finetune@{name}] {spec.name} ({spec.framework}), strategy {cfg.strategy}, {cfg.image_size} px, "
        f"weights: {record.describe()}; {len(rows.train)} train / {len(rows.val)} val images",
        flush=True,
    )
    primary = distributed.is_primary()  # under torchrun only rank 0 writes
    out = fresh_dir(variant_dir(root, params.dataset, name)) if primary else variant_dir(root, params.dataset, name)
    if spec.framework == "keras":
        from lesionlab.models import keras_backbone

        result = keras_backbone.finetune(
            spec,
            record,
            cfg,
            params.augment,
            images,
            rows,
            params.base.seed,
            out,
            progress,
            label=f"[finetune@{name}] ",
            compute_cfg=params.compute,
        )
    else:
        result = _torch_finetune(spec, record, cfg, params, images, rows, out, progress and primary, name)
    if result is None:  # a data-parallel worker: rank 0 writes the outputs
        return {}
    return _write_outputs(
        root,
        params,
        name,
        "finetune",
        cfg,
        rows,
        result["proba"],
        result["proba_tta"],
        result["fit"],
        record.to_dict(),
        result["compute"],
        result["n_params"],
        result["predict_seconds"],
        cfg.image_size,
        "model.keras" if spec.framework == "keras" else "model.pt",
    )


def _torch_finetune(
    spec, record, cfg: BackboneParams, params: Params, images, rows: Rows, out: Path, progress: bool, name: str
) -> dict:
    import torch

    from lesionlab.models import torch_models, torch_train

    seed = params.base.seed
    torch_models.seed_everything(seed)
    run = compute.resolve(params.compute).for_training()
    device = run.device
    dist = distributed.setup(device)  # torchrun with several processes: data-parallel (DDP)
    if dist is not None:
        run = replace(run, reason=f"{run.reason}; DDP over {dist.world} processes ({dist.backend})")
        if dist.backend == "nccl":
            device = f"cuda:{dist.local_rank}"
    n_classes = len(rows.data.classes)
    features = torch_models.build_features(spec, record.path)
    head = torch_models.make_head(spec.features, n_classes, cfg.head, cfg.hidden_units, cfg.dropout)
    model = torch_models.BackboneNet(spec, features, head, cfg.image_size)
    torch_models.apply_strategy(model, spec, cfg.strategy, cfg.trainable_blocks)
    model = run.prepare_model(model)
    n_params = torch_models.count_parameters(model)
    print(f"[finetune@{name}] {n_params[1]:,} of {n_params[0]:,} parameters train; {run.describe()}", flush=True)
    rng = np.random.default_rng(seed + 1)
    aug = params.augment
    train, val = rows.train, rows.val

    def make_batch(idx, training):
        batch = torch.from_numpy(np.asarray(images[train[idx]]))
        return torch_train.augment_batch(batch, rng, aug.zoom, aug.brightness, aug.contrast) if cfg.augment else batch

    def predict(m, x):
        return torch_train.predict_images(m, x, device, autocast=run.autocast)

    val_images = np.asarray(images[val])
    fit = torch_train.fit(
        model,
        make_batch,
        rows.y[train],
        lambda m: predict(m, val_images),
        rows.y[val],
        cfg,
        n_classes,
        seed,
        device,
        progress,
        label=f"[finetune@{name}] ",
        autocast=run.autocast,
        dist=dist,
    )
    if dist is not None and dist.rank != 0:
        distributed.teardown(dist)
        return None
    started = time.perf_counter()
    proba, proba_tta = predict_with_tta(lambda x: predict(model, x), images, rows.scored, cfg.tta)
    predict_seconds = time.perf_counter() - started
    torch.save(
        {
            "state_dict": model.state_dict(),
            "backbone": spec.name,
            "config": cfg.model_dump(),
            "classes": list(rows.data.classes),
        },
        out / "model.pt",
    )
    distributed.teardown(dist)
    return {
        "proba": proba,
        "proba_tta": proba_tta,
        "fit": fit,
        "compute": run,
        "n_params": n_params,
        "predict_seconds": predict_seconds,
    }


# --- a trained probe or fine-tune, loaded again (lesionlab predict, Grad-CAM) ------------------------------------


def load_predictor(root, dataset: str, name: str, record):
    """A trained probe or fine-tune as a Predictor: the framework is the backbone's (Keras or PyTorch)."""
    from lesionlab.models.predictor import Predictor

    classes, size = tuple(record.classes), record.input_size
    spec = backbone_spec(record.backbone)
    if spec.framework == "keras" and record.kind == "probe":
        return keras_probe(
            root, variant_dir(root, dataset, name), record, BackboneParams(**record.config), spec, classes, size, name
        )
    if spec.framework == "keras":
        from lesionlab.models import keras_backbone
        from lesionlab.models.predictor import load_keras_model

        model, size = load_keras_model(root, dataset, name, record)
        return Predictor(name, record.kind, "keras", classes, size, lambda x: keras_backbone.predict(model, x))
    from lesionlab.models import torch_train

    model, spec, size, run = load_torch_model(root, dataset, name, record)
    return Predictor(
        name,
        record.kind,
        "torch",
        classes,
        size,
        lambda x: torch_train.predict_images(model, x, run.device, autocast=run.autocast),
    )


def inference_compute(record, device: str) -> compute.Compute:
    """How a trained probe or fine-tune runs again (predict, Grad-CAM): on ``device``, at the precision and memory
    layout its stage scored it with (a probe's: its embeddings'). A head trained on bfloat16 embeddings (a CPU with
    AVX512_BF16) and fed float32 ones moves its probabilities by up to 1.0 on a tiny dataset; at the recorded
    precision predict reproduces the stage's predictions."""
    ran = (record.details.get("embedding") or {}).get("compute") if record.kind == "probe" else record.compute
    ran = ran or {}
    return compute.Compute(
        device=device,
        precision=ran.get("precision", "float32"),
        channels_last=bool(ran.get("channels_last", False)),
        keras_backend=ran.get("keras_backend", "tensorflow"),
        reason="as its stage ran it (training record)",
        memory=compute.keep_freed_memory(),
    )


def load_torch_model(root: Path, dataset: str, variant: str, record):
    """(BackboneNet in eval mode, backbone spec, input size, :func:`inference_compute`) of a PyTorch probe or
    fine-tune: run its forward passes on ``compute.device`` inside ``compute.autocast()``."""
    from lesionlab.models import torch_models
    from lesionlab.models.predictor import safe_torch_load

    folder = variant_dir(root, dataset, variant)
    cfg = BackboneParams(**record.config)
    spec = backbone_spec(record.backbone)
    size = record.input_size
    device = compute.pick_device()  # inference: the GPU when there is one
    if record.kind == "probe":
        head = probe_head(folder, cfg)
        model = torch_models.BackboneNet(
            spec, torch_models.build_features(spec, embedding_weights(root, record, spec, size).path), head, size
        )
    else:
        saved = safe_torch_load(folder / "model.pt")
        head = torch_models.make_head(spec.features, len(record.classes), cfg.head, cfg.hidden_units, cfg.dropout)
        model = torch_models.BackboneNet(spec, torch_models.build_features(spec, ""), head, size)
        model.load_state_dict(saved["state_dict"])
    run = inference_compute(record, device)
    return run.prepare_model(model).eval(), spec, size, run


def embedding_weights(root: Path, record, spec, size: int):
    """The weights the probe's embeddings were computed with, checked by sha256."""
    from lesionlab.models.weights import resolve_weights

    weights = record.weights
    record = resolve_weights(spec, weights["weights"], size, root)
    if record.sha256 != weights["sha256"]:
        raise FileNotFoundError(
            f"{record.path}: sha256 {record.sha256[:16]}… differs from the weights the "
            f"embeddings were computed with ({weights['sha256'][:16]}…, {weights.get('source', '?')})"
        )
    return record


def probe_head(folder: Path, cfg):
    """The trained head of a probe (head.pt, loaded as weights only)."""
    from lesionlab.models.predictor import safe_torch_load

    saved = safe_torch_load(folder / "head.pt")
    head = build_probe_head(saved["n_features"], saved["n_classes"], cfg)
    head.load_state_dict(saved["state_dict"])
    return head.eval()


def keras_probe(root: Path, folder: Path, record, cfg, spec, classes, size: int, variant: str):
    """Keras backbone embeddings -> the probe's PyTorch head (torch is imported before TensorFlow)."""
    import torch

    from lesionlab.models import keras_backbone
    from lesionlab.models.predictor import Predictor

    head = probe_head(folder, cfg)
    embedder = keras_backbone.embedding_model(spec, embedding_weights(root, record, spec, size), size, record.seed)

    def proba(images):
        features = np.asarray(embedder(np.asarray(images, dtype=np.float32), training=False))
        with torch.no_grad():
            return torch.softmax(head(torch.from_numpy(features)), dim=1).numpy().astype(np.float64)

    return Predictor(variant, "probe", "keras", classes, size, proba)

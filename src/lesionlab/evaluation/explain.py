"""The ``explain`` stage: Grad-CAM of every image model of ``explain.variants``, checked against the lesion masks.

All variants are explained in one process (:func:`explain_all`) and shown on one page: each framework is imported
once and one notebook kernel starts, instead of one per variant (13 stages cost 182 s, mostly start-up).

For every test image the map is Grad-CAM (Selvaraju et al., 2017) of the *predicted* class at the
model's last convolutional feature map: ReLU(sum_k alpha_k A_k), alpha_k = the spatial mean of
d logit / d A_k. Keras models (the CNN ladder, Keras backbones) and PyTorch backbones (probes and
fine-tunes) are explained by the same rule. The map is upsampled to the mask's resolution and scored:

- **mask energy**: the share of the map's total inside the lesion mask;
- **pointing game**: whether the map's maximum falls inside the mask.

A map blind to the image would put about the mask's area share inside it: that is the ``chance``
level printed beside both numbers. Frameworks are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.data.prepare import decode_images, load_backbone_cache, load_prepared
from lesionlab.data.preprocess import Preprocess
from lesionlab.paths import fresh_dir, results_dir, splits_file, variant_dir
from lesionlab.pipeline.contracts import read_splits


def explanations_dir(root: Path, dataset: str, variant: str) -> Path:
    """One variant's output of the ``explain`` stage: per_image.csv + summary.json."""
    return results_dir(root, dataset) / "explanations" / variant


# --- the maps ---------------------------------------------------------------------------------------------------


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to max 1 (an all-zero map stays zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float32)


def _keras_feature_layer(model):
    """The last layer with a 4-D output that is not pooling, rescaling or augmentation: the CAM layer."""
    import keras

    skip = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Rescaling, keras.layers.InputLayer)
    for layer in reversed(model.layers):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4 and not isinstance(layer, skip) and layer.name != "augment":
            return layer
    raise ValueError(f"{model.name}: no convolutional feature map to explain")


def gradcam_keras(model, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(maps (n, h, w) in [0, 1], probabilities (n, k)) of a Keras model on uint8 NHWC images, on either of
    Keras' backends (TensorFlow: a GradientTape; PyTorch: autograd)."""
    import keras
    from keras import ops

    feature = _keras_feature_layer(model)
    last = model.layers[-1]
    softmax_dense = isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax
    head_input = last.input if softmax_dense else model.output
    grad_model = keras.Model(model.inputs, [feature.output, head_input])

    def forward(x):
        fmap, h = grad_model(x, training=False)
        # the class score before the softmax (Grad-CAM's definition); log p if the model has no softmax head
        logits = ops.matmul(h, last.kernel) + last.bias if softmax_dense else ops.log(h + 1e-12)
        predicted = ops.argmax(logits, axis=1)
        score = ops.sum(ops.take_along_axis(logits, predicted[:, None], axis=1))
        return fmap, h, logits, score

    maps, probas = [], []
    for start in range(0, len(images), batch_size):
        x = np.asarray(images[start : start + batch_size], dtype=np.float32)
        if keras.backend.backend() == "torch":
            import torch

            fmap, h, logits, score = forward(ops.convert_to_tensor(x))
            (grads,) = torch.autograd.grad(score, fmap)
        else:
            import tensorflow as tf

            with tf.GradientTape() as tape:
                fmap, h, logits, score = forward(tf.convert_to_tensor(x))
            grads = tape.gradient(score, fmap)
        alpha = ops.mean(grads, axis=(1, 2), keepdims=True)
        maps.append(ops.convert_to_numpy(ops.relu(ops.sum(alpha * fmap, axis=-1))))
        probas.append(ops.convert_to_numpy(ops.softmax(logits) if softmax_dense else h))
    return _normalise(np.concatenate(maps)), np.concatenate(probas).astype(np.float64)


def gradcam_torch(
    model, spec, images: np.ndarray, batch_size: int = 64, device: str = "cpu", autocast=contextlib.nullcontext
):
    """(maps, probabilities) of a :class:`lesionlab.models.torch_models.BackboneNet` on uint8 NHWC images.

    The backbone runs without gradients up to its last feature map; only the pooling and the head are
    differentiated (Grad-CAM needs d logit / d A at that map and nothing earlier), so this costs one forward pass.
    The forward passes run inside ``autocast()`` (the model's recorded precision: its predictions are then the
    stage's)."""
    import torch

    from lesionlab.models.torch_models import _LiteFeatures, blocks

    features = model.features
    captured: dict = {}
    hook = None
    if not isinstance(features, _LiteFeatures):

        def keep(_module, _inputs, output):
            captured["fmap"] = output.detach().requires_grad_(True)
            return captured["fmap"]

        hook = blocks(spec, features)[-1].register_forward_hook(keep)
    maps, probas = [], []
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
            with torch.enable_grad():
                if isinstance(features, _LiteFeatures):
                    with torch.no_grad(), autocast():
                        fmap = features.net.extract_features(model.preprocess(x))
                    fmap = fmap.detach().requires_grad_(True)
                    with autocast():
                        pooled = fmap.mean(dim=(2, 3))  # in the stage's precision, as its embeddings were pooled
                    logits = model.head(pooled.float()).float()
                else:
                    for p in model.parameters():
                        p.requires_grad_(False)
                    with autocast():
                        logits = model(x).float()
                    fmap = captured["fmap"]
                predicted = logits.argmax(dim=1)
                logits.gather(1, predicted[:, None]).sum().backward()
            alpha = fmap.grad.float().mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((alpha * fmap.float()).sum(dim=1))
            maps.append(cam.detach().cpu().numpy())
            probas.append(torch.softmax(logits.detach(), dim=1).cpu().numpy())
    finally:
        if hook is not None:
            hook.remove()
    return _normalise(np.concatenate(maps)), np.concatenate(probas).astype(np.float64)


def resize_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (n, h, w) maps to (n, size, size), pixel centres aligned (as image resizing does)."""
    from PIL import Image

    if maps.shape[1:] == (size, size):
        return maps.astype(np.float32)
    return np.stack(
        [np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR)) for m in maps]
    ).astype(np.float32)


# --- scoring against the masks ---------------------------------------------------------------------------------


def mask_scores(maps: np.ndarray, masks: np.ndarray) -> pd.DataFrame:
    """Per image: ``energy_in_mask`` (share of the map inside the mask), ``pointing_hit`` (the map's maximum is
    inside), ``mask_area`` (the chance level of both). Maps must already have the masks' resolution; an
    all-zero map or an empty mask gives NaN."""
    m = (np.asarray(masks) > 0).reshape(len(masks), -1)
    a = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    total = a.sum(axis=1)
    inside = (a * m).sum(axis=1)
    defined = (total > 0) & m.any(axis=1)
    peak_inside = m[np.arange(len(m)), a.argmax(axis=1)]
    return pd.DataFrame(
        {
            "energy_in_mask": np.where(defined, inside / np.where(total > 0, total, 1), np.nan),
            "pointing_hit": np.where(defined, peak_inside.astype(float), np.nan),
            "mask_area": np.where(m.any(axis=1), m.mean(axis=1), np.nan),
        }
    )


def pick_panels(table: pd.DataFrame, classes, per_class: int) -> pd.DataFrame:
    """Per true class, the ``per_class`` most confident correct and incorrect test cases (ties: image_id order)."""
    picks = []
    for c in classes:
        for correct in (True, False):
            part = table[(table["label"] == c) & (table["correct"] == correct)]
            part = part.sort_values(["confidence", "image_id"], ascending=[False, True]).head(per_class)
            picks.append(part.assign(panel="correct" if correct else "incorrect"))
    return pd.concat(picks) if picks else table.head(0)


# --- the stage ---------------------------------------------------------------------------------------------------


@dataclass
class Explanation:
    variant: str
    framework: str
    table: pd.DataFrame  # one row per test image (per_image.csv)
    maps: np.ndarray  # (n_test, S, S) at the mask resolution, rows as ``table``
    images: np.ndarray  # (n_test, S, S, 3) uint8: the prepared images, for display
    masks: np.ndarray  # (n_test, S, S)
    classes: list[str]
    summary: dict


def keras_gradcam(root, dataset: str, name: str, record):
    """(framework, images -> (maps, proba), input size) of a trained Keras CNN."""
    from lesionlab.models.predictor import load_keras_model

    model, size = load_keras_model(root, dataset, name, record)
    return "keras", (lambda x, bs: gradcam_keras(model, x, bs)), size


def backbone_gradcam(root, dataset: str, name: str, record):
    """(framework, images -> (maps, proba), input size) of a trained probe or fine-tune."""
    from lesionlab.models.transfer import load_torch_model

    if record.framework == "keras":
        from lesionlab.models.predictor import load_keras_model

        model, size = load_keras_model(root, dataset, name, record)
        return "keras", (lambda x, bs: gradcam_keras(model, x, bs)), size
    model, spec, size, run = load_torch_model(root, dataset, name, record)
    return "torch", (lambda x, bs: gradcam_torch(model, spec, x, bs, run.device, run.autocast)), size


def load_explainer(root: Path, dataset: str, variant: str):
    """(framework, callable images -> (maps, proba), input size) of a trained image model: its family's Grad-CAM."""
    from lesionlab.models.families import discover
    from lesionlab.models.predictor import row_record

    record = row_record(root, dataset, variant, check_weights=True)
    family = discover().get(record.kind)
    if family is None or family.gradcam is None:
        raise ValueError(f"{variant} is a {record.kind} row, not one image model: Grad-CAM has nothing to explain")
    return family.call("gradcam", root, dataset, variant, record)


def explain_variant(root: Path, dataset: str, variant: str, batch_size: int = 64, progress: bool = True) -> Explanation:
    """Grad-CAM of every test image, scored against the masks; the predictions are checked against the stage's own."""
    data = load_prepared(root, dataset)
    splits = read_splits(splits_file(root, dataset), data.table)
    split = data.table[["image_id"]].merge(splits, on="image_id", how="left")["split"].to_numpy()
    test = np.flatnonzero(split == "test")
    from lesionlab.models.predictor import recorded_preprocess

    framework, explain, size = load_explainer(root, dataset, variant)
    preprocess = recorded_preprocess(root, dataset, variant)
    all_masks = np.asarray(data.masks)
    if preprocess != Preprocess.from_summary(data.summary):  # a preprocessing ablation: its own images and masks
        source, all_masks = np.zeros((len(data.table), size, size, 3), np.uint8), np.zeros_like(all_masks)
        source[test], all_masks[test] = decode_images(data.table.iloc[test], root, size, preprocess)
    else:
        source = (
            np.asarray(data.images) if size == data.images.shape[1] else load_backbone_cache(root, dataset, data.table)
        )
    if source.shape[1] != size:
        raise ValueError(
            f"{variant} takes {size}-px images; the caches hold {data.images.shape[1]} and "
            f"{source.shape[1]} px (re-run `dvc repro`)"
        )
    shown = np.asarray(data.images)[test] if source.shape[1] != data.images.shape[1] else source[test]
    started = time.perf_counter()
    maps, proba = [], []
    chunk = max(batch_size, 256)
    for i in range(0, len(test), chunk):
        m, p = explain(source[test[i : i + chunk]], batch_size)
        maps.append(m)
        proba.append(p)
        if progress:
            print(f"[explain] {variant}: {min(i + chunk, len(test))}/{len(test)} test images", flush=True)
    seconds = time.perf_counter() - started
    maps, proba = np.concatenate(maps), np.concatenate(proba)
    feature_map = [int(d) for d in maps.shape[1:]]
    mask_size = all_masks.shape[1]
    maps = resize_maps(maps, mask_size)
    masks = all_masks[test]
    has_mask = np.asarray(data.has_mask)[test]
    table = data.table.iloc[test][["image_id", "lesion_id", "label"]].reset_index(drop=True)
    classes = list(data.classes)
    table["predicted"] = [classes[j] for j in proba.argmax(axis=1)]
    table["correct"] = table["predicted"] == table["label"]
    table["confidence"] = proba.max(axis=1)
    table["has_mask"] = has_mask
    scores = mask_scores(maps, masks)
    scores.loc[~has_mask, :] = np.nan
    table = pd.concat([table, scores], axis=1)

    stage_pred = pd.read_csv(variant_dir(root, dataset, variant) / "predictions.csv").set_index("image_id")
    stage_proba = stage_pred.loc[table["image_id"], [f"p_{c}" for c in classes]].to_numpy(dtype=float)
    summary = {
        "variant": variant,
        "framework": framework,
        "method": "gradcam",
        "input_size": size,
        "feature_map": feature_map,
        "mask_size": int(mask_size),
        "n_test": int(len(test)),
        "n_with_mask": int(has_mask.sum()),
        "energy_in_mask": _mean(table["energy_in_mask"]),
        "pointing_hit_rate": _mean(table["pointing_hit"]),
        "chance": _mean(table["mask_area"]),
        "max_abs_diff_vs_stage_predictions": float(np.abs(stage_proba - proba).max()) if len(test) else 0.0,
        "seconds": round(seconds, 1),
        "images_per_second": round(len(test) / max(seconds, 1e-9), 1),
    }
    return Explanation(variant, framework, table, maps, shown, masks, classes, summary)


def explain_all(root: Path, dataset: str, variants, batch_size: int = 64, progress: bool = True):
    """:func:`explain_variant` of each variant in turn, in one process, each result written before the next model
    is loaded (one model in memory at a time); yields the results in ``variants``' order."""
    from lesionlab.models.predictor import row_record

    if any(row_record(root, dataset, v).framework == "torch" for v in variants):
        import torchvision  # noqa: F401  (before TensorFlow: imported after it in one process, it crashes)
    for i, variant in enumerate(variants):
        if progress:
            print(f"[explain] {variant} ({i + 1}/{len(variants)})", flush=True)
        result = explain_variant(root, dataset, variant, batch_size=batch_size, progress=progress)
        write_explanation(root, dataset, result)
        if result.framework == "keras":
            import keras

            keras.backend.clear_session()  # the next model starts from an empty graph
        yield result


def write_index(root: Path, dataset: str, variants) -> Path:
    """README.md of the stage's folder: which variants it holds (the folder exists even when none is explained)."""
    out = results_dir(root, dataset) / "explanations"
    out.mkdir(parents=True, exist_ok=True)
    listed = "".join(f"- `{v}/`: per_image.csv, summary.json\n" for v in variants) or "- none (explain.variants: [])\n"
    (out / "README.md").write_text(
        "Grad-CAM of the image models of params.yaml's `explain.variants` (stage `explain`), one folder each:\n\n"
        + listed
    )
    return out


def breakdown(table: pd.DataFrame) -> pd.DataFrame:
    """Mean mask energy, pointing-game hit rate and chance per true class and per outcome (images with a mask)."""
    part = table[table["has_mask"].astype(bool)]
    cols = {"energy_in_mask": "energy inside mask", "pointing_hit": "pointing hit rate", "mask_area": "chance"}
    by_class = part.groupby("label")[list(cols)].mean()
    by_outcome = part.groupby(part["correct"].map({True: "correct", False: "incorrect"}))[list(cols)].mean()
    out = pd.concat([by_class, by_outcome]).rename(columns=cols)
    out["images"] = pd.concat(
        [part.groupby("label").size(), part.groupby(part["correct"].map({True: "correct", False: "incorrect"})).size()]
    )
    return out.round(3)


def _mean(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return round(float(v.mean()), 6) if len(v) else None


def write_explanation(root: Path, dataset: str, result: Explanation) -> Path:
    out = fresh_dir(explanations_dir(root, dataset, result.variant))
    result.table.to_csv(out / "per_image.csv", index=False, float_format="%.6f")
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")
    return out


def read_explanations(root: Path, dataset: str, variants) -> dict[str, pd.DataFrame]:
    """per_image.csv of each variant that has been explained (others are left out)."""
    out = {}
    for v in variants:
        f = explanations_dir(root, dataset, v) / "per_image.csv"
        if f.is_file():
            out[v] = pd.read_csv(f)
    return out

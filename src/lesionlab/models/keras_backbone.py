"""Keras backbones of the registry (``keras.applications``): embeddings and fine-tuning.

The weights come from :func:`lesionlab.models.weights.resolve_weights` (never from keras' own downloader),
so the file and its sha256 are known. Strategies: ``linear_probe`` (via ``embed@``), ``partial``
(the last ``trainable_blocks`` blocks train) and ``full``; BatchNorm layers stay in inference mode in
both (the usual Keras practice for fine-tuning). Warmup + cosine schedule, label smoothing, focal
loss, class weights, EMA (the optimizer's ``use_ema``; the averaged weights are swapped in at the end
of training) and TTA are supported; mixup, cutmix and class-balanced sampling are PyTorch-only and
rejected for Keras backbones when params.yaml is loaded.
"""

from __future__ import annotations

import re
import time

import numpy as np

from lesionlab.config import AugmentParams, BackboneParams
from lesionlab.models import keras_common
from lesionlab.models.backbones import BackboneSpec
from lesionlab.models.fitting import BestEpoch, class_weight_dict
from lesionlab.models.keras_augment import augmenter
from lesionlab.models.keras_common import compute_of, early_stopping, load_keras
from lesionlab.models.tta import N_VIEWS, dihedral, predict_with_tta
from lesionlab.models.weights import WeightsRecord

_APPS = {"keras_mobilenet_v2": "MobileNetV2", "keras_efficientnet_b0": "EfficientNetB0", "keras_resnet50": "ResNet50"}
_BLOCK = re.compile(r"^(block_\d+|block\d+[a-z]|conv\d+_block\d+)")


def _preprocess_layer(keras, spec: BackboneSpec):
    layers = keras.layers
    if spec.name == "keras_mobilenet_v2":
        return layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")
    if spec.name == "keras_resnet50":  # caffe: BGR order, ImageNet means subtracted, no scaling
        # one frozen 1x1 convolution (a channel permutation + the means as bias, exact in float32) rather than a
        # Lambda layer: a saved model then holds no code, and loads with keras' safe_mode on
        bgr = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)
        return layers.Conv2D(
            3,
            1,
            trainable=False,
            name="preprocess",
            kernel_initializer=keras.initializers.Constant(bgr),
            bias_initializer=keras.initializers.Constant([-103.939, -116.779, -123.68]),
        )
    return layers.Identity(name="preprocess")  # EfficientNetB0 normalises inside the model


def build_base(spec: BackboneSpec, record: WeightsRecord, image_size: int, seed: int):
    """The application without its top, average-pooled, with the resolved weights loaded."""
    keras = load_keras(seed)
    app = getattr(keras.applications, _APPS[spec.name])
    base = app(include_top=False, weights=None, input_shape=(image_size, image_size, 3), pooling="avg")
    if record.path:
        base.load_weights(record.path)
    return base


def build_model(
    spec: BackboneSpec,
    record: WeightsRecord,
    cfg: BackboneParams,
    aug: AugmentParams,
    cache_size: int,
    n_classes: int,
    seed: int,
):
    keras = load_keras(seed)
    layers = keras.layers
    base = build_base(spec, record, cfg.image_size, seed)
    inputs = keras.Input((cache_size, cache_size, 3), name="image")
    x = inputs
    if cache_size != cfg.image_size:
        x = layers.Resizing(cfg.image_size, cfg.image_size, name="resize")(x)
    if cfg.augment:  # flips and rotation only (a pretrained backbone's input statistics stay as they were)
        geometry = augmenter(keras, aug.model_copy(update={"zoom": 0.0, "translate": 0.0}), seed, geometry_only=True)
        if geometry is not None:
            x = geometry(x)
    x = _preprocess_layer(keras, spec)(x)
    x = base(x, training=False)  # BatchNorm in inference mode, trainable or not
    x = layers.Dropout(cfg.dropout, seed=seed + 2)(x)
    if cfg.head == "mlp":
        x = layers.Dense(cfg.hidden_units, activation="gelu")(x)
        x = layers.Dropout(cfg.dropout, seed=seed + 3)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="proba")(x)
    apply_strategy(base, cfg.strategy, cfg.trainable_blocks)
    return keras.Model(inputs, outputs, name=f"lesionlab_{spec.name}")


def block_groups(base) -> list[list]:
    """Layers grouped by block name prefix (``block_16``, ``block7a``, ``conv5_block3``) in order."""
    groups: list[list] = []
    current = None
    for layer in base.layers:
        match = _BLOCK.match(layer.name)
        key = match.group(1) if match else current
        if key != current or not groups:
            groups.append([])
            current = key
        groups[-1].append(layer)
    return groups


def apply_strategy(base, strategy: str, trainable_blocks: int) -> None:
    base.trainable = strategy != "linear_probe"
    if strategy == "partial":
        groups = block_groups(base)
        keep = {id(layer) for group in (groups[-trainable_blocks:] if trainable_blocks else []) for layer in group}
        for layer in base.layers:
            layer.trainable = id(layer) in keep
    for layer in base.layers:
        if "BatchNormalization" in type(layer).__name__:
            layer.trainable = False


#: images per inference call of a backbone (larger than a CNN's activations allow at 512)
PREDICT_BATCH = 128


def predict(model, images, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    return keras_common.predict(model, images, batch_size)


def embedding_model(spec: BackboneSpec, record: WeightsRecord, size: int, seed: int):
    """uint8 images (size x size) -> pooled embedding, preprocessing included."""
    keras = load_keras(seed)
    base = build_base(spec, record, size, seed)
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, base(_preprocess_layer(keras, spec)(inputs), training=False))


def embeddings(
    spec: BackboneSpec, record: WeightsRecord, images, size: int, batch_size: int, seed: int, progress: bool
) -> np.ndarray:
    """Pooled embeddings of the 8 views of every image: (N, 8, D) float32."""
    from tqdm.auto import tqdm

    model = embedding_model(spec, record, size, seed)  # imports Keras, seeded
    from keras import ops

    out = np.zeros((len(images), N_VIEWS, spec.features), dtype=np.float32)
    bar = tqdm(total=len(images) * N_VIEWS, desc=f"embed {spec.name}", disable=not progress, mininterval=5, unit="img")
    for i in range(0, len(images), batch_size):
        batch = np.asarray(images[i : i + batch_size])
        for view in range(N_VIEWS):
            batch_view = dihedral(batch, view).astype(np.float32)
            out[i : i + len(batch), view] = ops.convert_to_numpy(model(batch_view, training=False))
            bar.update(len(batch))
    bar.close()
    return out


def finetune(
    spec: BackboneSpec,
    record: WeightsRecord,
    cfg: BackboneParams,
    aug: AugmentParams,
    images,
    rows,
    seed: int,
    out,
    progress: bool,
    label: str = "",
    compute_cfg=None,
) -> dict:
    run = compute_of(compute_cfg, seed)  # Keras' backend first: it is fixed when Keras is imported
    keras = load_keras(seed)
    n_classes = len(rows.data.classes)
    model = build_model(spec, record, cfg, aug, images.shape[1], n_classes, seed)
    train, val = rows.train, rows.val
    steps = int(np.ceil(len(train) / cfg.batch_size))
    total, warmup = steps * cfg.epochs, steps * cfg.warmup_epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else cfg.learning_rate,
        max(1, total - warmup),
        alpha=0.0,
        warmup_target=cfg.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(
        schedule, weight_decay=cfg.weight_decay, use_ema=cfg.ema > 0, ema_momentum=cfg.ema or 0.99
    )
    if cfg.loss == "focal":
        loss = keras.losses.CategoricalFocalCrossentropy(gamma=cfg.focal_gamma, label_smoothing=cfg.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    x_train, x_val = np.asarray(images[train]), np.asarray(images[val])
    y_train, y_val = rows.y[train], rows.y[val]
    tracker = BestEpoch(y_val, n_classes, cfg.epochs, cfg.patience, label, progress)
    stopper = early_stopping(keras, tracker, x_val, len(x_train), with_learning_rate=True, batch_size=PREDICT_BATCH)
    model.fit(
        x_train,
        keras.utils.to_categorical(y_train, n_classes),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        class_weight=class_weight_dict(y_train, n_classes) if cfg.class_weights else None,
        shuffle=True,
        verbose=0,
        callbacks=[stopper],
    )
    if stopper.best_weights is not None and not cfg.ema:
        model.set_weights(stopper.best_weights)
    result = tracker.result
    started = time.perf_counter()
    proba, proba_tta = predict_with_tta(lambda x: predict(model, x), images, rows.scored, cfg.tta)
    predict_seconds = time.perf_counter() - started
    model.save(out / "model.keras")
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {
        "proba": proba,
        "proba_tta": proba_tta,
        "fit": result,
        "compute": run,
        "n_params": (int(model.count_params()), trainable),
        "predict_seconds": predict_seconds,
    }

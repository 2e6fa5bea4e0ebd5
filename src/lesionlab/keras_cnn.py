"""The baseline CNN of the ablation ladder, in Keras 3 on TensorFlow: one builder, flags for each rung.

Rungs (params.yaml ``variants:``): augmentation (flips, rotations, zoom, shifts,
brightness/contrast), class weights, BatchNorm, ELU, batch size. Early stopping
watches the validation *balanced* accuracy and restores the best weights.

TensorFlow is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from lesionlab.config import AugmentParams, TrainParams
from lesionlab.metrics import balanced_accuracy, confusion_matrix


#: BatchNorm's moving-average momentum. Keras' default (0.99) needs hundreds of steps before the
#: inference statistics settle; with ~30 steps per epoch that made the first validation epochs
#: meaningless and early stopping cut BN variants off. 0.9 is PyTorch's default (its momentum=0.1).
BN_MOMENTUM = 0.9


def _keras(seed: int):
    # TF 2.21's C++ runtime logs a harmless "NodeDef mentions attribute use_unbounded_threadpool"
    # error for every tf.data pipeline Keras builds; level 3 keeps it out of the reports.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return keras


def build_cnn(cfg: TrainParams, aug: AugmentParams, image_size: int, n_classes: int, seed: int):
    """Conv blocks (conv -> [BN] -> act -> max-pool) of ``cfg.filters``, then a dense head."""
    keras = _keras(seed)
    layers = keras.layers
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    if cfg.augment:
        blocks = []
        if aug.flip:
            blocks.append(layers.RandomFlip("horizontal_and_vertical", seed=seed))
        if aug.rotation:
            blocks.append(layers.RandomRotation(aug.rotation, fill_mode="reflect", seed=seed + 1))
        if aug.zoom:
            blocks.append(layers.RandomZoom(aug.zoom, fill_mode="reflect", seed=seed + 2))
        if aug.translate:
            blocks.append(layers.RandomTranslation(aug.translate, aug.translate, fill_mode="reflect", seed=seed + 3))
        if aug.brightness:
            blocks.append(layers.RandomBrightness(aug.brightness, value_range=(0.0, 1.0), seed=seed + 4))
        if aug.contrast:
            blocks.append(layers.RandomContrast(aug.contrast, seed=seed + 5))
        x = keras.Sequential(blocks, name="augment")(x)
    for i, filters in enumerate(cfg.filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not cfg.batchnorm, name=f"conv{i + 1}")(x)
        if cfg.batchnorm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i + 1}")(x)
        x = layers.Activation(cfg.activation, name=f"{cfg.activation}{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(cfg.dropout, seed=seed + 6, name="dropout1")(x)
    x = layers.Dense(cfg.dense_units, name="dense")(x)
    if cfg.batchnorm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn_dense")(x)
    x = layers.Activation(cfg.activation, name=f"{cfg.activation}_dense")(x)
    x = layers.Dropout(cfg.dropout, seed=seed + 7, name="dropout2")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="proba")(x)
    model = keras.Model(inputs, outputs, name="lesionlab_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=8,  # fewer Python round trips per epoch: about +20 % images/s for small CNNs on CPU
    )
    return model


def balanced_class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """n / (k * count_c) for the classes present in ``y`` (scikit-learn's "balanced")."""
    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    k = int(present.sum())
    return {c: float(len(y) / (k * counts[c])) for c in range(n_classes) if present[c]}


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0
    images_seen: int = 0
    n_params: int = 0


def fit(model, x_train, y_train, x_val, y_val, cfg: TrainParams, n_classes: int, seed: int, progress: bool = True) -> FitResult:
    """Train with early stopping on validation balanced accuracy; the best epoch's weights are kept."""
    keras = _keras(seed)
    result = FitResult(n_params=int(model.count_params()))
    weights = balanced_class_weights(y_train, n_classes) if cfg.class_weights else None
    state = {"best": -np.inf, "weights": None, "wait": 0, "t0": 0.0}

    class EarlyStopOnBalancedAccuracy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            state["t0"] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - state["t0"]
            proba = predict(self.model, x_val)
            pred = proba.argmax(axis=1)
            bacc = balanced_accuracy(confusion_matrix(y_val, pred, n_classes))
            val_loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y_val)), y_val], 1e-7, 1.0))))
            row = {
                "epoch": epoch + 1,
                "loss": float(logs["loss"]),
                "accuracy": float(logs["accuracy"]),
                "val_loss": val_loss,
                "val_accuracy": float(np.mean(pred == y_val)),
                "val_balanced_accuracy": float(bacc),
                "seconds": round(seconds, 3),
            }
            result.history.append(row)
            result.train_seconds += seconds
            result.images_seen += len(x_train)
            improved = bacc > state["best"] + 1e-9
            if improved:
                state.update(best=bacc, weights=self.model.get_weights(), wait=0)
                result.best_epoch = epoch + 1
            else:
                state["wait"] += 1
                if state["wait"] >= cfg.patience:
                    self.model.stop_training = True
            if progress:
                print(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {row['loss']:.4f}  val_loss {val_loss:.4f}  "
                      f"val_bacc {bacc:.4f}{'  *' if improved else ''}  ({seconds:.1f} s)", flush=True)

    model.fit(
        x_train, y_train,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        class_weight=weights,
        shuffle=True,
        verbose=0,
        callbacks=[EarlyStopOnBalancedAccuracy()],
    )
    if state["weights"] is not None:
        model.set_weights(state["weights"])
    return result


def predict(model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Softmax outputs in inference mode (direct calls: model.predict's data pipeline costs more here)."""
    out = [np.asarray(model(np.asarray(images[i:i + batch_size]), training=False))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, model.output_shape[-1]))

"""The baseline CNN of the ablation ladder, in Keras 3 (TensorFlow or PyTorch backend): one builder, flags for
each rung.

Rungs (params.yaml ``variants:``): augmentation (flips, rotation, zoom, shifts in one affine resampling,
then brightness/contrast: :mod:`lesionlab.models.keras_augment`), class weights, BatchNorm, ELU, batch size.
Early stopping watches the validation *balanced* accuracy and restores the best weights.

TensorFlow is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import numpy as np

from lesionlab.config import AugmentParams, TrainParams
from lesionlab.models.fitting import BestEpoch, FitResult, class_weight_dict
from lesionlab.models.keras_augment import augmenter
from lesionlab.models.keras_common import (  # noqa: F401  (predict: this family's)
    early_stopping,
    load_keras,
    predict,
    training_batches,
)

#: BatchNorm's moving-average momentum. Keras' default (0.99) needs hundreds of steps before the
#: inference statistics settle; with ~30 steps per epoch that made the first validation epochs
#: meaningless and early stopping cut BN variants off. 0.9 is PyTorch's default (its momentum=0.1).
BN_MOMENTUM = 0.9


def build_cnn(cfg: TrainParams, aug: AugmentParams, image_size: int, n_classes: int, seed: int):
    """Conv blocks (conv -> [BN] -> act -> max-pool) of ``cfg.filters``, then a dense head."""
    keras = load_keras(seed)
    layers = keras.layers
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    augment = augmenter(keras, aug, seed) if cfg.augment else None
    if augment is not None:
        x = augment(x)
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
        # fewer Python round trips per epoch: about +20 % images/s for small CNNs on CPU (TensorFlow; Keras' torch
        # backend runs one step per call)
        steps_per_execution=8 if keras.backend.backend() == "tensorflow" else 1,
    )
    return model


def fit(
    model, x_train, y_train, x_val, y_val, cfg: TrainParams, n_classes: int, seed: int, progress: bool = True
) -> FitResult:
    """Train with early stopping on validation balanced accuracy; the best epoch's weights are kept."""
    keras = load_keras(seed)
    tracker = BestEpoch(
        y_val, n_classes, cfg.epochs, cfg.patience, progress=progress, n_params=int(model.count_params())
    )
    stopper = early_stopping(keras, tracker, x_val, len(x_train))
    weights = class_weight_dict(y_train, n_classes) if cfg.class_weights else None
    per_image = None if weights is None else np.array([weights[int(c)] for c in y_train], dtype=np.float32)
    batches = training_batches(x_train, y_train, cfg.batch_size, seed, per_image)
    if batches is not None:  # TensorFlow: the project's tf.data pipeline (keras_common.training_batches)
        model.fit(batches, epochs=cfg.epochs, shuffle=False, verbose=0, callbacks=[stopper])  # shuffled by the pipeline
    else:
        model.fit(
            x_train,
            y_train,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            class_weight=weights,
            shuffle=True,
            verbose=0,
            callbacks=[stopper],
        )
    if stopper.best_weights is not None:
        model.set_weights(stopper.best_weights)
    return tracker.result


def load_predictor(root, dataset: str, name: str, record):
    """A trained CNN-ladder variant as a Predictor (lesionlab predict)."""
    from lesionlab.models.predictor import Predictor, load_keras_model

    model, size = load_keras_model(root, dataset, name, record)
    return Predictor(name, "cnn", "keras", tuple(record.classes), size, lambda x: predict(model, x))

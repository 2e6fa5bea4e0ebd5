"""What every Keras model of the project shares: the seeded, deterministic Keras module, early stopping
(:class:`lesionlab.models.fitting.BestEpoch` as a Keras callback) and batched inference.

TensorFlow is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import os
import time

import numpy as np

from lesionlab.models.fitting import BestEpoch


def load_keras(seed: int):
    """Keras with every random generator seeded and TensorFlow's deterministic ops on."""
    # TF 2.21's C++ runtime logs a harmless "NodeDef mentions attribute use_unbounded_threadpool"
    # error for every tf.data pipeline Keras builds; level 3 keeps it out of the reports.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return keras


def predict(model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Softmax outputs in inference mode (direct calls: model.predict's data pipeline costs more here)."""
    out = [
        np.asarray(model(np.asarray(images[i : i + batch_size]), training=False))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, model.output_shape[-1]))


def early_stopping(
    keras, tracker: BestEpoch, x_val: np.ndarray, n_train: int, with_learning_rate: bool = False, batch_size: int = 512
):
    """A Keras callback feeding ``tracker`` each epoch; it keeps the best epoch's weights in ``.best_weights``
    and stops training when the tracker's patience runs out."""

    class EarlyStopOnBalancedAccuracy(keras.callbacks.Callback):
        best_weights = None

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            self.bar = tracker.batches(epoch + 1, self.params.get("steps") or 0)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close()
            seconds = time.perf_counter() - self.t0
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)) if with_learning_rate else None
            if tracker.end_epoch(
                epoch + 1, predict(self.model, x_val, batch_size), logs["loss"], logs["accuracy"], seconds, n_train, lr
            ):
                self.best_weights = self.model.get_weights()
            if tracker.stop:
                self.model.stop_training = True

    return EarlyStopOnBalancedAccuracy()

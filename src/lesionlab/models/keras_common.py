"""What every Keras model of the project shares: the backend (``compute.keras_backend``: TensorFlow or PyTorch),
the seeded, deterministic Keras module, early stopping (:class:`lesionlab.models.fitting.BestEpoch` as a Keras
callback), the training input pipeline (:func:`training_batches`) and batched inference.

Keras 3 fixes its backend when it is first imported (``$KERAS_BACKEND``): a stage calls :func:`use_backend`
before anything imports Keras, and a second backend in the same process is refused with the reason.
TensorFlow / PyTorch are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time

import numpy as np

from lesionlab.models.fitting import BestEpoch

BACKENDS = ("tensorflow", "torch")


def use_backend(backend: str) -> str:
    """Make ``backend`` Keras' backend in this process (before Keras is imported; a no-op if it already is)."""
    if backend not in BACKENDS:
        raise ValueError(f"compute.keras_backend must be one of {list(BACKENDS)}, not {backend!r}")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise RuntimeError(
                f"Keras was already imported with the {current!r} backend in this process; "
                f"compute.keras_backend {backend!r} needs a fresh process (Keras 3 fixes its backend on import)"
            )
    os.environ["KERAS_BACKEND"] = backend
    return backend


#: what TensorFlow's C++ runtime writes to file descriptor 2 while it is imported, before it reads
#: ``TF_CPP_MIN_LOG_LEVEL`` (so that level cannot hide it): the oneDNN notice, absl's "before InitializeLog" line
#: and the CPU-feature notice, each twice per process (and twice again through a notebook kernel's copy of fd 2)
TF_START_NOTICES = (
    b"All log messages before absl::InitializeLog() is called",
    b"oneDNN custom operations are on",
    b"cpu_feature_guard.cc",
    b"To enable the following instructions:",
)


@contextlib.contextmanager
def without_tf_start_notices():
    """While TensorFlow is first imported, file descriptor 2 goes to a temporary file; afterwards every line of it
    except :data:`TF_START_NOTICES` is written to the real stderr (warnings and errors pass, in order). A no-op once
    TensorFlow is imported or when the user set ``TF_CPP_MIN_LOG_LEVEL`` to 0 (everything shown)."""
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True) if not _is_start_notice(line)]
            if kept:
                os.write(2, b"".join(kept))


def _is_start_notice(line: bytes) -> bool:
    return any(notice in line for notice in TF_START_NOTICES)


def load_keras(seed: int, threads: int | None = None):
    """Keras (on ``$KERAS_BACKEND``, default TensorFlow) with every random generator seeded and the backend's
    deterministic algorithms on; with ``threads`` (> 0), the backend's CPU thread pools set to that many threads
    (``compute.keras_threads``; ``None`` or 0 leaves them as they are)."""
    # TF 2.21's C++ runtime logs a harmless "NodeDef mentions attribute use_unbounded_threadpool"
    # error for every tf.data pipeline Keras builds; level 3 keeps it out of the reports.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" not in sys.modules:
        use_backend(os.environ.get("KERAS_BACKEND") or "tensorflow")
    with without_tf_start_notices():
        keras = _seeded_keras(seed)
    if threads:
        set_threads(keras, threads)
    return keras


def set_threads(keras, threads: int) -> None:
    """The CPU threads the backend computes with: TensorFlow's intra-op and inter-op pools (fixed when its runtime
    starts: a process that already ran with other counts is refused with the reason) or PyTorch's pool.

    Why a fixed number rather than one per core: a network's float reductions are split over the threads, so the
    trained weights (and metrics) of a CNN change with the thread count; with TensorFlow's default that is the
    core count of whatever machine runs it."""
    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)
        return
    import tensorflow as tf

    pools = tf.config.threading
    current = (pools.get_intra_op_parallelism_threads(), pools.get_inter_op_parallelism_threads())
    if current == (threads, threads):
        return
    try:
        pools.set_intra_op_parallelism_threads(threads)
        pools.set_inter_op_parallelism_threads(threads)
    except RuntimeError as err:  # "... cannot be modified after initialization"
        raise RuntimeError(
            f"compute.keras_threads {threads}: TensorFlow already runs with {current[0]} intra-op x {current[1]} "
            "inter-op threads in this process (0 = its default) and cannot change them; run in a fresh process"
        ) from err


def resolved_threads(keras) -> int:
    """The intra-op threads the backend computes with now (0: TensorFlow's default, one per core)."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.get_num_threads()
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads()


def _seeded_keras(seed: int):
    import keras

    from lesionlab.models import keras_augment

    keras_augment.register(keras)  # the project's layers, so that saved models load with safe_mode on

    if keras.backend.backend() == "torch":
        # set_random_seed seeds TensorFlow too when it is installed, importing it; torchvision must come first
        # (imported after TensorFlow in one process, it crashes)
        import torchvision  # noqa: F401

        from lesionlab.models.torch_models import deterministic_algorithms

        keras.utils.set_random_seed(seed)
        deterministic_algorithms()
    else:
        import tensorflow as tf

        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()
    return keras


def device_name() -> str:
    """Where Keras runs its models: ``cuda`` / ``gpu`` (TensorFlow's name) or ``cpu``."""
    import keras

    if keras.backend.backend() == "torch":
        from lesionlab.models.compute import pick_device

        return pick_device("auto")
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def compute_of(cfg, seed: int = 0):
    """What a Keras stage runs with (recorded like the PyTorch stages'): float32, Keras' own memory layout."""
    from lesionlab.models.compute import Compute, keep_freed_memory

    memory = keep_freed_memory()
    backend = use_backend(getattr(cfg, "keras_backend", "tensorflow"))
    keras = load_keras(seed, getattr(cfg, "keras_threads", 0))
    return Compute(
        device_name(),
        "float32",
        False,
        backend,
        f"Keras on {backend}: float32",
        memory=memory,
        threads=resolved_threads(keras),
    )


def predict(model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Softmax outputs in inference mode (direct calls: model.predict's data pipeline costs more here)."""
    from keras import ops

    out = [
        ops.convert_to_numpy(model(np.asarray(images[i : i + batch_size]), training=False))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, model.output_shape[-1]))


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, sample_weight=None):
    """What ``model.fit`` trains on: on TensorFlow, a ``tf.data`` pipeline of the arrays, reshuffled every epoch
    (seeded), in batches of ``batch_size`` with a last short batch, with one batch prefetched on a private pool of
    one thread and tf.data's autotuning off; on PyTorch, ``None`` (fit takes the arrays, shuffled by Keras).

    Why not the arrays themselves on TensorFlow: Keras' array adapter builds its pipeline with autotuned
    parallelism, whose threads compete with the training step's for the cores. On the 2-core development CPU
    that made epochs alternate between a fast and a twice as slow time (the step waiting on whichever core was
    shared); this pipeline keeps them near the fast one (``make bench-threads``: docs/cost.md's rows fed "the
    arrays" against the "tf.data pipeline" row). ``sample_weight`` (per image: the class weights) rides along as the
    pipeline's third element, which Keras weighs the loss with exactly as it does ``class_weight``."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    tensors = (x, y) if sample_weight is None else (x, y, np.asarray(sample_weight, dtype=np.float32))
    batches = (
        tf.data.Dataset.from_tensor_slices(tensors)
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(1)
    )
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.autotune.enabled = False
    options.deterministic = True
    return batches.with_options(options)


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

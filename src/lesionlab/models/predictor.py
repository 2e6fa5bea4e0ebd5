"""A trained row as a function of images: the :class:`Predictor` every family's loader returns, and loading a saved
model without running code from disk (Keras ``safe_mode``, PyTorch ``weights_only``).

Kept apart from :mod:`lesionlab.models.predict` (which picks the family's loader from the registry) so that a family's
loader, which lives beside its training code, does not make the training stages depend on every other family.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.data.preprocess import Preprocess
from lesionlab.models.record import RECORD_FILE, TrainingRecord, read_record
from lesionlab.paths import ensemble_dir, variant_dir
from lesionlab.pipeline.contracts import ContractError


@dataclass
class Predictor:
    variant: str
    kind: str  # cnn | probe | finetune | tabular | ensemble
    framework: str
    classes: tuple[str, ...]
    input_size: int  # side of the uint8 images it takes
    proba: Callable[[np.ndarray], np.ndarray]
    #: ensembles and metadata models: more image sizes to decode, and a function of
    #: ({size: images}, the batch's input rows, tta) -> probabilities that replaces ``proba``
    extra_sizes: tuple[int, ...] = ()
    combine: Callable[[dict, pd.DataFrame, bool], np.ndarray] | None = None
    #: how the training images were decoded (colour constancy, resize policy): applied to every input
    preprocess: Preprocess = field(default_factory=Preprocess)

    def batch_proba(self, images: dict, rows: pd.DataFrame, tta: bool) -> np.ndarray:
        from lesionlab.models.tta import average_views

        if self.combine is not None:
            return self.combine(images, rows, tta)
        return average_views(self.proba, images[self.input_size], tta)


def load_keras_model(root: Path, dataset: str, variant: str, record: TrainingRecord):
    """(Keras model, input size) of a CNN-ladder variant or a fine-tuned Keras backbone."""
    from lesionlab.models.keras_common import load_keras, use_backend

    if record.kind == "probe":
        raise ValueError(f"{variant}: a Keras probe is a Keras embedder + a PyTorch head, not one model")
    if "keras" not in sys.modules:  # the backend it trained on; a .keras file loads on either backend
        use_backend((record.compute or {}).get("keras_backend", "tensorflow"))
    keras = load_keras(record.seed)
    return safe_keras_load(keras, variant_dir(root, dataset, variant) / "model.keras"), record.input_size


def safe_keras_load(keras, path: Path):
    """A saved Keras model, loaded with ``safe_mode`` on: a file holding code (a Lambda layer's bytecode, an
    unregistered custom object) is refused with the reason, never run. Models this package saves hold none."""
    try:
        # compile=False: inference needs no optimizer; and a model saved on the torch backend names its compile
        # objects by that backend, whose import (torch._dynamo -> triton) crashes a process that loaded TensorFlow
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except (ValueError, TypeError) as err:
        if "safe_mode" in str(err) or "lambda" in str(err).lower() or "custom" in str(err).lower():
            raise ContractError(
                f"{path}: refused to load: the file holds code that would run on loading "
                f"({str(err).splitlines()[0][:160]}). Models lesionlab saves hold none; retrain this "
                "variant (`dvc repro`) rather than loading a file from elsewhere"
            ) from None
        raise


def safe_torch_load(path: Path) -> dict:
    """A saved PyTorch state (tensors, numbers, strings) with ``weights_only``: a pickle that would build any
    other object (and so could run code) is refused with the reason."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ContractError(
            f"{path}: refused to load: not a plain weights file (it would build objects other than "
            f"tensors: {str(err).splitlines()[0][:160]}). Retrain this variant (`dvc repro`)"
        ) from None


def row_record(root: Path, dataset: str, name: str, check_weights: bool = False) -> TrainingRecord:
    """The training record of a trained row: a variant (``variants/<name>``) or an ensemble (``ensembles/<name>``)."""
    folder = ensemble_dir(root, dataset, name)
    if not (folder / RECORD_FILE).is_file():
        folder = variant_dir(root, dataset, name)
    if not (folder / RECORD_FILE).is_file():
        trained = sorted(p.name for p in folder.parent.glob("*") if p.is_dir())
        raise FileNotFoundError(
            f"{folder / RECORD_FILE} not found: variant {name!r} of {dataset!r} has not been "
            f"trained (run `dvc repro` or pick one of {trained})"
        )
    return read_record(folder, check_weights=check_weights)


def recorded_preprocess(root: Path, dataset: str, variant: str) -> Preprocess:
    """How ``variant``'s training images were decoded (its training record)."""
    return row_record(root, dataset, variant).preprocessing()

"""Fitting helpers every trainer shares (Keras CNNs, Keras and PyTorch backbones, metadata models, ensembles).

- :func:`balanced_class_weights`: scikit-learn's "balanced" weights, one definition;
- :class:`BestEpoch`: early stopping on the validation *balanced* accuracy, the best epoch remembered, one
  history row per epoch in one format; the framework's loop (a Keras callback, a PyTorch loop) only feeds it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from lesionlab.evaluation.metrics import balanced_accuracy, confusion_matrix
from lesionlab.models import runlog


def balanced_class_weights(y: np.ndarray, k: int) -> np.ndarray:
    """n / (k_present * count) per class (scikit-learn's 'balanced'); absent classes weigh 0."""
    counts = np.bincount(y, minlength=k).astype(float)
    present = counts > 0
    w = np.zeros(k)
    w[present] = len(y) / (present.sum() * counts[present])
    return w


def class_weight_dict(y: np.ndarray, k: int) -> dict[int, float]:
    """:func:`balanced_class_weights` as Keras' ``class_weight`` wants them: the classes present in ``y`` only."""
    w = balanced_class_weights(y, k)
    return {c: float(w[c]) for c in range(k) if w[c] > 0}


#: seconds an epoch runs before its progress bar shows
PROGRESS_AFTER = 5.0


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0
    images_seen: int = 0
    n_params: int = 0


class BestEpoch:
    """Early stopping on validation balanced accuracy (a better epoch must beat the best by 1e-9).

    Call :meth:`end_epoch` once per epoch with the validation probabilities; it appends the history row
    (epoch, loss, accuracy, val_loss, val_accuracy, val_balanced_accuracy[, learning_rate], seconds), prints the
    progress line and returns whether the epoch improved; :attr:`stop` says when patience has run out."""

    def __init__(
        self,
        y_val: np.ndarray,
        n_classes: int,
        epochs: int,
        patience: int,
        label: str = "",
        progress: bool = True,
        n_params: int = 0,
    ):
        self.y_val, self.n_classes, self.epochs, self.patience = y_val, n_classes, epochs, patience
        self.label, self.progress = label, progress
        self.result = FitResult(n_params=n_params)
        self.best, self.wait = -np.inf, 0

    @property
    def stop(self) -> bool:
        return self.wait >= self.patience

    def batches(self, epoch: int, steps: int):
        """A progress bar over one epoch's ``steps`` batches (``.update(1)`` per batch, ``.close()`` at the end).
        It appears only once the epoch has run for :data:`PROGRESS_AFTER` seconds, so short epochs print just
        their summary line; with ``progress=False`` it is silent."""
        from tqdm import tqdm  # plain text: a notebook kernel has no widgets here

        return tqdm(
            total=steps,
            desc=f"{self.label}epoch {epoch}/{self.epochs}",
            unit="batch",
            delay=PROGRESS_AFTER,
            mininterval=PROGRESS_AFTER,
            leave=False,
            disable=not self.progress,
            file=sys.stderr,
        )

    def end_epoch(
        self,
        epoch: int,
        proba: np.ndarray,
        loss: float,
        accuracy: float,
        seconds: float,
        seen: int,
        learning_rate: float | None = None,
    ) -> bool:
        y = self.y_val
        pred = proba.argmax(axis=1)
        bacc = balanced_accuracy(confusion_matrix(y, pred, self.n_classes))
        row = {
            "epoch": epoch,
            "loss": float(loss),
            "accuracy": float(accuracy),
            "val_loss": float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0)))),
            "val_accuracy": float(np.mean(pred == y)),
            "val_balanced_accuracy": float(bacc),
        }
        if learning_rate is not None:
            row["learning_rate"] = float(learning_rate)
        row["seconds"] = round(seconds, 3)
        self.result.history.append(row)
        log = runlog.current()
        if log is not None:  # a stage opened the row's dvclive log: the epoch is in DVC's views as it ends
            log.step(row, epoch)
        self.result.train_seconds += seconds
        self.result.images_seen += seen
        improved = bacc > self.best + 1e-9
        if improved:
            self.best, self.wait, self.result.best_epoch = bacc, 0, epoch
        else:
            self.wait += 1
        if self.progress:
            print(
                f"{self.label}epoch {epoch:3d}/{self.epochs}  loss {row['loss']:.4f}  val_loss {row['val_loss']:.4f}  "
                f"val_bacc {bacc:.4f}{'  *' if improved else ''}  ({seconds:.1f} s, {seen / max(seconds, 1e-9):.0f} "
                "img/s)",
                flush=True,
            )
        return improved

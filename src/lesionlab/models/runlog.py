"""The dvclive log of one trained row: what DVC's own views (``dvc metrics``, ``dvc plots``, ``dvc exp show``) read.

One writer for every family. A stage opens the row's log around its fit (:func:`run_log`); the Keras and
PyTorch loops log each epoch as it ends, through :class:`lesionlab.models.fitting.BestEpoch`; the stage's last
write (:func:`lesionlab.models.outputs.write_stage_files`) adds the rounds of a model that logged none during
training (the metadata models' boosting rounds), the test split's summary and the sklearn-style plots, then
closes it. ``results/<ds>/live/<row>/`` then holds:

- ``metrics.json``: the headline test metrics only (:data:`SUMMARY`), plus dvclive's last ``step``;
- ``plots/metrics/{train,val}/*.tsv`` and ``plots/metrics/learning_rate.tsv``: one row per epoch (or round);
- ``plots/sklearn/confusion_matrix.json`` (test split, class names), ``roc.json`` (malignant vs benign, when the
  dataset has both) and ``calibration.json`` (top-label confidence vs correctness, the quantity ECE summarises).

Without an open log (a notebook run by hand, a unit test) nothing is written and nothing is imported.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.paths import live_dir

#: the test metrics DVC shows per row (the rest stay in results/<ds>/metrics/<row>.json)
SUMMARY = ("balanced_accuracy", "macro_auc", "malignant_auc", "ece")

#: history column -> dvclive metric name (train/… and val/… become folders of plots/metrics/)
EPOCH_METRICS = {
    "loss": "train/loss",
    "accuracy": "train/accuracy",
    "val_loss": "val/loss",
    "val_accuracy": "val/accuracy",
    "val_balanced_accuracy": "val/balanced_accuracy",
    "learning_rate": "learning_rate",
}

_current: contextvars.ContextVar[RunLog | None] = contextvars.ContextVar("lesionlab_run_log", default=None)


class RunLog:
    """A dvclive ``Live`` for one row, started empty (a rerun never appends to an old log)."""

    def __init__(self, folder: Path):
        shutil.rmtree(folder, ignore_errors=True)
        self.folder = Path(folder)
        self.live = _live_class()(
            str(folder), resume=False, save_dvc_exp=False, dvcyaml=None, report=None, monitor_system=False
        )
        self.steps = 0

    def step(self, row: dict, step: int) -> None:
        """One epoch (or boosting round): the history row's known columns, at ``step``."""
        self.live.step = int(step)
        for column, metric in EPOCH_METRICS.items():
            value = row.get(column)
            if value is not None and math.isfinite(float(value)):
                self.live.log_metric(metric, float(value))
        self.steps += 1

    def finish(self, metrics: dict, predictions: pd.DataFrame | None, classes: list[str] | None) -> None:
        """The summary (:data:`SUMMARY` of ``metrics``; a skipped row logs ``skipped: 1``, its reason being in its
        metrics file and on its page) and the test-split plots."""
        if "skipped" in metrics:
            self.live.summary = {"skipped": 1}
        else:
            self.live.summary = {k: _finite(metrics.get(k)) for k in SUMMARY}
        if predictions is not None and classes:
            self._plots(predictions, list(classes))
        (self.folder / "plots").mkdir(parents=True, exist_ok=True)  # a dvc.yaml output, even when nothing is plotted
        self.live.make_summary()
        self.live.end()

    def _plots(self, pred: pd.DataFrame, classes: list[str]) -> None:
        from lesionlab.data.taxonomy import malignant_classes
        from lesionlab.evaluation.metrics import malignant_score

        test = pred[pred["split"] == "test"]
        if test.empty:
            return
        proba = test[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
        predicted = np.asarray(classes)[proba.argmax(axis=1)]
        truth = test["label"].astype(str).to_numpy()
        self.live.log_sklearn_plot("confusion_matrix", truth.tolist(), predicted.tolist(), name="confusion_matrix.json")
        correct = (predicted == truth).astype(int)
        if 0 < correct.sum() < len(correct):
            self.live.log_sklearn_plot("calibration", correct, proba.max(axis=1), name="calibration.json")
        malignant = np.isin(truth, malignant_classes(classes))
        if 0 < malignant.sum() < len(malignant):
            self.live.log_sklearn_plot(
                "roc", malignant.astype(int), malignant_score(proba, classes), name="roc.json", drop_intermediate=True
            )


def _live_class():
    """dvclive's ``Live``, tolerant of a git repository without commits (dvclive 3.49 reads HEAD to name the
    experiment and fails there, e.g. on the first `dvc repro` after `git init`: the files are what this project
    uses, and they do not need a commit)."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    class _Live(Live):
        def _init_dvc(self):
            try:
                super()._init_dvc()
            except SCMError:
                self._dvc_file = self._init_dvc_file()

    return _Live


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


@contextlib.contextmanager
def run_log(root: Path, dataset: str, name: str) -> Iterator[RunLog]:
    """Open ``results/<ds>/live/<name>/`` for the duration of a stage's fit and write; the current log is what
    :func:`current` returns (to the training loops) until the block ends."""
    log = RunLog(live_dir(root, dataset, name))
    token = _current.set(log)
    try:
        yield log
    finally:
        _current.reset(token)


def logged(fit):
    """Decorate a family's fit function ``fit(root, params, name, ...)``: its row's log is open while it runs."""

    @functools.wraps(fit)
    def wrapper(root, params, name, *args, **kwargs):
        from lesionlab.models import distributed

        if not distributed.is_primary():  # a data-parallel worker (torchrun rank > 0): rank 0 logs the run
            return fit(root, params, name, *args, **kwargs)
        with run_log(root, params.dataset, name):
            return fit(root, params, name, *args, **kwargs)

    return wrapper


def current() -> RunLog | None:
    """The log of the row being trained in this process, if a stage opened one."""
    return _current.get()

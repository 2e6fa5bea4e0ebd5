"""The dvclive log of a row (lesionlab.models.runlog): what `dvc metrics`, `dvc plots` and `dvc exp show` read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lesionlab.models import runlog
from lesionlab.models.fitting import BestEpoch
from lesionlab.models.outputs import write_skipped, write_stage_files

CLASSES = ["mel", "nv", "bcc"]
RECORD = {"kind": "cnn", "framework": "keras", "classes": CLASSES, "input_size": 16, "seed": 0, "config": {}}


def _out(root):
    (root / "out").mkdir(exist_ok=True)
    return root / "out"


def _predictions(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet([1, 1, 1], n)
    labels = np.asarray(CLASSES)[rng.integers(3, size=n)]
    split = np.where(np.arange(n) % 3 == 0, "test", np.where(np.arange(n) % 3 == 1, "val", "train"))
    frame = pd.DataFrame({"image_id": [f"I{i}" for i in range(n)], "split": split, "label": labels})
    for k, c in enumerate(CLASSES):
        frame[f"p_{c}"] = proba[:, k]
    return frame


def test_epochs_logged_by_the_training_loop_then_summary_and_plots(tmp_path):
    metrics = {"balanced_accuracy": 0.5, "macro_auc": 0.75, "malignant_auc": 0.6, "ece": 0.1, "train_seconds": 3.0}
    y_val = np.array([0, 1, 2, 1])
    with runlog.run_log(tmp_path, "synthetic", "row") as log:
        tracker = BestEpoch(y_val, 3, epochs=3, patience=5, progress=False)
        for epoch in (1, 2, 3):
            tracker.end_epoch(epoch, np.eye(3)[[0, 1, epoch % 3, 1]], 1.0 / epoch, 0.5, 1.0, 10)
        assert log.steps == 3
        history = pd.DataFrame(tracker.result.history)
        write_stage_files(tmp_path, "synthetic", "row", _out(tmp_path), metrics, history, RECORD, _predictions())
    live = tmp_path / "results/synthetic/live/row"
    summary = json.loads((live / "metrics.json").read_text())
    assert summary == {"balanced_accuracy": 0.5, "macro_auc": 0.75, "malignant_auc": 0.6, "ece": 0.1, "step": 3}
    curve = pd.read_csv(live / "plots/metrics/val/balanced_accuracy.tsv", sep="\t")
    assert curve["step"].tolist() == [1, 2, 3]  # logged once per epoch, not again from the history
    assert np.allclose(curve["balanced_accuracy"], history["val_balanced_accuracy"])
    assert pd.read_csv(live / "plots/metrics/train/loss.tsv", sep="\t")["loss"].tolist() == pytest.approx(
        [1, 0.5, 1 / 3]
    )
    confusion = json.loads((live / "plots/sklearn/confusion_matrix.json").read_text())  # one entry per test image
    assert len(confusion) == 20 and {r["actual"] for r in confusion} | {r["predicted"] for r in confusion} <= set(
        CLASSES
    )
    roc = json.loads((live / "plots/sklearn/roc.json").read_text())["roc"]
    assert roc[0]["fpr"] == 0 and roc[-1]["tpr"] == 1  # malignant (mel, bcc) vs benign
    assert (live / "plots/sklearn/calibration.json").is_file()


def test_a_model_without_epochs_logs_its_history_rounds_once(tmp_path):
    history = pd.DataFrame(
        {"epoch": [1, 2], "loss": [0.9, 0.8], "val_loss": [1.0, 0.95], "val_balanced_accuracy": [0.4, 0.45]}
    )
    write_stage_files(tmp_path, "synthetic", "gbm", _out(tmp_path), {"balanced_accuracy": 0.4}, history, RECORD)
    live = tmp_path / "results/synthetic/live/gbm"
    assert pd.read_csv(live / "plots/metrics/val/loss.tsv", sep="\t")["step"].tolist() == [1, 2]
    assert json.loads((live / "metrics.json").read_text())["macro_auc"] is None  # not computed: no number invented
    # a rerun starts the log afresh
    write_stage_files(tmp_path, "synthetic", "gbm", _out(tmp_path), {"balanced_accuracy": 0.4}, history.head(1), RECORD)
    assert pd.read_csv(live / "plots/metrics/val/loss.tsv", sep="\t")["step"].tolist() == [1]


def test_a_skipped_row_logs_no_metric_and_no_log_means_no_files(tmp_path):
    write_skipped(tmp_path, "synthetic", "meta", _out(tmp_path), "no metadata", RECORD)
    assert json.loads((tmp_path / "results/synthetic/live/meta/metrics.json").read_text()) == {"skipped": 1}
    tracker = BestEpoch(np.array([0, 1]), 2, epochs=1, patience=1, progress=False)
    tracker.end_epoch(1, np.eye(2), 0.5, 0.5, 1.0, 2)  # no stage opened a log: nothing written
    assert runlog.current() is None and not (tmp_path / "results/synthetic/live/row").exists()


def test_a_git_repository_without_commits_still_gets_its_log(tmp_path, monkeypatch):
    """The first `dvc repro` after `git init`: dvclive cannot read HEAD there, the log is written anyway."""
    import subprocess

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    with runlog.run_log(tmp_path, "synthetic", "row") as log:
        log.step({"val_balanced_accuracy": 0.5}, 1)
        log.finish({"balanced_accuracy": 0.5}, None, None)
    assert json.loads((tmp_path / "results/synthetic/live/row/metrics.json").read_text())["balanced_accuracy"] == 0.5

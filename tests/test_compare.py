"""The comparison reads predictions only: one test set for all, CIs per variant, a headline sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lesionlab import compare
from lesionlab.contracts import ContractError, write_predictions
from lesionlab.paths import variant_dir
from lesionlab.taxonomy import HAM10000_CLASSES

K = len(HAM10000_CLASSES)


def _preds(labels: np.ndarray, quality: float, seed: int) -> pd.DataFrame:
    """Predictions that put ``quality`` extra mass on the true class."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(K), size=len(labels)) + quality * np.eye(K)[labels]
    p /= p.sum(axis=1, keepdims=True)
    df = pd.DataFrame({"image_id": [f"i{n}" for n in range(len(labels))], "split": "test",
                       "label": [HAM10000_CLASSES[j] for j in labels]})
    for j, c in enumerate(HAM10000_CLASSES):
        df[f"p_{c}"] = p[:, j]
    return df


@pytest.fixture
def labels():
    return np.random.default_rng(0).integers(0, K, 140)


def test_leaderboard_ranks_the_better_model_first_with_cis(labels):
    preds = {"weak": _preds(labels, 0.0, 1), "strong": _preds(labels, 3.0, 2)}
    lesion_of = {f"i{n}": f"L{n // 2}" for n in range(len(labels))}
    board = compare.leaderboard(preds, HAM10000_CLASSES, lesion_of, n_resamples=100, seed=0)
    strong, weak = board.set_index("variant").loc["strong"], board.set_index("variant").loc["weak"]
    assert strong["balanced_accuracy"] > 0.9 and weak["balanced_accuracy"] < 0.35
    assert strong["balanced_accuracy_lo"] > weak["balanced_accuracy_hi"]
    assert board["n_test_lesions"].iloc[0] == 70
    text = compare.headline(board, baseline="weak")
    assert "<b>strong</b>" in text and "do not overlap" in text
    shown = compare.with_ci_text(board)
    assert shown.loc[shown["variant"] == "strong", "balanced accuracy"].iloc[0].startswith("<b>")


def test_variants_on_different_test_sets_are_refused(tmp_path, labels):
    a, b = _preds(labels, 1.0, 1), _preds(labels, 1.0, 2)
    b.loc[0, "label"] = HAM10000_CLASSES[(labels[0] + 1) % K]
    for name, df in (("a", a), ("b", b)):
        p = df[[f"p_{c}" for c in HAM10000_CLASSES]].to_numpy()
        write_predictions(variant_dir(tmp_path, "toy", name) / "predictions.csv", df["image_id"], df["split"],
                          df["label"], p, HAM10000_CLASSES)
    with pytest.raises(ContractError, match="different test sets"):
        compare.load_predictions(tmp_path, "toy", ["a", "b"], HAM10000_CLASSES)


def test_task_leaderboards_and_their_markdown(tmp_path, labels, capsys):
    from lesionlab.cli import main

    preds = {"weak": _preds(labels, 0.0, 1), "strong": _preds(labels, 3.0, 2)}
    lesion_of = {f"i{n}": f"L{n // 2}" for n in range(len(labels))}
    for task, first in (("binary", "malignant AUC"), ("triage", "triage balanced accuracy")):
        board = compare.task_leaderboard(preds, HAM10000_CLASSES, lesion_of, task, n_resamples=50)
        rows = board.set_index("variant")
        main_metric = compare.task_headline(task)[0]
        assert rows.loc["strong", main_metric] > rows.loc["weak", main_metric]
        assert (board[f"{main_metric}_lo"] <= board[main_metric]).all()
        compare.write_leaderboard(board, tmp_path / f"{task}.csv")
        assert main([ "leaderboard", str(tmp_path / f"{task}.csv")]) == 0
        table = capsys.readouterr().out
        assert first in table.splitlines()[0] and "`strong`" in table and "[" in table  # CI of the main metric

"""`lesionlab verify`: a fresh run reproduces the committed findings when each row lies inside its committed CI."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from lesionlab.cli import main
from lesionlab.evaluation import verify


def _board(values: dict[str, float], half_width: float = 0.05, runs: int = 3) -> pd.DataFrame:
    rows = []
    for name, v in values.items():
        row = {"variant": name, "n_runs": runs}
        for m in verify.VERIFIED:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = v, v - half_width, v + half_width
        rows.append(row)
    return pd.DataFrame(rows)


def test_inside_outside_missing_and_undefined():
    committed = _board({"a": 0.60, "b": 0.70, "c": 0.50})
    committed.loc[2, ["malignant_auc", "malignant_auc_lo", "malignant_auc_hi"]] = np.nan  # no malignant class
    fresh = _board({"a": 0.64, "b": 0.80, "d": 0.1})
    fresh = pd.concat([fresh, _board({"c": 0.52})], ignore_index=True)
    fresh.loc[fresh["variant"] == "c", "malignant_auc"] = np.nan
    table = verify.verify(committed, fresh)
    status = dict(zip(table["variant"] + " " + table["metric"], table["status"]))
    assert status["a balanced_accuracy"] == "inside" and status["b balanced_accuracy"] == "outside"
    assert status["c malignant_auc"] == "undefined" and status["c balanced_accuracy"] == "inside"
    assert np.isclose(table.set_index(["variant", "metric"]).loc[("b", "macro_auc"), "off_by"], 0.05, atol=1e-4)
    s = verify.summary(table)
    assert not s["passed"] and s["missing"] == [] and "b balanced_accuracy" in s["outside"]
    text = verify.report(table)
    assert "b balanced_accuracy: fresh 0.8000, committed 0.7000 [0.6500, 0.7500] (3 runs), outside by 0.0500" in text
    # a row of the committed leaderboard that the fresh run lacks fails too
    s = verify.summary(verify.verify(committed, fresh[fresh["variant"] != "a"]))
    assert s["missing"] == ["a"] and not s["passed"]
    # on the boundary, within the CSV's rounding: inside
    edge = _board({"a": 0.65 + 4e-5, "b": 0.7, "c": 0.5})
    assert verify.summary(verify.verify(committed, edge))["outside"] == ["c malignant_auc"]  # NaN in one run only


def test_the_command_passes_or_lists_the_rows_outside(tmp_path, capsys):
    committed, fresh = tmp_path / "committed.csv", tmp_path / "fresh.csv"
    _board({"a": 0.60, "b": 0.70}).to_csv(committed, index=False)
    _board({"a": 0.61, "b": 0.72}).to_csv(fresh, index=False)
    assert main(["verify", "--reference", str(committed), "--fresh", str(fresh)]) == 0
    assert "reproduces the committed findings" in capsys.readouterr().out
    _board({"a": 0.61, "b": 0.90}).to_csv(fresh, index=False)
    assert main(["verify", "--reference", str(committed), "--fresh", str(fresh)]) == 1
    out = capsys.readouterr().out
    assert "b balanced_accuracy" in out and "a balanced_accuracy" not in out


def test_the_default_reference_is_the_committed_leaderboard(tmp_path):
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    import os

    env = {**os.environ, **env}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    board = tmp_path / "reports" / "synthetic" / "leaderboard.csv"
    board.parent.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="not committed"):
        verify.committed_leaderboard(tmp_path, "synthetic")
    _board({"a": 0.6}).to_csv(board, index=False)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "run"], cwd=tmp_path, check=True, env=env)
    _board({"a": 0.9}).to_csv(board, index=False)  # the working tree's fresh run
    assert verify.committed_leaderboard(tmp_path, "synthetic")["balanced_accuracy"].iloc[0] == 0.6

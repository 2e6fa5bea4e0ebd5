"""The predictions contract rejects malformed files with the file, column and rows named."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_predictions

from lesionlab.data.taxonomy import HAM10000_CLASSES
from lesionlab.pipeline.contracts import ContractError, read_predictions, validate_predictions, write_predictions


def test_valid_predictions_pass_and_round_trip(tmp_path):
    df = make_predictions()
    validate_predictions(df, HAM10000_CLASSES)
    p = df[[f"p_{c}" for c in HAM10000_CLASSES]].to_numpy()
    write_predictions(tmp_path / "predictions.csv", df["image_id"], df["split"], df["label"], p, HAM10000_CLASSES)
    back = read_predictions(tmp_path / "predictions.csv", HAM10000_CLASSES)
    assert np.allclose(back[[f"p_{c}" for c in HAM10000_CLASSES]].to_numpy(), p, atol=1e-6)


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda df: df.drop(columns="p_mel"), r"missing column\(s\) \['p_mel'\]"),
        (lambda df: df.drop(columns="split"), r"missing column\(s\) \['split'\]"),
        (lambda df: df.assign(p_nv=df["p_nv"] + 0.2), "do not sum to 1 at line"),
        (lambda df: df.assign(p_nv=-df["p_nv"]), r"in \[0, 1\]"),
        (lambda df: df.assign(p_nv=np.nan), "finite"),
        (
            lambda df: df.assign(label=["melanoma"] + list(df["label"][1:])),
            r"unknown label 'melanoma' at line\(s\) \[2\]",
        ),
        (lambda df: df.assign(split=["holdout"] + list(df["split"][1:])), "split must be one of"),
        (lambda df: df.assign(image_id=["img1"] + list(df["image_id"][1:])), "duplicate image_id"),
        (lambda df: df.assign(p_xyz=0.0), "unknown classes"),
    ],
)
def test_malformed_predictions_are_rejected(break_it, message):
    with pytest.raises(ContractError, match=message):
        validate_predictions(break_it(make_predictions()), HAM10000_CLASSES, source="preds.csv")


def test_error_names_the_file(tmp_path):
    path = tmp_path / "predictions.csv"
    make_predictions().drop(columns="p_df").to_csv(path, index=False)
    with pytest.raises(ContractError, match=str(path)):
        read_predictions(path, HAM10000_CLASSES)
    with pytest.raises(ContractError, match="not found"):
        read_predictions(tmp_path / "absent.csv", HAM10000_CLASSES)


def test_non_numeric_probability_is_rejected():
    df = make_predictions().astype({"p_nv": object})
    df.loc[0, "p_nv"] = "high"
    with pytest.raises(ContractError, match="non-numeric"):
        validate_predictions(df, HAM10000_CLASSES)

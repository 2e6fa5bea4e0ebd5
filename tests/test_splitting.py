"""Lesion-grouped stratified splits: no leakage, proportions kept, deterministic."""

from __future__ import annotations

import pandas as pd
import pytest

from lesionlab.data.splitting import split_by_lesion, split_summary
from lesionlab.pipeline.contracts import ContractError, assert_lesion_disjoint, validate_splits


def test_no_lesion_in_two_splits(toy_table):
    splits = split_by_lesion(toy_table, 0.15, 0.2, seed=1)
    merged = toy_table.merge(splits, on="image_id")
    assert merged.groupby("lesion_id")["split"].nunique().max() == 1
    validate_splits(splits, toy_table)  # the contract check passes too


def test_class_proportions_within_tolerance(toy_table):
    splits = split_by_lesion(toy_table, 0.15, 0.2, seed=3)
    merged = toy_table.merge(splits, on="image_id")
    lesions = merged.drop_duplicates("lesion_id")
    for label, group in lesions.groupby("label"):
        share = group["split"].value_counts(normalize=True)
        n = len(group)
        # lesion-level shares are within one lesion of the target for every class
        assert abs(share.get("test", 0) - 0.2) <= 1 / n + 1e-9, label
        assert abs(share.get("val", 0) - 0.15) <= 1 / n + 1e-9, label
    image_share = merged["split"].value_counts(normalize=True)
    assert abs(image_share["test"] - 0.2) < 0.05 and abs(image_share["val"] - 0.15) < 0.05


def test_every_class_reaches_every_split_when_it_has_three_lesions(toy_table):
    splits = split_by_lesion(toy_table, 0.15, 0.2, seed=0)
    counts = toy_table.merge(splits, on="image_id").drop_duplicates("lesion_id").groupby(["label", "split"]).size()
    for label in toy_table["label"].unique():
        for split in ("train", "val", "test"):
            assert counts.get((label, split), 0) >= 1, (label, split)


def test_deterministic_for_a_seed_and_different_across_seeds(toy_table):
    a = split_by_lesion(toy_table, 0.15, 0.2, seed=5)
    b = split_by_lesion(toy_table.sample(frac=1, random_state=0).reset_index(drop=True), 0.15, 0.2, seed=5)
    c = split_by_lesion(toy_table, 0.15, 0.2, seed=6)
    key = lambda s: dict(zip(s["image_id"], s["split"]))  # noqa: E731
    assert key(a) == key(b)  # independent of row order
    assert key(a) != key(c)


def test_leak_is_detected():
    df = pd.DataFrame({"lesion_id": ["a", "a", "b"], "split": ["train", "test", "val"]})
    with pytest.raises(ContractError, match="more than one split"):
        assert_lesion_disjoint(df)


def test_lesion_with_two_labels_is_refused(toy_table):
    bad = toy_table.copy()
    bad.loc[bad.index[:2], "lesion_id"] = "L_same"
    bad.loc[bad.index[1], "label"] = "mel" if bad.loc[bad.index[0], "label"] != "mel" else "nv"
    with pytest.raises(ValueError, match="more than one label"):
        split_by_lesion(bad, 0.15, 0.2, seed=0)


def test_summary_counts_add_up(toy_table):
    splits = split_by_lesion(toy_table, 0.15, 0.2, seed=0)
    summary = split_summary(toy_table, splits)
    assert summary.loc["all", ("images", "train")] + summary.loc["all", ("images", "val")] + summary.loc[
        "all", ("images", "test")
    ] == len(toy_table)

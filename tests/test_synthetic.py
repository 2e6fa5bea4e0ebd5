"""The embedded dataset: deterministic, HAM10000-shaped, lesions with several views."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionlab.data import synthetic
from lesionlab.data.datasets import read_ham10000_layout
from lesionlab.data.taxonomy import HAM10000_CLASSES, HAM10000_PRIORS

CFG = synthetic.SyntheticConfig(n_lesions=40, width=64, height=48, priors=dict(HAM10000_PRIORS))


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path):
    a = synthetic.generate(tmp_path / "a", CFG, seed=7, workers=1, progress=False)
    b = synthetic.generate(tmp_path / "b", CFG, seed=7, workers=2, progress=False)
    da, db = _digest(a), _digest(b)
    assert da == db
    assert len([k for k in da if k.startswith("images/")]) == len(pd.read_csv(a / "HAM10000_metadata.csv"))


def test_other_seed_gives_other_images(tmp_path):
    a = synthetic.generate(tmp_path / "a", CFG, seed=7, progress=False)
    b = synthetic.generate(tmp_path / "b", CFG, seed=8, progress=False)
    assert _digest(a)["images/SYN_0000000_0.jpg"] != _digest(b)["images/SYN_0000000_0.jpg"]


def test_layout_is_read_by_the_ham10000_importer(tmp_path):
    out = synthetic.generate(tmp_path / "syn", CFG, seed=1, progress=False)
    table = read_ham10000_layout(out)
    assert set(table["label"]) <= set(HAM10000_CLASSES)
    assert table["mask_path"].str.len().gt(0).all()
    assert {"age", "sex", "site", "dx_type"} <= set(table.columns)
    # several images per lesion, each with the same label and metadata
    per_lesion = table.groupby("lesion_id").agg(
        n=("image_id", "size"), labels=("label", "nunique"), sites=("site", "nunique")
    )
    assert (per_lesion["labels"] == 1).all() and (per_lesion["sites"] == 1).all()
    assert (per_lesion["n"] > 1).any()


def test_class_counts_follow_the_priors():
    cfg = synthetic.SyntheticConfig(n_lesions=1000, priors=dict(HAM10000_PRIORS))
    labels = synthetic.plan_lesions(cfg, seed=0)
    counts = pd.Series(labels).value_counts()
    assert len(labels) == 1000
    for c in HAM10000_CLASSES:
        assert abs(counts[c] - 1000 * HAM10000_PRIORS[c]) <= 4, c  # the minimum per class may add a few


def test_views_of_a_lesion_differ_but_share_the_lesion():
    views = synthetic.generate_lesion(
        3, "mel", synthetic.SyntheticConfig(priors=dict(HAM10000_PRIORS), views_per_lesion=(0.0, 1.0)), seed=0
    )
    assert len(views) == 2
    (row0, img0, mask0), (row1, img1, mask1) = views
    assert row0["lesion_id"] == row1["lesion_id"] and row0["image_id"] != row1["image_id"]
    assert not np.array_equal(img0, img1)
    assert mask0.dtype == np.uint8 and 0 < (mask0 > 0).mean() < 0.9


def test_classes_differ_visually_on_average():
    """The class signal is in the pixels: mean colour of melanomas is darker than of naevi, vascular redder."""
    cfg = synthetic.SyntheticConfig(priors=dict(HAM10000_PRIORS), mimic_rate=0.0)

    def mean_rgb(label):
        imgs = [synthetic.generate_lesion(i, label, cfg, seed=0)[0] for i in range(15)]
        return np.mean([img[mask > 0].mean(axis=0) for _, img, mask in imgs], axis=0)

    mel, nv, vasc = mean_rgb("mel"), mean_rgb("nv"), mean_rgb("vasc")
    assert mel.sum() < nv.sum()
    assert vasc[0] - vasc[1] > nv[0] - nv[1]


def test_missing_prior_is_an_error():
    cfg = synthetic.SyntheticConfig(priors={"nv": 1.0})
    with pytest.raises(ValueError, match="missing classes"):
        synthetic.plan_lesions(cfg, seed=0)

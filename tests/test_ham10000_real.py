"""Integration: a few hundred images of a real HAM10000 download through import, prepare and split.

The download is found through $LESIONLAB_HAM10000, else ../shared/datasets/ham10000 beside the
repository. Locally the test is skipped without it; under CI (CI=true) a missing copy is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from lesionlab.config import parse_params
from lesionlab.data.prepare import load_prepared, prepare, read_problems
from lesionlab.data.splitting import make_splits
from lesionlab.data.taxonomy import HAM10000_CLASSES
from lesionlab.pipeline.contracts import assert_lesion_disjoint, validate_splits

REPO = Path(__file__).resolve().parents[1]
N_LESIONS = 25  # per class at most: a few hundred images with repeat views


def _download() -> Path:
    candidates = [os.environ.get("LESIONLAB_HAM10000", ""), str(REPO.parent / "shared" / "datasets" / "ham10000")]
    for c in candidates:
        if c and (Path(c) / "HAM10000_metadata.csv").is_file():
            return Path(c)
    if os.environ.get("CI"):
        pytest.fail(f"HAM10000 copy not found (looked in {[c for c in candidates if c]}); CI must have it")
    pytest.skip("no HAM10000 download (set LESIONLAB_HAM10000)")


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A project folder whose data/ham10000 holds whole lesions of every class, files linked from the download."""
    source = _download()
    meta = pd.read_csv(source / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    per_lesion = meta.groupby("lesion_id").agg(dx=("dx", "first"), n=("image_id", "size")).reset_index()
    # prefer lesions with repeat photographs so that grouping matters, then fill up with single ones
    chosen = (
        per_lesion.sort_values(["dx", "n", "lesion_id"], ascending=[True, False, True])
        .groupby("dx")
        .head(N_LESIONS)["lesion_id"]
    )
    sub = meta[meta["lesion_id"].isin(set(chosen))]
    root = tmp_path_factory.mktemp("ham_project")
    folder = root / "data" / "ham10000"
    for sub_dir in ("images", "masks"):
        (folder / sub_dir).mkdir(parents=True)
    for image_id in sub["image_id"]:
        (folder / "images" / f"{image_id}.jpg").symlink_to(source / "images" / f"{image_id}.jpg")
        mask = source / "masks" / f"{image_id}_segmentation.png"
        if mask.is_file():
            (folder / "masks" / mask.name).symlink_to(mask)
    sub.to_csv(folder / "HAM10000_metadata.csv", index=False)
    return root, sub


def test_prepare_and_split_on_real_ham10000(subset):
    root, sub = subset
    params = parse_params(
        {
            "dataset": "ham10000",
            "dataset_source": "data/ham10000",
            "prepare": {"image_size": 32},
            "variants": {"cnn_baseline": {}},
        }
    )
    prepare(params, root, workers=2, progress=False)
    data = load_prepared(root, "ham10000")
    assert 200 <= len(data.table) <= 600
    assert len(data.table) == len(sub) and set(data.table["image_id"]) == set(sub["image_id"])  # nothing lost
    assert data.table["lesion_id"].nunique() == sub["lesion_id"].nunique() == 7 * N_LESIONS
    assert data.table["label"].value_counts().to_dict() == sub["dx"].value_counts().to_dict()
    assert data.classes == HAM10000_CLASSES
    assert data.images.shape == (len(sub), 32, 32, 3) and data.images.std() > 10  # real pixels, not zeros
    assert data.has_mask.all() and 0.02 < data.masks.mean() < 0.9  # the masks were read
    assert (data.table["mask_path"] != "").all()
    problems = read_problems(root, "ham10000")
    assert not (problems["severity"] == "bad").any()
    expected_missing_age = int(sub["age"].eq("").sum())
    assert (
        int((problems["check"] == "age missing").sum()) == expected_missing_age == int(data.table["age"].isna().sum())
    )

    splits = make_splits(data.table, "lesion_grouped", params.split.val_fraction, params.split.test_fraction, seed=42)
    validate_splits(splits, data.table)
    merged = data.table.merge(splits, on="image_id")
    assert_lesion_disjoint(merged)
    assert merged.groupby("lesion_id")["split"].nunique().max() == 1
    multi = merged.groupby("lesion_id").filter(lambda g: len(g) > 1)
    assert multi["lesion_id"].nunique() > 20  # the repeat views exist, and stayed together
    lesions = merged.drop_duplicates("lesion_id")["split"].value_counts()
    assert lesions["test"] == 7 * round(N_LESIONS * 0.2) and lesions["val"] == 7 * round(N_LESIONS * 0.15)
    for label, g in merged.groupby("label"):  # every class in every split
        assert set(g["split"]) == {"train", "val", "test"}, label

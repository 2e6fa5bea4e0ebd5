"""The HAM10000-layout importer and the prepare stage on small files the tests create."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.config import parse_params
from lesionlab.datasets import DatasetError, read_ham10000_layout
from lesionlab.prepare import build_image_cache


def _ham_folder(root: Path, ids_labels, split_parts: bool = False) -> Path:
    rows = []
    for i, (image_id, label) in enumerate(ids_labels):
        folder = root / ("HAM10000_images_part_1" if not split_parts or i % 2 == 0 else "HAM10000_images_part_2")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((30, 40, 3), 40 * i % 255, np.uint8)).save(folder / f"{image_id}.jpg")
        rows.append({"lesion_id": f"HAM_{i // 2:07d}", "image_id": image_id, "dx": label, "dx_type": "histo",
                     "age": "" if i == 0 else "45.0", "sex": "unknown" if i == 1 else "female", "localization": "back"})
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


def test_reads_both_image_folders_and_metadata(tmp_path):
    folder = _ham_folder(tmp_path, [(f"ISIC_{i:07d}", lab) for i, lab in enumerate(["mel", "mel", "nv", "nv"])],
                         split_parts=True)
    table = read_ham10000_layout(folder)
    assert list(table.columns) == ["image_id", "lesion_id", "label", "age", "sex", "site", "dx_type", "path", "mask_path"]
    assert len(table) == 4 and table["path"].map(lambda p: Path(p).is_file()).all()
    assert np.isnan(table.loc[0, "age"]) and table.loc[1, "sex"] == "unknown"
    assert (table["mask_path"] == "").all()


def test_missing_image_is_named(tmp_path):
    folder = _ham_folder(tmp_path, [("ISIC_0000001", "mel"), ("ISIC_0000002", "nv")])
    (folder / "HAM10000_images_part_1" / "ISIC_0000002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\).*ISIC_0000002"):
        read_ham10000_layout(folder)


def test_unknown_label_names_the_line(tmp_path):
    folder = _ham_folder(tmp_path, [("ISIC_0000001", "mel"), ("ISIC_0000002", "melanoma")])
    with pytest.raises(DatasetError, match=r"line 3: dx='melanoma'"):
        read_ham10000_layout(folder)


def test_duplicate_image_id_is_refused(tmp_path):
    folder = _ham_folder(tmp_path, [("ISIC_0000001", "mel"), ("ISIC_0000001", "nv")])
    with pytest.raises(DatasetError, match="duplicate image_id"):
        read_ham10000_layout(folder)


def test_missing_metadata_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match="HAM10000_metadata.csv: metadata file not found"):
        read_ham10000_layout(tmp_path)


def test_image_cache_is_uint8_in_table_order_and_names_corrupt_files(tmp_path):
    folder = _ham_folder(tmp_path, [(f"ISIC_{i:07d}", "nv") for i in range(3)])
    table = read_ham10000_layout(folder)
    images, masks = build_image_cache(table, 16, workers=1, progress=False)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8 and masks.shape == (3, 16, 16)
    assert images[0].mean() < images[2].mean()  # row order kept
    Path(table.loc[1, "path"]).write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="ISIC_0000001.jpg: cannot read image"):
        build_image_cache(table, 16, workers=1, progress=False)


def test_real_dataset_absent_gives_a_clear_error(tmp_path):
    from lesionlab.prepare import prepare

    params = parse_params({"dataset": "ham10000", "variants": {"cnn_baseline": {}}})
    with pytest.raises(DatasetError, match=r"data/ham10000: not found.*Bring your own data"):
        prepare(params, tmp_path, workers=1, progress=False)

"""Every importer of the registry, on small copies of the published layouts that the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.config import parse_params
from lesionlab.data.datasets import (
    DATASETS,
    FEATURE_COLUMNS,
    IMPORT_COLUMNS,
    IMPORTERS,
    LEAKY_COLUMNS,
    TABLE_COLUMNS,
    DatasetError,
    dataset_info,
    import_dataset,
    infer_classes,
    read_ham10000_layout,
    tabular_features,
)
from lesionlab.data.taxonomy import HAM10000_CLASSES


def _jpg(path: Path, value: int = 100, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _ham_folder(root: Path, ids_labels, split_parts: bool = False, masks: bool = False) -> Path:
    rows = []
    for i, (image_id, label) in enumerate(ids_labels):
        folder = root / ("HAM10000_images_part_1" if not split_parts or i % 2 == 0 else "HAM10000_images_part_2")
        _jpg(folder / f"{image_id}.jpg", 40 * i % 255)
        if masks:
            m = np.zeros((30, 40), np.uint8)
            m[5:25, 10:30] = 255
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(m).save(root / "masks" / f"{image_id}_segmentation.png")
        rows.append(
            {
                "lesion_id": f"HAM_{i // 2:07d}",
                "image_id": image_id,
                "dx": label,
                "dx_type": "histo",
                "age": "" if i == 0 else "45.0",
                "sex": "unknown" if i == 1 else "female",
                "localization": "back",
            }
        )
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


def test_registry_declares_every_source_with_licence_and_citation():
    assert {"synthetic", "ham10000", "isic2019", "isic2020", "bcn20000", "dermamnist", "generic"} <= set(DATASETS)
    for info in DATASETS.values():
        assert info.layout in IMPORTERS and info.licence and info.citation and info.files
        assert info.source == (info.raw_dir or "src/lesionlab/data/synthetic.py")
    assert DATASETS["isic2020"].classes == ("benign", "malignant")
    assert "scc" in DATASETS["isic2019"].classes and "akiec" in DATASETS["isic2019"].classes
    with pytest.raises(DatasetError, match="unknown dataset 'ham1000'"):
        dataset_info("ham1000")


def test_dx_type_is_recorded_but_never_a_feature():
    assert "dx_type" in TABLE_COLUMNS and "dx_type" in LEAKY_COLUMNS and "dx_type" not in FEATURE_COLUMNS
    table = pd.DataFrame({c: ["x"] for c in TABLE_COLUMNS})
    assert list(tabular_features(table).columns) == ["age", "sex", "site"]


# --- HAM10000 ------------------------------------------------------------------------------


def test_ham10000_reads_both_image_folders_masks_and_metadata(tmp_path):
    folder = _ham_folder(
        tmp_path,
        [(f"ISIC_{i:07d}", lab) for i, lab in enumerate(["mel", "mel", "nv", "nv"])],
        split_parts=True,
        masks=True,
    )
    table = read_ham10000_layout(folder)
    assert list(table.columns) == TABLE_COLUMNS + IMPORT_COLUMNS
    assert len(table) == 4 and table["path"].map(lambda p: Path(p).is_file()).all()
    assert {Path(p).parent.name for p in table["path"]} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    assert table["mask_path"].map(lambda p: p.endswith("_segmentation.png")).all()
    assert np.isnan(table.loc[0, "age"]) and table.loc[1, "sex"] == "unknown" and table.loc[2, "age"] == 45.0
    assert table["lesion_id"].tolist() == ["HAM_0000000", "HAM_0000000", "HAM_0000001", "HAM_0000001"]


def test_ham10000_keeps_problem_rows_for_the_audit(tmp_path):
    folder = _ham_folder(tmp_path, [("ISIC_0000001", "mel"), ("ISIC_0000002", "MEL"), ("ISIC_0000003", "xyz")])
    (folder / "HAM10000_images_part_1" / "ISIC_0000001.jpg").unlink()
    assert read_ham10000_layout(folder)["label"].tolist() == [
        "mel",
        "MEL",
        "xyz",
    ]  # the importer keeps the source's labels
    table = import_dataset(DATASETS["ham10000"], folder)
    assert table["label"].tolist() == ["mel", "mel", "xyz"]  # spelling normalised, unknown kept for the audit
    assert table.loc[0, "path"] == ""  # missing file: reported by the audit, not silently dropped


def test_ham10000_layout_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="HAM10000_metadata.csv: metadata file not found"):
        read_ham10000_layout(tmp_path)
    pd.DataFrame({"image_id": ["a"], "dx": ["nv"]}).to_csv(tmp_path / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DatasetError, match=r"HAM10000_metadata.csv: missing column\(s\) \['lesion_id'"):
        read_ham10000_layout(tmp_path)


# --- ISIC 2019 -----------------------------------------------------------------------------

_ISIC19_COLS = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def _isic2019(root: Path) -> Path:
    truth = []
    for image, code in [
        ("ISIC_0000000", "NV"),
        ("ISIC_0000001", "AK"),
        ("ISIC_0000002_downsampled", "SCC"),
        ("ISIC_0000003", "UNK"),
        ("ISIC_0000004", None),
    ]:
        truth.append({"image": image, **{c: "1.0" if c == code else "0.0" for c in _ISIC19_COLS}})
        _jpg(root / "ISIC_2019_Training_Input" / f"{image}.jpg")
    pd.DataFrame(truth).to_csv(root / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.DataFrame(
        {
            "image": ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002_downsampled", "ISIC_0000003", "ISIC_0000004"],
            "age_approx": ["55.0", "", "70.0", "40.0", "30.0"],
            "anatom_site_general": ["anterior torso", "head/neck", "", "lower extremity", "palms/soles"],
            "lesion_id": ["BCN_0000001", "BCN_0000001", "", "HAM_0000002", "HAM_0000003"],
            "sex": ["male", "female", "", "male", "female"],
        }
    ).to_csv(root / "ISIC_2019_Training_Metadata.csv", index=False)
    return root


def test_isic2019_maps_codes_and_handles_unk_explicitly(tmp_path):
    table = import_dataset(DATASETS["isic2019"], _isic2019(tmp_path))
    assert table["label"].tolist() == ["nv", "akiec", "scc", "UNK", "invalid-one-hot"]
    assert not table["label"].isin(DATASETS["isic2019"].classes)[3:].any()  # UNK / no class: unknown labels
    assert table.loc[2, "lesion_id"] == "ISIC_0000002_downsampled"  # no lesion id: the image is its own lesion
    assert (
        table.loc[0, "site"] == "anterior torso" and table.loc[2, "sex"] == "unknown" and np.isnan(table.loc[1, "age"])
    )
    assert table["path"].map(lambda p: Path(p).is_file()).all()


def test_isic2019_needs_its_ground_truth(tmp_path):
    with pytest.raises(DatasetError, match="ISIC_2019_Training_GroundTruth.csv: ground-truth file not found"):
        import_dataset(DATASETS["isic2019"], tmp_path)


# --- ISIC 2020 -----------------------------------------------------------------------------


def test_isic2020_binary_target_and_patient_grouping(tmp_path):
    rows = pd.DataFrame(
        {
            "image_name": ["ISIC_1", "ISIC_2", "ISIC_3", "ISIC_4"],
            "patient_id": ["IP_1", "IP_1", "IP_2", "IP_3"],
            "sex": ["male", "male", "", "female"],
            "age_approx": ["45.0", "45.0", "", "60.0"],
            "anatom_site_general_challenge": ["torso", "torso", "", "head/neck"],
            "diagnosis": ["nevus", "melanoma", "unknown", "unknown"],
            "benign_malignant": ["benign", "malignant", "benign", "benign"],
            "target": ["0", "1", "0", "1"],
        }
    )
    rows.to_csv(tmp_path / "ISIC_2020_Training_GroundTruth.csv", index=False)
    for name in rows["image_name"]:
        _jpg(tmp_path / "ISIC_2020_Training_JPEG" / f"{name}.jpg")
    table = import_dataset(DATASETS["isic2020"], tmp_path)
    assert table["label"].tolist()[:3] == ["benign", "malignant", "benign"]
    assert table.loc[3, "label"] == "target-disagrees-with-benign_malignant"  # never silently picks one
    assert table["lesion_id"].tolist() == ["IP_1", "IP_1", "IP_2", "IP_3"]  # grouped by patient without lesion_id
    rows.assign(lesion_id=["L1", "L2", "L3", "L4"]).to_csv(
        tmp_path / "ISIC_2020_Training_GroundTruth_v2.csv", index=False
    )
    assert import_dataset(DATASETS["isic2020"], tmp_path)["lesion_id"].tolist() == ["L1", "L2", "L3", "L4"]


# --- BCN20000 ------------------------------------------------------------------------------


def test_bcn20000_metadata_split_and_labels(tmp_path):
    pd.DataFrame(
        {
            "bcn_filename": ["BCN_1.jpg", "BCN_2.jpg", "BCN_3.jpg"],
            "diagnosis": ["NV", "AK", "OTHER"],
            "lesion_id": ["BCN_L1", "BCN_L1", "BCN_L2"],
            "age_approx": ["50", "50", "unknown"],
            "sex": ["male", "male", "female"],
            "anatom_site_general": ["anterior torso"] * 3,
            "split": ["train", "train", "test"],
        }
    ).to_csv(tmp_path / "bcn20000_metadata.csv", index=False)
    for i in (1, 2, 3):
        _jpg(tmp_path / "images" / f"BCN_{i}.jpg")
    table = import_dataset(DATASETS["bcn20000"], tmp_path)
    assert table["image_id"].tolist() == ["BCN_1", "BCN_2", "BCN_3"]
    assert table["label"].tolist() == ["nv", "akiec", "OTHER"] and table["source_split"].tolist() == [
        "train",
        "train",
        "test",
    ]
    assert np.isnan(table.loc[2, "age"])


# --- MedMNIST ------------------------------------------------------------------------------


def _dermamnist(root: Path, size: int = 28) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 7).reshape(-1, 1).astype(np.uint8)
    np.savez_compressed(root / f"dermamnist{'' if size == 28 else f'_{size}'}.npz", **arrays)
    return root


def test_medmnist_npz_keeps_its_split_and_label_order(tmp_path):
    table = import_dataset(DATASETS["dermamnist"], _dermamnist(tmp_path))
    assert len(table) == 11 and table["source_split"].value_counts().to_dict() == {"train": 6, "test": 3, "val": 2}
    assert table.loc[0:3, "label"].tolist() == list(HAM10000_CLASSES[:4])  # index i -> i-th HAM10000 code
    assert table["path"].iloc[7].endswith("dermamnist.npz::val_images::1")
    assert (table["lesion_id"] == table["image_id"]).all()
    _dermamnist(tmp_path, 64)
    with pytest.raises(DatasetError, match="exactly one MedMNIST .npz file"):
        import_dataset(DATASETS["dermamnist"], tmp_path)


def test_medmnist_prepare_decodes_from_the_npz_and_predefined_split(tmp_path):
    from lesionlab.data.prepare import load_prepared, prepare
    from lesionlab.data.splitting import make_splits

    folder = tmp_path / "data" / "dermamnist"
    folder.mkdir(parents=True)
    _dermamnist(folder)
    params = parse_params(
        {
            "dataset": "dermamnist",
            "dataset_source": "data/dermamnist",
            "prepare": {"image_size": 28},
            "split": {"method": "predefined"},
            "variants": {"cnn_baseline": {}},
        }
    )
    prepare(params, tmp_path, workers=1, progress=False)
    data = load_prepared(tmp_path, "dermamnist")
    with np.load(folder / "dermamnist.npz") as npz:
        assert np.array_equal(data.images[6], npz["val_images"][0])  # 28 -> 28 px: the pixels themselves
    splits = make_splits(data.table, "predefined", 0.15, 0.2, seed=0)
    assert splits["split"].value_counts().to_dict() == {"train": 6, "test": 3, "val": 2}


# --- generic -------------------------------------------------------------------------------


def test_generic_folder_per_class(tmp_path):
    for label, n in (("melanoma", 2), ("nv", 3), ("weird", 1)):
        for i in range(n):
            _jpg(tmp_path / label / f"{label}_{i}.png")
    table = import_dataset(DATASETS["generic"], tmp_path)
    assert sorted(table["label"].unique()) == ["mel", "nv", "weird"]  # long names map onto HAM10000 codes
    # a label that maps onto no code is not a class: the audit reports it (below), it never becomes a class silently
    assert infer_classes(DATASETS["generic"], table["label"]) == ("mel", "nv")
    assert (table["lesion_id"] == table["image_id"]).all()


def test_generic_csv_with_lesions_and_relative_paths(tmp_path):
    for i in range(4):
        _jpg(tmp_path / "imgs" / f"x{i}.jpg")
    pd.DataFrame(
        {
            "path": [f"imgs/x{i}.jpg" for i in range(4)],
            "label": ["BCC", "bcc", "nevus", "nv"],
            "lesion_id": ["a", "a", "b", "c"],
            "age": ["30", "", "50", "n/a"],
            "sex": ["F", "", "M", "M"],
            "split": ["train", "train", "val", "test"],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    table = import_dataset(DATASETS["generic"], tmp_path)
    assert table["label"].tolist() == ["bcc", "bcc", "nv", "nv"] and table["lesion_id"].tolist() == ["a", "a", "b", "c"]
    assert table["path"].map(lambda p: Path(p).is_file()).all()
    assert table["age"].isna().tolist() == [False, True, False, True] and table.loc[1, "sex"] == "unknown"
    assert table["source_split"].tolist() == ["train", "train", "val", "test"]


def test_empty_or_absent_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="no labels.csv and no <class>/<image> folders"):
        import_dataset(DATASETS["generic"], tmp_path)
    with pytest.raises(DatasetError, match="nope: not a folder"):
        import_dataset(DATASETS["ham10000"], tmp_path / "nope")


def test_real_dataset_absent_gives_a_clear_error(tmp_path):
    from lesionlab.data.prepare import prepare

    params = parse_params({"dataset": "ham10000", "dataset_source": "data/ham10000", "variants": {"cnn_baseline": {}}})
    with pytest.raises(DatasetError, match=r"data/ham10000: not found.*import-data ham10000.*Bring your own data"):
        prepare(params, tmp_path, workers=1, progress=False)


def test_import_data_command_checks_then_copies(tmp_path, monkeypatch, capsys):
    from lesionlab.cli import main

    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("dataset: synthetic\n")
    (project / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("LESIONLAB_ROOT", str(project))
    download = _ham_folder(tmp_path / "download", [("ISIC_0000001", "mel"), ("ISIC_0000002", "nv")])
    assert main(["import-data", "ham10000", str(download)]) == 0
    assert (project / "data" / "ham10000" / "HAM10000_metadata.csv").is_file()
    assert "dvc add data" in capsys.readouterr().out
    assert main(["import-data", "ham10000", str(download)]) == 2  # refuses to overwrite without --force
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["import-data", "isic2019", str(download)]) == 2  # wrong layout: fails before copying
    assert not (project / "data" / "isic2019").exists()

"""Any label set, mapped explicitly; user datasets side by side (one folder + one card); degenerate data refused or
reported; task views that a dataset cannot support are skipped with their reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.config import ParamsError, parse_params
from lesionlab.data import taxonomy
from lesionlab.data.datasets import (
    DATASETS,
    DatasetError,
    class_semantics,
    dataset_info,
    import_dataset,
    infer_classes,
    normalise_label,
    registered_names,
)
from lesionlab.data.prepare import load_prepared, prepare


@pytest.fixture(autouse=True)
def _forget_declarations():
    yield
    taxonomy.declare(None, None)


def _project(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text("dataset: synthetic\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


def _images(folder: Path, rows: list[tuple[str, str]], masks: bool = False) -> None:
    """labels.csv of (image_id, label) rows with an image per row (and a mask_path column)."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for image_id, _ in rows:
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / "images" / f"{image_id}.jpg")
        if masks:
            (folder / "masks").mkdir(exist_ok=True)
            Image.fromarray(np.pad(np.full((12, 16), 255, np.uint8), ((6, 6), (8, 8)))).save(
                folder / "masks" / f"{image_id}.png"
            )
    table = pd.DataFrame(
        {
            "path": [f"images/{i}.jpg" for i, _ in rows],
            "label": [lab for _, lab in rows],
            "image_id": [i for i, _ in rows],
        }
    )
    if masks:
        table["mask_path"] = [f"masks/{i}.png" for i, _ in rows]
    table.to_csv(folder / "labels.csv", index=False)


def _card(folder: Path, **card) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.yaml").write_text(json.dumps(card))


def _params(name: str, root: Path, **extra):
    return parse_params(
        {
            "dataset": name,
            "dataset_source": f"data/{name}",
            "variants": {"cnn_baseline": {}},
            "prepare": {"image_size": 16, "backbone_image_size": 32},
            **extra,
        },
        root=root,
    )


# --- label mapping ----------------------------------------------------------------------------------


def test_label_map_comes_before_the_built_in_spellings():
    assert normalise_label("MEL") == "mel" and normalise_label(" Melanoma ") == "mel"
    assert normalise_label("common_nevus") == "common_nevus"  # unknown: unchanged, for the audit
    m = {"common_nevus": "nv", "Atypical_Nevus": "nv", "melanoma": "mel"}
    assert [normalise_label(x, m) for x in ("common_nevus", "atypical_nevus", "MELANOMA")] == ["nv", "nv", "mel"]
    assert normalise_label("nevus", {"nevus": "bkl"}) == "bkl"  # the dataset's own map wins
    assert normalise_label("melanoma", own=("melanoma",)) == "melanoma"  # a class of the dataset's own list stays


def test_generic_classes_are_taxonomy_codes_only():
    info = DATASETS["generic"]
    assert infer_classes(info, ["nv", "mel", "naevus-typo", "bcc"]) == ("bcc", "mel", "nv")


def test_unmapped_labels_stop_prepare_with_counts_and_nearest_names(tmp_path):
    root = _project(tmp_path)
    folder = root / "data" / "generic"
    _images(
        folder,
        [(f"a{i}", "nv") for i in range(3)]
        + [(f"b{i}", "mel") for i in range(3)]
        + [("c0", "naevus-typo"), ("c1", "naevus-typo"), ("d0", "seborrheic_keratosis")],
    )
    with pytest.raises(DatasetError) as err:
        prepare(_params("generic", root), root, workers=1, progress=False)
    message = str(err.value)
    assert "2 x unknown label 'naevus-typo' (nearest known: 'naevus'" in message
    assert "1 x unknown label 'seborrheic_keratosis' (nearest known: 'seborrheic keratosis'" in message
    assert "label_map" in message and "dataset.yaml" in message


def test_a_card_maps_the_labels_and_two_user_datasets_live_side_by_side(tmp_path):
    root = _project(tmp_path)
    ph2 = (
        [(f"n{i}", "common_nevus") for i in range(3)]
        + [(f"a{i}", "atypical_nevus") for i in range(3)]
        + [(f"m{i}", "melanoma") for i in range(3)]
    )
    _images(root / "data" / "ph2", ph2, masks=True)
    _card(
        root / "data" / "ph2",
        layout="generic",
        label_map={"common_nevus": "nv", "atypical_nevus": "nv", "melanoma": "mel"},
    )
    _images(root / "data" / "clinic_b", ph2)
    _card(
        root / "data" / "clinic_b",
        layout="generic",
        classes=["common_nevus", "atypical_nevus", "melanoma"],
        malignant=["melanoma"],
        triage={"common_nevus": "low", "atypical_nevus": "moderate", "melanoma": "high"},
    )
    assert {"ph2", "clinic_b"} <= set(registered_names(root))

    prepare(_params("ph2", root), root, workers=1, progress=False)
    mapped = load_prepared(root, "ph2")
    assert mapped.classes == ("mel", "nv") and mapped.summary["malignant"] == ["mel"]
    assert mapped.summary["masks"] == 9 and mapped.masks.sum() > 0  # the generic CSV's mask_path column is read
    assert "triage" not in mapped.summary  # the taxonomy's meaning applies

    prepare(_params("clinic_b", root), root, workers=1, progress=False)
    own = load_prepared(root, "clinic_b")
    assert own.classes == ("common_nevus", "atypical_nevus", "melanoma")
    assert own.summary["malignant"] == ["melanoma"] and own.summary["triage"]["atypical_nevus"] == "moderate"
    assert taxonomy.malignant_classes(own.classes) == ["melanoma"]
    assert taxonomy.triage_view_reason(own.classes) is None and taxonomy.triage_level("atypical_nevus") == "moderate"
    assert (root / "results/ph2/prepared/dataset.csv").is_file()  # the first dataset's outputs are untouched
    for folder in ("ensembles", "external"):  # folders compare depends on, even when empty
        assert (root / "results/clinic_b" / folder).is_dir()


def test_own_classes_without_declarations_skip_the_views_that_need_them(tmp_path):
    info = dataset_info("x", _write_card(tmp_path, layout="generic", classes=["a", "b", "c"]))
    assert info.malignant is None and info.triage is None
    semantics = class_semantics(info, ("a", "b", "c"))
    assert semantics == {"malignant": None, "triage": None}
    taxonomy.declare(semantics["malignant"], semantics["triage"])
    assert "does not declare which are malignant" in taxonomy.binary_view_reason(("a", "b", "c"), malignant_known=False)
    assert "no triage level for ['a', 'b', 'c']" in taxonomy.triage_view_reason(("a", "b", "c"))
    with pytest.raises(KeyError, match="no triage level"):
        taxonomy.triage_level("a")


def test_task_views_of_taxonomy_datasets():
    assert taxonomy.binary_view_reason(("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")) is None
    assert taxonomy.triage_view_reason(("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")) is None
    assert "only 2 of the 3 triage levels" in taxonomy.triage_view_reason(("benign", "malignant"))  # ISIC 2020
    assert taxonomy.binary_view_reason(("benign", "malignant")) is None  # binary: first-class
    assert taxonomy.binary_view_reason(("nv", "bkl")) == "none of the classes is malignant"


def _write_card(root: Path, **card) -> Path:
    _card(root / "data" / "x", **card)
    return root


@pytest.mark.parametrize(
    "card, message",
    [
        ({"layout": "generic", "labelmap": {}}, "unknown key(s) 'labelmap' (did you mean 'label_map'?)"),
        ({"layout": "csv"}, "layout: must be one of"),
        ({"layout": "generic", "classes": ["a", "b"], "label_map": {"x": "c"}}, "label_map maps onto ['c']"),
        ({"layout": "generic", "classes": ["a", "b"], "triage": {"a": "low"}}, "triage: must give every class"),
        ({"layout": "generic", "malignant": ["mel"]}, "declare the meaning of a dataset's own classes"),
        ({"layout": "generic", "classes": ["a", "<b>"]}, "use letters, digits"),
        ({"layout": "medmnist"}, "list its classes in order"),
    ],
)
def test_card_errors_name_the_file_and_key(tmp_path, card, message):
    _write_card(tmp_path, **card)
    with pytest.raises(DatasetError, match="dataset.yaml") as err:
        dataset_info("x", tmp_path)
    assert message in str(err.value)


def test_params_accept_a_carded_dataset_and_name_the_missing_card(tmp_path):
    root = _project(tmp_path)
    _write_card(root, layout="generic")
    raw = {"dataset": "x", "dataset_source": "data/x", "variants": {"cnn_baseline": {}}}
    assert parse_params(raw, root=root).dataset == "x"
    with pytest.raises(ParamsError, match="dataset_source must be 'data/x'"):
        parse_params({**raw, "dataset_source": "data/y"}, root=root)
    with pytest.raises(
        ParamsError, match=r"unknown dataset 'y'.*with a card under data/: \['x'\].*data/y/ with a card"
    ):
        parse_params({**raw, "dataset": "y", "dataset_source": "data/y"}, root=root)


def test_a_built_in_source_takes_a_label_map_from_its_card(tmp_path):
    _card(tmp_path / "data" / "isic2019", label_map={"UNK": "nv"})
    info = dataset_info("isic2019", tmp_path)
    assert (
        info.layout == "isic2019" and info.classes == DATASETS["isic2019"].classes and info.label_map == {"UNK": "nv"}
    )
    _card(tmp_path / "data" / "isic2019", layout="generic")
    with pytest.raises(DatasetError, match="built-in source with layout 'isic2019'"):
        dataset_info("isic2019", tmp_path)


# --- degenerate data ----------------------------------------------------------------------------------


def test_one_class_only_is_refused_before_training(tmp_path):
    root = _project(tmp_path)
    _images(root / "data" / "generic", [(f"a{i}", "melanoma") for i in range(4)])
    with pytest.raises(DatasetError, match=r"all of class \['mel'\]: a classifier needs at least two classes"):
        prepare(_params("generic", root), root, workers=1, progress=False)


def test_rare_classes_are_reported_and_refused_on_request(toy_table):
    from lesionlab.data.splitting import check_rare_classes, rare_classes, split_by_lesion

    table = pd.concat(
        [
            toy_table,
            pd.DataFrame(
                [
                    {
                        "image_id": "solo_0",
                        "lesion_id": "solo",
                        "label": "scc",
                        "age": 50.0,
                        "sex": "male",
                        "site": "back",
                        "path": "x.jpg",
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    splits = split_by_lesion(table, 0.15, 0.2, seed=0)
    rare = rare_classes(table, splits)
    assert rare.to_dict("records") == [{"class": "scc", "lesions": 1, "images": 1, "train": 1, "val": 0, "test": 0}]
    warning = check_rare_classes(rare, "warn", "toy")
    assert "'scc' (1 lesion)" in warning and "recall is undefined" in warning
    with pytest.raises(ValueError, match="split.on_rare: warn"):
        check_rare_classes(rare, "error", "toy")
    assert check_rare_classes(rare_classes(toy_table), "error") is None  # every class has >= 3 lesions


def test_metadata_model_without_metadata_is_skipped_with_its_reason():
    from lesionlab.models.tabular import missing_metadata_reason

    none = pd.DataFrame({"age": [np.nan, np.nan], "sex": ["unknown"] * 2, "site": ["unknown"] * 2})
    assert "no usable metadata" in missing_metadata_reason(none, ["age", "sex", "site"])
    some = none.assign(site=["back", "unknown"])
    assert missing_metadata_reason(some, ["age", "sex", "site"]) is None
    assert missing_metadata_reason(some, ["age", "sex"]) is not None  # only the configured features count


def test_compare_skips_what_the_data_lacks():
    from lesionlab.evaluation import compare

    table = pd.DataFrame(
        {"image_id": ["a", "b"], "age": [np.nan, np.nan], "sex": ["male", "unknown"], "site": ["unknown", "unknown"]}
    )
    kept, skipped = compare.slice_attributes(table, pd.Series(["a", "b"]), [30, 60])
    assert list(kept) == ["sex"] and set(skipped) == {"age", "site"} and "no ages" in skipped["age"]
    no_masks = pd.DataFrame(
        [
            {
                "variant": "v",
                "n_with_mask": 0,
                "mask_energy": np.nan,
                "mask_energy_lo": np.nan,
                "mask_energy_hi": np.nan,
                "pointing_hit_rate": np.nan,
                "pointing_hit_rate_lo": np.nan,
                "pointing_hit_rate_hi": np.nan,
                "chance": np.nan,
            }
        ]
    )
    assert not compare.has_mask_scores(no_masks) and not compare.has_mask_scores(no_masks.iloc[:0])
    assert "skipped" in compare.explanation_verdict(no_masks)
    assert compare.format_ci(float("nan"), float("nan"), float("nan")) == "–"


def test_import_data_lays_out_a_new_dataset_with_its_card(tmp_path, monkeypatch, capsys):
    """A dataset of one's own is one folder + one card: import-data checks the layout through the card, copies the
    download and the card, and the name is then a registered dataset (the PH2 card the docs ship, on a PH2-like
    fixture)."""
    from conftest import REPO

    from lesionlab.cli import main

    (tmp_path / "project").mkdir()
    root = _project(tmp_path / "project")
    monkeypatch.setenv("LESIONLAB_ROOT", str(root))
    download = tmp_path / "PH2"
    _images(download, [("IMD003", "common_nevus"), ("IMD009", "atypical_nevus"), ("IMD058", "melanoma")], masks=True)
    card = REPO / "docs/cards/ph2.yaml"
    assert main(["import-data", "ph2", str(download), "--card", str(card)]) == 0
    assert "external=[ph2]" in capsys.readouterr().out
    assert (root / "data/ph2/dataset.yaml").read_text() == card.read_text()
    info = dataset_info("ph2", root)
    assert info.card == "data/ph2/dataset.yaml" and "ph2" in registered_names(root)
    assert import_dataset(info, root / "data/ph2")["label"].tolist() == ["nv", "nv", "mel"]
    assert main(["import-data", "ph2b", str(download), "--card", str(card), "--mode", "symlink"]) == 2
    assert "use --mode copy or hardlink" in capsys.readouterr().err and not (root / "data/ph2b").exists()
    assert main(["import-data", "Bad-Name", str(download), "--card", str(card)]) == 2

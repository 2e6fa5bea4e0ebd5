"""Bad input is found, listed with its file and counted; `prepare.on_bad` stops or skips; nothing is lost silently.

Each case is a small file the test writes into a HAM10000-layout folder, then the real prepare stage runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.config import parse_params
from lesionlab.data.datasets import DatasetError
from lesionlab.data.prepare import load_prepared, prepare, read_problems

SIZE = 16


def _rgb(h=30, w=40, value=(200, 60, 30)) -> np.ndarray:
    return np.broadcast_to(np.array(value, np.uint8), (h, w, 3)).copy()


def _write_cases(images: Path) -> dict[str, str]:
    """image_id -> expected finding; writes one file per case."""
    images.mkdir(parents=True)
    cases = {}

    def save(image_id, image: Image.Image, check, fmt="PNG", suffix=".png", **kw):
        image.save(images / f"{image_id}{suffix}", fmt, **kw)
        cases[image_id] = check

    for i in range(4):
        save(f"ok_{i}", Image.fromarray(_rgb(value=(50 * i, 100, 150))), None, "JPEG", ".jpg")
    save("gray", Image.fromarray(np.full((30, 40), 90, np.uint8), "L"), "grayscale -> RGB")
    rgba = np.dstack([_rgb(), np.full((30, 40), 128, np.uint8)])
    save("rgba", Image.fromarray(rgba, "RGBA"), "RGBA: alpha channel dropped")
    save("palette", Image.fromarray(_rgb()).convert("P"), "palette -> RGB")
    save("deep", Image.fromarray(np.full((30, 40), 32768, np.uint16)), "16-bit grayscale -> 8-bit RGB")
    save("cmyk", Image.fromarray(_rgb()).convert("CMYK"), "CMYK -> RGB", "JPEG", ".jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    tall = _rgb(30, 40)
    tall[:, :20] = (255, 0, 0)  # left half red
    save("rotated", Image.fromarray(tall), "EXIF orientation applied", "JPEG", ".jpg", exif=exif, quality=95)
    (images / "empty.jpg").write_bytes(b"")
    cases["empty"] = "empty file (0 bytes)"
    (images / "text.jpg").write_text("this is not an image\n")
    cases["text"] = "not an image"
    Image.fromarray(_rgb(60, 80)).save(images / "cut.jpg", "JPEG")
    data = (images / "cut.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(data[: len(data) // 2])
    cases["cut"] = "truncated or corrupt image"
    cases["gone"] = "missing file (not found in the source folder)"  # listed, no file
    return cases


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "data" / "ham10000"
    cases = _write_cases(folder / "images")
    rows = [
        {
            "lesion_id": f"L_{i}",
            "image_id": image_id,
            "dx": "nv" if i % 2 else "mel",
            "dx_type": "histo",
            "age": "50",
            "sex": "male",
            "localization": "back",
        }
        for i, image_id in enumerate(cases)
    ]
    rows.append({**rows[0], "dx": "mel"})  # duplicate image_id
    rows.append({**rows[1], "image_id": "ok_9", "dx": "melanocytic-ish"})  # unknown label (file absent, never read)
    rows[2].update(age="", sex="", localization="unknown")  # missing metadata, row kept
    pd.DataFrame(rows).to_csv(folder / "HAM10000_metadata.csv", index=False)
    return tmp_path, cases


def _params(on_bad: str):
    return parse_params(
        {
            "dataset": "ham10000",
            "dataset_source": "data/ham10000",
            "prepare": {"image_size": SIZE, "on_bad": on_bad},
            "variants": {"cnn_baseline": {}},
        }
    )


BAD = {"empty", "text", "cut", "gone"}


def test_default_stops_naming_every_bad_row_and_writes_the_list(tmp_path):
    root, cases = _project(tmp_path)
    with pytest.raises(DatasetError) as err:
        prepare(_params("error"), root, workers=1, progress=False)
    msg = str(err.value)
    for name in ("empty.jpg", "text.jpg", "cut.jpg", "gone", "duplicate image_id", "unknown label 'melanocytic-ish'"):
        assert name in msg
    assert "6 unusable row(s)" in msg and "prepare.on_bad: skip" in msg and "problems.csv" in msg
    problems = read_problems(root, "ham10000")
    assert set(problems.loc[problems["severity"] == "bad", "action"]) == {"stopped the run"}


def test_skip_drops_exactly_the_bad_rows_and_lists_every_finding(tmp_path):
    root, cases = _project(tmp_path)
    prepare(_params("skip"), root, workers=1, progress=False)
    data = load_prepared(root, "ham10000")
    kept = set(data.table["image_id"])
    assert kept == set(cases) - BAD  # the duplicate's first row stays; the unknown label is dropped
    summary = json.loads((root / "results/ham10000/prepared/summary.json").read_text())
    assert summary["source_rows"] == len(cases) + 2 and summary["skipped_rows"] == len(BAD) + 2
    problems = read_problems(root, "ham10000")
    found = dict(zip(problems["image_id"] + "|" + problems["check"], problems["action"]))
    for image_id, check in cases.items():
        if check:
            action = "row skipped" if image_id in BAD else "converted, kept"
            assert found[f"{image_id}|{check}"] == action, (image_id, check)
    assert found["ok_0|duplicate image_id (first row kept)"] == "row skipped"
    unknown = [k for k in found if k.startswith("ok_9|unknown label 'melanocytic-ish'")]
    assert len(unknown) == 1 and found[unknown[0]] == "row skipped"
    assert {"age missing", "sex unknown", "body site unknown"} <= set(
        problems.loc[problems["image_id"] == "ok_2", "check"]
    )
    quality = pd.read_csv(root / "results/ham10000/prepared/quality.csv")
    assert quality.set_index("check").loc["not an image", "rows"] == 1
    assert quality.set_index("check").loc["not an image", "examples"] == "text.jpg"
    assert data.table.set_index("image_id").loc["ok_2", "sex"] == "unknown"  # missing metadata stays missing
    # no output names the machine's folders: every path is relative to the project (portable between clones)
    assert (problems["file"] != "").any()
    for text in (root / "results/ham10000/prepared").glob("*.[cj]s*"):
        assert str(root) not in text.read_text(), text.name


def test_conversions_give_correct_8bit_rgb(tmp_path):
    root, _ = _project(tmp_path)
    prepare(_params("skip"), root, workers=1, progress=False)
    data = load_prepared(root, "ham10000")
    img = dict(zip(data.table["image_id"], data.images))
    assert data.images.dtype == np.uint8 and data.images.shape[1:] == (SIZE, SIZE, 3)
    assert np.abs(img["deep"].astype(int) - 128).max() <= 1  # 32768 / 65535 of full scale, not clipped to 255
    assert (img["gray"] == 90).all()
    assert np.abs(img["rgba"].astype(int) - [200, 60, 30]).max() <= 1
    assert np.abs(img["cmyk"].astype(int) - [200, 60, 30]).max() <= 12  # JPEG round trip
    # EXIF orientation 6: the red left half of the stored pixels ends up on top once displayed upright
    top, bottom = img["rotated"][: SIZE // 2 - 2], img["rotated"][SIZE // 2 + 2 :]
    assert top[..., 0].mean() > 200 and top[..., 1].mean() < 60
    assert bottom[..., 1].mean() > 40


def test_clean_source_reports_metadata_only(tmp_path):
    folder = tmp_path / "data" / "ham10000"
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(3):
        Image.fromarray(_rgb()).save(folder / "images" / f"ISIC_{i}.jpg")
        rows.append(
            {
                "lesion_id": f"L{i}",
                "image_id": f"ISIC_{i}",
                "dx": "mel" if i == 2 else "nv",
                "dx_type": "follow_up",
                "age": "" if i == 0 else "40",
                "sex": "female",
                "localization": "back",
            }
        )
    pd.DataFrame(rows).to_csv(folder / "HAM10000_metadata.csv", index=False)
    prepare(_params("error"), tmp_path, workers=1, progress=False)
    problems = read_problems(tmp_path, "ham10000")
    assert set(problems["severity"]) == {"metadata"}
    assert set(problems["check"]) == {"age missing", "no lesion mask"}
    assert len(load_prepared(tmp_path, "ham10000").table) == 3


def test_lesion_with_two_labels_is_bad_not_guessed(tmp_path):
    folder = tmp_path / "data" / "ham10000"
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, label in enumerate(["mel", "nv", "nv", "bcc"]):
        Image.fromarray(_rgb()).save(folder / "images" / f"ISIC_{i}.jpg")
        rows.append(
            {
                "lesion_id": "L0" if i < 2 else f"L{i}",
                "image_id": f"ISIC_{i}",
                "dx": label,
                "dx_type": "histo",
                "age": "40",
                "sex": "female",
                "localization": "back",
            }
        )
    pd.DataFrame(rows).to_csv(folder / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DatasetError, match="2 x lesion with more than one label"):
        prepare(_params("error"), tmp_path, workers=1, progress=False)
    prepare(_params("skip"), tmp_path, workers=1, progress=False)
    assert load_prepared(tmp_path, "ham10000").table["image_id"].tolist() == ["ISIC_2", "ISIC_3"]

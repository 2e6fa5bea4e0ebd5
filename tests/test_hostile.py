"""Hostile input and misuse, one test per case (issue 16): every case asserts the named error or the reported
skip, and that nothing else changed. Research and education only: not for diagnosis.

Cases, in the order of the issue:
1. a dataset whose every field is an HTML payload, through the whole pipeline, opened in headless Chromium;
2. model files that would run code; variant and dataset names that would leave results/;
3. import-data: source inside target, target inside source, a failed --force, symlinks, the missing-file count;
4. dataset CSV paths outside the dataset folder;
5. images: decompression bombs, tiny images, predict's partial results, class-folder ids, unparsable metadata;
6. params: read as DVC reads them, validated before DVC removes any output;
7. process hygiene: a stage's children die with it, an orphan's outputs are not written twice, predict's files.
"""

from __future__ import annotations

import json

import pytest
from layouts import XSS_IMG, XSS_SCRIPT, write_hostile_csv
from pipeline_repo import make_repo, run

# --- 1. every user string reaches a page as text -------------------------------------------------------------


def _hostile_params(params: dict) -> None:
    params["dataset"] = "hostile"
    params["dataset_source"] = "data/hostile"
    for section, values in {
        "prepare": {"image_size": 24, "backbone_image_size": 32, "on_bad": "error"},
        "train": {"epochs": 2, "patience": 2, "filters": [8, 16], "dense_units": 16},
        "tabular": {"n_estimators": 20, "patience": 5},
        "explain": {"variants": ["cnn_baseline"]},
        "compare": {"bootstrap": 20, "pairs": []},
    }.items():
        params.setdefault(section, {}).update(values)
    params["variants"] = {
        k: {**params["variants"][k], "description": f"{XSS_SCRIPT} {k}"} for k in ("cnn_baseline", "cnn_class_weights")
    }
    params["probes"], params["finetunes"] = {}, {}
    params["tabulars"] = {"meta_gbm": {**params["tabulars"]["meta_gbm"], "description": XSS_IMG}}
    params["ensembles"] = {
        "mixed": {"description": XSS_IMG, "method": "mean", "members": ["cnn_class_weights", "meta_gbm"]}
    }


@pytest.mark.slow
def test_every_user_string_is_text_on_every_page(tmp_path):
    from tools.browser import Browser, chromium_binary

    chromium_binary()  # the check needs a browser: `make test` installs one
    repo = tmp_path / "repo"
    repo.mkdir()
    env, _ = make_repo(repo, _hostile_params)
    (repo / "data" / "hostile").mkdir(parents=True)
    write_hostile_csv(repo / "data" / "hostile")
    run(["dvc", "repro"], repo, env)

    pages = sorted((repo / "reports" / "hostile").rglob("*.html"))
    assert len(pages) >= 8, pages
    literal, ran = {}, []
    with Browser() as browser:
        for page in pages:
            browser.open(page)
            state = browser.evaluate(
                "({pwned: document.body.dataset.pwned || null, text: document.body.innerText, "
                "scripts: document.scripts.length, "
                "hrefs: Array.from(document.links).map(a => a.getAttribute('href'))})"
            )
            if state["pwned"] is not None or any(h.strip().lower().startswith("javascript:") for h in state["hrefs"]):
                ran.append(str(page.relative_to(repo)))
            literal[page.name] = XSS_IMG in state["text"] or XSS_SCRIPT in state["text"]
    assert not ran, f"a payload ran (or a javascript: link is offered) in {ran}"
    # the payloads show as the text they are where the pages list what the user supplied
    for name in ("eda.html", "compare.html", "cnn_baseline.html", "meta_gbm.html", "mixed.html"):
        assert literal.get(name), f"{name}: the user's strings are not shown literally"


def test_tables_escape_every_string_but_the_markup_the_package_built():
    import pandas as pd

    from lesionlab.reporting.report import Html, link, table_html

    table = pd.DataFrame(
        {"site": [XSS_IMG, "back"], "report": [link("variants/a.html", XSS_SCRIPT), Html("<b>0.5</b>")], "n": [1, 2]},
        index=[XSS_SCRIPT, "x"],
    )
    table.columns.name = XSS_IMG
    out = table_html(table, index=True)
    assert "<img" not in out and "<script" not in out
    assert "&lt;img src=x onerror=document.body.dataset.pwned=1&gt;" in out
    assert "<a href='variants/a.html'>&lt;script&gt;" in out and "<b>0.5</b>" in out


def test_a_dollar_in_a_user_string_is_text_in_figures(tmp_path):
    import matplotlib.pyplot as plt

    from lesionlab.reporting import figures  # noqa: F401  (sets text.parse_math off)

    fig, ax = plt.subplots()
    ax.set_title("trunk $\\frac{$ 'site'")
    fig.savefig(tmp_path / "figure.png")  # with TeX parsing on, this raises ParseFatalException
    assert (tmp_path / "figure.png").stat().st_size > 0


# --- helpers ---------------------------------------------------------------------------------------------------


def _project(tmp_path):
    """A minimal project root (params.yaml + dvc.yaml) that the commands find through $LESIONLAB_ROOT."""
    import shutil

    from conftest import REPO

    root = tmp_path / "project"
    root.mkdir()
    shutil.copy2(REPO / "params.yaml", root / "params.yaml")
    (root / "dvc.yaml").write_text("stages: {}\n")
    return root


def _cli(monkeypatch, root, *argv, capsys=None):
    from lesionlab import cli

    monkeypatch.setenv("LESIONLAB_ROOT", str(root))
    return cli.main([str(a) for a in argv])


def _jpeg(path, size=(40, 30), colour=(200, 120, 100)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _png_bomb(path, side: int = 20000):
    """A few-hundred-byte PNG whose header declares ``side`` x ``side`` px (PIL's decompression-bomb case)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * (side * 3)
    idat = zlib.compress(row * 4, 9)  # a few rows; the header's size is what matters
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )
    return path


def _tree(folder):
    """Every path under ``folder`` with its size (what 'nothing else changed' compares)."""
    return {
        str(p.relative_to(folder)): (p.is_symlink(), p.stat().st_size if p.is_file() and not p.is_symlink() else 0)
        for p in sorted(folder.rglob("*"))
    }


# --- 2. no model file runs code; names stay inside results/ ----------------------------------------------------


class _Planted:
    """A pickle that writes a file when loaded (what a malicious model.pt would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return pathlib.Path.write_text, (pathlib.Path(self.marker), "code ran")


def _plant_variant(root, dataset, variant, info: dict):
    folder = root / "results" / dataset / "variants" / variant
    folder.mkdir(parents=True)
    record = {
        "record_version": 2,
        "variant": variant,
        "dataset": dataset,
        "seed": 0,
        "input_size": 32,
        "framework": "torch",
        **info,
    }  # a complete record: whoever plants a model can write its record too
    (folder / "training.json").write_text(json.dumps(record))
    return folder  # (no prepared/ folder: a model is loaded from its record alone)


def test_a_planted_torch_model_is_refused_and_runs_nothing(tmp_path):
    import pickle

    import torch

    from lesionlab.models.predict import load_predictor
    from lesionlab.pipeline.contracts import ContractError

    root = _project(tmp_path)
    marker = tmp_path / "marker.txt"
    folder = _plant_variant(
        root,
        "synthetic",
        "evil",
        {"kind": "finetune", "backbone": "efficientnet_lite0", "classes": ["mel", "nv"], "config": {}},
    )
    torch.save({"state_dict": _Planted(marker)}, folder / "model.pt")
    with pytest.raises(ContractError, match="refused to load: not a plain weights file"):
        load_predictor(root, "synthetic", "evil")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the same file, loaded as pickle allows, would run its code:
        torch.load(folder / "model.pt", weights_only=True)
    torch.load(folder / "model.pt", weights_only=False)  # (the control: the payload is live)
    assert marker.read_text() == "code ran"


_KERAS_PLANT = r"""
import json, os, sys
from pathlib import Path
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
root, marker = Path(sys.argv[1]), Path(sys.argv[2])
folder = root / "results/synthetic/variants/evil"
payload = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('code ran'), x)[1]")  # bytecode
inputs = keras.Input((32, 32, 3))
model = keras.Model(inputs, keras.layers.Lambda(payload, output_shape=lambda s: s)(inputs))
model.save(folder / "model.keras")
marker.unlink(missing_ok=True)      # (building the model may have run it once)
try:
    import numpy as np   # the control: loaded as keras allows with safe_mode off, the model's code runs when used
    keras.models.load_model(folder / "model.keras", safe_mode=False).predict(np.zeros((1, 32, 32, 3)), verbose=0)
    print("control", marker.exists())
finally:
    marker.unlink(missing_ok=True)
"""


def test_a_planted_keras_model_is_refused_and_runs_nothing(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    root = _project(tmp_path)
    marker = tmp_path / "marker.txt"
    _plant_variant(
        root,
        "synthetic",
        "evil",
        {
            "kind": "finetune",
            "backbone": "keras_mobilenet_v2",
            "framework": "keras",
            "classes": ["mel", "nv"],
            "config": {"backbone": "keras_mobilenet_v2"},
        },
    )
    env = {**__import__("os").environ, "LESIONLAB_ROOT": str(root), "PYTHONPATH": str(REPO / "src")}
    made = subprocess.run(
        [sys.executable, "-c", _KERAS_PLANT, str(root), str(marker)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0 and "control True" in made.stdout, made.stderr[-2000:]
    _jpeg(tmp_path / "imgs" / "a.jpg")
    for command in (["predict", "evil", str(tmp_path / "imgs")],):
        proc = subprocess.run(
            [sys.executable, "-m", "lesionlab", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "refused to load: the file holds code" in proc.stderr and "Traceback" not in proc.stderr
        assert not marker.exists()


@pytest.mark.parametrize("name", ["../../evil", "/etc", "a/b", "..", ".hidden"])
def test_names_that_would_leave_results_are_refused(tmp_path, monkeypatch, capsys, name):
    from lesionlab.paths import UnsafeName, ensemble_dir, variant_dir

    root = _project(tmp_path)
    _jpeg(tmp_path / "imgs" / "a.jpg")
    with pytest.raises(UnsafeName):
        variant_dir(root, "synthetic", name)
    with pytest.raises(UnsafeName):
        ensemble_dir(root, name, "x")
    assert _cli(monkeypatch, root, "predict", name, tmp_path / "imgs") == 2
    assert "not a plain name" in capsys.readouterr().err
    assert variant_dir(root, "synthetic", "cnn_baseline+tta").parent == root / "results/synthetic/variants"


# --- 3. import-data loses and leaks nothing ----------------------------------------------------------------------


def _download(folder, n: int = 4, missing: int = 0):
    """A generic CSV download of ``n`` images (+ ``missing`` rows whose file is absent)."""
    import pandas as pd

    rows = []
    for i in range(n):
        _jpeg(folder / "images" / f"i{i}.jpg", colour=(200, 50 * (i % 2), 90))
        rows.append({"path": f"images/i{i}.jpg", "label": ["mel", "nv"][i % 2]})
    rows += [{"path": f"images/gone{i}.jpg", "label": "nv"} for i in range(missing)]
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder


def test_import_data_refuses_a_source_holding_the_target_and_the_target_itself(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path)
    _download(root / "data" / "generic")
    before = _tree(root)
    assert _cli(monkeypatch, root, "import-data", "generic", root) == 2  # the project into itself
    assert "the target is inside the source" in capsys.readouterr().err
    assert _cli(monkeypatch, root, "import-data", "generic", root / "data" / "generic", "--force") == 2
    assert "refused" in capsys.readouterr().err
    assert _cli(monkeypatch, root, "import-data", "generic", root / "data", "--force") == 2
    assert _tree(root) == before  # nothing deleted, nothing copied


def test_import_data_force_keeps_the_old_data_when_the_copy_fails(tmp_path, monkeypatch, capsys):
    import shutil

    root = _project(tmp_path)
    _download(root / "data" / "generic", n=2)
    before = _tree(root / "data")
    new = _download(tmp_path / "new", n=6)
    copied = []

    def failing_copy(src, dst, **kw):
        if len(copied) == 3:
            raise OSError(28, "No space left on device")
        copied.append(src)
        return shutil.copy2(src, dst, **kw)

    monkeypatch.setattr(shutil, "copy2", failing_copy)
    with pytest.raises(shutil.Error):
        _cli(monkeypatch, root, "import-data", "generic", new, "--force")
    assert _tree(root / "data") == before  # the old dataset as it was, no partial copy beside it
    monkeypatch.undo()
    assert _cli(monkeypatch, root, "import-data", "generic", new, "--force") == 0
    assert sorted(p.name for p in (root / "data/generic/images").iterdir()) == [f"i{i}.jpg" for i in range(6)]
    assert [p.name for p in (root / "data").iterdir()] == ["generic"]


def test_import_data_never_follows_links_out_of_the_download(tmp_path, monkeypatch, capsys):
    import os

    root = _project(tmp_path)
    download = _download(tmp_path / "download")
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    os.symlink("/etc", download / "etc")
    os.symlink(secret, download / "images" / "leak.jpg")
    os.symlink(tmp_path / "nowhere", download / "dangling.jpg")
    assert _cli(monkeypatch, root, "import-data", "generic", download) == 2
    err = capsys.readouterr().err
    assert "symbolic link(s) a copy must not follow" in err
    assert "a link to a folder" in err and "outside the folder" in err and "dangling" in err
    assert not (root / "data").exists() or not any((root / "data").iterdir())


def test_import_data_counts_missing_files(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path)
    assert _cli(monkeypatch, root, "import-data", "generic", _download(tmp_path / "dl", n=4, missing=2)) == 0
    assert "2 listed image(s) without a file" in capsys.readouterr().out


def test_import_data_force_over_a_link_leaves_the_linked_folder(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path)
    first, second = _download(tmp_path / "first"), _download(tmp_path / "second", n=2)
    before = _tree(first)
    assert _cli(monkeypatch, root, "import-data", "generic", first, "--mode", "symlink") == 0
    assert _cli(monkeypatch, root, "import-data", "generic", second, "--mode", "symlink", "--force") == 0
    assert (root / "data/generic").resolve() == second.resolve() and _tree(first) == before


# --- 4. a dataset CSV opens nothing outside its folder -----------------------------------------------------------


def _prepare_generic(root, rows: list[dict], on_bad: str = "error", min_side: int = 16):
    """data/generic/labels.csv of ``rows``, then the prepare stage (its error, or the prepared folder)."""
    import pandas as pd
    import yaml

    from lesionlab.config import load_params
    from lesionlab.data.prepare import prepare

    folder = root / "data" / "generic"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw.update(dataset="generic", dataset_source="data/generic")
    raw["prepare"].update(on_bad=on_bad, min_image_side=min_side, image_size=16, backbone_image_size=32)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return prepare(load_params(root / "params.yaml"), root, workers=1, progress=False)


def _good_rows(root, n: int = 6) -> list[dict]:
    for i in range(n):
        _jpeg(root / "data/generic/images" / f"g{i}.jpg", colour=(200, 40 * (i % 2), 90))
    return [{"path": f"images/g{i}.jpg", "label": ["mel", "nv"][i % 2], "image_id": f"g{i}"} for i in range(n)]


def test_dataset_paths_outside_the_folder_are_bad_rows(tmp_path):
    import pandas as pd

    from lesionlab.data.datasets import DatasetError

    root = _project(tmp_path)
    elsewhere = _jpeg(tmp_path / "elsewhere" / "real.jpg")
    hostile = [
        {"path": "/etc/passwd", "label": "mel", "image_id": "passwd"},
        {"path": "../../../elsewhere/real.jpg", "label": "nv", "image_id": "dotdot"},
        {"path": str(elsewhere), "label": "mel", "image_id": "absolute"},
        {"path": "images/g0.jpg", "mask_path": "../../../elsewhere/real.jpg", "label": "mel", "image_id": "mask"},
    ]
    rows = _good_rows(root) + hostile
    with pytest.raises(DatasetError, match=r"4 unusable row\(s\).*path outside the dataset folder"):
        _prepare_generic(root, rows)
    out = _prepare_generic(root, rows, on_bad="skip")
    problems = pd.read_csv(out / "problems.csv", keep_default_na=False)
    bad = problems[problems["severity"] == "bad"].set_index("image_id")["check"].to_dict()
    assert bad == {
        "passwd": "image path outside the dataset folder",
        "dotdot": "image path outside the dataset folder",
        "absolute": "image path outside the dataset folder",
        "mask": "mask path outside the dataset folder",
    }
    table = pd.read_csv(out / "dataset.csv", keep_default_na=False)
    assert len(table) == 6 and not table["path"].str.contains("elsewhere|passwd").any()


# --- 5. one bad image is one bad row ---------------------------------------------------------------------------


def test_bombs_tiny_images_and_16_bit_pngs_in_prepare(tmp_path):
    import pandas as pd

    from lesionlab.data.datasets import DatasetError

    root = _project(tmp_path)
    images = root / "data/generic/images"
    rows = _good_rows(root)
    _png_bomb(images / "bomb.png")
    assert (images / "bomb.png").stat().st_size < 100_000
    _jpeg(images / "dot.jpg", size=(1, 1))
    _png48(images / "deep.png")
    rows += [
        {"path": "images/bomb.png", "label": "mel", "image_id": "bomb"},
        {"path": "images/dot.jpg", "label": "nv", "image_id": "dot"},
        {"path": "images/deep.png", "label": "nv", "image_id": "deep"},
    ]
    with pytest.raises(DatasetError, match="image too large.*image too small|image too small.*image too large"):
        _prepare_generic(root, rows)
    out = _prepare_generic(root, rows, on_bad="skip")
    problems = pd.read_csv(out / "problems.csv", keep_default_na=False)
    problems = problems[problems["severity"] != "metadata"].set_index("image_id")
    assert (
        problems.loc["bomb", "check"].startswith("image too large") and problems.loc["bomb", "action"] == "row skipped"
    )
    assert problems.loc["dot", "check"].startswith("image too small")
    assert problems.loc["deep", "check"] == "16-bit-per-channel RGB -> 8-bit RGB"
    assert problems.loc["deep", "severity"] == "converted"
    assert sorted(pd.read_csv(out / "dataset.csv")["image_id"]) == sorted([f"g{i}" for i in range(6)] + ["deep"])


def _png48(path):
    """A genuine 48-bit (16 bits per channel) RGB PNG, written byte by byte."""
    import struct
    import zlib

    import numpy as np

    h, w = 24, 32
    pixels = np.zeros((h, w, 3), ">u2")
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 50000, 30000, 20000

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def test_class_folders_sharing_a_file_name_are_two_images(tmp_path):
    from lesionlab.data.datasets import read_generic_layout

    folder = tmp_path / "generic"
    _jpeg(folder / "mel" / "same.jpg", colour=(90, 20, 20))
    _jpeg(folder / "nv" / "same.jpg", colour=(150, 100, 80))
    _jpeg(folder / "nv" / "other.jpg")
    table = read_generic_layout(folder)
    assert sorted(table["image_id"]) == ["mel/same.jpg", "nv/same.jpg", "other"]
    assert not table["image_id"].duplicated().any()


def test_ages_that_are_not_ages_are_reported_with_their_counts(tmp_path):
    import pandas as pd

    root = _project(tmp_path)
    rows = _good_rows(root)
    for r, age in zip(rows, ["old", "old", "-4", "45", "", "350"]):
        r["age"] = age
    out = _prepare_generic(root, rows)
    quality = pd.read_csv(out / "quality.csv", keep_default_na=False).set_index("check")
    assert quality.loc["age 'old' is not an age in years (read as missing)", "rows"] == 2
    assert quality.loc["age '-4' is not an age in years (read as missing)", "rows"] == 1
    assert quality.loc["age '350' is not an age in years (read as missing)", "rows"] == 1
    assert quality.loc["age missing", "rows"] == 1
    ages = pd.read_csv(out / "dataset.csv")["age"]
    assert ages.notna().sum() == 1 and ages.dropna().iloc[0] == 45


# predict: a Predictor whose model is a fixed function (the loaders are tested elsewhere)


def _fake_predictor(kind: str = "cnn", fail_after: int | None = None):
    import numpy as np

    from lesionlab.models.predict import Predictor

    calls = []

    def proba(images):
        calls.append(len(images))
        if fail_after is not None and len(calls) > fail_after:
            raise RuntimeError("the model crashed")
        red = images[..., 0].mean(axis=(1, 2)) / 255.0
        return np.column_stack([red, 1 - red])

    return Predictor("fake", kind, "test", ("mel", "nv"), 16, proba)


def _predict(monkeypatch, root, predictor, *argv):
    import lesionlab.models.predict as predict

    monkeypatch.setattr(predict, "load_predictor", lambda *a, **k: predictor)
    return _cli(monkeypatch, root, "predict", "fake", *argv)


def test_predict_skips_bombs_and_tiny_images_and_lists_them(tmp_path, monkeypatch, capsys):
    import pandas as pd

    root = _project(tmp_path)
    imgs = tmp_path / "imgs"
    _jpeg(imgs / "ok.jpg")
    _png_bomb(imgs / "bomb.png")
    _jpeg(imgs / "dot.jpg", size=(1, 1))
    out = tmp_path / "out" / "pred.csv"
    assert _predict(monkeypatch, root, _fake_predictor(), imgs, "--out", out) == 0
    assert list(pd.read_csv(out)["image_id"]) == ["ok"]
    skipped = pd.read_csv(out.with_name("pred.skipped.csv")).set_index("image_id")["problem"]
    assert skipped["bomb"].startswith("image too large") and skipped["dot"].startswith("image too small")


def test_predict_keeps_the_scored_rows_when_the_model_crashes_and_cleans_its_files(tmp_path, monkeypatch, capsys):
    import pandas as pd

    root = _project(tmp_path)
    imgs = tmp_path / "imgs"
    for i in range(5):
        _jpeg(imgs / f"i{i}.jpg", colour=(40 * i, 90, 90))
    (imgs / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "pred.csv"
    with pytest.raises(RuntimeError, match="the model crashed"):
        _predict(monkeypatch, root, _fake_predictor(fail_after=2), imgs, "--out", out, "--batch-size", "2")
    partial = pd.read_csv(out.with_name("pred.csv.partial"))
    assert len(partial) == 4 and {"uncertain", "p_mel"} <= set(partial.columns)  # two batches of two were scored
    assert "the rows scored so far are in" in capsys.readouterr().err and not out.exists()
    assert _predict(monkeypatch, root, _fake_predictor(), imgs, "--out", out, "--batch-size", "2") == 0
    assert len(pd.read_csv(out)) == 5 and out.with_name("pred.skipped.csv").is_file()
    assert not out.with_name("pred.csv.partial").exists()
    (imgs / "broken.jpg").unlink()
    assert _predict(monkeypatch, root, _fake_predictor(), imgs, "--out", out) == 0
    assert not out.with_name("pred.skipped.csv").exists()  # the first run's list of skipped files is gone


def test_predict_says_tta_does_not_apply_to_an_ensemble(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path)
    _jpeg(tmp_path / "imgs" / "a.jpg")
    ensemble = _fake_predictor("ensemble")
    ensemble.combine = lambda images, rows, tta: ensemble.proba(images[16])
    assert _predict(monkeypatch, root, ensemble, tmp_path / "imgs", "--out", tmp_path / "p.csv", "--tta") == 0
    out = capsys.readouterr().out
    assert "--tta does not apply to fake (ensemble)" in out and "TTA over 8 views" not in out


def test_predict_input_errors_are_one_line(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path)
    (tmp_path / "inputs.csv").write_text("file,label\na.jpg,mel\n")
    assert _predict(monkeypatch, root, _fake_predictor(), tmp_path / "inputs.csv") == 2
    err = capsys.readouterr().err
    assert "needs a 'path' column" in err and "Traceback" not in err


# --- 6. params.yaml: read as DVC reads it, checked before DVC removes an output ----------------------------------


def test_params_yaml_is_read_as_dvc_reads_it(tmp_path):
    from lesionlab.config import ParamsError, load_params

    root = _project(tmp_path)
    text = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(text.replace("learning_rate: 0.001", "learning_rate: 1e-3", 1))
    assert "learning_rate: 1e-3" in (root / "params.yaml").read_text()
    assert load_params(root / "params.yaml").train.learning_rate == 0.001  # YAML 1.2, as DVC: a float, not '1e-3'
    (root / "params.yaml").write_text(text + "\ndataset: ham10000\n")
    with pytest.raises(ParamsError, match=r"line \d+: found duplicate key \"dataset\".*DVC refuses"):
        load_params(root / "params.yaml")


@pytest.mark.slow
def test_a_bad_params_yaml_stops_dvc_before_any_output_is_removed(tmp_path):
    def small(params: dict) -> None:
        params["synthetic"].update({"n_lesions": 40, "width": 48, "height": 36})

    repo = tmp_path / "repo"
    repo.mkdir()
    env, _ = make_repo(repo, small)
    run(["dvc", "repro", "prepare"], repo, env)
    prepared = repo / "results/synthetic/prepared"
    before = _tree(prepared)
    assert (repo / "results/params-checked.txt").is_file()
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(text.replace("  image_size: 48", "  imgae_size: 32\n  image_size: 48", 1))
    proc = run(["dvc", "repro", "prepare"], repo, env, ok=False)
    assert proc.returncode != 0
    assert "prepare.imgae_size: unknown key (did you mean 'image_size'?)" in proc.stdout + proc.stderr
    assert _tree(prepared) == before  # the stage after the check never started
    (repo / "params.yaml").write_text(text)  # fixed: the check runs again, prepare does not
    again = run(["dvc", "repro", "prepare"], repo, env).stdout
    assert "Running stage 'check_params'" in again and "Running stage 'prepare'" not in again, again
    assert _tree(prepared) == before


# --- 7. process hygiene ------------------------------------------------------------------------------------------

_PARENT = r"""
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
                          "from lesionlab.pipeline.guard import die_with_parent; die_with_parent(0.2); "
                          "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_stage_process_dies_with_the_dvc_that_started_it(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], env=env, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)
    os.kill(child, 0)  # alive while its parent lives
    parent.kill()  # SIGKILL: the parent cleans nothing up
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its parent")


_HOLDER = r"""
import sys, time
from pathlib import Path
from lesionlab.pipeline.guard import stage_lock
with stage_lock(Path(sys.argv[1]), "prepare"):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_stage_refuses_to_run_beside_an_orphan_of_itself(tmp_path, monkeypatch, capsys):
    import os
    import subprocess
    import sys

    from conftest import REPO

    root = _project(tmp_path)
    (root / ".dvc").mkdir()
    (root / "results").mkdir()
    before = _tree(root / "results")
    orphan = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    try:
        assert orphan.stdout.readline().strip() == "holding"
        assert _cli(monkeypatch, root, "prepare") == 2
        err = capsys.readouterr().err
        assert f"stage prepare is already running in this workspace (process {orphan.pid}" in err
        assert _tree(root / "results") == before
    finally:
        orphan.kill()
        orphan.wait()
    from lesionlab.pipeline.guard import stage_lock

    with stage_lock(root, "prepare"):  # the orphan's death released the lock
        pass


_POOL_HOLDER = r"""
import os, sys, time
from pathlib import Path
from lesionlab.pipeline.guard import stage_lock, worker_pool
with stage_lock(Path(sys.argv[1]), "prepare"):
    with worker_pool(1) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        time.sleep(120)
"""


def test_a_killed_stage_leaves_no_pool_worker_holding_its_lock(tmp_path):
    """A forked worker inherits the lock's file: it must let go of it and die with the stage (found when an
    interrupted ``dvc repro`` left prepare's image workers behind, blocking every later prepare)."""
    import os
    import subprocess
    import sys
    import time

    from conftest import REPO

    from lesionlab.pipeline.guard import StageBusy, stage_lock

    root = tmp_path
    (root / ".dvc").mkdir()
    stage = subprocess.Popen(
        [sys.executable, "-c", _POOL_HOLDER, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    worker = int(stage.stdout.readline())
    os.kill(worker, 0)  # the worker runs
    with pytest.raises(StageBusy), stage_lock(root, "prepare"):
        pass
    stage.kill()  # SIGKILL: no cleanup in the stage
    stage.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker, 9)
        pytest.fail("the pool worker outlived its stage")
    with stage_lock(root, "prepare"):  # free again
        pass

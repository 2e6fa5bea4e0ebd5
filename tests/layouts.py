"""Tiny datasets in each registered source's real file layout, written by the tests (no download needed).

Each writer lays out ``folder`` as the published source does (file names, column names, folder names) and
leaves out what the real source lacks: masks, ages, sites, lesion ids, a multi-class label. Images are small
JPEGs whose colour depends on the class, so a model has something to learn and every class is present.
:data:`LAYOUTS` maps a test name to (writer, dataset name, params overrides, what the layout lacks).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SIZE = (40, 30)  # width x height: HAM10000's 4:3
SITES = ["back", "face", "lower extremity", "trunk"]


def _image(rng: np.random.Generator, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image of a lesion of class ``k`` of ``n`` (hue by class) on skin, and its binary mask."""
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = w / 2 + rng.uniform(-4, 4), h / 2 + rng.uniform(-3, 3)
    r = rng.uniform(6, 11)
    mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
    skin = np.array([222, 180, 160]) + rng.normal(0, 6, 3)
    hue = 2 * np.pi * k / max(n, 1)
    lesion = 110 + 80 * np.array([np.cos(hue), np.cos(hue + 2.1), np.cos(hue + 4.2)])
    img = np.where(mask[..., None], lesion, skin) + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8), mask


def _save(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=92)


def _save_mask(mask: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask * 255).astype(np.uint8)).save(path)


def _plan(classes: list[str], lesions_per_class: int, seed: int, views=(1, 1, 2)) -> list[dict]:
    """Rows of (image, lesion, class index, age, sex, site): ``lesions_per_class`` lesions per class, 1-2 views."""
    rng = np.random.default_rng(seed)
    rows, n = [], 0
    for k, label in enumerate(classes):
        for j in range(lesions_per_class):
            lesion = f"LES_{k}{j:03d}"
            for _ in range(int(rng.choice(views))):
                rows.append(
                    {
                        "image": f"ISIC_{9000000 + n:07d}",
                        "lesion": lesion,
                        "k": k,
                        "label": label,
                        "age": float(20 + 5 * rng.integers(0, 12)),
                        "sex": ["male", "female"][n % 2],
                        "site": SITES[(k + j) % len(SITES)],
                    }
                )
                n += 1
    return rows


def _images(
    rows: list[dict],
    n_classes: int,
    folder: Path,
    name=lambda r: f"{r['image']}.jpg",
    mask_folder=None,
    mask_name=lambda r: f"{r['image']}_segmentation.png",
    seed: int = 0,
) -> None:
    rng = np.random.default_rng(seed)
    for r in rows:
        img, mask = _image(rng, r["k"], n_classes)
        _save(img, folder / name(r))
        if mask_folder is not None:
            _save_mask(mask, mask_folder / mask_name(r))


def write_ham10000(folder: Path) -> None:
    """HAM10000: HAM10000_metadata.csv + images/ + masks/ (7 classes, ages, sites, lesion ids, masks)."""
    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    rows = _plan(classes, 4, seed=1)
    pd.DataFrame(
        {
            "lesion_id": [r["lesion"].replace("LES", "HAM") for r in rows],
            "image_id": [r["image"] for r in rows],
            "dx": [r["label"] for r in rows],
            "dx_type": ["histo"] * len(rows),
            "age": [r["age"] for r in rows],
            "sex": [r["sex"] for r in rows],
            "localization": [r["site"] for r in rows],
        }
    ).to_csv(folder / "HAM10000_metadata.csv", index=False)
    _images(rows, len(classes), folder / "images", mask_folder=folder / "masks")


def write_isic2019(folder: Path) -> None:
    """ISIC 2019: one-hot ground truth (8 classes incl. SCC, an UNK column), metadata without lesion ids, no masks."""
    codes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    rows = _plan(codes, 3, seed=2)
    truth = pd.DataFrame({"image": [r["image"] for r in rows]})
    for c in [*codes, "UNK"]:
        truth[c] = [1.0 if r["label"] == c else 0.0 for r in rows]
    truth.to_csv(folder / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.DataFrame(
        {
            "image": [r["image"] for r in rows],
            "age_approx": [r["age"] for r in rows],
            "anatom_site_general": [r["site"] for r in rows],
            "lesion_id": [""] * len(rows),
            "sex": [r["sex"] for r in rows],
        }
    ).to_csv(folder / "ISIC_2019_Training_Metadata.csv", index=False)
    _images(rows, len(codes), folder / "ISIC_2019_Training_Input")


def write_isic2020(folder: Path) -> None:
    """ISIC 2020 (Kaggle's train.csv): binary target, patients instead of lesion ids, no masks."""
    rows = _plan(["benign", "malignant"], 9, seed=3)
    pd.DataFrame(
        {
            "image_name": [r["image"] for r in rows],
            "patient_id": [r["lesion"].replace("LES", "IP") for r in rows],
            "sex": [r["sex"] for r in rows],
            "age_approx": [r["age"] for r in rows],
            "anatom_site_general_challenge": [r["site"] for r in rows],
            "diagnosis": ["unknown" if r["k"] == 0 else "melanoma" for r in rows],
            "benign_malignant": [r["label"] for r in rows],
            "target": [r["k"] for r in rows],
        }
    ).to_csv(folder / "train.csv", index=False)
    _images(rows, 2, folder / "train")


def write_bcn20000(folder: Path) -> None:
    """BCN20000: one metadata CSV with its own split column (split.method: predefined), long diagnosis names."""
    names = {
        "melanoma": "MEL",
        "nevus": "NV",
        "basal cell carcinoma": "BCC",
        "seborrheic keratosis": "BKL",
        "squamous cell carcinoma": "SCC",
    }
    rows = _plan(list(names), 4, seed=4)
    split = {}
    for r in rows:  # per class: lesion 0 -> test, 1 -> val, the rest -> train (lesion-disjoint)
        split.setdefault(r["lesion"], ["test", "val", "train", "train"][int(r["lesion"][-3:]) % 4])
    pd.DataFrame(
        {
            "bcn_filename": [f"BCN_{r['image'][5:]}.jpg" for r in rows],
            "diagnosis": [r["label"] for r in rows],
            "lesion_id": [r["lesion"].replace("LES", "BCN_L") for r in rows],
            "age_approx": [r["age"] for r in rows],
            "sex": [r["sex"] for r in rows],
            "anatom_site_general": [r["site"] for r in rows],
            "split": [split[r["lesion"]] for r in rows],
        }
    ).to_csv(folder / "bcn20000_metadata.csv", index=False)
    _images(rows, len(names), folder / "images", name=lambda r: f"BCN_{r['image'][5:]}.jpg")


def write_dermamnist(folder: Path) -> None:
    """MedMNIST's dermamnist.npz: 28 px, labels as indices, its own split, no metadata, no lesion ids, no masks."""
    from PIL import Image

    rng = np.random.default_rng(5)
    arrays = {}
    for split, per_class in (("train", 5), ("val", 2), ("test", 2)):
        images, labels = [], []
        for k in range(7):
            for _ in range(per_class):
                img, _ = _image(rng, k, 7)
                images.append(np.asarray(Image.fromarray(img).resize((28, 28))))
                labels.append([k])
        arrays[f"{split}_images"] = np.stack(images)
        arrays[f"{split}_labels"] = np.array(labels, dtype=np.uint8)
    np.savez(folder / "dermamnist.npz", **arrays)


def write_generic_csv(folder: Path, mapped: bool = False) -> None:
    """A user's CSV with its own label set (PH2's names) kept as its own classes, masks in a mask_path column,
    no metadata, no lesion ids; the card declares which class is malignant and no triage. ``mapped``: the card
    maps the labels onto the taxonomy instead (nv, nv, mel), as an external test set for HAM10000 models."""
    classes = ["common_nevus", "atypical_nevus", "melanoma"]
    rows = _plan(classes, 9, seed=6, views=(1,))
    if mapped:  # colours of HAM10000's nv and mel (the fixture's class hues), so the models transfer somewhat
        for r in rows:
            r["k"] = 5 if r["label"] != "melanoma" else 4
    pd.DataFrame(
        {
            "path": [f"images/{r['image']}.jpg" for r in rows],
            "label": [r["label"] for r in rows],
            "image_id": [r["image"] for r in rows],
            "mask_path": [f"masks/{r['image']}_lesion.png" for r in rows],
        }
    ).to_csv(folder / "labels.csv", index=False)
    _images(
        rows,
        7 if mapped else len(classes),
        folder / "images",
        mask_folder=folder / "masks",
        mask_name=lambda r: f"{r['image']}_lesion.png",
    )
    card = {"layout": "generic", "licence": "test fixture", "citation": "none"}
    if mapped:
        card.update(
            description="a PH2-like external test set, labels mapped onto HAM10000's codes",
            label_map={"common_nevus": "nv", "atypical_nevus": "nv", "melanoma": "mel"},
        )
    else:
        card.update(
            description="a PH2-like user dataset with its own three classes", classes=classes, malignant=["melanoma"]
        )
    (folder / "dataset.yaml").write_text(json.dumps(card, indent=1))


def write_generic_folders(folder: Path) -> None:
    """One folder per class, spelled as a user would (synonyms of the taxonomy's codes); nothing but images. One
    class (Dermatofibroma) has 2 images only: fewer lesions than splits, which the split page must report."""
    spellings = {"Melanoma": "mel", "nevus": "nv", "BCC": "bcc", "Actinic keratosis": "akiec"}
    rows = _plan(list(spellings), 8, seed=7, views=(1,))
    rare = [
        {**r, "label": "Dermatofibroma", "k": 4, "image": f"ISIC_{9100000 + i:07d}"} for i, r in enumerate(rows[:2])
    ]
    _images(rows + rare, len(spellings) + 1, folder, name=lambda r: f"{r['label']}/{r['image'].lower()}.jpg")


#: external test sets the layouts' params may name: data/<name>/ writer
EXTERNAL = {"ph2ext": lambda folder: write_generic_csv(folder, mapped=True)}

#: test name -> (writer, dataset name under data/, params overrides, what the layout lacks)
LAYOUTS = {
    # + a PH2-like external test set, a preprocessing ablation (colour constancy) of one CNN rung and a second
    # training run of every neural row (the external leaderboard's mean over runs)
    "ham10000": (
        write_ham10000,
        "ham10000",
        {"external": ["ph2ext"], "ablate": "cnn_class_weights", "base": {"replicate_seeds": [43]}},
        [],
    ),
    "isic2019": (write_isic2019, "isic2019", {}, ["masks", "lesion ids"]),
    "isic2020": (write_isic2020, "isic2020", {}, ["masks", "multi-class labels"]),
    "bcn20000": (write_bcn20000, "bcn20000", {"split": {"method": "predefined"}}, ["masks"]),
    "dermamnist": (
        write_dermamnist,
        "dermamnist",
        {"split": {"method": "predefined"}},
        ["masks", "metadata", "lesion ids"],
    ),
    "generic_csv": (write_generic_csv, "ph2like", {}, ["metadata", "lesion ids", "taxonomy labels", "triage"]),
    "generic_folders": (
        write_generic_folders,
        "generic",
        {},
        ["masks", "metadata", "lesion ids", "a class in every split"],
    ),
}


#: strings a hostile or careless user may put in any field: each must reach a page as text, never as markup
XSS_IMG = "<img src=x onerror=document.body.dataset.pwned=1>"
XSS_SCRIPT = "<script>document.body.dataset.pwned=2</script>"


def write_hostile_csv(folder: Path) -> None:
    """A generic CSV dataset whose every free-text field is an HTML payload: file names, image and lesion ids,
    raw labels (mapped by the card), sites, sexes, diagnosis types, and the card's description, licence and
    citation. Three taxonomy classes, ages and sites present, so every section of every page is rendered."""
    rows = _plan(["mel", "nv", "bcc"], 8, seed=11, views=(1, 1, 2))
    raw = {"mel": f"{XSS_IMG}melanoma", "nv": f"{XSS_SCRIPT}nevus", "bcc": "bcc"}
    names = {r["image"]: f"{XSS_IMG}{i}" for i, r in enumerate(rows)}
    sites = {
        "back": f"{XSS_SCRIPT}back",
        "face": XSS_IMG,
        "lower extremity": "lower extremity",
        "trunk": "trunk $\\frac{$",
    }  # '$': TeX to matplotlib
    pd.DataFrame(
        {
            "path": [f"images/{names[r['image']]}.jpg" for r in rows],
            "label": [raw[r["label"]] for r in rows],
            "image_id": [names[r["image"]] for r in rows],
            "lesion_id": [f"{XSS_IMG}{r['lesion']}" for r in rows],
            "age": [r["age"] for r in rows],
            "sex": [r["sex"] if i % 3 else XSS_SCRIPT for i, r in enumerate(rows)],
            "site": [sites[r["site"]] for r in rows],
            "dx_type": [XSS_IMG] * len(rows),
            "mask_path": [f"masks/{names[r['image']]}.png" for r in rows],
        }
    ).to_csv(folder / "labels.csv", index=False)
    _images(
        rows,
        3,
        folder / "images",
        name=lambda r: f"{names[r['image']]}.jpg",
        mask_folder=folder / "masks",
        mask_name=lambda r: f"{names[r['image']]}.png",
    )
    card = {
        "layout": "generic",
        "description": f"hostile {XSS_IMG}",
        "licence": XSS_SCRIPT,
        "citation": XSS_IMG,
        "url": "javascript:document.body.dataset.pwned=3",
        "label_map": {v: k for k, v in raw.items()},
    }
    (folder / "dataset.yaml").write_text(json.dumps(card, indent=1))

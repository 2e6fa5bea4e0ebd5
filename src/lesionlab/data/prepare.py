"""The ``prepare`` stage: a dataset's source -> canonical table + uint8 image cache.

Outputs, under ``results/<dataset>/prepared/``:

- ``dataset.csv``: the dataset table (contract 1); row *i* is image *i* of the cache;
- ``images.npy``: uint8 array (N, S, S, 3), S = ``prepare.image_size``; memory-mapped by readers;
- ``masks.npy``: uint8 array (N, S, S), 1 = lesion (zeros where a source has no mask);
- ``summary.json``: counts, the class list (model-output order) and the malignant classes;
- ``problems.csv`` / ``quality.csv``: every data-quality finding and the per-check table (lesionlab.data.quality);
- ``results/<dataset>/cache/images.npy``: the same images at ``prepare.backbone_image_size`` for the
  pretrained backbones (a separate output, so that changing its size leaves ``prepared/`` and every
  CNN variant untouched);
- ``source/``: for the synthetic dataset, the generated files in HAM10000's layout.

Images are decoded once here (EXIF orientation applied, converted to 8-bit RGB) and never again.
Unusable rows stop the run (``prepare.on_bad: error``) or are dropped and listed (``skip``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import Params
from lesionlab.data import quality, taxonomy
from lesionlab.data.datasets import (
    ARRAY_REF,
    TABLE_COLUMNS,
    DatasetError,
    class_semantics,
    dataset_info,
    import_dataset,
    infer_classes,
    known_label_names,
)
from lesionlab.data.preprocess import Preprocess
from lesionlab.paths import backbone_cache_dir, fresh_dir, prepared_dir, results_dir, splits_file
from lesionlab.pipeline.contracts import read_dataset_table, read_splits, validate_dataset_table
from lesionlab.pipeline.guard import worker_pool


def build_image_cache(
    table: pd.DataFrame,
    size: int,
    workers: int = 2,
    progress: bool = True,
    extra_size: int | None = None,
    preprocess: Preprocess | None = None,
    min_side: int = 0,
):
    """Decode every image (and mask) once, resized to ``size`` x ``size``; row order = table order.

    Returns ``images, masks, has_mask, findings, extra``: rows whose image is bad keep zeros and appear in
    ``findings`` (image_id, file, check, severity) with every conversion that was applied. ``extra`` is
    the same images at ``extra_size`` (the backbone cache) from the same decode, or None.
    """
    from tqdm.auto import tqdm

    n = len(table)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    extra = np.zeros((n, extra_size, extra_size, 3), dtype=np.uint8) if extra_size else None
    masks = np.zeros((n, size, size), dtype=np.uint8)
    has_mask = np.zeros(n, dtype=bool)
    found: list[tuple[str, str, str, str]] = []
    sizes = (size, extra_size) if extra_size else size
    preprocess = preprocess or Preprocess()
    jobs = [(p, m, sizes, preprocess, min_side) for p, m in zip(table["path"], table["mask_path"])]
    with worker_pool(workers) as pool:
        results = pool.map(quality.load_pair, jobs, chunksize=64)
        for i, (img, mask, notes, bad) in enumerate(
            tqdm(results, total=n, desc="image cache", disable=not progress, mininterval=2)
        ):
            image_id, path = table["image_id"].iat[i], table["path"].iat[i]
            if bad:
                found.append((image_id, path, bad, quality.BAD))
                continue
            if extra is not None:
                img, extra[i] = img
            images[i] = img
            if mask is not None:
                masks[i], has_mask[i] = mask, True
            found.extend(
                (image_id, path, note, quality.METADATA if note.startswith("mask") else quality.CONVERTED)
                for note in notes
            )
    return images, masks, has_mask, pd.DataFrame(found, columns=["image_id", "file", "check", "severity"]), extra


@dataclass
class Prepared:
    """A prepared dataset: the table, its memory-mapped caches and the quality findings."""

    table: pd.DataFrame
    images: np.ndarray
    masks: np.ndarray
    classes: tuple[str, ...]
    summary: dict

    @property
    def has_mask(self) -> np.ndarray:
        """Rows whose lesion mask was read (the others' mask is all zeros)."""
        return self.table["mask_path"].fillna("").astype(str).ne("").to_numpy()


def load_prepared(root: Path, dataset: str) -> Prepared:
    """The prepare stage's outputs for ``dataset`` (its classes' meaning made known to the task views)."""
    return read_prepared(prepared_dir(root, dataset))


def read_prepared(folder: Path, declare: bool = True) -> Prepared:
    """A prepared folder (the prepare stage's, or an external test set's)."""
    if not (folder / "dataset.csv").is_file() or not (folder / "summary.json").is_file():
        raise FileNotFoundError(f"{folder / 'dataset.csv'} not found: run `dvc repro prepare` first")
    summary = json.loads((folder / "summary.json").read_text())
    classes = tuple(summary["classes"])
    if declare:
        taxonomy.declare(summary.get("malignant"), summary.get("triage"))  # a dataset's own classes: their meaning
    table = read_dataset_table(folder / "dataset.csv", classes)
    images = np.load(folder / "images.npy", mmap_mode="r")
    masks = np.load(folder / "masks.npy", mmap_mode="r")
    if len(images) != len(table) or len(masks) != len(table):
        raise DatasetError(f"{folder}: image cache has {len(images)} rows, mask cache {len(masks)}, table {len(table)}")
    return Prepared(table=table, images=images, masks=masks, classes=classes, summary=summary)


#: folders that `compare` depends on even when params.yaml configures nothing that writes into them
PLACEHOLDER_FOLDERS = ("ensembles", "external")  # (explanations/: the explain stage always writes it)


def ensure_stage_folders(root: Path, dataset: str) -> None:
    """Create ``results/<ds>/ensembles/`` and ``external/`` with a README: DVC cannot depend on a missing folder, and
    with ``ensembles: {}`` or ``external: []`` no stage would create them."""
    for name in PLACEHOLDER_FOLDERS:
        folder = results_dir(root, dataset) / name
        folder.mkdir(parents=True, exist_ok=True)
        readme = folder / "README.md"
        if not readme.is_file():
            readme.write_text(
                f"One sub-folder per {name[:-1]} stage (dvc.yaml). This file keeps the folder, which "
                "the compare stage depends on, present when params.yaml configures none.\n"
            )


def write_image_cache(folder: Path, images: np.ndarray, image_ids) -> Path:
    """``images.npy`` + ``image_ids.csv`` (its rows) in a fresh ``folder``."""
    fresh_dir(folder)
    np.save(folder / "images.npy", images)
    pd.DataFrame({"image_id": list(image_ids)}).to_csv(folder / "image_ids.csv", index=False)
    return folder


def load_backbone_cache(root: Path, dataset: str, table: pd.DataFrame) -> np.ndarray:
    """The memory-mapped backbone cache, checked to hold the dataset table's rows in its order."""
    return load_image_cache(backbone_cache_dir(root, dataset), table)


def load_image_cache(folder: Path, table: pd.DataFrame) -> np.ndarray:
    """A memory-mapped image cache (:func:`write_image_cache`), checked to hold the table's rows in its order."""
    if not (folder / "images.npy").is_file():
        raise FileNotFoundError(f"{folder / 'images.npy'} not found: run `dvc repro prepare` first")
    ids = pd.read_csv(folder / "image_ids.csv", dtype=str, keep_default_na=False)["image_id"]
    if list(ids) != list(table["image_id"]):
        raise DatasetError(f"{folder}: its rows differ from prepared/dataset.csv; re-run `dvc repro prepare`")
    return np.load(folder / "images.npy", mmap_mode="r")


def read_problems(root: Path, dataset: str) -> pd.DataFrame:
    """Every data-quality finding of the prepare stage (``problems.csv``)."""
    return pd.read_csv(prepared_dir(root, dataset) / "problems.csv", dtype=str, keep_default_na=False)


def _relative(paths, root: Path) -> list[str]:
    """Paths under the project root made relative to it (portable between clones); others unchanged."""
    base, out = root.resolve(), []
    for p in paths:
        file = p.split(ARRAY_REF)[0] if p else ""
        if file and Path(file).resolve().is_relative_to(base):
            p = str(Path(file).resolve().relative_to(base)) + p[len(file) :]
        out.append(p)
    return out


def _absolute(paths, root: Path) -> list[str]:
    """The inverse of :func:`_relative`: paths in a prepared table, made absolute against the project root."""
    out = []
    for p in paths:
        file = p.split(ARRAY_REF)[0] if p else ""
        out.append(str(root / file) + p[len(file) :] if file and not Path(file).is_absolute() else p)
    return out


def decode_images(
    table: pd.DataFrame, root: Path, size: int, preprocess: Preprocess, workers: int = 2, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(images, masks) of a prepared table's rows decoded again at ``size`` with ``preprocess`` (a preprocessing
    ablation: the same rows as the caches, other colour constancy or resize policy; masks follow the geometry)."""
    rows = table.assign(path=_absolute(table["path"], root), mask_path=_absolute(table["mask_path"].fillna(""), root))
    images, masks, _, found, _ = build_image_cache(
        rows, size, workers=workers, progress=progress, preprocess=preprocess
    )
    bad = found[found["severity"] == quality.BAD]
    if len(bad):
        raise DatasetError(
            f"{len(bad)} prepared image(s) no longer decode, e.g. {bad['file'].iloc[0]} "
            f"({bad['check'].iloc[0]}): re-run `dvc repro prepare`"
        )
    return images, masks


def raw_source(root: Path, info) -> Path:
    """The folder a user's download of ``info`` lives in, or an error that says how to put it there."""
    source = root / info.raw_dir
    if not source.is_dir():
        raise DatasetError(
            f"{source}: not found. Lay out your download of {info.name} there "
            f"(`lesionlab import-data {info.name} <download folder>`, see README, "
            f"'Bring your own data'), then `dvc add data`. Expected: {info.files}"
        )
    return source


def prepare(params: Params, root: Path, workers: int = 2, progress: bool = True) -> Path:
    """Run the prepare stage for ``params.dataset``; returns the output folder."""
    from lesionlab.data import synthetic

    info = dataset_info(params.dataset, root)
    out = fresh_dir(prepared_dir(root, params.dataset))
    started = time.perf_counter()
    if info.raw_dir is None:
        cfg = synthetic.SyntheticConfig(**params.synthetic.model_dump())
        source = synthetic.generate(out / "source", cfg, seed=params.base.seed, workers=workers, progress=progress)
    else:
        source = raw_source(root, info)
    table = import_dataset(info, source)
    classes = infer_classes(info, table["label"])
    print(f"[prepare] {info.name}: {len(table)} rows in {source}; classes {list(classes)}", flush=True)
    prepare_table(
        info,
        table,
        classes,
        class_semantics(info, classes),
        source,
        out,
        backbone_cache_dir(root, params.dataset),
        params.prepare,
        root,
        workers,
        progress,
        started,
    )
    ensure_stage_folders(root, params.dataset)
    return out


def prepare_table(
    info,
    table: pd.DataFrame,
    classes: tuple[str, ...],
    semantics: dict,
    source: Path,
    out: Path,
    cache: Path,
    settings,
    root: Path,
    workers: int = 2,
    progress: bool = True,
    started: float | None = None,
    min_classes: int = 2,
    extra: dict | None = None,
) -> dict:
    """Audit an imported table against ``classes``, decode its images once into the two caches, and write
    ``out`` (dataset.csv, images.npy, masks.npy, problems.csv, quality.csv, summary.json) and ``cache``
    (the images at ``settings.backbone_image_size``). Shared by the prepare stage and external test sets."""
    started = time.perf_counter() if started is None else started
    n_source = len(table)
    has_masks = info.has_masks or bool(table["mask_path"].astype(str).ne("").any())
    found, bad_row = quality.audit_rows(
        table,
        classes,
        has_masks=has_masks,
        known_names=known_label_names(info.classes or taxonomy.CLASS_NAMES, info.label_map),
    )
    decoded = table[~bad_row].reset_index(drop=True)  # bad rows are reported, never decoded
    preprocess = Preprocess(settings.color_constancy, settings.resize)
    images, masks, has_mask, image_found, large = build_image_cache(
        decoded,
        settings.image_size,
        workers=workers,
        progress=progress,
        extra_size=settings.backbone_image_size,
        preprocess=preprocess,
        min_side=settings.min_image_side,
    )
    problems = quality.problems_frame(pd.concat([found, image_found], ignore_index=True), settings.on_bad)
    problems["file"] = _relative(problems["file"].fillna("").astype(str), root)  # portable between clones
    problems.to_csv(out / "problems.csv", index=False)
    quality.quality_summary(problems, n_source).to_csv(out / "quality.csv", index=False)
    bad_images = image_found.loc[image_found["severity"] == quality.BAD, "image_id"]
    if (bad_row.any() or len(bad_images)) and settings.on_bad == "error":
        raise DatasetError(quality.bad_rows_message(problems, str(source), str(out / "problems.csv")))
    # skip mode: drop the rows whose image failed too (the table's bad rows were never decoded)
    keep = ~decoded["image_id"].isin(bad_images)
    table, images, masks, has_mask = decoded[keep].reset_index(drop=True), images[keep], masks[keep], has_mask[keep]
    large = large[keep]
    table.loc[~has_mask, "mask_path"] = ""
    validate_dataset_table(table, classes, source=str(source))
    present = [c for c in classes if (table["label"] == c).any()]
    if len(present) < min_classes:
        need = "a classifier needs at least two classes" if min_classes > 1 else "a test set needs a labelled image"
        raise DatasetError(
            f"{source}: {len(table)} usable image(s), all of class {present or ['(none)']}: {need} "
            f"(classes declared: {list(classes)})"
        )
    for col in ("path", "mask_path"):
        table[col] = _relative(table[col], root)
    table[TABLE_COLUMNS].to_csv(out / "dataset.csv", index=False)
    np.save(out / "images.npy", images)
    np.save(out / "masks.npy", masks)
    write_image_cache(cache, large, table["image_id"])
    summary = {
        "dataset": info.name,
        **(extra or {}),
        "source_rows": n_source,
        "skipped_rows": n_source - len(table),
        "images": int(len(table)),
        "lesions": int(table["lesion_id"].nunique()),
        "image_size": settings.image_size,
        **preprocess.record(),  # colour constancy / resize policy when not the defaults: predict applies the same
        "classes": list(classes),
        **semantics,  # malignant (+ triage for a dataset with classes of its own)
        "class_counts": {c: int((table["label"] == c).sum()) for c in classes},
        "masks": int(has_mask.sum()),
        "findings": {
            sev: int((problems["severity"] == sev).sum()) for sev in (quality.BAD, quality.CONVERTED, quality.METADATA)
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if n_source != len(table):
        print(
            f"[prepare] skipped {n_source - len(table)} unusable row(s) (prepare.on_bad: skip); "
            f"listed in {out / 'problems.csv'}",
            flush=True,
        )
    print(
        f"[prepare] {len(table)} images of {summary['lesions']} lesions; cache {images.shape} written to {out} "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return summary


@dataclass
class Rows:
    """A prepared dataset with its split: labels as indices and boolean masks per split."""

    data: Prepared
    split: np.ndarray
    y: np.ndarray

    @property
    def train(self) -> np.ndarray:
        return np.flatnonzero(self.split == "train")

    @property
    def val(self) -> np.ndarray:
        return np.flatnonzero(self.split == "val")

    @property
    def scored(self) -> np.ndarray:
        """val + test rows (where TTA is applied)."""
        return np.flatnonzero(self.split != "train")


def load_rows(root: Path, dataset: str) -> Rows:
    data = load_prepared(root, dataset)
    splits = read_splits(splits_file(root, dataset), data.table)
    split = data.table[["image_id"]].merge(splits, on="image_id", how="left")["split"].to_numpy()
    index = {c: i for i, c in enumerate(data.classes)}
    return Rows(data, split, data.table["label"].map(index).to_numpy())

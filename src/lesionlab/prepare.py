"""The ``prepare`` stage: a dataset's source -> canonical table + uint8 image cache.

Outputs, under ``results/<dataset>/prepared/``:

- ``dataset.csv``: the dataset table (contract 1); row *i* is image *i* of the cache;
- ``images.npy``: uint8 array (N, S, S, 3), S = ``prepare.image_size``; memory-mapped by readers;
- ``masks.npy``: uint8 array (N, S, S), 1 = lesion (zeros where a source has no mask);
- ``source/``: for the synthetic dataset, the generated files in HAM10000's layout.

Images are decoded once here (EXIF orientation applied, converted to RGB) and never again.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.config import Params
from lesionlab.contracts import read_dataset_table, validate_dataset_table
from lesionlab.datasets import DATASETS, TABLE_COLUMNS, DatasetError, import_dataset
from lesionlab.paths import prepared_dir


def _load_image(path: str, size: int) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
    except Exception as err:  # PIL raises many types for corrupt files
        raise DatasetError(f"{path}: cannot read image ({type(err).__name__}: {err})") from None


def _load_mask(path: str, size: int) -> np.ndarray:
    from PIL import Image

    if not path:
        return np.zeros((size, size), dtype=np.uint8)
    try:
        with Image.open(path) as im:
            small = im.convert("L").resize((size, size), Image.Resampling.BILINEAR)
    except Exception as err:
        raise DatasetError(f"{path}: cannot read mask ({type(err).__name__}: {err})") from None
    return (np.asarray(small) >= 128).astype(np.uint8)


def _load_pair(args: tuple[str, str, int]) -> tuple[np.ndarray, np.ndarray]:
    path, mask_path, size = args
    return _load_image(path, size), _load_mask(mask_path, size)


def build_image_cache(table: pd.DataFrame, size: int, workers: int = 2, progress: bool = True):
    """Decode every image (and mask) once, resized to ``size`` x ``size``; row order = table order."""
    from tqdm.auto import tqdm

    n = len(table)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    jobs = [(p, m, size) for p, m in zip(table["path"], table["mask_path"])]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(_load_pair, jobs, chunksize=64)
        for i, (img, mask) in enumerate(tqdm(results, total=n, desc="image cache", disable=not progress, mininterval=2)):
            images[i], masks[i] = img, mask
    return images, masks


@dataclass
class Prepared:
    """A prepared dataset: the table and its memory-mapped caches."""

    table: pd.DataFrame
    images: np.ndarray
    masks: np.ndarray
    classes: tuple[str, ...]


def load_prepared(root: Path, dataset: str) -> Prepared:
    folder = prepared_dir(root, dataset)
    info = DATASETS[dataset]
    if not (folder / "dataset.csv").is_file():
        raise FileNotFoundError(f"{folder / 'dataset.csv'} not found: run `dvc repro prepare` first")
    table = read_dataset_table(folder / "dataset.csv", info.classes)
    images = np.load(folder / "images.npy", mmap_mode="r")
    masks = np.load(folder / "masks.npy", mmap_mode="r")
    if len(images) != len(table) or len(masks) != len(table):
        raise DatasetError(f"{folder}: image cache has {len(images)} rows, mask cache {len(masks)}, table {len(table)}")
    return Prepared(table=table, images=images, masks=masks, classes=info.classes)


def prepare(params: Params, root: Path, workers: int = 2, progress: bool = True) -> Path:
    """Run the prepare stage for ``params.dataset``; returns the output folder."""
    from lesionlab import synthetic

    info = DATASETS[params.dataset]
    out = prepared_dir(root, params.dataset)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.perf_counter()
    if info.raw_dir is None:
        cfg = synthetic.SyntheticConfig(**params.synthetic.model_dump())
        source = synthetic.generate(out / "source", cfg, seed=params.base.seed, workers=workers, progress=progress)
    else:
        source = root / info.raw_dir
        if not source.is_dir():
            raise DatasetError(f"{source}: not found. Lay out your download of {info.name} there "
                               f"(see README, 'Bring your own data'), then `dvc add data`.")
    table = import_dataset(info, source)
    validate_dataset_table(table, info.classes, source=str(source))
    print(f"[prepare] {info.name}: {len(table)} images of {table['lesion_id'].nunique()} lesions from {source}", flush=True)
    images, masks = build_image_cache(table, params.prepare.image_size, workers=workers, progress=progress)
    # paths relative to the project root keep the table portable between clones
    for col in ("path", "mask_path"):
        table[col] = [str(Path(p).resolve().relative_to(root.resolve())) if p and Path(p).resolve().is_relative_to(root.resolve()) else p
                      for p in table[col]]
    table[TABLE_COLUMNS].to_csv(out / "dataset.csv", index=False)
    np.save(out / "images.npy", images)
    np.save(out / "masks.npy", masks)
    summary = {
        "dataset": info.name,
        "images": int(len(table)),
        "lesions": int(table["lesion_id"].nunique()),
        "image_size": params.prepare.image_size,
        "class_counts": {c: int((table["label"] == c).sum()) for c in info.classes},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[prepare] cache {images.shape} written to {out} in {time.perf_counter() - started:.1f} s", flush=True)
    return out

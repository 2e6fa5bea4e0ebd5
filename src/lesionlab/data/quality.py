"""Data quality: every problem of a source found, listed with its file and counted; nothing dropped silently.

Three kinds of finding, each a row of ``problems.csv`` (``image_id, file, check, severity, action``):

- ``bad``: the row cannot be used (missing, empty, truncated or non-image file, unknown label,
  duplicate ``image_id``, a lesion with two labels). ``prepare.on_bad: error`` (the default)
  stops the run and names them; ``skip`` drops exactly those rows and says so.
- ``converted``: the image was usable after a lossless-in-intent normalisation (grayscale,
  RGBA, palette, 16-bit or CMYK -> 8-bit RGB; EXIF orientation applied). Kept.
- ``metadata``: a missing age, an unknown sex or body site, a missing lesion id or mask. Kept;
  the value stays missing (NaN / ``unknown``) and is counted.

``quality_summary`` turns the findings into the data-quality table of the EDA report.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import pandas as pd

from lesionlab.data.datasets import ARRAY_REF, nearest_names
from lesionlab.data.preprocess import Preprocess, border_colour, shades_of_gray, to_square

PROBLEM_COLUMNS = ["image_id", "file", "check", "severity", "action"]
BAD, CONVERTED, METADATA = "bad", "converted", "metadata"


class BadImage(Exception):
    """An image that cannot be used; ``check`` is the name of the failed check."""

    def __init__(self, check: str, detail: str = ""):
        super().__init__(f"{check}: {detail}" if detail else check)
        self.check = check


# --- row-level checks (the table) ---------------------------------------------------------


def audit_rows(
    table: pd.DataFrame, classes: tuple[str, ...], has_masks: bool = False, known_names=None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Problems found in the table alone, and the mask of its unusable rows.

    Bad: a path outside the dataset folder (``row_problem``, set on import), a repeated ``image_id`` (the later
    copies), an unknown or missing label (named with the nearest of ``known_names``, the spellings that map onto
    a class), a lesion whose images carry different labels (all of them), no file. Metadata: missing age, an age
    that is not one (``age_unparsed``: 'old', '-4'; one check per value), unknown sex / site, no lesion id, and no
    mask file where the source ships masks (``has_masks``).
    """
    found: list[tuple[str, str, str, str]] = []

    def add(rows: pd.DataFrame, check: str, severity: str) -> None:
        found.extend((i, p, check, severity) for i, p in zip(rows["image_id"], rows["path"]))

    outside = table["row_problem"].fillna("").ne("") if "row_problem" in table else pd.Series(False, index=table.index)
    for check, rows in table[outside].groupby("row_problem", sort=True):
        add(rows, check, BAD)
    dup = table["image_id"].duplicated(keep="first")
    add(table[dup], "duplicate image_id (first row kept)", BAD)
    unknown = ~table["label"].isin(classes)
    for label, rows in table[unknown & ~dup].groupby("label", sort=True):
        near = nearest_names(label, known_names if known_names is not None else classes) if label else []
        hint = f" (nearest known: {', '.join(repr(n) for n in near)})" if near else ""
        add(rows, f"unknown label {label!r}{hint}" if label else "missing label", BAD)
    usable = table[~dup & ~unknown]
    labels_per_lesion = usable.groupby("lesion_id")["label"].nunique()
    conflicted = usable["lesion_id"].isin(labels_per_lesion.index[labels_per_lesion > 1])
    add(usable[conflicted], "lesion with more than one label", BAD)
    add(table[table["path"].eq("")], "missing file (not found in the source folder)", BAD)
    unparsed = (
        table["age_unparsed"].fillna("").ne("") if "age_unparsed" in table else pd.Series(False, index=table.index)
    )
    for value, rows in table[unparsed].groupby("age_unparsed", sort=True):
        add(rows, f"age {value!r} is not an age in years (read as missing)", METADATA)
    add(table[table["age"].isna() & ~unparsed], "age missing", METADATA)
    add(table[table["sex"].eq("unknown")], "sex unknown", METADATA)
    add(table[table["site"].eq("unknown")], "body site unknown", METADATA)
    add(table[table["lesion_id"].eq(table["image_id"])], "no lesion_id (image is its own lesion)", METADATA)
    if has_masks:
        add(table[table["mask_path"].eq("")], "no lesion mask", METADATA)
    bad = outside | dup | unknown | table["path"].eq("") | table.index.isin(usable.index[conflicted])
    return pd.DataFrame(found, columns=["image_id", "file", "check", "severity"]), bad.to_numpy()


# --- image decoding with checks ----------------------------------------------------------


@lru_cache(maxsize=4)
def _npz_array(path: str, key: str) -> np.ndarray:
    with np.load(path) as data:
        return np.asarray(data[key])


def _to_rgb(im) -> tuple[object, list[str]]:
    """8-bit RGB from any PIL mode; the notes name each conversion done."""
    from PIL import Image

    mode, notes = im.mode, []
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        notes.append(f"{'16-bit' if top > 255 else mode} grayscale -> 8-bit RGB")
    elif mode in ("L", "1"):
        notes.append("grayscale -> RGB")
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        notes.append(f"{mode}: alpha channel dropped")
    elif mode == "P":
        notes.append("palette -> RGB")
    elif mode == "CMYK":
        notes.append("CMYK -> RGB")
    elif mode != "RGB":
        notes.append(f"{mode} -> RGB")
    return im.convert("RGB"), notes


def _resized(im, size: int | tuple[int, ...], preprocess: Preprocess | None = None):
    """``size`` x ``size`` uint8 RGB array, or a tuple of them for a tuple of sizes (one decode, many caches);
    colour constancy and the resize policy of ``preprocess`` applied (:mod:`lesionlab.data.preprocess`)."""
    from PIL import Image

    preprocess = preprocess or Preprocess()
    if preprocess.color_constancy == "shades_of_gray":
        im = Image.fromarray(shades_of_gray(np.asarray(im)))
        preprocess = Preprocess(resize=preprocess.resize)  # once, before any resize
    if isinstance(size, tuple):
        return tuple(_resized(im, s, preprocess) for s in size)
    fill = border_colour(np.asarray(im)) if preprocess.resize == "pad" else None
    return np.asarray(to_square(im, size, preprocess.resize, Image.Resampling.LANCZOS, fill), dtype=np.uint8)


#: the most pixels an image may declare: PIL's own decompression-bomb limit (~89 MP; a 6000 x 4000 dermoscope
#: photograph is 24 MP). A file declaring more is a bad row, never decoded.
MAX_PIXELS = 89_478_485
TOO_LARGE = f"image too large (over {MAX_PIXELS // 1_000_000} million pixels declared: a decompression bomb?)"
TOO_SMALL = "image too small (shorter side below prepare.min_image_side)"


def _check_geometry(width: int, height: int, min_side: int) -> None:
    if width * height > MAX_PIXELS:
        raise BadImage(TOO_LARGE, f"{width}x{height} px")
    if min(width, height) < min_side:
        raise BadImage(TOO_SMALL, f"{width}x{height} px, minimum {min_side} px")


@contextmanager
def _open_checked(path: str, min_side: int = 0):
    """``Image.open(path)`` whose declared size is checked from the header before any pixel is decoded
    (:func:`_check_geometry`); PIL's decompression-bomb warning and error, in the block too, become
    :class:`BadImage` (too large)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_geometry(*im.size, min_side)
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(TOO_LARGE, str(err)) from None


def _png_16bit_colour(path: str) -> bool:
    """A 48- or 64-bit PNG (16 bits per colour channel), which PIL reads as 8-bit RGB without saying so."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 16 and head[25] in (2, 6)


def load_image(
    path: str, size: int | tuple[int, ...], preprocess: Preprocess | None = None, min_side: int = 0
) -> tuple[np.ndarray, list[str]]:
    """Decode one image to ``size`` x ``size`` uint8 RGB (a tuple of sizes gives a tuple of arrays), with the
    colour constancy and resize policy of ``preprocess`` (default: none, squash).

    Raises :class:`BadImage` (also for a file declaring more than :data:`MAX_PIXELS` pixels, checked before
    decoding, and for an image whose shorter side is below ``min_side``); returns the conversion notes too.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if ARRAY_REF in path:
        file, key, index = path.split(ARRAY_REF)
        arr = _npz_array(file, key)[int(index)]
        _check_geometry(arr.shape[1], arr.shape[0], min_side)
        im, notes = _to_rgb(Image.fromarray(np.asarray(arr, dtype=np.uint8)))
        return _resized(im, size, preprocess), notes
    if not path or not os.path.isfile(path):
        raise BadImage("missing file (not found in the source folder)")
    if os.path.getsize(path) == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        with _open_checked(path, min_side) as im:
            im.load()
            notes = ["16-bit-per-channel RGB -> 8-bit RGB"] if im.format == "PNG" and _png_16bit_colour(path) else []
            if im.getexif().get(0x0112, 1) not in (1, None):
                im = ImageOps.exif_transpose(im)
                notes.append("EXIF orientation applied")
            im, more = _to_rgb(im)
            return _resized(im, size, preprocess), notes + more
    except UnidentifiedImageError:
        raise BadImage("not an image") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage("truncated or corrupt image", f"{type(err).__name__}: {err}") from None


def load_mask(path: str, size: int, resize: str = "squash") -> np.ndarray | None:
    """Binary mask (1 = lesion) brought to ``size`` by the image's resize policy; None where the file is absent
    or unreadable."""
    from PIL import Image

    if not path:
        return None
    try:
        with _open_checked(path) as im:
            small = to_square(im.convert("L"), size, resize, Image.Resampling.BILINEAR, 0)
    except (BadImage, OSError, SyntaxError, ValueError):
        return None
    return (np.asarray(small) >= 128).astype(np.uint8)


def load_pair(args: tuple):
    """Worker: (image(s) or None, mask or None, notes, bad-check or None) for one row.

    ``args``: (path, mask path, size or sizes[, :class:`~lesionlab.data.preprocess.Preprocess`[, minimum side]]).

    With a tuple of sizes the image comes back at each size and the mask at the first.
    """
    path, mask_path, size, *rest = args
    preprocess = rest[0] if rest else Preprocess()
    min_side = rest[1] if len(rest) > 1 else 0
    try:
        image, notes = load_image(path, size, preprocess, min_side)
    except BadImage as bad:
        return None, None, [], bad.check
    mask = load_mask(mask_path, size[0] if isinstance(size, tuple) else size, preprocess.resize)
    if mask_path and mask is None:
        notes = notes + ["mask unreadable (treated as absent)"]
    return image, mask, notes, None


# --- the report ----------------------------------------------------------------------------


def problems_frame(found: pd.DataFrame, on_bad: str) -> pd.DataFrame:
    """Attach the action taken to every finding."""
    action = {
        BAD: "stopped the run" if on_bad == "error" else "row skipped",
        CONVERTED: "converted, kept",
        METADATA: "kept, value missing",
    }
    out = found.copy()
    out["action"] = out["severity"].map(action)
    order = {BAD: 0, CONVERTED: 1, METADATA: 2}
    out = out.sort_values(
        ["severity", "check", "image_id"], key=lambda s: s.map(order) if s.name == "severity" else s, kind="stable"
    )
    return out[PROBLEM_COLUMNS].reset_index(drop=True)


def quality_summary(problems: pd.DataFrame, n_rows: int, examples: int = 3) -> pd.DataFrame:
    """One line per check: severity, rows affected, share, action, example files."""
    if problems.empty:
        return pd.DataFrame(
            {
                "check": ["no problems found"],
                "severity": [""],
                "rows": [0],
                "share": [0.0],
                "action": [""],
                "examples": [""],
            }
        )
    rows = []
    for (severity, check), g in problems.groupby(["severity", "check"], sort=False):
        names = [os.path.basename(f) if f else i for i, f in zip(g["image_id"], g["file"])]
        rows.append(
            {
                "check": check,
                "severity": severity,
                "rows": len(g),
                "share": round(len(g) / max(n_rows, 1), 4),
                "action": g["action"].iloc[0],
                "examples": ", ".join(names[:examples]) + (" ..." if len(names) > examples else ""),
            }
        )
    return pd.DataFrame(rows)


def bad_rows_message(problems: pd.DataFrame, source: str, listing: str) -> str:
    bad = problems[problems["severity"] == BAD]

    def examples(g) -> str:
        return ", ".join(os.path.basename(f) or i for i, f in zip(g["image_id"][:3], g["file"][:3]))

    parts = [f"{len(g)} x {check} (e.g. {examples(g)})" for check, g in bad.groupby("check", sort=False)]
    unknown = bad["check"].str.startswith("unknown label")
    advice = (
        "Map each unknown label onto a class with `label_map: {<label>: <class>}` in the dataset's card "
        "(data/<name>/dataset.yaml), or list the dataset's own `classes:` there; or fix the files, or "
        if unknown.any()
        else "Fix the files, or "
    )
    return (
        f"{source}: {bad['image_id'].nunique()} unusable row(s): "
        + "; ".join(parts)
        + f". Every one is listed in {listing}. {advice}set `prepare.on_bad: skip` in params.yaml "
        "to drop exactly these rows (the EDA report lists them)."
    )

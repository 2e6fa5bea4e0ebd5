"""The seams between stages (DESIGN.md, "Contracts"), validated where they are read.

Each ``read_*`` function loads a file and raises :class:`ContractError` naming the
file, the column and the first offending rows when it does not hold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.data.taxonomy import probability_columns

SPLITS = ("train", "val", "test")
DATASET_COLUMNS = ["image_id", "lesion_id", "label", "age", "sex", "site", "path"]


class ContractError(ValueError):
    """A stage artifact violates its contract."""


def _rows(index, limit: int = 5) -> str:
    """Human line numbers (header = line 1) of the first offending rows."""
    lines = [int(i) + 2 for i in list(index)[:limit]]
    return f"line(s) {lines}" + (" ..." if len(index) > limit else "")


def _require_columns(df: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ContractError(f"{source}: missing column(s) {missing}")


def _require_unique_ids(df: pd.DataFrame, source: str) -> None:
    dup = df.index[df["image_id"].duplicated(keep=False)]
    if len(dup):
        raise ContractError(f"{source}: duplicate image_id at {_rows(dup)}")


def _require_values(df: pd.DataFrame, column: str, allowed, source: str) -> None:
    bad = df.index[~df[column].isin(allowed)]
    if len(bad):
        what = "unknown label" if column == "label" else f"{column} must be one of {tuple(allowed)}, got"
        raise ContractError(f"{source}: {what} {df.loc[bad[0], column]!r} at {_rows(bad)}; allowed: {list(allowed)}")


def validate_dataset_table(df: pd.DataFrame, classes: tuple[str, ...], source: str = "dataset table") -> pd.DataFrame:
    _require_columns(df, DATASET_COLUMNS, source)
    _require_unique_ids(df, source)
    _require_values(df, "label", classes, source)
    mixed = df.groupby("lesion_id")["label"].nunique()
    mixed = mixed[mixed > 1]
    if len(mixed):
        raise ContractError(f"{source}: lesion(s) with more than one label: {list(mixed.index[:5])}")
    return df


def read_dataset_table(path: Path, classes: tuple[str, ...]) -> pd.DataFrame:
    df = pd.read_csv(
        path,
        dtype={
            "image_id": str,
            "lesion_id": str,
            "label": str,
            "sex": str,
            "site": str,
            "dx_type": str,
            "path": str,
            "mask_path": str,
            "source_split": str,
        },
        keep_default_na=False,
        na_values={"age": [""]},
    )
    return validate_dataset_table(df, classes, source=str(path))


def validate_splits(splits: pd.DataFrame, table: pd.DataFrame | None = None, source: str = "splits") -> pd.DataFrame:
    """``image_id, split`` with split in train/val/test; no lesion in two splits (when the table is given)."""
    _require_columns(splits, ["image_id", "split"], source)
    _require_values(splits, "split", SPLITS, source)
    _require_unique_ids(splits, source)
    if table is not None:
        unknown = set(splits["image_id"]) ^ set(table["image_id"])
        if unknown:
            raise ContractError(f"{source}: image_ids differ from the dataset table, e.g. {sorted(unknown)[:5]}")
        assert_lesion_disjoint(table.merge(splits, on="image_id"), source)
    return splits


def assert_lesion_disjoint(df: pd.DataFrame, source: str = "splits") -> None:
    """Raise if any ``lesion_id`` appears in more than one split (the leak that image-level splits cause)."""
    per_lesion = df.groupby("lesion_id")["split"].nunique()
    leaked = per_lesion[per_lesion > 1]
    if len(leaked):
        raise ContractError(
            f"{source}: {len(leaked)} lesion(s) appear in more than one split, e.g. {list(leaked.index[:5])}"
        )


def read_splits(path: Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    return validate_splits(pd.read_csv(path, dtype=str, keep_default_na=False), table, source=str(path))


def validate_predictions(
    df: pd.DataFrame, classes: tuple[str, ...] | list[str], source: str = "predictions", atol: float = 1e-4
) -> pd.DataFrame:
    """``image_id, split, label, p_<class>...`` with finite probabilities in [0, 1] that sum to 1 per row."""
    pcols = probability_columns(classes)
    _require_columns(df, ["image_id", "split", "label", *pcols], source)
    extra = [c for c in df.columns if c.startswith("p_") and c not in pcols]
    if extra:
        raise ContractError(f"{source}: probability column(s) for unknown classes {extra}; classes: {list(classes)}")
    _require_unique_ids(df, source)
    _require_values(df, "split", SPLITS, source)
    _require_values(df, "label", classes, source)
    try:
        p = df[pcols].to_numpy(dtype=float)
    except (TypeError, ValueError) as err:
        raise ContractError(f"{source}: non-numeric probability: {err}") from None
    bad = df.index[~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | (p > 1).any(axis=1)]
    if len(bad):
        raise ContractError(f"{source}: probabilities must be finite and in [0, 1] at {_rows(bad)}")
    bad = df.index[np.abs(p.sum(axis=1) - 1.0) > atol]
    if len(bad):
        raise ContractError(f"{source}: probabilities do not sum to 1 at {_rows(bad)}")
    return df


def read_predictions(path: Path, classes: tuple[str, ...] | list[str]) -> pd.DataFrame:
    if not Path(path).is_file():
        raise ContractError(f"{path}: predictions file not found (has its train stage run?)")
    df = pd.read_csv(path, dtype={"image_id": str, "split": str, "label": str}, keep_default_na=False)
    return validate_predictions(df, classes, source=str(path))


def write_predictions(path: Path, image_ids, splits, labels, proba: np.ndarray, classes) -> pd.DataFrame:
    """Write the predictions contract (probabilities renormalised against float round-off)."""
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)
    df = pd.DataFrame({"image_id": list(image_ids), "split": list(splits), "label": list(labels)})
    for j, col in enumerate(probability_columns(classes)):
        df[col] = proba[:, j]
    validate_predictions(df, classes, source=str(path))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format="%.6f")
    return df

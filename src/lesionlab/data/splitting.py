"""Train/val/test splits stratified by label and grouped by lesion.

HAM10000 holds repeat photographs of the same lesion; an image-level split puts
views of one lesion on both sides and inflates every metric. Here whole lesions
are assigned, class by class, so that each split keeps the class proportions and
no ``lesion_id`` appears in two splits (asserted by :func:`assert_lesion_disjoint`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lesionlab.pipeline.contracts import SPLITS, assert_lesion_disjoint


def _split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Lesions of one class going to (val, test); each split gets one when the class has three or more."""
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if n >= 3:
        n_test, n_val = max(n_test, 1), max(n_val, 1)
    while n_test + n_val > max(n - 1, 0):  # keep at least one lesion for training
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def split_by_lesion(table: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.DataFrame:
    """Assign every image to train/val/test by its lesion, stratified by the lesion's label.

    Deterministic for a given table and seed (lesions are sorted before shuffling).
    Returns ``image_id, split`` in table order.
    """
    labels_per_lesion = table.groupby("lesion_id")["label"].agg(["first", "nunique"])
    mixed = labels_per_lesion.index[labels_per_lesion["nunique"] > 1]
    if len(mixed):
        raise ValueError(f"lesion(s) with more than one label cannot be stratified: {list(mixed[:5])}")
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(labels_per_lesion["first"].unique()):
        lesions = np.array(sorted(labels_per_lesion.index[labels_per_lesion["first"] == label]))
        lesions = lesions[rng.permutation(len(lesions))]
        n_val, n_test = _split_counts(len(lesions), val_fraction, test_fraction)
        for i, lesion in enumerate(lesions):
            assignment[lesion] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    splits = pd.DataFrame(
        {"image_id": table["image_id"].to_numpy(), "split": table["lesion_id"].map(assignment).to_numpy()}
    )
    assert_lesion_disjoint(pd.DataFrame({"lesion_id": table["lesion_id"].to_numpy(), "split": splits["split"]}))
    return splits


def predefined_split(table: pd.DataFrame) -> pd.DataFrame:
    """The source's own split (``source_split``: train/val/test; 'valid'/'validation' read as val)."""
    split = table["source_split"].fillna("").astype(str).str.lower().replace({"valid": "val", "validation": "val"})
    bad = table.index[~split.isin(SPLITS)]
    if len(bad):
        raise ValueError(
            f"split.method: predefined, but {len(bad)} row(s) have no train/val/test source split, "
            f"e.g. image_id {table.loc[bad[0], 'image_id']!r} with {table.loc[bad[0], 'source_split']!r}"
        )
    splits = pd.DataFrame({"image_id": table["image_id"].to_numpy(), "split": split.to_numpy()})
    assert_lesion_disjoint(
        pd.DataFrame({"lesion_id": table["lesion_id"].to_numpy(), "split": splits["split"]}), "the source's own split"
    )
    return splits


def make_splits(table: pd.DataFrame, method: str, val_fraction: float, test_fraction: float, seed: int) -> pd.DataFrame:
    """``split.method``: lesion_grouped (default) or predefined (the source's own split, kept as published)."""
    if method == "predefined":
        return predefined_split(table)
    return split_by_lesion(table, val_fraction, test_fraction, seed)


def split_summary(table: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Images and lesions per class and split, with each split's share of the class."""
    df = table[["image_id", "lesion_id", "label"]].merge(splits, on="image_id")
    images = df.pivot_table(index="label", columns="split", values="image_id", aggfunc="count", fill_value=0)
    lesions = df.pivot_table(index="label", columns="split", values="lesion_id", aggfunc="nunique", fill_value=0)
    images = images.reindex(columns=list(SPLITS), fill_value=0)
    lesions = lesions.reindex(columns=list(SPLITS), fill_value=0)
    out = pd.concat({"images": images, "lesions": lesions}, axis=1)
    share = images.div(images.sum(axis=1), axis=0).round(3)
    out = pd.concat([out, pd.concat({"image share": share}, axis=1)], axis=1)
    total = out.sum(numeric_only=True)
    total[[("image share", s) for s in SPLITS]] = (images.sum() / images.values.sum()).round(3).to_numpy()
    out.loc["all"] = total
    return out


def rare_classes(table: pd.DataFrame, splits: pd.DataFrame | None = None) -> pd.DataFrame:
    """Classes with fewer lesions than there are splits (train, val, test): they cannot be in every split, so
    their validation or test recall is undefined (NaN) and they drop out of the balanced accuracy there. One row
    per such class: lesions, images, and (with ``splits``) where its images went."""
    lesions = table.groupby("label")["lesion_id"].nunique()
    rare = lesions[lesions < len(SPLITS)]
    rows = []
    for label, n in rare.items():
        row = {"class": label, "lesions": int(n), "images": int((table["label"] == label).sum())}
        if splits is not None:
            where = splits.set_index("image_id").loc[table.loc[table["label"] == label, "image_id"], "split"]
            row.update({s: int((where == s).sum()) for s in SPLITS})
        rows.append(row)
    return pd.DataFrame(rows, columns=["class", "lesions", "images", *(SPLITS if splits is not None else ())])


def check_rare_classes(rare: pd.DataFrame, on_rare: str, source: str = "dataset") -> str | None:
    """``split.on_rare``: 'error' raises naming every rare class; 'warn' returns the warning (None: none rare)."""
    if rare.empty:
        return None
    listed = ", ".join(
        f"{r['class']!r} ({r['lesions']} lesion{'s' if r['lesions'] != 1 else ''})" for _, r in rare.iterrows()
    )
    message = (
        f"{source}: {len(rare)} class(es) with fewer lesions than the {len(SPLITS)} splits: {listed}. Such a "
        "class cannot be in train, validation and test at once: its recall is undefined where it is "
        "missing and the balanced accuracy there leaves it out."
    )
    if on_rare == "error":
        raise ValueError(
            message + " Add data, merge the class (label_map in the dataset's card), or set "
            "`split.on_rare: warn` to go on with this warning."
        )
    return message

"""Shared fixtures: small datasets the tests build themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionlab.data.taxonomy import HAM10000_CLASSES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy_table() -> pd.DataFrame:
    """A dataset table with HAM10000-like imbalance and 1-4 images per lesion."""
    rng = np.random.default_rng(0)
    counts = {"akiec": 12, "bcc": 18, "bkl": 40, "df": 6, "mel": 40, "nv": 240, "vasc": 7}
    rows = []
    for label, n in counts.items():
        for i in range(n):
            lesion = f"L_{label}_{i:03d}"
            for k in range(int(rng.choice([1, 1, 1, 2, 3, 4]))):
                rows.append(
                    {
                        "image_id": f"{lesion}_{k}",
                        "lesion_id": lesion,
                        "label": label,
                        "age": 50.0,
                        "sex": "male",
                        "site": "back",
                        "path": "x.jpg",
                    }
                )
    return pd.DataFrame(rows)


def make_predictions(n: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(len(HAM10000_CLASSES)), size=n)
    df = pd.DataFrame(
        {
            "image_id": [f"img{i}" for i in range(n)],
            "split": rng.choice(["train", "val", "test"], n),
            "label": rng.choice(HAM10000_CLASSES, n),
        }
    )
    for j, c in enumerate(HAM10000_CLASSES):
        df[f"p_{c}"] = p[:, j]
    return df

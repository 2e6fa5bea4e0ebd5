"""tools/frontier.py: the HAM10000 backbone x input size frontier (its arithmetic; the run itself is a tool)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lesionlab.reporting import doctables
from tools import frontier


def _row(backbone, size, acc, hours, partial=(100.0, 200.0), full=(30.0, 45.0), infer=150.0):
    return {
        "backbone": backbone,
        "image_size": size,
        "precision": "bfloat16",
        "balanced_accuracy": acc,
        "ci": [acc - 0.05, acc + 0.05],
        "train_images_per_second": {
            "partial_float32": partial[0],
            "partial_bfloat16": partial[1],
            "full_float32": full[0],
            "full_bfloat16": full[1],
        },
        "inference_images_per_second": {"bfloat16": infer},
        "projected": {"hours": hours, "seconds": hours * 3600},
    }


def test_the_subset_keeps_each_class_share_and_only_its_split():
    labels = ["nv"] * 700 + ["mel"] * 200 + ["df"] * 20 + ["nv"] * 80
    table = pd.DataFrame({"label": labels, "lesion_id": [f"L{i}" for i in range(1000)]})
    splits = pd.DataFrame({"split": ["train"] * 920 + ["val"] * 80})
    rows = frontier.subset(table, splits, "train", 92, seed=0)
    assert (rows.index < 920).all()  # nothing from the validation split
    assert rows["label"].value_counts().to_dict() == {"nv": 70, "mel": 20, "df": 2}
    again = frontier.subset(table, splits, "train", 92, seed=0)
    assert list(again.index) == list(rows.index)  # seeded
    assert len(frontier.subset(table, splits, "val", 500, seed=0)) == 80  # asked for more than there is: all


def test_the_projection_counts_training_validation_tta_and_embeddings():
    plan = {
        "strategies": ["partial", "full"],
        "epochs": 4,
        "tta": True,
        "seeds": 3,
        "embed": True,
        "n_images": 1000,
        "n_train": 600,
        "n_val": 150,
        "n_test": 250,
    }
    row = _row("efficientnet_lite0", 128, 0.6, 0, partial=(100.0, 200.0), full=(30.0, 60.0), infer=100.0)
    per_run = 600 * 4 / 200 + 600 * 4 / 60  # training, bfloat16 (the row's precision)
    per_run += 2 * (150 * 4 / 100 + 400 * 8 / 100)  # validation each epoch + 8-view TTA of val + test, per fine-tune
    expected = per_run * 3 + 1000 * 8 / 100
    assert frontier.project(row, plan)["seconds"] == round(expected)
    no_tta = frontier.project(row, {**plan, "tta": False, "embed": False})["seconds"]
    assert no_tta < expected


def test_the_proposal_is_the_most_accurate_row_inside_the_budget():
    rows = [_row("efficientnet_lite0", 128, 0.60, 1.0), _row("efficientnet_lite2", 224, 0.70, 3.0)]
    rows.append(_row("efficientnet_lite1", 192, 0.66, 2.0))
    best = frontier.propose(rows, budget_hours=4.0, rest_hours=1.5)  # 2.5 h left: Lite2 does not fit
    assert (best["backbone"], best["image_size"]) == ("efficientnet_lite1", 192)
    assert best["projected_hours"] == pytest.approx(3.5)
    assert frontier.propose(rows, budget_hours=4.0, rest_hours=0.5)["backbone"] == "efficientnet_lite2"
    assert frontier.propose(rows, budget_hours=2.0, rest_hours=1.5) is None


def test_the_docs_table_shows_every_row_and_the_proposal_in_bold(tmp_path):
    rows = [_row("efficientnet_lite0", 128, 0.60, 1.0), _row("efficientnet_lite1", 192, 0.66, 2.0)]
    record = {
        "date": "2026-12-02 19:00 UTC",
        "short_run": {"strategy": "partial", "epochs": 2, "train_images": 1400, "val_images": 600},
        "plan": {
            "strategies": ["partial", "full"],
            "seeds": 3,
            "epochs": 4,
            "n_train": 6549,
            "tta": True,
            "n_images": 10015,
        },
        "budget_hours": 4.0,
        "rest_hours": 1.5,
        "rows": rows,
        "proposal": frontier.propose(rows, 4.0, 1.5),
    }
    path = tmp_path / "frontier.json"
    path.write_text(json.dumps(record))
    table = doctables.render(f"frontier {path.name}", tmp_path)
    lines = [line for line in table.splitlines() if line.startswith("| EfficientNet") or line.startswith("| **")]
    assert len(lines) == 2
    assert lines[0].startswith("| EfficientNet-Lite0 | 128 px | 0.600 [0.550, 0.650] | 100 → 200 | 30 → 45")
    assert lines[1].startswith("| **EfficientNet-Lite1** | **192 px** | **0.660")
    assert "**EfficientNet-Lite1 at 192 px, bfloat16**, projected 3.5 h" in table
    record["proposal"] = None
    path.write_text(json.dumps(record))
    assert "No configuration fits the 4 h budget" in doctables.render(f"frontier {path.name}", tmp_path)

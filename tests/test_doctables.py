"""Tables in README.md and docs/ are generated from committed result files: in sync, and a hand edit is caught."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import REPO

from lesionlab.reporting import doctables


def test_generated_tables_match_their_files():
    assert doctables.update(REPO, check=True) == []
    assert "<!-- table: leaderboard reports/ham10000/leaderboard.csv" in (REPO / "README.md").read_text()


def test_a_hand_edited_number_is_caught_and_rewritten(tmp_path):
    for name in ("README.md", "docs", "reports"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, tmp_path / name)
    readme = tmp_path / "README.md"
    original = readme.read_text()
    edited = re.sub(r"\| `cnn_baseline` \| \d\.\d{3}", "| `cnn_baseline` | 0.999", original, count=1)
    assert edited != original
    readme.write_text(edited)
    assert doctables.update(tmp_path, check=True) == ["README.md"]
    assert doctables.update(tmp_path) == ["README.md"] and readme.read_text() == original


def test_the_readme_is_short_and_links_only_inside_the_repository():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 10_000
    assert "Research and education only" in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert not target.startswith(("http", "..", "/")), target
        assert (REPO / target).exists(), target
    for doc in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if not target.startswith("http"):
                assert (doc.parent / target).resolve().is_relative_to(REPO), f"{doc.name}: {target}"
                assert (doc.parent / target).exists(), f"{doc.name}: {target} does not exist"


def test_a_columns_table_shows_every_row_in_file_order_with_cis_and_the_best_in_bold(tmp_path):
    csv = tmp_path / "board.csv"
    csv.write_text("variant,auc,auc_lo,auc_hi,f1\nb,0.8,0.7,0.9,0.5\na,0.9,0.85,0.95,0.25\n")
    table = doctables.render("columns board.csv auc:ci f1 bold=auc", tmp_path)
    assert table.splitlines() == [
        "| variant | auc | f1 |",
        "|---|---|---|",
        "| `b` | 0.800 [0.700, 0.900] | 0.500 |",
        "| `a` | **0.900** [0.850, 0.950] | 0.250 |",
    ]
    with pytest.raises(ValueError, match="no column"):
        doctables.render("columns board.csv missing", tmp_path)


def test_steps_and_spread_tables_come_from_the_comparisons_files(tmp_path):
    import pandas as pd

    from lesionlab.reporting.doctables import render

    columns = ["a", "b", "comparison", "difference", "lo", "hi", "ci_excludes_zero"]
    rows = [
        ("x", "base", "step", 0.1, 0.02, 0.2, True),
        ("y", "x", "step", -0.05, -0.2, 0.1, False),
        ("x", "base", "vs baseline", 9.0, 9.0, 9.0, True),  # not a step: left out
    ]
    pd.DataFrame(rows, columns=columns).assign(metric="balanced_accuracy").to_csv(tmp_path / "paired.csv", index=False)
    steps = render("steps paired.csv", tmp_path)
    assert "| `x` − `base` | +0.100 [+0.020, +0.200] | robust gain |" in steps
    assert "| `y` − `x` | -0.050 [-0.200, +0.100] | not robust |" in steps and "9.000" not in steps
    external = pd.DataFrame(
        [
            ("ph2", "x_sog", "x", "preprocessing", m, d, d - 0.1, d + 0.1, False)
            for m, d in (("melanoma_auc", 0.05), ("malignant_auc", 0.5))
        ],
        columns=["dataset", "a", "b", "comparison", "metric", "difference", "lo", "hi", "ci_excludes_zero"],
    )
    external.to_csv(tmp_path / "paired_external.csv", index=False)
    shown = render("steps paired_external.csv comparison=preprocessing metric=melanoma_auc", tmp_path)
    assert "| set | pair | Δ melanoma AUC [95 % CI] | verdict |" in shown
    assert "| ph2 | `x_sog` − `x` | +0.050 [-0.050, +0.150] | not robust |" in shown and "0.500" not in shown
    pd.DataFrame(
        [
            {
                "variant": "x",
                "n_runs": 3,
                "balanced_accuracy_mean": 0.5,
                "balanced_accuracy_sd": 0.04,
                "balanced_accuracy_min": 0.45,
                "balanced_accuracy_max": 0.55,
            }
        ]
    ).to_csv(tmp_path / "seeds.csv", index=False)
    assert "| `x` | 3 | 0.500 ± 0.040 | 0.450–0.550 |" in render("spread seeds.csv", tmp_path)


def test_the_bench_table_sets_two_records_side_by_side_and_names_a_changed_input_size(tmp_path):
    import json

    def record(date, cold, noop, cnn, finetune_label, finetune):
        return {
            "date": date,
            "git_commit": "abc",
            "cold_stages": {"prepare": {}, "train@cnn": {}},
            "figures": {"cold_pipeline": {"median": cold}, "noop_repro": {"median": noop}},
            "training_images_per_second": {
                "CNN (Keras)": {"median": cnn},
                finetune_label: {"median": finetune},
                "linear probe (PyTorch head)": {"median": 30000.0},
            },
            "cold_by_family": {"Grad-CAM": 180.0},
        }

    (tmp_path / "before.json").write_text(
        json.dumps(record("2026-11-23 22:12 UTC", 1200.0, 3.0, 600.0, "fine-tune full (PyTorch, 96 px)", 50.0))
    )
    after = record("2026-12-02 10:00 UTC", 800.0, 1.5, 1500.0, "fine-tune full (PyTorch, 64 px)", 100.0)
    after["cold_command"] = "python -m lesionlab repro --jobs 2"
    (tmp_path / "after.json").write_text(json.dumps(after))
    table = doctables.render("bench before.json after.json", tmp_path)
    # what each cold run ran: a record from before `cold_command` was recorded ran `dvc repro`
    assert (
        "| run | 2026-11-23, commit `abc`: 2 stages, `dvc repro` "
        "| 2026-12-02, commit `abc`: 2 stages, `python -m lesionlab repro --jobs 2` | |" in table
    )
    assert "| default pipeline, cold, one run per model (empty cache) | 1,200 s | 800 s | ×1.50 |" in table
    assert "with the seed replicates" not in table  # neither run had them
    assert "| `dvc repro`, nothing changed | 3.00 s | 1.50 s | ×2.00 |" in table
    assert "| training: CNN (Keras), images/s | 600 | 1,500 | ×2.50 |" in table
    # the same family at another input size is compared, and the cells and the ratio say so
    assert (
        "| training: fine-tune full (PyTorch), images/s | 50 at 96 px | 100 at 64 px | ×2.00 (another size) |" in table
    )
    assert "| Grad-CAM, every explained variant (s) | 180 s | 180 s | ×1.00 |" in table
    assert "`dvc status`" not in table  # a figure neither record has is left out, not shown empty
    brief = doctables.render("bench before.json after.json brief", tmp_path)
    assert "CNN (Keras)" in brief and "fine-tune full" in brief and "nothing changed" in brief
    assert "linear probe" in table and "linear probe" not in brief and "Grad-CAM" in brief


def test_the_bench_table_compares_cold_runs_like_with_like(tmp_path):
    """A run with seed replicates is not compared with one without: its one-run cold figure is, and its cold
    figure with the replicates stands alone."""
    import json

    before = {"date": "2026-11-23", "cold_stages": {"train@cnn": {}}, "figures": {"cold_pipeline": {"median": 1154}}}
    after = {
        "date": "2026-12-06",
        "cold_stages": {"train@cnn": {}, "train@cnn.seed43": {}},
        "figures": {"cold_pipeline": {"median": 1500}, "cold_pipeline_one_run": {"median": 577}},
    }
    (tmp_path / "before.json").write_text(json.dumps(before))
    (tmp_path / "after.json").write_text(json.dumps(after))
    table = doctables.render("bench before.json after.json brief", tmp_path)
    assert "| default pipeline, cold, one run per model (empty cache) | 1,154 s | 577 s | ×2.00 |" in table
    assert "| default pipeline, cold, with the seed replicates | – | 1,500 s | |" in table
    # a later record without the one-run figure has no like-for-like cold row
    del after["figures"]["cold_pipeline_one_run"]
    (tmp_path / "after.json").write_text(json.dumps(after))
    table = doctables.render("bench before.json after.json", tmp_path)
    assert "one run per model" not in table and "| 1,500 s |" in table

"""The benchmark's parts: timing records from real commands, the scratch snapshot, summaries and the README table.

The benchmark itself (`make bench`, tens of minutes) is not a test; these check that what it reports is read
correctly and that it cannot touch the working copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lesionlab.pipeline import timing
from tools import bench

REPO = Path(__file__).resolve().parents[1]


def test_a_command_appends_its_timing_record_only_when_asked(tmp_path):
    log = tmp_path / "t.jsonl"
    env = {**os.environ, timing.ENV: str(log)}
    for argv in (["check-params"], ["run", "train", "--variant", "no_such_variant"]):
        subprocess.run([sys.executable, "-m", "lesionlab", *argv], cwd=REPO, env=env, capture_output=True)
    records = bench.read_records(log)
    assert [(r["stage"], r["status"]) for r in records] == [("check-params", 0), ("train@no_such_variant", 2)]
    for r in records:
        assert 0.05 < r["wall_seconds"] < 120 and r["peak_rss_mib"] > 10  # includes interpreter start and imports
    env.pop(timing.ENV)
    subprocess.run([sys.executable, "-m", "lesionlab", "check-params"], cwd=REPO, env=env, capture_output=True)
    assert len(bench.read_records(log)) == 2


def test_process_seconds_counts_from_the_process_start():
    code = "import time; time.sleep(0.6); from lesionlab.pipeline import timing; print(timing.process_seconds())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 0.6 <= float(out) < 10


def test_summaries_report_median_range_floor_ratio_and_target():
    s = bench.summarize([3.0, 1.0, 2.0, None], floor=0.5, target=2.0)
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert s["ratio_to_floor"] == 4.0 and s["meets_target"] is True
    assert bench.summarize([5.0], target=2.0)["meets_target"] is False
    assert bench.summarize([100.0], unit="images/s", target=50, higher_is_better=True)["meets_target"] is True
    assert bench.summarize([]) == {"n": 0, "unit": "s"}


def test_notebook_overhead_is_wall_minus_cells_plus_the_page_render():
    records = [
        {"stage": "train@a", "wall_seconds": 10.0, "cells_seconds": 7.5},
        {"stage": "prepare", "wall_seconds": 4.0},
        {"stage": "site", "wall_seconds": 6.0, "pages": 4, "render_seconds": 2.0},
    ]
    assert bench.notebook_overheads(records) == {"train@a": pytest.approx(3.0)}


def test_reproduction_check_compares_metric_columns_not_timings():
    import pandas as pd

    ref = pd.DataFrame(
        {
            "variant": ["a", "b"],
            "balanced_accuracy": [0.5, 0.6],
            "balanced_accuracy_lo": [0.4, 0.5],
            "malignant_auc": [float("nan"), 0.8],
            "train_seconds": [10.0, 20.0],
            "kind": ["CNN", "CNN"],
        }
    )
    same = ref.assign(train_seconds=[11.0, 19.0])  # timings differ: still reproduced
    got = bench.reproduced(ref, same)
    assert got["identical_rows"] == 2 and got["max_abs_difference"] == 0 and got["columns"] == 3
    moved = same.copy()
    moved.loc[1, "balanced_accuracy_lo"] = 0.5001
    got = bench.reproduced(ref, moved)
    assert got["differ"] == ["b"] and got["max_abs_difference"] == pytest.approx(1e-4)
    assert bench.reproduced(ref, ref.iloc[:1])["missing_rows"] == ["b"]
    assert bench.reproduced(None, ref) == {"compared": False}


def test_snapshot_copies_the_working_tree_without_touching_it(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "kept.txt").write_text("committed\n")
    (repo / "gone.txt").write_text("will be deleted\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=repo, check=True)
    (repo / "kept.txt").write_text("modified\n")
    (repo / "gone.txt").unlink()
    (repo / "new.txt").write_text("untracked\n")
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big.bin").write_text("not copied\n")
    before = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    commit = bench.snapshot(repo, tmp_path / "scratch")
    scratch = tmp_path / "scratch"
    assert commit.endswith("-dirty")
    assert (scratch / "kept.txt").read_text() == "modified\n" and (scratch / "new.txt").is_file()
    assert not (scratch / "gone.txt").exists() and not (scratch / "ignored").exists()
    assert subprocess.run(["git", "status", "--porcelain"], cwd=scratch, capture_output=True, text=True).stdout == ""
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == before


def test_readme_table_is_replaced_between_the_markers(tmp_path):
    result = {
        "date": "2026-11-23 10:00 UTC",
        "git_commit": "abc",
        "dataset": "synthetic",
        "machine": {"cpus": 2, "memory_gib": 24.0, "gpu": None},
        "cold_command": "python -m lesionlab repro --jobs 2",
        "figures": {
            "cold_pipeline": bench.summarize([880.0], target=900),
            "noop_repro": bench.summarize([2.5, 2.4, 2.6], floor=2.0, target=2.0),
            "cache_build": bench.summarize([900, 1000, 1100], unit="images/s", floor=500),
        },
        "training_images_per_second": {"CNN (Keras)": bench.summarize([400, 500], unit="images/s")},
        "peak_memory_mib": {"CNN (Keras)": bench.summarize([1500, 1700], unit="MiB")},
        "queue": {
            "runs": [{"jobs": 1, "seconds": 300.0, "experiments": 2}, {"jobs": 2, "seconds": 200.0, "experiments": 2}],
            "speedup_2_jobs": 1.5,
        },
    }
    table = bench.markdown_table(result)
    # the cold row names what ran it (`make repro`'s command)
    cold = "| default pipeline, cold (`python -m lesionlab repro --jobs 2`, empty cache) | 880 s [880–880] (1) |"
    assert cold in table
    assert "| `dvc repro`, nothing changed | 2.50 s [2.40–2.60] (3) | 2.00 s → ×1.25 | ≤ 2 s: **not met** |" in table
    assert "1,000 images/s" in table and "peak 1,700 MiB" in table and "×1.5 with 2 jobs" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.README_START}\nold table\n{bench.README_END}\nrest\n")
    bench.update_readme(readme, table)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("rest\n") and table in text
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        bench.update_readme(readme, table)


def test_the_one_run_cold_copy_sets_only_the_replicate_seeds():
    from lesionlab.config import parse_params, read_yaml

    text = "base:\n  seed: 42\n  replicate_seeds: [43, 44] # runs\nother:\n  replicate_seeds: [1]\n"
    assert bench.one_run_params(text) == text.replace("[43, 44]", "[]", 1)
    committed = (REPO / "params.yaml").read_text()
    out = bench.one_run_params(committed)
    assert len(out.splitlines()) == len(committed.splitlines())
    changed = [a for a, b in zip(out.splitlines(), committed.splitlines()) if a != b]
    assert len(changed) == 1 and changed[0].startswith("  replicate_seeds: [] ")  # its comment kept
    one, default = (
        parse_params(read_yaml(t, "params.yaml"), source="params.yaml", root=REPO) for t in (out, committed)
    )
    assert one.base.replicate_seeds == [] and default.base.replicate_seeds
    with pytest.raises(ValueError, match="replicate_seeds"):
        bench.one_run_params("base:\n  seed: 42\n")


def test_the_one_run_cold_run_runs_with_one_seed_and_puts_params_and_lock_back(tmp_path, monkeypatch):
    scratch, logs = tmp_path / "repo", tmp_path / "logs"
    scratch.mkdir()
    logs.mkdir()
    params = "base:\n  seed: 42\n  replicate_seeds: [43, 44]\n"
    (scratch / "params.yaml").write_text(params)
    (scratch / "dvc.lock").write_text("schema: '2.0'\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=scratch, check=True)
    seen = {}

    def fake_repro(cmd, cwd, env, log=None, progress=None):
        seen["params"] = (cwd / "params.yaml").read_text()
        (cwd / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # what dvc repro would rewrite
        Path(env[timing.ENV]).write_text(json.dumps({"stage": "train@cnn", "wall_seconds": 2.5}) + "\n")
        return 3.0

    monkeypatch.setattr(bench, "_timed", fake_repro)
    seconds, records = bench.cold_one_run(scratch, "synthetic", logs)
    assert seen["params"] == params.replace("[43, 44]", "[]")
    assert (scratch / "params.yaml").read_text() == params and (scratch / "dvc.lock").read_text() == "schema: '2.0'\n"
    assert seconds == 3.0 and records == [{"stage": "train@cnn", "wall_seconds": 2.5}]
    assert (logs / "cold-one-run.jsonl").exists()


def test_committed_benchmark_matches_the_readme():
    """reports/bench.json is what `make bench` wrote; docs/cost.md shows its table, not a hand-edited one."""
    result = json.loads((REPO / "reports" / "bench.json").read_text())
    for key in ("cold_pipeline", "noop_repro", "variant_change", "notebook_overhead", "cache_build"):
        f = result["figures"][key]
        assert f["n"] >= 1 and f["min"] <= f["median"] <= f["max"], key
    assert bench.markdown_table(result) in (REPO / "docs" / "cost.md").read_text()


def _allocator_run(stage, allocator, wall, epochs, rss, bacc=0.7):
    return {
        "stage": stage,
        "allocator": allocator,
        "wall_seconds": wall,
        "epoch_seconds": epochs,
        "peak_rss_mib": rss,
        "images_per_second": 1000 / epochs,
        "metrics": {"balanced_accuracy": bacc},
    }


def test_the_allocator_benchmark_reports_medians_speedups_and_whether_the_metrics_held(tmp_path):
    from tools import bench_allocator

    runs = [
        _allocator_run("backbone@a", "system", 130.0, 100.0, 1000.0),
        _allocator_run("backbone@a", "keep", 110.0, 80.0, 1050.0),
        _allocator_run("backbone@a", "system", 120.0, 110.0, 1000.0),
        _allocator_run("backbone@a", "keep", 112.0, 90.0, 1050.0),
        _allocator_run("train@b", "system", 20.0, 10.0, 500.0),
        _allocator_run("train@b", "keep", 20.0, 10.0, 500.0, bacc=0.71),
    ]
    a, b = bench_allocator.summarize(runs)
    assert a["stage"] == "backbone@a" and a["runs_per_allocator"] == 2
    assert a["median"]["system"]["epoch_seconds"] == 105.0 and a["epoch_speedup"] == round(105 / 85, 3)
    assert a["wall_speedup"] == round(125 / 111, 3) and a["peak_rss_change"] == 0.05
    assert a["images_per_second"]["keep"] == [1000 / 90, (1000 / 80 + 1000 / 90) / 2, 1000 / 80]
    assert a["same_metrics"] is True and b["same_metrics"] is False  # a metric that moved is reported, not hidden
    result = {
        "date": "2026-12-06T08:00:00+00:00",
        "git_commit": "abc1234",
        "cpu": "Some <CPU>",
        "machine": {"cpus": 2},
        "runs_per_allocator": 2,
        "stages": [a, b],
    }
    table = bench_allocator.markdown_table(result)
    assert "| `backbone@a` | 10 (9–10) | 12 (11–12) | ×1.24 | ×1.13 | +5% | yes |" in table
    assert "| `train@b` |" in table and "| **no** |" in table
    doc = tmp_path / "cost.md"
    doc.write_text(f"before\n{bench_allocator.DOCS_START}\nold\n{bench_allocator.DOCS_END}\nafter\n")
    bench.update_readme(doc, table, bench_allocator.DOCS_START, bench_allocator.DOCS_END)
    assert doc.read_text() == f"before\n{bench_allocator.DOCS_START}\n{table}\n{bench_allocator.DOCS_END}\nafter\n"
    (tmp_path / "none.md").write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        bench.update_readme(tmp_path / "none.md", table, bench_allocator.DOCS_START, bench_allocator.DOCS_END)


def test_the_one_variant_change_subtracts_every_training_run_of_the_variant():
    """With seed replicates a changed variant retrains once per seed: the overhead leaves out all of them, and is
    not figured when a run is missing from the records."""
    records = {"train@cnn_aug": 30.0, "train@cnn_aug.seed43": 25.0, "train@cnn_aug.seed44": 20.5, "compare": 9.0}
    runs = ["cnn_aug", "cnn_aug.seed43", "cnn_aug.seed44"]
    assert bench.variant_training_seconds(records, runs) == 75.5
    assert bench.variant_training_seconds(records, ["cnn_aug"]) == 30.0
    assert bench.variant_training_seconds({"train@cnn_aug": 30.0}, runs) is None


def test_the_thread_probe_leaves_out_the_tracing_epoch_and_sums_processes_run_at_once():
    from tools import keras_threads as kt

    runs = [{"epoch_seconds": [9.0, 1.0, 2.0]}, {"epoch_seconds": [9.0, 1.0, 1.0]}]
    alone = kt.summarize(runs)
    assert alone["images_per_second_per_process_median"] == round(kt.N_TRAIN / 1.0, 1)
    assert (alone["epoch_seconds_min"], alone["epoch_seconds_max"]) == (1.0, 2.0)
    # one at a time: each run's own throughput, median over runs (3 s and 2 s for two epochs)
    assert alone["images_per_second_combined_median"] == round((2 * kt.N_TRAIN / 3 + kt.N_TRAIN) / 2, 1)
    # two at once: both runs' images over the slower one's time
    paired = kt.summarize(runs, concurrent=2)
    assert paired["images_per_second_combined_median"] == round(4 * kt.N_TRAIN / 3, 1)
    with pytest.raises(ValueError, match="two epochs"):
        kt.summarize([{"epoch_seconds": [3.0]}])


def test_the_cold_split_puts_seed_replicates_in_their_family_and_counts_training_apart(tmp_path):
    """A replicate stage (train@cnn_aug.seed43) is in its row's family; each family's training is the sum of its
    runs' train_seconds, the rest of its stages' wall time is theirs, and DVC's share is what no stage accounts for."""
    from lesionlab.config import load_params
    from lesionlab.reporting.doctables import cold_split_table

    params = load_params(REPO / "params.yaml")
    assert bench.family("train@cnn_aug.seed43", params) == bench.family("train@cnn_aug", params)
    assert bench.family("backbone@lite0_full.seed44", params) == bench.family("backbone@lite0_full", params)
    metrics = tmp_path / "results" / "synthetic" / "metrics"
    metrics.mkdir(parents=True)
    for name, seconds in (("cnn_aug", 12.0), ("cnn_aug.seed43", 10.5), ("lite0_full", 70.0)):
        (metrics / f"{name}.json").write_text(json.dumps({"train_seconds": seconds, "balanced_accuracy": 0.5}))
    records = [
        {"stage": "prepare", "wall_seconds": 20.0},
        {"stage": "train@cnn_aug", "wall_seconds": 22.0},
        {"stage": "train@cnn_aug.seed43", "wall_seconds": 18.5},
        {"stage": "backbone@lite0_full", "wall_seconds": 90.0},
    ]
    split = bench.cold_split(tmp_path, "synthetic", params, records, total=160.0)
    cnn = split["families"][bench.family("train@cnn_aug", params)]
    assert cnn == {"stages": 2, "wall_seconds": 40.5, "train_seconds": 22.5}
    assert split["families"][bench.family("prepare", params)] == {
        "stages": 1,
        "wall_seconds": 20.0,
        "train_seconds": 0.0,
    }
    assert split["between_stages_seconds"] == 9.5 and split["total_seconds"] == 160.0
    record = tmp_path / "bench.json"
    record.write_text(json.dumps({"date": "2026-12-07", "git_commit": "abc", "cold_split": split}))
    table = cold_split_table(record)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[1].startswith(f"| {bench.family('backbone@lite0_full', params)} | 1 | 90 | 70 | 20 (20.0 a stage) |")
    assert f"| {bench.family('train@cnn_aug', params)} | 2 | 40 | 22 | 18 (9.0 a stage) |" in table
    assert "| between stages (DVC: hashing, dvc.lock rewritten after each stage) | – | 10 |" in table  # 9.5 rounds
    assert "| **cold run** | 4 | **160** | 92 (58%) | 68 (42%, stages and DVC) |" in table
    record.write_text(json.dumps({"date": "2026-11-23"}))
    assert "no `cold_split`" in cold_split_table(record)

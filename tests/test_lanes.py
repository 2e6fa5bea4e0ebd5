"""`lesionlab repro --jobs N` (lesionlab.pipeline.lanes): which stage runs in which lane. The end-to-end check
(the same outputs as a plain `dvc repro`) is in test_pipeline_e2e.py, on its tiny pipeline."""

from __future__ import annotations

import pytest

from lesionlab.pipeline import lanes

STALE = [
    "train@cnn_baseline",
    "train@cnn_aug",
    "train@cnn_batch64",
    "train_seed@cnn_baseline-43",
    "train_seed@cnn_aug-43",
    "train_seed@cnn_batch64-43",
    "train_seed@cnn_baseline-44",
    "train_seed@cnn_aug-44",
    "train_seed@cnn_batch64-44",
]
OTHERS = ["probe@lite0_probe", "finetune_seed@lite0_full-43", "tabular@meta_gbm", "ensemble@image_mean"]
COST = {"cnn_baseline": 10, "cnn_aug": 20, "cnn_batch64": 40}


def cost(name: str) -> float:
    return COST[name.split("@")[1].split("-")[0]]


def test_notebook_stages_stay_in_this_workspace_and_replicates_balance_the_lanes():
    plan = lanes.plan(STALE + OTHERS, 2, cost)
    assert sorted(s for lane in plan for s in lane) == sorted(STALE)  # every CNN stage once, nothing else
    assert all(s in plan[0] for s in STALE if lanes.group(s) in lanes.FIRST_RUNS)  # notebook stages: lane 0
    assert all(lanes.group(s) in lanes.REPLICATES for s in plan[1])  # a copy only runs stages without a page
    first_runs = [s for s in STALE if lanes.group(s) in lanes.FIRST_RUNS]
    assert plan[0][: len(first_runs)] == first_runs
    loads = [sum(cost(s) for s in lane) for lane in plan]
    assert abs(loads[0] - loads[1]) <= max(cost(s) for s in STALE)  # balanced within one stage
    assert cost(plan[1][0]) == max(cost(s) for s in STALE if lanes.group(s) in lanes.REPLICATES)  # costliest first


def test_one_lane_and_more_lanes_than_stages():
    replicates = sorted((s for s in STALE if lanes.group(s) in lanes.REPLICATES), key=cost, reverse=True)
    assert lanes.plan(STALE, 1, cost) == [[s for s in STALE if lanes.group(s) in lanes.FIRST_RUNS] + replicates]
    assert lanes.plan(["train_seed@cnn_aug-43"], 4, cost) == [["train_seed@cnn_aug-43"], [], [], []]


def test_stage_cost_tells_a_full_fine_tune_from_a_partial_one():
    from conftest import REPO

    from lesionlab.config import load_params

    params = load_params(REPO / "params.yaml")
    full = [r for r in params.finetunes if params.row_config(r, "finetune").strategy == "full"]
    partial = [r for r in params.finetunes if params.row_config(r, "finetune").strategy != "full"]
    if not (full and partial):
        pytest.skip("params.yaml needs a full and a partial fine-tune")
    seed = (params.base.replicate_seeds or [43])[0]
    assert lanes.stage_cost(f"finetune@{full[0]}", params) > lanes.stage_cost(f"finetune@{partial[0]}", params)
    replicate = lanes.stage_cost(f"finetune_seed@{full[0]}-{seed}", params)
    assert replicate == lanes.stage_cost(f"finetune@{full[0]}", params)
    assert lanes.stage_cost("train_seed@cnn_aug-43", params) == lanes.COST["train"]

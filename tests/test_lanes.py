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
    "probe@lite0_probe",
    "probe_seed@lite0_probe-43",
    "tabular@meta_gbm",
]
#: stages that keep every core busy (fine-tunes, the embedding) or read every run (ensembles, Grad-CAM)
OTHERS = ["finetune@lite0_full", "finetune_seed@lite0_full-43", "embed@efficientnet_lite0", "ensemble@image_mean"]
COST = {"cnn_baseline": 10, "cnn_aug": 20, "cnn_batch64": 40, "lite0_probe": 5, "meta_gbm": 4}


def cost(name: str) -> float:
    return COST[name.split("@")[1].split("-")[0]]


def test_notebook_stages_stay_in_this_workspace_and_replicates_balance_the_lanes():
    plan = lanes.plan(STALE + OTHERS, 2, cost)
    assert sorted(s for lane in plan for s in lane) == sorted(STALE)  # every light stage once, nothing else
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


def _lane_process(tmp_path, index: int, argv: list[str]):
    """A stand-in for a lane's `dvc repro`, started as `_dvc` starts one (lanes.spawn; output pumped)."""
    import subprocess
    import threading

    log = open(tmp_path / f"{index}.log", "w")  # noqa: SIM115 - _wait closes it
    proc = lanes.spawn(argv, stdout=log, stderr=subprocess.STDOUT)
    proc.pump = threading.Thread(target=lambda: None)  # type: ignore[attr-defined]
    proc.pump.start()
    return lanes.Lane(index, tmp_path), log, proc


@pytest.mark.parametrize("started", ["in the foreground", "in the background"])
def test_a_failing_lane_stops_the_others_and_the_stages_they_run(tmp_path, started):
    """Also when `lesionlab repro` itself was started in the background (`cmd &` in a script, nohup), which
    leaves SIGINT ignored in it and, through exec, in everything it starts."""
    import os
    import signal
    import sys
    import time

    pidfile = tmp_path / "stage.pid"
    # lane 0 "runs a stage" (a child process) for a minute; lane 1 fails once lane 0's stage has started
    stage_runner = (
        "import pathlib, subprocess; p = subprocess.Popen(['sleep', '60']); "
        f"pathlib.Path({str(pidfile)!r}).write_text(str(p.pid)); p.wait()"
    )
    before = signal.getsignal(signal.SIGINT)
    if started == "in the background":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        busy = _lane_process(tmp_path, 0, [sys.executable, "-c", stage_runner])
        failing = _lane_process(tmp_path, 1, ["sh", "-c", f"while [ ! -s {pidfile} ]; do sleep 0.05; done; exit 3"])
    finally:
        signal.signal(signal.SIGINT, before)
    t0 = time.monotonic()
    failed = lanes._wait([busy, failing])
    assert time.monotonic() - t0 < lanes.STOP_GRACE_S  # stopped by SIGINT, not by the kill after the grace period
    assert [lane.index for lane in failed] == [1]  # the stopped lane is not reported as a failure
    assert busy[2].returncode not in (None, 0)  # stopped, not left to finish
    stage = int(pidfile.read_text())
    for _ in range(100):  # the stage it ran went with it (same process group): gone, or a zombie being reaped
        try:
            os.kill(stage, 0)
        except ProcessLookupError:
            break
        try:
            with open(f"/proc/{stage}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break
        except FileNotFoundError:  # reaped between the two looks
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"lane 0's stage (pid {stage}) still runs after its lane was stopped")
    assert busy[1].closed and failing[1].closed


def test_a_lane_that_does_not_end_on_sigint_is_killed_after_the_grace_period(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(lanes, "STOP_GRACE_S", 0.5)
    deaf = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"
    busy = _lane_process(tmp_path, 0, [sys.executable, "-c", deaf])
    failing = _lane_process(tmp_path, 1, ["sh", "-c", "sleep 0.5; exit 3"])
    failed = lanes._wait([busy, failing])
    assert [lane.index for lane in failed] == [1]
    assert busy[2].returncode == -9  # SIGKILL, long before its 60 s were up

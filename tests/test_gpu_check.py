"""`make gpu-check` (tools/gpu_check.py): the tiny config runs every neural family and reads back where each ran.
Here, without a GPU, it runs with --expect cpu; on a GPU machine `make gpu-check` expects cuda."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from tools import gpu_check


def test_the_tiny_config_keeps_one_row_per_family_with_keras_on_torch():
    raw = gpu_check.tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert raw["compute"]["keras_backend"] == "torch"
    assert list(raw["variants"]) == ["cnn_baseline"] and list(raw["probes"]) == ["lite0_probe"]
    assert list(raw["finetunes"]) == ["lite0_partial"] and raw["ensembles"] == {}
    from lesionlab.config import parse_params

    parse_params(raw, root=REPO)  # a valid params.yaml


def test_a_stage_that_ran_elsewhere_or_not_at_all_is_reported(tmp_path):
    variants = tmp_path / "results/synthetic/variants"
    (variants / "cnn_baseline").mkdir(parents=True)
    (variants / "cnn_baseline/training.json").write_text(json.dumps({"compute": {"device": "cpu"}}))
    ran = gpu_check.where_it_ran(tmp_path, "synthetic")
    assert ran["train@cnn_baseline"]["device"] == "cpu"
    assert ran["finetune@lite0_partial"]["device"] == "missing"


@pytest.mark.slow
def test_gpu_check_runs_every_neural_family_and_records_the_device(tmp_path):
    out = tmp_path / "gpu-check.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.gpu_check", "--expect", "cpu", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["ok"] and set(result["stages"]) == set(gpu_check.TARGETS)
    assert all(c["device"] == "cpu" for c in result["stages"].values())
    assert result["stages"]["train@cnn_baseline"]["keras_backend"] == "torch"  # the CNN ladder on PyTorch
    assert "every family ran on cpu" in proc.stdout

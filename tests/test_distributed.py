"""Data-parallel training (lesionlab.models.distributed): 2 CPU processes on gloo, started by torchrun, give the
single-process result. (The fine-tune command under torchrun: tests/test_transfer.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

_FIT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from lesionlab.models import distributed, torch_train
    from lesionlab.models.families._backbone import BackboneParams

    d = distributed.setup("cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    rng = np.random.default_rng(0)
    x, y = torch.from_numpy(rng.random((80, 3, 8, 8), dtype=np.float32)), rng.integers(0, 3, 80)
    # nothing that depends on the batch itself or on per-process random draws: BatchNorm, dropout, mixup, class
    # weights (a weighted mean per slice) are off
    cfg = BackboneParams(epochs=3, batch_size=16, patience=5, dropout=0.0, learning_rate=0.05, warmup_epochs=1,
                         class_weights=False, augment=False)

    def predict_val(m):
        with torch.no_grad():
            return torch.softmax(m(x[64:]), dim=1).numpy().astype(np.float64)

    fit = torch_train.fit(model, lambda idx, training: x[:64][idx], y[:64], predict_val, y[64:], cfg, 3, 0, "cpu",
                          progress=False, dist=d)
    if distributed.is_primary():
        weights = {k: v.tolist() for k, v in model.state_dict().items()}
        print("RESULT " + json.dumps({"weights": weights, "history": fit.history}))
    distributed.teardown(d)
    """
)


def _result(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-2000:]  # rank 0 only
    return json.loads(lines[0][len("RESULT ") :])


def _torchrun(*args: str, cwd=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_two_gloo_processes_train_what_one_process_trains(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(_FIT)
    single = _result(subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300))
    ddp = _result(_torchrun(str(script)))
    assert len(ddp["history"]) == len(single["history"]) == 3
    for a, b in zip(ddp["history"], single["history"], strict=True):
        # each process saw half of every batch; the epoch's loss and accuracy are over both halves
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["accuracy"] == pytest.approx(b["accuracy"])
        assert a["val_balanced_accuracy"] == pytest.approx(b["val_balanced_accuracy"])
    for key, value in single["weights"].items():
        np.testing.assert_allclose(np.array(ddp["weights"][key]), np.array(value), atol=1e-5, err_msg=key)
    moved = max(np.abs(np.array(v)).max() for v in single["weights"].values())
    assert moved > 0  # it trained: the weights are not all zero

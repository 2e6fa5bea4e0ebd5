"""A notebook run by hand works in a scratch copy: it reads the tracked results and writes only its own outputs."""

from __future__ import annotations

import shutil

import pytest
from conftest import REPO

from lesionlab.pipeline import sandbox
from lesionlab.pipeline.notebooks import stage_context


@pytest.fixture
def project(tmp_path, monkeypatch):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, tmp_path / name)
    results = tmp_path / "results/synthetic"
    for rel in (
        "splits.csv",
        "variants/cnn_aug/model.keras",
        "variants/cnn_aug.seed43/model.keras",
        "variants/cnn_elu/model.keras",
        "metrics/cnn_aug.json",
        "metrics/cnn_elu.json",
        "live/cnn_aug/metrics.json",
        "live/cnn_aug/plots/metrics/x.tsv",
    ):
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        (results / rel).write_text("tracked")
    monkeypatch.setenv("LESIONLAB_ROOT", str(tmp_path))
    monkeypatch.delenv(sandbox.PIPELINE_ENV, raising=False)
    return tmp_path


def test_the_scratch_copy_links_everything_but_the_stage_outputs(project):
    outputs = sandbox.stage_outputs(project, "synthetic", "train", "cnn_aug")
    assert "results/synthetic/variants/cnn_aug" in outputs and "results/synthetic/live/cnn_aug/metrics.json" in outputs
    copy = sandbox.sandbox(project, "synthetic", "train", "cnn_aug")
    data = copy / "results/synthetic"
    assert (data / "splits.csv").is_symlink() and (data / "variants/cnn_elu").is_symlink()  # read from the real ones
    assert (copy / "params.yaml").is_symlink() and (copy / "dvc.yaml").is_symlink()
    assert not (data / "variants/cnn_aug").exists() and not (data / "metrics/cnn_aug.json").exists()  # written fresh
    assert (data / "metrics/cnn_elu.json").is_symlink() and not (data / "metrics").is_symlink()
    assert not (data / "live/cnn_aug").is_symlink() and not (data / "live/cnn_aug/plots").exists()
    (data / "variants/cnn_aug").mkdir()
    (data / "variants/cnn_aug/model.keras").write_text("by hand")
    assert (project / "results/synthetic/variants/cnn_aug/model.keras").read_text() == "tracked"
    again = sandbox.sandbox(project, "synthetic", "train", "cnn_aug")  # a rerun starts from a clean copy
    assert again == copy and not (data / "variants/cnn_aug").exists()


def test_stage_context_by_hand_and_in_dvcs_run(project, monkeypatch, capsys):
    root, params, dataset = stage_context("train", "cnn_aug", epochs=2)
    assert root == project / "scratch/train@cnn_aug" and dataset == "synthetic"
    assert (
        params.variant("cnn_aug").epochs == 2 and "writing this stage's outputs to scratch" in capsys.readouterr().out
    )
    root, params, _ = stage_context("backbone", "lite0_full")  # probes and fine-tunes: their own dvc stage
    assert root == project / "scratch/finetune@lite0_full"
    root, _, _ = stage_context("compare")
    assert not (root / "reports/synthetic/leaderboard.csv").exists() and (root / "results").is_dir()
    monkeypatch.setenv(sandbox.PIPELINE_ENV, "1")
    root, params, _ = stage_context("train", "cnn_aug")
    assert root == project and params.variant("cnn_aug").epochs != 2
    with pytest.raises(ValueError, match="by hand"):
        stage_context("train", "cnn_aug", epochs=2)


def test_a_seed_replicate_by_hand_writes_its_own_scratch_outputs(project):
    root, params, _ = stage_context("train", "cnn_aug", epochs=1, seed=43)
    assert root == project / "scratch/train_seed@cnn_aug-43"
    data = root / "results/synthetic"
    assert not (data / "variants/cnn_aug.seed43").exists()  # written fresh there, never through a link
    assert (data / "variants/cnn_aug").is_symlink()  # the first run: read-only, the real one
    run, name = params.replicate("cnn_aug", 43)
    assert name == "cnn_aug.seed43" and run.base.seed == 43 and run.variant(name).epochs == 1
    from lesionlab.config import ParamsError

    with pytest.raises(ParamsError, match="replicate_seeds"):
        stage_context("train", "cnn_aug", seed=7)

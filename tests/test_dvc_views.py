"""DVC's own views: headline metrics per row, plot overlays generated from params.yaml's rows, and a
`dvc plots show` page that renders with no network."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from lesionlab.config import load_params
from lesionlab.models.families import FAMILIES
from lesionlab.pipeline import dvcviews, stagedeps


def test_every_model_stage_declares_its_headline_metrics_and_live_plots():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert "metrics" not in dvc  # no top-level folder of 33-key files: DVC shows the headline only
    for family in FAMILIES.values():
        stage = dvc["stages"][family.dvc_stage or family.stage]["do"]
        assert stage["metrics"] == [{"results/${dataset}/live/${key}/metrics.json": {"cache": False}}]
        assert {"results/${dataset}/live/${key}/plots": {"cache": False}} in stage["outs"]


def test_plot_overlays_cover_every_row_and_go_stale_when_a_row_is_added(tmp_path):
    params = load_params(REPO / "params.yaml")
    plots = dvcviews.plots(params)
    files = [f for p in plots for spec in p.values() if isinstance(spec["y"], dict) for f in spec["y"]]
    files += [next(iter(p)) for p in plots if not isinstance(next(iter(p.values()))["y"], dict)]  # one file each
    for family in FAMILIES.values():
        for row in getattr(params, family.section):
            assert f"results/${{dataset}}/live/{row}/plots/sklearn/roc.json" in files
            assert f"results/${{dataset}}/live/{row}/plots/sklearn/confusion_matrix.json" in files
    for name in ("dvc.yaml", "params.yaml", "src", "notebooks"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(
            REPO / name, tmp_path / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if name == "src" else {})
        )
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["variants"]["cnn_new"] = {"dropout": 0.1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert stagedeps.PLOTS in stagedeps.check(tmp_path)
    stagedeps.rewrite(tmp_path)
    assert stagedeps.check(tmp_path) == {}
    assert "live/cnn_new/plots/sklearn/roc.json" in (tmp_path / "dvc.yaml").read_text()


def test_dvc_plots_show_renders_offline(tmp_path):
    """A tiny DVC repository with the project's template: the page inlines vega and draws every plot in Chromium
    with nothing fetched off disk."""
    browser = pytest.importorskip("tools.browser")
    try:
        browser.chromium_binary()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *cmd: subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    template = REPO / "tools" / "dvc-plots" / "offline.html"
    run("dvc", "config", "plots.html_template", str(template))
    live = repo / "live"
    for row, shift in (("a", 0.0), ("b", 0.1)):
        folder = live / row / "plots" / "metrics" / "val"
        folder.mkdir(parents=True)
        pd.DataFrame({"step": [1, 2, 3], "balanced_accuracy": np.array([0.3, 0.4, 0.5]) + shift}).to_csv(
            folder / "balanced_accuracy.tsv", sep="\t", index=False
        )
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "plots": [
                    {
                        "validation balanced accuracy": {
                            "x": "step",
                            "y": {
                                f"live/{r}/plots/metrics/val/balanced_accuracy.tsv": "balanced_accuracy" for r in "ab"
                            },
                        }
                    }
                ]
            }
        )
    )
    run("dvc", "plots", "show", "-o", str(tmp_path / "out"))
    page = tmp_path / "out" / "index.html"
    text = page.read_text()
    assert "<script src=" not in text and "cdn.jsdelivr" not in text and "Research and education only" in text
    with browser.Browser(1000, 800) as b:
        b.open(page)
        found = b.evaluate(
            "new Promise(r => setTimeout(() => r({"
            "drawn: document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length,"
            "remote: performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith('file:') && !n.startsWith('data:'))}), 1500))"
        )
    assert found["drawn"] >= 1 and found["remote"] == []

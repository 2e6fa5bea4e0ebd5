"""Every registered layout runs the whole pipeline: one real `dvc repro` per layout on a tiny fixture dataset.

The fixtures (tests/layouts.py) are written in each source's own file layout and lack what the real source
lacks (masks, ages, sites, lesion ids, multi-class labels). Sections that need what a dataset lacks must be
skipped with their reason on the page: never a crash, never a made-up number. The synthetic layout runs
in test_pipeline_e2e.py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from layouts import EXTERNAL, LAYOUTS
from pipeline_repo import make_repo, run

pytestmark = pytest.mark.slow

#: a small pipeline: two CNN rungs, one probe (with TTA), one metadata model, a mean and a stacking ensemble
SMALL = {
    "base": {"replicate_seeds": []},  # one run per row: the layouts test data handling (seeds: test_pipeline_e2e)
    "prepare": {"image_size": 24, "backbone_image_size": 32, "on_bad": "error"},
    "train": {"epochs": 2, "patience": 2, "filters": [8, 16], "dense_units": 16},
    "probe": {"epochs": 4},
    "tabular": {"n_estimators": 20, "patience": 5},
    "ensemble": {"folds": 2},
    "explain": {"variants": ["cnn_class_weights", "lite0_probe_mlp"]},
    "compare": {"bootstrap": 20, "pairs": []},
}


def _small(name: str, overrides: dict):
    def update(params: dict) -> None:
        params["dataset"] = name
        params["dataset_source"] = f"data/{name}"
        settings = {**SMALL, **overrides}
        ablate = settings.pop("ablate", None)
        for section, values in settings.items():
            if isinstance(values, dict):
                params.setdefault(section, {}).update(values)
            else:
                params[section] = values
        params["variants"] = {k: params["variants"][k] for k in ("cnn_baseline", "cnn_class_weights")}
        if ablate:  # a preprocessing ablation: the same rung on colour-constant images, explained too
            params["variants"][f"{ablate}_sog"] = {**params["variants"][ablate], "color_constancy": "shades_of_gray"}
            params["explain"] = {**params["explain"], "variants": [*SMALL["explain"]["variants"], f"{ablate}_sog"]}
        params["probes"] = {"lite0_probe_mlp": params["probes"]["lite0_probe_mlp"]}
        params["finetunes"] = {}
        params["tabulars"] = {"meta_gbm": params["tabulars"]["meta_gbm"]}
        members = ["cnn_class_weights", "lite0_probe_mlp+tta"]
        params["ensembles"] = {
            "image_mean": {"description": "mean", "method": "mean", "members": members},
            "image_meta_stack": {"description": "stack + metadata", "members": [*members, "meta_gbm"]},
        }

    return update


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_runs_the_whole_pipeline(layout, tmp_path):
    writer, name, overrides, lacks = LAYOUTS[layout]
    repo = tmp_path / "repo"
    repo.mkdir()
    env, params = make_repo(repo, _small(name, overrides))
    (repo / "data" / name).mkdir(parents=True)
    writer(repo / "data" / name)
    for ext in params.get("external", []):
        (repo / "data" / ext).mkdir(parents=True)
        EXTERNAL[ext](repo / "data" / ext)
    run(["dvc", "repro"], repo, env)

    reports, results = repo / "reports" / name, repo / "results" / name
    summary = json.loads((results / "prepared/summary.json").read_text())
    board = pd.read_csv(reports / "leaderboard.csv")
    compare_page = (reports / "compare.html").read_text()
    index = (reports / "index.html").read_text()
    no_metadata = "metadata" in lacks
    skipped = {"meta_gbm", "image_meta_stack"} if no_metadata else set()
    ablations = {f"{overrides['ablate']}_sog"} if "ablate" in overrides else set()
    rows = (
        {
            "cnn_baseline",
            "cnn_class_weights",
            "lite0_probe_mlp",
            "lite0_probe_mlp+tta",
            "meta_gbm",
            "image_mean",
            "image_meta_stack",
        }
        | ablations
    ) - skipped
    assert set(board["variant"]) == rows, (layout, sorted(board["variant"]))
    assert board["n_test_images"].nunique() == 1 and board["n_test_images"].iloc[0] > 0
    assert board["balanced_accuracy"].between(0, 1).all() and board["macro_auc"].between(0, 1).all()
    for page in reports.rglob("*.html"):
        text = page.read_text()
        assert "Research and education only" in text and "Traceback" not in text, page
    for page in ("eda.html", "split.html", "compare.html", "variants/cnn_baseline.html", "ensembles/image_mean.html"):
        assert (reports / page).is_file(), page

    # what the dataset lacks is skipped with its reason, never a crash or a made-up number
    if "masks" in lacks:
        assert summary["masks"] == 0
        assert "Grad-CAM-in-mask scores skipped" in compare_page and "no lesion masks" in compare_page
        assert board["mask_energy"].isna().all() if "mask_energy" in board else True
    else:
        assert summary["masks"] == summary["images"]
        explained = pd.read_csv(reports / "explanations.csv")
        assert explained["mask_energy"].between(0, 1).all()
    if no_metadata:
        for name_ in skipped:
            assert json.loads((results / f"metrics/{name_}.json").read_text())["skipped"], name_
        assert "Skipped rows" in compare_page and "no usable metadata" in compare_page
        assert "Age slices skipped" in compare_page
        assert "Age panel skipped" in (reports / "eda.html").read_text()
    else:
        slices = pd.read_csv(reports / "slices.csv")
        assert {"sex", "age", "site"} <= set(slices["attribute"])
    binary = reports / "leaderboard_binary.csv"
    triage = reports / "leaderboard_triage.csv"
    if "triage" in lacks or "multi-class labels" in lacks:
        assert "Triage view skipped" in compare_page
        assert not triage.is_file() or pd.read_csv(triage).empty
    else:
        assert set(pd.read_csv(triage)["variant"]) == rows
    assert set(pd.read_csv(binary)["variant"]) == rows  # every layout here declares what is malignant
    assert np.isfinite(board["malignant_auc"]).all()
    if "taxonomy labels" in lacks:  # own classes kept as they are
        assert summary["classes"] == ["common_nevus", "atypical_nevus", "melanoma"] and summary["malignant"] == [
            "melanoma"
        ]
    assert "leaderboard" in index
    split_page = (reports / "split.html").read_text()
    if "a class in every split" in lacks:  # a class with fewer lesions than splits: warned, and shown where it went
        assert "'df' (2 lesions)" in split_page and "recall is undefined" in split_page
    else:
        assert "each can reach train, validation and test" in split_page
    external = pd.read_csv(reports / "leaderboard_external.csv")
    external_pairs = pd.read_csv(reports / "paired_external.csv")
    if not params.get("external"):
        assert external.empty and external_pairs.empty and "No external test set" in compare_page
        return
    # external validation: every row scores the external set (those that need metadata are skipped: it has none)
    assert set(external["dataset"]) == set(params["external"])
    assert set(external["variant"]) == rows - {"meta_gbm", "image_meta_stack"}
    assert "meta_gbm skipped</b> on ph2ext: needs metadata" in compare_page
    for metric in ("melanoma_auc", "malignant_auc", "sensitivity", "specificity", "uncertain_share", "recall_nv"):
        assert external[metric].between(0, 1).all() and (external[f"{metric}_lo"] <= external[f"{metric}_hi"]).all(), (
            metric
        )
    assert "recall_bcc" not in external  # only the classes the external set has
    assert np.allclose(external["melanoma_auc_drop"], external["melanoma_auc_internal"] - external["melanoma_auc"])
    assert (external["n_images"] == 27).all() and "<h3>ph2ext</h3>" in compare_page
    # a row trained once per seed is scored with every run (the mean over them, as on the internal leaderboard)
    runs = external.set_index("variant")["n_runs"]
    neural = [*params["variants"], *params["probes"], "lite0_probe_mlp+tta"]
    assert (runs[neural] == 2).all() and (runs.drop(index=neural) == 1).all()
    scored = results / "external/ph2ext/predictions"
    assert (scored / "cnn_class_weights.seed43.csv").is_file() and (scored / "lite0_probe_mlp.seed43+tta.csv").is_file()
    explained_rows = params["explain"]["variants"]
    explained = external.set_index("variant").loc[explained_rows]  # the external set has masks
    assert explained["mask_energy"].between(0, 1).all() and explained["chance"].between(0, 1).all()
    assert external.set_index("variant").drop(index=explained_rows)["mask_energy"].isna().all()
    assert "External validation" in index
    # the preprocessing ablation: trained on other pixels, compared with its twin internally and externally
    ablation = f"{overrides['ablate']}_sog"
    record = json.loads((results / f"variants/{ablation}/training.json").read_text())
    assert record["preprocess"] == {"color_constancy": "shades_of_gray", "resize": "squash"}
    twin = pd.read_csv(results / f"variants/{overrides['ablate']}/predictions.csv")
    assert not np.allclose(
        pd.read_csv(results / f"variants/{ablation}/predictions.csv").filter(like="p_"), twin.filter(like="p_")
    )
    paired = pd.read_csv(reports / "paired.csv")
    assert (
        (paired["comparison"] == "preprocessing") & (paired["a"] == ablation) & (paired["b"] == overrides["ablate"])
    ).sum() == 3
    assert "Preprocessing ablations: internal vs external" in compare_page and "ph2ext: Δ melanoma AUC" in compare_page
    assert external_pairs[["dataset", "a", "b", "comparison"]].drop_duplicates().values.tolist() == [
        ["ph2ext", ablation, overrides["ablate"], "preprocessing"]
    ]
    assert set(external_pairs["metric"]) == {"melanoma_auc", "malignant_auc"}
    summary = json.loads((results / f"explanations/{ablation}/summary.json").read_text())
    assert summary["max_abs_diff_vs_stage_predictions"] < 1e-3  # Grad-CAM saw the pixels the ablation trained on

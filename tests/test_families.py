"""The model-family registry: adding a family is one module + its params + its stage.

A toy family (every image gets the training split's class frequencies) is planted in a scratch copy of the
project as `src/lesionlab/models/families/prior.py`, with its two params.yaml sections and one dvc.yaml stage, and
nothing else: `dvc repro` trains it through the generic notebook, and params validation, `lesionlab run`,
`lesionlab predict`, the comparison's rows, the site's pages, the bench's labels and `lesionlab deps` know it.
"""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from pipeline_repo import COPY, make_repo, run

PRIOR_FAMILY = '''"""A toy model family: every image gets the training split's class frequencies (smoothed)."""

from __future__ import annotations

import json

import numpy as np
from pydantic import Field

from lesionlab.models.families import Family, register
from lesionlab.params_base import Section, overrides_of


class PriorParams(Section):
    smoothing: float = Field(1.0, ge=0, description="added to every class count")


PriorRowParams = overrides_of(PriorParams, "PriorRowParams", "A class-prior row.")


def fit(root, params, name, progress=True):
    from lesionlab.pipeline.contracts import write_predictions
    from lesionlab.evaluation.metrics import metrics_from_predictions
    from lesionlab.models.outputs import write_stage_files
    from lesionlab.paths import fresh_dir, variant_dir
    from lesionlab.data.prepare import load_rows

    cfg = params.row_config(name)
    rows = load_rows(root, params.dataset)
    classes, table = rows.data.classes, rows.data.table
    counts = np.bincount(rows.y[rows.train], minlength=len(classes)) + cfg.smoothing
    prior = counts / counts.sum()
    out = fresh_dir(variant_dir(root, params.dataset, name))
    (out / "model.json").write_text(json.dumps({"prior": prior.tolist()}))
    pred = write_predictions(out / "predictions.csv", table["image_id"], rows.split, table["label"],
                             np.tile(prior, (len(table), 1)), classes)
    metrics = metrics_from_predictions(pred, classes)
    write_stage_files(root, params.dataset, name, out, metrics, None, {
        "kind": "prior", "framework": "numpy", "classes": list(classes), "input_size": int(rows.data.images.shape[1]),
        "preprocess": params.preprocess(), "weights_file": "model.json", "seed": params.base.seed,
        "config": cfg.model_dump()})
    return {"config": cfg, "metrics": metrics, "predictions": pred, "classes": classes}


def load(root, dataset, name, record):
    from lesionlab.paths import variant_dir
    from lesionlab.models.predictor import Predictor

    prior = np.asarray(json.loads((variant_dir(root, dataset, name) / "model.json").read_text())["prior"])
    return Predictor(name, "prior", "numpy", tuple(record.classes), record.input_size,
                     lambda x: np.tile(prior, (len(x), 1)))


FAMILY = register(Family(
    kind="prior", label="class prior", section="priors", defaults="prior", defaults_model=PriorParams,
    row_model=PriorRowParams, stage="prior", fit="lesionlab.models.families.prior:fit",
    load="lesionlab.models.families.prior:load",
    image_model=False, describe=lambda params, name: "class prior (numpy)"))
'''

PRIOR_STAGE = """  prior:                    # the toy family: class frequencies of the training split
    foreach: ${priors}
    do:
      cmd: python -m lesionlab run prior --variant ${key}
      deps:
        - results/params-checked.txt
        - notebooks/09_model.ipynb
        - results/${dataset}/prepared/dataset.csv
        - results/${dataset}/prepared/images.npy
        - results/${dataset}/splits.csv
      params:
        - dataset
        - base.seed
        - prior
        - priors.${key}
      outs:
        - results/${dataset}/variants/${key}
        - results/${dataset}/notebooks/prior@${key}.ipynb
        - results/${dataset}/metrics/${key}.json:
            cache: false

"""

CHECKS = r"""
import json, sys
from pathlib import Path
from lesionlab.evaluation import compare
from lesionlab.models import families
from tools import bench
from lesionlab.config import load_params
from lesionlab.pipeline.notebooks import STAGES
from lesionlab.reporting.site import site_pages

params = load_params("params.yaml")
print(json.dumps({
    "family": sorted(families.FAMILIES), "rows": params.all_variants(), "scored": params.scored_rows(),
    "config": params.row_config("class_prior").model_dump(), "report": compare.row_report("class_prior", params),
    "pages": [p.stage for p in site_pages(params)], "bench": bench.family("prior@class_prior", params),
    "notebook": STAGES["prior"].notebook}))
"""


def _tiny(params: dict) -> None:
    params["synthetic"]["n_lesions"] = 40
    params["prepare"].update(image_size=16, backbone_image_size=32)
    params["variants"] = {"cnn_baseline": params["variants"]["cnn_baseline"]}
    params["probes"], params["finetunes"], params["tabulars"], params["ensembles"] = {}, {}, {}, {}
    params["explain"]["variants"], params["compare"]["pairs"] = [], []
    params["prior"] = {"smoothing": 1.0}  # the family's params:
    params["priors"] = {"class_prior": {"description": "training class frequencies"}}


@pytest.mark.slow
def test_a_new_family_is_one_module_its_params_and_its_stage(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env, _ = make_repo(repo, _tiny)
    (repo / "src/lesionlab/models/families/prior.py").write_text(PRIOR_FAMILY)  # the module
    dvc = (repo / "dvc.yaml").read_text()
    (repo / "dvc.yaml").write_text(dvc.replace("  ensemble:", PRIOR_STAGE + "  ensemble:", 1))  # the stage
    run([sys.executable, "-m", "lesionlab", "deps"], repo, env)  # its code fingerprint, like every stage's
    assert "- results/code/prior.txt" in (repo / "dvc.yaml").read_text()
    assert "src/lesionlab/models/families/prior.py" in (repo / "results/code/prior.txt").read_text()
    run([sys.executable, "-m", "lesionlab", "deps", "--check"], repo, env)

    # nothing else was touched
    changed = set()
    for name in COPY:
        if (REPO / name).is_dir():
            cmp = [filecmp.dircmp(REPO / name, repo / name, ignore=["__pycache__"])]
            while cmp:
                d = cmp.pop()
                rel = Path(name) / Path(d.left).relative_to(REPO / name)
                changed |= {str(rel / f) for f in d.diff_files + d.right_only if not f.endswith(".egg-info")}
                cmp.extend(d.subdirs.values())
        elif not filecmp.cmp(REPO / name, repo / name, shallow=False):
            changed.add(name)
    assert changed == {"src/lesionlab/models/families/prior.py", "params.yaml", "dvc.yaml"}, changed

    run(["dvc", "repro", "prior@class_prior"], repo, env)
    folder = repo / "results/synthetic/variants/class_prior"
    record = json.loads((folder / "training.json").read_text())
    assert record["kind"] == "prior" and record["weights_file"] == "model.json"
    prior = np.asarray(json.loads((folder / "model.json").read_text())["prior"])
    metrics = json.loads((repo / "results/synthetic/metrics/class_prior.json").read_text())
    assert 0 < metrics["balanced_accuracy"] <= 1 and np.isclose(prior.sum(), 1)
    assert (repo / "results/synthetic/notebooks/prior@class_prior.ipynb").is_file()  # the generic page

    checks = subprocess.run([sys.executable, "-c", CHECKS], cwd=repo, env=env, capture_output=True, text=True)
    assert checks.returncode == 0, checks.stderr[-3000:]
    found = json.loads(checks.stdout.strip().splitlines()[-1])
    assert found["family"] == sorted(["cnn", "probe", "finetune", "tabular", "ensemble", "prior"])
    assert "class_prior" in found["rows"] and "class_prior" in found["scored"]
    assert found["config"] == {"smoothing": 1.0}
    assert found["report"] == "variants/class_prior.html" and "prior@class_prior" in found["pages"]
    assert found["bench"] == "class prior (numpy)" and found["notebook"] == "09_model.ipynb"

    # lesionlab predict rebuilds it from its record
    table = pd.read_csv(repo / "results/synthetic/prepared/dataset.csv", dtype=str, keep_default_na=False).head(3)
    pd.DataFrame({"path": [str(repo / p) for p in table["path"]]}).to_csv(tmp_path / "in.csv", index=False)
    run(
        [
            sys.executable,
            "-m",
            "lesionlab",
            "predict",
            "class_prior",
            str(tmp_path / "in.csv"),
            "--out",
            str(tmp_path / "out.csv"),
        ],
        repo,
        env,
    )
    out = pd.read_csv(tmp_path / "out.csv")
    assert np.allclose(out.filter(like="p_").to_numpy(), prior)

    # its params are checked like every family's: a typo in its row is named, with the close key
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(
        params.replace("description: training class frequencies", "description: x\n    smoothng: 2.0", 1)
    )
    bad = run([sys.executable, "-m", "lesionlab", "check-params"], repo, env, ok=False)
    assert bad.returncode == 2 and "priors.class_prior.smoothng: unknown key (did you mean 'smoothing'?)" in bad.stderr
    (repo / "params.yaml").write_text(params)
    none = run([sys.executable, "-m", "lesionlab", "run", "prior"], repo, env, ok=False)
    assert none.returncode == 2 and "needs --variant NAME (a row of priors:)" in none.stderr

"""End to end: the real `dvc repro` on a tiny config, in a temporary copy of the repository.

Checks that the report and leaderboard hold every variant with CIs, that a second
`dvc repro` is a no-op, and that changing one variant's parameter re-runs only that
variant and the comparison.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from pipeline_repo import make_repo, run

from lesionlab.pipeline import lanes

pytestmark = pytest.mark.slow
ARTIFACTS = REPO / "test-artifacts"  # screenshots of the report site (not committed)

TINY = {
    "base": {"replicate_seeds": [43]},  # every neural row trained twice: the seed-replicate path end to end
    "synthetic": {"n_lesions": 90, "width": 64, "height": 48},
    "prepare": {"image_size": 24, "backbone_image_size": 32},
    "train": {"epochs": 2, "patience": 2, "filters": [8, 16], "dense_units": 16},
    "probe": {"epochs": 4},
    "finetune": {"epochs": 1, "trainable_blocks": 1},
    "tabular": {"n_estimators": 20, "patience": 5},
    "explain": {"variants": ["cnn_baseline", "cnn_aug", "lite0_probe_mlp", "lite0_full"]},
    "compare": {"bootstrap": 20},
}


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = run(cmd, cwd, env)
    return proc.stdout + proc.stderr


def _tiny(params: dict) -> None:
    for section, values in TINY.items():
        params[section].update(values)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> tuple[Path, dict]:
    repo = tmp_path_factory.mktemp("lesionlab")
    env, params = make_repo(repo, _tiny)
    _run([sys.executable, "-m", "lesionlab", "deps"], repo, env)  # dvc.yaml's plots and artifacts: these rows
    out = _run(["dvc", "repro"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-q", "-m", "tiny run"], repo, env)  # `dvc exp run` needs a baseline commit
    return repo, {"env": env, "first": out, "params": params, "predictions": _predictions(repo), "lock": _lock(repo)}


def _lock(repo: Path) -> dict:
    """dvc.lock without the hashes of outputs that embed their run (notebooks, saved models, dvclive files):
    every stage's command, its dependencies with their hashes, its params and its outputs' paths."""
    import yaml

    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {
        name: {**{k: v for k, v in stage.items() if k != "outs"}, "outs": [o["path"] for o in stage["outs"]]}
        for name, stage in stages.items()
    }


def _predictions(repo: Path) -> dict[str, bytes]:
    """Every trained run's predictions (first runs and seed replicates), by path."""
    found = sorted((repo / "results/synthetic/variants").glob("*/predictions*.csv"))
    return {str(p.relative_to(repo)): p.read_bytes() for p in found}


def test_repro_in_two_lanes_leaves_what_a_plain_dvc_repro_leaves(tiny_repo, tmp_path):
    """`lesionlab repro --jobs 2`: the seed replicates that ran in the second lane's copy are recorded here with
    `dvc commit`, not re-run; every run's predictions are the plain run's, byte for byte; the
    workspace ends up to date and the copy is gone."""
    plain, ctx = tiny_repo
    repo = tmp_path / "lanes"
    repo.mkdir()
    env, _ = make_repo(repo, _tiny)
    _run([sys.executable, "-m", "lesionlab", "deps"], repo, env)
    out = _run([sys.executable, "-m", "lesionlab", "repro", "--jobs", "2"], repo, env)
    in_copy = sorted(set(re.findall(r"\[lane 1\] Running stage '([^']+)'", out)))
    assert in_copy and all("_seed@" in s for s in in_copy), out[-3000:]
    recorded = re.findall(r"^\[repro\] lane 1: (\d+) runs recorded in dvc.lock \(dvc commit\)", out, re.M)
    assert recorded == [str(len(in_copy))], out[-3000:]
    assert not set(re.findall(r"^Running stage '([^']+)'", out, re.M)) & set(in_copy)  # none ran twice
    assert _predictions(repo) == ctx["predictions"] and len(ctx["predictions"]) > len(in_copy)
    assert "Data and pipelines are up to date" in _run(["dvc", "status", "dvc.yaml"], repo, env)
    assert not (repo / ".dvc/tmp/lanes/1").exists()
    assert _lock(repo).keys() == ctx["lock"].keys()
    for name, stage in _lock(repo).items():  # what each stage ran with is the plain run's
        plain_stage = ctx["lock"][name]
        deps, plain_deps = ({d["path"]: d for d in s["deps"]} for s in (stage, plain_stage))
        assert stage["cmd"] == plain_stage["cmd"] and stage.get("params") == plain_stage.get("params"), name
        assert stage["outs"] == plain_stage["outs"] and deps.keys() == plain_deps.keys(), name
        if lanes.group(name) in lanes.FIRST_RUNS + lanes.REPLICATES:  # a lane's stage read the same files
            files = {p: d for p, d in deps.items() if not d["md5"].endswith(".dir")}  # a folder holds run records
            assert files == {p: plain_deps[p] for p in files}, name
    again = _run([sys.executable, "-m", "lesionlab", "repro", "--jobs", "2"], repo, env)
    assert "Data and pipelines are up to date" in again and "Running stage" not in again, again[-2000:]
    assert "[repro] 2 lanes" not in again  # one status check, not the lanes' three DVC runs


def test_report_and_leaderboard_hold_every_variant(tiny_repo):
    repo, ctx = tiny_repo
    p = ctx["params"]
    variants = [*p["variants"], *p["probes"], *p["finetunes"], *p["tabulars"]]
    board = pd.read_csv(repo / "reports/synthetic/leaderboard.csv")
    with_tta = [
        f"{v}+tta"
        for v in [*p["probes"], *p["finetunes"]]
        if {**p["probe" if v in p["probes"] else "finetune"], **p["probes"].get(v, p["finetunes"].get(v, {}))}["tta"]
    ]
    rows = variants + with_tta + list(p["ensembles"])
    assert with_tta and p["tabulars"] and p["ensembles"] and sorted(board["variant"]) == sorted(rows)
    for extra in ("leaderboard_binary.csv", "leaderboard_triage.csv", "calibration.csv"):
        assert sorted(pd.read_csv(repo / "reports/synthetic" / extra)["variant"]) == sorted(rows), extra
    binary = pd.read_csv(repo / "reports/synthetic/leaderboard_binary.csv")
    assert binary["sensitivity_at_95_specificity"].le(binary["sensitivity_at_90_specificity"] + 1e-9).all()
    calibration = pd.read_csv(repo / "reports/synthetic/calibration.csv")
    assert calibration["temperature"].gt(0).all() and calibration["coverage"].between(0, 1).all()
    paired = pd.read_csv(repo / "reports/synthetic/paired.csv")
    assert {"image_meta_stack"} <= set(paired["a"]) and (paired["lo"] <= paired["hi"]).all()
    for metric in ("accuracy", "balanced_accuracy", "macro_auc", "malignant_auc", "melanoma_sensitivity", "macro_f1"):
        assert board[metric].between(0, 1).all(), metric
        lo, hi = board[f"{metric}_lo"], board[f"{metric}_hi"]
        assert lo.between(0, 1).all() and hi.between(0, 1).all() and (lo <= hi).all(), metric
    assert board["n_test_images"].nunique() == 1  # one test set for all
    index = (repo / "reports/synthetic/index.html").read_text()
    comparison = (repo / "reports/synthetic/compare.html").read_text()
    for v in variants:
        assert f"href='variants/{v}.html'" in index
        assert (repo / f"reports/synthetic/variants/{v}.html").is_file()
        assert (repo / f"results/synthetic/variants/{v}/predictions.csv").is_file()
    for e in p["ensembles"]:
        assert f"href='ensembles/{e}.html'" in index
        assert "Research and education only" in (repo / f"reports/synthetic/ensembles/{e}.html").read_text()
        assert (repo / f"results/synthetic/ensembles/{e}/predictions.csv").is_file()
    for section in (
        "Malignant vs benign",
        "Triage (3 levels)",
        "Does metadata add value?",
        "Calibration",
        "Uncertainty and abstention",
        "image_meta_stack</b> (image + metadata) minus its image-only twin",
        "Paired comparisons: every row against the baseline and the best",
        "McNemar",
        "Subgroups: who is served worst?",
        "Where do the models look?",
    ):
        assert section in comparison, section
    assert "Research and education only" in index and "Research and education only" in comparison
    assert "sha256" in comparison and "efficientnet-lite0-57934424.pth" in comparison  # weights provenance
    for v in [*p["probes"], *p["finetunes"]]:
        assert "efficientnet-lite0-57934424.pth" in (repo / f"reports/synthetic/variants/{v}.html").read_text()
    assert "data:image/png;base64" in index and "data:image/png;base64" in comparison  # figures embedded
    for page in (repo / "reports/synthetic").rglob("*.html"):
        text = page.read_text()
        assert '<script src="http' not in text, page  # nothing loaded from a CDN
        assert "class='ll-nav'" in text and "Research and education only" in text, page
        if page.name != "index.html":
            assert "params of this stage (dvc.lock)" in text and "wall time" in text and "seed 42" in text, page
    for page in ("eda.html", "split.html"):
        assert "data:image/png;base64" in (repo / "reports/synthetic" / page).read_text()
    eda = (repo / "reports/synthetic/eda.html").read_text()
    quality = pd.read_csv(repo / "results/synthetic/prepared/quality.csv", keep_default_na=False)
    assert "Data quality" in eda and all(check in eda for check in quality["check"])  # the table is shown
    assert "Lesion area" in eda and "images with mask" in eda  # per-class lesion-area statistics from the masks


def test_every_neural_row_is_trained_per_seed_and_reported_with_its_spread(tiny_repo):
    repo, ctx = tiny_repo
    p = ctx["params"]
    neural = [*p["variants"], *p["probes"], *p["finetunes"]]
    for v in neural:  # the replicate of each neural row: its own stage, outputs and seed
        run_dir = repo / f"results/synthetic/variants/{v}.seed43"
        assert json.loads((run_dir / "training.json").read_text())["seed"] == 43, v
        first = pd.read_csv(repo / f"results/synthetic/variants/{v}/predictions.csv")
        again = pd.read_csv(run_dir / "predictions.csv")
        assert first["image_id"].tolist() == again["image_id"].tolist()
    stages = _run(["dvc", "stage", "list", "--name-only"], repo, ctx["env"]).split()
    assert {f"train_seed@{v}-43" for v in p["variants"]} <= set(stages)
    assert {f"finetune_seed@{v}-43" for v in p["finetunes"]} <= set(stages)
    board = pd.read_csv(repo / "reports/synthetic/leaderboard.csv").set_index("variant")
    assert (board.loc[neural, "n_runs"] == 2).all()
    assert (board.loc[[*p["tabulars"], *p["ensembles"]], "n_runs"] == 1).all()
    runs = pd.read_csv(repo / "reports/synthetic/runs.csv")
    tta = [v for v in board.index if v.endswith("+tta")]
    expected = [*neural, *tta] + [f"{v.removesuffix('+tta')}.seed43{'+tta' if v in tta else ''}" for v in neural + tta]
    assert sorted(runs["run"]) == sorted(expected)
    spread = pd.read_csv(repo / "reports/synthetic/seeds.csv").set_index("variant")
    for v in p["variants"]:  # the leaderboard's value is the mean of the runs' metrics
        mine = runs[runs["variant"] == v]["balanced_accuracy"]
        assert np.isclose(board.loc[v, "balanced_accuracy"], mine.mean(), atol=1e-4)
        assert np.isclose(spread.loc[v, "balanced_accuracy_sd"], mine.std(ddof=1), atol=1e-4)
    comparison = (repo / "reports/synthetic/compare.html").read_text()
    assert "Seed spread" in comparison and "robust" in comparison
    steps = pd.read_csv(repo / "reports/synthetic/paired.csv")
    steps = steps[steps["comparison"] == "step"]
    assert {("cnn_aug", "cnn_baseline"), ("lite0_full", "lite0_partial")} <= set(zip(steps["a"], steps["b"]))


def test_the_cold_log_has_no_framework_or_kernel_noise(tiny_repo):
    """The terminal of a cold `dvc repro`: each stage's own lines, no TensorFlow start-up notices, no papermill cell
    markers, no kernel log, no display-object reprs."""
    from lesionlab.models.keras_common import TF_START_NOTICES

    log = tiny_repo[1]["first"]
    noise = [n.decode() for n in TF_START_NOTICES] + ["Executing Cell", "Ending Cell", "[IPKernelApp]", "<IPython.core"]
    assert not [line for line in log.splitlines() if any(n in line for n in noise)]
    assert log.count("[train@cnn_baseline] done in") == 1 and "Running stage 'compare'" in log


def test_no_output_names_this_machines_folders(tiny_repo):
    """Records, tables and reports hold paths relative to the project: a clone elsewhere reads the same bytes."""
    repo, _ = tiny_repo
    machine = [str(repo), str(Path(sys.executable).parent.parent)]  # the project and the Python environment
    for folder in ("results", "reports"):
        for f in (repo / folder).rglob("*"):
            if f.suffix in (".csv", ".json", ".yaml", ".md", ".tsv") and f.is_file():
                text = f.read_text(errors="replace")
                assert not any(m in text for m in machine), f.relative_to(repo)


def test_paired_subgroup_and_explanation_tables(tiny_repo):
    repo, ctx = tiny_repo
    p = ctx["params"]
    board = pd.read_csv(repo / "reports/synthetic/leaderboard.csv")
    paired = pd.read_csv(repo / "reports/synthetic/paired.csv")
    rows = set(board["variant"])
    for label in ("vs baseline", "vs best"):
        part = paired[(paired["comparison"] == label) & (paired["metric"] == "balanced_accuracy")]
        assert len(part) == len(rows) - 1 and (part["lo"] <= part["hi"]).all()
        assert part["mcnemar_p"].between(0, 1).all()
    assert set(paired[paired["comparison"] == "vs baseline"]["b"]) == {p["compare"]["baseline"]}
    slices = pd.read_csv(repo / "reports/synthetic/slices.csv")
    assert set(slices["attribute"]) == {"sex", "age", "site", "skin tone"} and set(slices["variant"]) == rows
    n_test = int(board["n_test_images"].iloc[0])
    assert (slices.groupby(["variant", "attribute"])["n_images"].sum() == n_test).all()
    explained = pd.read_csv(repo / "reports/synthetic/explanations.csv")
    assert sorted(explained["variant"]) == sorted(p["explain"]["variants"])
    assert explained["mask_energy"].between(0, 1).all() and explained["chance"].between(0, 1).all()
    for v in p["explain"]["variants"]:
        summary = json.loads((repo / f"results/synthetic/explanations/{v}/summary.json").read_text())
        # the explained model is the trained one: its predictions equal the stage's (probes: float16 embedding cache)
        assert summary["max_abs_diff_vs_stage_predictions"] < 0.02, v
    page = (repo / "reports/synthetic/explanations.html").read_text()  # one page, a section per variant
    assert all(f'<h2 id="{v}">' in page for v in p["explain"]["variants"])
    assert board.set_index("variant").loc[p["explain"]["variants"], "mask_energy"].notna().all()


def test_report_site_renders_in_a_browser(tiny_repo):
    """Headless Chromium opens the index from disk: the leaderboard and figures render, sorting works, the
    navigation reaches every page and back, nothing is fetched off disk. The screenshot is kept in test-artifacts/."""
    from tools.browser import Browser, check_page

    repo, ctx = tiny_repo
    reports = repo / "reports/synthetic"
    rows = len(pd.read_csv(reports / "leaderboard.csv"))
    with Browser() as b:
        found = check_page(b, reports / "index.html")
        assert found["leaderboard_rows"] == rows and found["disclaimer"] and not found["remote"], found
        assert found["images"] and all(w > 0 for w in found["images"]), found["images"]  # every figure decoded
        b.screenshot(ARTIFACTS / "synthetic-tiny-index.png")
        column = (
            "Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(r => "
            "parseFloat(r.cells[2].textContent))"
        )
        b.evaluate("document.querySelectorAll('#leaderboard thead th')[2].click()")
        values = b.evaluate(column)
        assert values == sorted(values, reverse=True) and len(values) == rows
        b.evaluate("document.querySelectorAll('#leaderboard thead th')[2].click()")
        assert b.evaluate(column) == sorted(values)
        links = b.evaluate("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))")
        pages = {link for link in links if link.endswith(".html")}
        assert {"eda.html", "split.html", "compare.html"} <= pages
        for page in sorted(pages):
            assert (reports / page).is_file(), page
        for page in (
            "compare.html",
            "variants/cnn_baseline.html",
            "explanations.html",
        ):
            found = check_page(b, reports / page)
            assert found["disclaimer"] and not found["remote"] and all(w > 0 for w in found["images"]), (page, found)
            assert any(h.endswith("index.html") for h in found["nav"]), found["nav"]
        b.screenshot(ARTIFACTS / "synthetic-tiny-explanation.png")


def test_notebooks_run_top_to_bottom_with_their_defaults(tiny_repo, tmp_path):
    """What a data scientist does in JupyterLab: open each notebook and run it as committed (default parameters,
    no papermill), against the existing results. Done in a copy so the pipeline's own outputs stay untouched."""
    import nbformat
    from nbclient import NotebookClient

    repo, ctx = tiny_repo
    copy = tmp_path / "lab"
    shutil.copytree(repo, copy, symlinks=True, ignore=shutil.ignore_patterns(".dvc", ".git"))
    env = {**ctx["env"], "PYTHONPATH": str(copy / "src")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for path in sorted((copy / "notebooks").glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            NotebookClient(
                nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(copy / "notebooks")}}
            ).execute()
            errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, (path.name, errors)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_switching_to_a_dataset_without_its_download_fails_clearly(tiny_repo):
    repo, ctx = tiny_repo
    proc = subprocess.run(["dvc", "repro", "prepare"], cwd=repo, env=ctx["env"], capture_output=True, text=True)
    assert proc.returncode == 0  # sanity: the default is fine
    params = (repo / "params.yaml").read_text()
    try:
        (repo / "params.yaml").write_text(params.replace("dataset: synthetic", "dataset: ham10000"))
        proc = subprocess.run(
            [sys.executable, "-m", "lesionlab", "check-params"],
            cwd=repo,
            env=ctx["env"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and "dataset_source must be 'data/ham10000'" in proc.stderr
    finally:
        (repo / "params.yaml").write_text(params)


def test_a_notebook_run_by_hand_writes_to_scratch_not_over_dvc_outputs(tiny_repo, tmp_path):
    """JupyterLab's way: the notebook executed without DVC (here by papermill, as a kernel would run it), with
    the quick knob set. It trains into scratch/ and leaves `git status` and `dvc status` clean."""
    from lesionlab.pipeline.sandbox import PIPELINE_ENV

    repo, ctx = tiny_repo
    env = {k: v for k, v in ctx["env"].items() if k != PIPELINE_ENV}
    tracked = (repo / "results/synthetic/variants/cnn_aug/predictions.csv").read_bytes()
    status = _run(["dvc", "status"], repo, env)
    code = (
        "import papermill as pm; pm.execute_notebook('notebooks/03_train.ipynb', {out!r}, kernel_name='python3', "
        "parameters={{'variant': 'cnn_aug', 'epochs': 1}}, cwd='notebooks', progress_bar=False)"
    ).format(out=str(tmp_path / "by-hand.ipynb"))
    _run([sys.executable, "-c", code], repo, env)
    scratch = repo / "scratch/train@cnn_aug/results/synthetic"
    assert len(pd.read_csv(scratch / "history/cnn_aug.csv")) == 1  # the knob: one epoch
    assert (scratch / "variants/cnn_aug/predictions.csv").is_file() and (scratch / "splits.csv").is_symlink()
    assert (repo / "results/synthetic/variants/cnn_aug/predictions.csv").read_bytes() == tracked
    assert _run(["git", "status", "--porcelain"], repo, env).strip() == ""
    assert _run(["dvc", "status"], repo, env) == status and "dvc.yaml" not in status  # no stage is stale


def test_a_teammate_pulls_every_output_from_a_remote_without_retraining(tiny_repo, tmp_path):
    """The remote workflow of docs/pipeline.md: push to a (here local) DVC remote, clone afresh, pull: the clone is
    up to date, nothing re-runs, and the trained rows are there as DVC artifacts."""
    repo, ctx = tiny_repo
    env = ctx["env"]
    (repo / "data").mkdir(exist_ok=True)  # the raw-data slot (data.dvc), empty for the synthetic default
    _run(["dvc", "commit", "-f", "data.dvc"], repo, env)
    _run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], repo, env)
    _run(["git", "commit", "-q", "-am", "a shared DVC remote"], repo, env)
    _run(["dvc", "push"], repo, env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    assert not (clone / "results/synthetic/variants/cnn_aug").exists()  # models are in DVC's cache, not in git
    _run(["dvc", "pull"], clone, env)
    pred = "results/synthetic/variants/cnn_aug/predictions.csv"
    assert (clone / pred).read_bytes() == (repo / pred).read_bytes()
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], clone, env)
    out = _run(["dvc", "repro"], clone, env)
    assert "Running stage" not in out and "Data and pipelines are up to date" in out
    from dvc.repo import Repo

    with Repo(str(clone)) as dvc:
        artifacts = dvc.artifacts.read()["dvc.yaml"]
    assert artifacts["cnn_aug"].path == "results/synthetic/variants/cnn_aug" and artifacts["cnn_aug"].type == "model"


def _queue_until_done(workspace: Path, env: dict, timeout: float = 900) -> str:
    """`dvc queue start`, then wait until nothing is queued or running (DVC has no blocking wait)."""
    import time

    _run(["dvc", "queue", "start", "--jobs", "1"], workspace, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _run(["dvc", "queue", "status"], workspace, env)
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(3)
    raise AssertionError(f"queue still busy after {timeout} s:\n{status}")


def test_experiments_from_two_workers_meet_in_one_exp_show(tiny_repo, tmp_path):
    """docs/scaling.md's fan-out: two workspaces (two machines) share a git remote and a DVC remote; each queues
    and runs its own experiment, `dvc exp push`es it; a third clone `dvc exp pull`s both and shows them together."""
    repo, ctx = tiny_repo
    env = ctx["env"]
    origin, storage = tmp_path / "origin.git", tmp_path / "dvc-storage"
    _run(["git", "init", "-q", "--bare", str(origin)], tmp_path, env)
    (repo / "data").mkdir(exist_ok=True)
    _run(["dvc", "commit", "-f", "data.dvc"], repo, env)
    _run(["dvc", "remote", "add", "-f", "-d", "team", str(storage)], repo, env)
    _run(["git", "commit", "-q", "-am", "the team's remotes"], repo, env)
    _run(["git", "push", "-q", str(origin), "HEAD:refs/heads/main"], repo, env)
    _run(["dvc", "push"], repo, env)
    runs = {"worker_a": "0.25", "worker_b": "4.0"}
    for worker, c in runs.items():
        ws = tmp_path / worker
        _run(["git", "clone", "-q", "-b", "main", str(origin), str(ws)], tmp_path, env)
        _run(["dvc", "pull"], ws, env)  # the baseline's outputs: only the changed stage runs
        change = f"+tabulars.meta_logreg.C={c}"
        _run(["dvc", "exp", "run", "--queue", "-n", worker, "-S", change, "tabular@meta_logreg"], ws, env)
        status = _queue_until_done(ws, env)
        assert "Failed" not in status, status
        _run(["dvc", "exp", "push", "origin", worker], ws, env)  # git refs to origin, outputs to the DVC remote
    lead = tmp_path / "lead"
    _run(["git", "clone", "-q", "-b", "main", str(origin), str(lead)], tmp_path, env)
    _run(["dvc", "exp", "pull", "origin", "--all-commits"], lead, env)
    shown = json.loads(run(["dvc", "exp", "show", "--json", "-A"], lead, env).stdout)
    found = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                found[rev.get("name") or exp.get("name")] = params.get("tabulars", {}).get("meta_logreg", {}).get("C")
    assert found == {worker: float(c) for worker, c in runs.items()}, found
    # and each experiment's outputs came with it: apply one, nothing to re-run for its stage
    _run(["dvc", "exp", "apply", "worker_b"], lead, env)
    _run(["dvc", "pull"], lead, env)
    out = _run(["dvc", "status", "tabular@meta_logreg"], lead, env)
    assert "changed" not in out, out


def test_second_repro_is_a_noop(tiny_repo):
    repo, ctx = tiny_repo
    out = _run(["dvc", "repro"], repo, ctx["env"])
    assert "Running stage" not in out
    assert "Data and pipelines are up to date" in out


def test_dvc_metrics_show_the_headline_of_every_row_readably(tiny_repo):
    repo, ctx = tiny_repo
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], repo, ctx["env"]))
    files = next(iter(shown.values()))["data"]
    p = ctx["params"]
    for v in [*p["variants"], *p["probes"], *p["finetunes"], *p["tabulars"], *p["ensembles"]]:
        data = files[f"results/synthetic/live/{v}/metrics.json"]["data"]
        assert (
            {"balanced_accuracy", "macro_auc", "malignant_auc", "ece"}
            <= set(data)
            <= {
                "balanced_accuracy",
                "macro_auc",
                "malignant_auc",
                "ece",
                "step",
            }
        )
    table = _run(["dvc", "metrics", "show"], repo, ctx["env"])
    assert max(len(line) for line in table.splitlines()) <= 200, table
    for v in p["variants"]:  # dvclive logged every epoch of the Keras loop
        curve = (repo / f"results/synthetic/live/{v}/plots/metrics/val/balanced_accuracy.tsv").read_text()
        history = (repo / f"results/synthetic/history/{v}.csv").read_text()
        assert len(curve.splitlines()) == len(history.splitlines())


@pytest.mark.parametrize(
    "stage, variant",
    [
        ("train", "cnn_batchnorm"),
        ("train_seed", "cnn_batchnorm-43"),  # a seed replicate: the same seed gives the same network again
        ("finetune", "lite0_partial"),
        ("tabular", "meta_gbm"),
        ("ensemble", "image_meta_stack"),
    ],
)
def test_retraining_reproduces_the_predictions_exactly(tiny_repo, stage, variant):
    repo, ctx = tiny_repo
    folder = "ensembles" if stage == "ensemble" else "variants"
    row = variant.replace("-", ".seed")  # train_seed@<row>-<seed> writes variants/<row>.seed<seed>
    pred = repo / f"results/synthetic/{folder}/{row}/predictions.csv"
    before = pred.read_bytes()
    _run(["dvc", "repro", "--force", "--single-item", f"{stage}@{variant}"], repo, ctx["env"])
    assert pred.read_bytes() == before


def test_changing_one_variant_reruns_only_it_and_compare(tiny_repo):
    repo, ctx = tiny_repo
    # a key the variant does not list yet is added with a leading "+" (as the README says)
    out = _run(["dvc", "exp", "run", "-S", "+variants.cnn_aug.learning_rate=0.002"], repo, ctx["env"])
    ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
    # ensembles and the Grad-CAM stage read the whole variants/ folder (DVC cannot take a params list as deps), so
    # they re-run too (explain re-explains every variant: one process for all is 3x cheaper cold);
    # check_params validates the changed params.yaml first, and its constant stamp re-runs nothing else
    ensembles = [f"ensemble@{e}" for e in ctx["params"]["ensembles"]]
    expected = ["check_params", "compare", "train@cnn_aug", "train_seed@cnn_aug-43", "explain", "site", *ensembles]
    assert ran == sorted(expected), out[-3000:]
    shown = _run(["make", "-s", "exps"], repo, {**ctx["env"], "COLUMNS": "400"})  # the README's view
    assert "variants.cnn_aug.learning_rate" in shown and "metrics.json:" in shown, shown
    assert max(len(line) for line in shown.splitlines()) <= 200, shown


def test_predict_reproduces_the_image_and_metadata_ensemble(tiny_repo, tmp_path):
    """`lesionlab predict <ensemble>` rebuilds every member (Keras CNN, PyTorch probe and fine-tunes with TTA,
    LightGBM on the CSV's metadata) and the fitted meta-learner: it must give the stage's own probabilities."""
    repo, ctx = tiny_repo
    stage = pd.read_csv(repo / "results/synthetic/ensembles/image_meta_stack/predictions.csv", dtype={"image_id": str})
    test_ids = stage.loc[stage["split"] == "test", "image_id"].head(8)
    table = pd.read_csv(repo / "results/synthetic/prepared/dataset.csv", dtype=str, keep_default_na=False)
    inputs = table[table["image_id"].isin(test_ids)][["image_id", "path", "label", "age", "sex", "site"]].copy()
    inputs["path"] = [str(repo / p) for p in inputs["path"]]
    inputs.to_csv(tmp_path / "inputs.csv", index=False)
    env = {**ctx["env"], "LESIONLAB_ROOT": str(repo)}
    out = _run(
        [
            sys.executable,
            "-m",
            "lesionlab",
            "predict",
            "image_meta_stack",
            str(tmp_path / "inputs.csv"),
            "--out",
            str(tmp_path / "pred.csv"),
        ],
        repo,
        env,
    )
    assert "after the validation temperature" in out and "uncertain" in out
    pred = pd.read_csv(tmp_path / "pred.csv", dtype={"image_id": str}).set_index("image_id")
    expected = stage.set_index("image_id").loc[pred.index]
    pcols = [c for c in stage.columns if c.startswith("p_")]
    assert len(pred) == 8 and pred["uncertain"].isin([True, False]).all() and pred["confidence"].between(0, 1).all()
    # float16 embedding cache vs float32 at predict time: tiny differences, the same decisions
    assert np.abs(pred[pcols].to_numpy() - expected[pcols].to_numpy()).max() < 0.02
    assert (pred[pcols].to_numpy().argmax(1) == expected[pcols].to_numpy().argmax(1)).all()
    # a folder has no metadata: the metadata member says what it needs instead of crashing
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(inputs["path"].iloc[0], folder / "a.jpg")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lesionlab",
            "predict",
            "image_meta_stack",
            str(folder),
            "--out",
            str(tmp_path / "f.csv"),
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "needs the column(s) ['age', 'sex', 'site']" in proc.stderr


def test_predict_reproduces_a_preprocessing_ablation(tiny_repo, tmp_path):
    """cnn_batch64_sog trained on colour-constant images: `lesionlab predict` must decode its inputs the same way
    (recorded in its training.json) and give the stage's own probabilities; its twin saw other pixels."""
    repo, ctx = tiny_repo
    record = json.loads((repo / "results/synthetic/variants/cnn_batch64_sog/training.json").read_text())
    assert record["preprocess"]["color_constancy"] == "shades_of_gray"
    stage = pd.read_csv(repo / "results/synthetic/variants/cnn_batch64_sog/predictions.csv", dtype={"image_id": str})
    test = stage[stage["split"] == "test"].head(6)
    table = pd.read_csv(repo / "results/synthetic/prepared/dataset.csv", dtype=str, keep_default_na=False)
    inputs = table[table["image_id"].isin(test["image_id"])][["image_id", "path"]].copy()
    inputs["path"] = [str(repo / p) for p in inputs["path"]]
    inputs.to_csv(tmp_path / "inputs.csv", index=False)
    env = {**ctx["env"], "LESIONLAB_ROOT": str(repo)}
    _run(
        [
            sys.executable,
            "-m",
            "lesionlab",
            "predict",
            "cnn_batch64_sog",
            str(tmp_path / "inputs.csv"),
            "--out",
            str(tmp_path / "pred.csv"),
        ],
        repo,
        env,
    )
    pred = pd.read_csv(tmp_path / "pred.csv", dtype={"image_id": str}).set_index("image_id")
    pcols = [c for c in stage.columns if c.startswith("p_")]
    assert np.abs(pred[pcols].to_numpy() - stage.set_index("image_id").loc[pred.index, pcols].to_numpy()).max() < 1e-5
    paired = pd.read_csv(repo / "reports/synthetic/paired.csv")
    assert {("cnn_batch64_sog", "cnn_batch64"), ("cnn_batch64_crop", "cnn_batch64")} <= set(
        zip(
            paired.loc[paired["comparison"] == "preprocessing", "a"],
            paired.loc[paired["comparison"] == "preprocessing", "b"],
        )
    )

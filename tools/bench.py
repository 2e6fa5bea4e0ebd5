"""``make bench`` (``python -m tools.bench``): what the pipeline costs on this machine, against its floors.

The benchmark never touches the working copy. It snapshots the checkout (tracked and untracked, not ignored
files, as they are on disk) into a scratch git repository with an empty DVC cache, then measures there:

- **cold**: ``dvc repro`` of the default pipeline from nothing (every stage, every model, every seed replicate);
  with ``--one-run`` also once with ``base.replicate_seeds: []`` (one training run per model: the configuration
  the speed targets were set for, before seed replicates), in its own cold copy first;
- **no-op**: ``dvc repro`` with nothing changed, against ``dvc status`` (DVC's own check: the floor);
- **one variant changed**: ``dvc exp run -S <variant param>=<new value>`` until the comparison report is
  rebuilt, against the variant's own training stage;
- **per-notebook overhead**: each notebook stage's wall time minus its cells' own time, plus its page's share of
  the site render (nbconvert), against papermill running an empty notebook (the floor);
- **image cache**: build throughput (decode + resize, every worker) against decoding alone; the fine-tune
  loader (memory-mapped cache + augmentation) against reading the memory map alone;
- **training**: images/s per model family and framework (per epoch) and the peak memory of each stage;
- **scale-out**: two queued experiments (``dvc exp run --queue`` + ``dvc queue start --jobs N``) with 1 and 2
  jobs.

Each figure is the median of ``repeats`` runs with min and max (the cold pipeline and the queue are run
``cold_repeats`` / once per setting, and say so). Results go to ``reports/bench.json`` and to the table between
the ``bench`` markers in docs/cost.md. Research and education only: the models are not for diagnosis.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from lesionlab.pipeline.timing import ENV as TIMINGS_ENV
from lesionlab.reporting import doctables

#: targets on the 2-core CPU, seconds: the cold pipeline with its seed replicates within 15 minutes (issue 20's
#: budget), with one run per model within 10 (issue 19's, set before the replicates existed)
TARGETS = {
    "noop_repro": 2.0,
    "notebook_overhead": 4.0,
    "variant_change_overhead": 15.0,
    "cold_pipeline": 900.0,
    "cold_pipeline_one_run": 600.0,
}
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


# --- summaries ---------------------------------------------------------------------------------------------------


def read_records(path: Path) -> list[dict]:
    """Every record of a timings file (``$LESIONLAB_TIMINGS``), in the order the commands ended."""
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def summarize(
    values, unit: str = "s", floor: float | None = None, target: float | None = None, higher_is_better: bool = False
) -> dict:
    """Median, min, max and n of ``values``; with a floor, the median's ratio to it; with a target, whether the
    median meets it."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"n": 0, "unit": unit}
    out = {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
        "unit": unit,
    }
    if floor:
        out["floor"] = round(float(floor), 3)
        out["ratio_to_floor"] = round(out["median"] / float(floor), 2)
    if target is not None:
        out["target"] = target
        value = out["median"]
        out["meets_target"] = bool(value >= target if higher_is_better else value <= target)
    return out


def _timed(cmd: list[str], cwd: Path, env: dict, log: Path | None = None, progress: str | None = None) -> float:
    """Run ``cmd``; returns its wall seconds. Output goes to ``log``; a failure raises with the log's tail."""
    started = time.perf_counter()
    with open(log, "ab") if log else open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        last = started
        while proc.poll() is None:
            time.sleep(0.05)
            if progress and time.perf_counter() - last > 30:
                last = time.perf_counter()
                print(f"[bench] {progress}: {last - started:.0f} s{_current_stage(log)}", flush=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log else ""
        raise RuntimeError(f"`{' '.join(cmd)}` failed in {cwd} (exit {proc.returncode}); log {log}:\n{tail}")
    return seconds


def _current_stage(log: Path | None) -> str:
    if not log or not log.is_file():
        return ""
    running = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("Running stage")]
    return f", {running[-1].split(chr(39))[1]}" if running and chr(39) in running[-1] else ""


# --- the scratch copy ----------------------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def source_commit(root: Path) -> str:
    """The checkout's short commit, ``-dirty`` when a tracked file is modified or an untracked one is not ignored
    (what :func:`snapshot` would copy on top of the commit)."""
    commit = _git(root, "rev-parse", "--short", "HEAD").strip()
    return commit + ("-dirty" if _git(root, "status", "--porcelain").strip() else "")


def snapshot(root: Path, scratch: Path) -> str:
    """A git repository at ``scratch`` holding the checkout's files as they are on disk (committed, modified and
    untracked-but-not-ignored), with no DVC cache; returns the source commit (``-dirty`` with local changes)."""
    _git(root, "clone", "-q", "--no-hardlinks", str(root), str(scratch))
    files = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, files):
        src, dst = root / name, scratch / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif dst.exists():
            dst.unlink()
    _git(scratch, "add", "-A")
    dirty = bool(_git(scratch, "status", "--porcelain").strip())
    if dirty:
        _git(
            scratch,
            "-c",
            "user.name=lesionlab-bench",
            "-c",
            "user.email=bench@localhost",
            "commit",
            "-qm",
            "bench snapshot of the working tree",
        )
    commit = _git(root, "rev-parse", "--short", "HEAD").strip()
    return commit + ("-dirty" if dirty else "")


def make_cold(scratch: Path, dataset: str) -> None:
    """No results, no pipeline outputs, no DVC cache (dvc.lock stays: it is what the run is compared with)."""
    for path in (
        scratch / "results" / dataset,
        scratch / "reports" / dataset,
        scratch / ".dvc" / "cache",
        scratch / ".dvc" / "tmp",
    ):
        shutil.rmtree(path, ignore_errors=True)


def one_run_params(text: str) -> str:
    """params.yaml's text with ``base.replicate_seeds`` set to ``[]`` (one training run per model), every other
    byte kept; a file without the key on one line is an error that names it."""
    import re

    pattern = re.compile(r"^(\s+replicate_seeds:[ \t]*)\[[^\]\n]*\]", re.MULTILINE)
    out, n = pattern.subn(r"\g<1>[]", text, count=1)
    if n != 1:
        raise ValueError("params.yaml: no `base.replicate_seeds: [...]` line to set to [] for the one-run cold run")
    return out


def repro_command(jobs: int) -> list[str]:
    """What the cold runs run: DVC's own ``dvc repro`` with ``jobs`` 1 (as a reproducer runs it), else
    ``lesionlab repro --jobs N``, what `make repro` runs (N = 2, the default here)."""
    return ["dvc", "repro"] if jobs <= 1 else [sys.executable, "-m", "lesionlab", "repro", "--jobs", str(jobs)]


def cold_repro(
    scratch: Path, dataset: str, logs: Path, name: str, progress: str, jobs: int = 1
) -> tuple[float, list[dict]]:
    """The pipeline from nothing (:func:`make_cold`), as ``repro_command(jobs)`` runs it: its wall seconds and
    every stage's timing record (``logs/<name>.jsonl``, output in ``logs/<name>.log``)."""
    make_cold(scratch, dataset)
    timings = logs / f"{name}.jsonl"
    env = bench_env(scratch, timings)
    seconds = _timed(repro_command(jobs), scratch, env, logs / f"{name}.log", progress=progress)
    return seconds, read_records(timings)


def cold_one_run(scratch: Path, dataset: str, logs: Path, jobs: int = 1) -> tuple[float, list[dict]]:
    """A cold ``dvc repro`` with ``base.replicate_seeds: []``; params.yaml and dvc.lock are put back after it."""
    params = scratch / "params.yaml"
    original = params.read_text()
    params.write_text(one_run_params(original))
    try:
        print("[bench] cold pipeline, one run per model (base.replicate_seeds: [])", flush=True)
        seconds, records = cold_repro(scratch, dataset, logs, "cold-one-run", "one run", jobs)
    finally:
        params.write_text(original)
        _git(scratch, "checkout", "--", "dvc.lock")
    print(f"[bench] cold pipeline, one run per model: {seconds:.0f} s", flush=True)
    return seconds, records


def bench_env(scratch: Path, timings: Path) -> dict:
    """The venv's tools first; the scratch copy's package shadows the editable install; timing records on."""
    env = dict(os.environ)
    venv_bin = Path(sys.executable).parent
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = (
        f"{scratch / 'src'}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(scratch / "src")
    )
    env[TIMINGS_ENV] = str(timings)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


#: leaderboard columns that are measurements of the machine (they vary run to run), not results
COST_COLUMNS = {"epochs", "best_epoch", "n_params", "train_seconds", "train_images_per_second"}


def reproduced(reference, run) -> dict:
    """Does the cold run reproduce the committed leaderboard? Compares every metric column (point estimates and
    CIs, as written: 4 decimals) row by row; training-cost columns are left out. Output files as a whole cannot
    be compared by hash: metrics and training records carry timings."""
    if reference is None or run is None:
        return {"compared": False}
    ref, new = reference.set_index("variant"), run.set_index("variant")
    rows = [v for v in ref.index if v in new.index]
    columns = [
        c
        for c in ref.columns
        if c in new.columns and c not in COST_COLUMNS and ref[c].dtype.kind in "fi" and new[c].dtype.kind in "fi"
    ]
    diff = (ref.loc[rows, columns] - new.loc[rows, columns]).abs()
    both_nan = ref.loc[rows, columns].isna() & new.loc[rows, columns].isna()
    diff = diff.mask(both_nan, 0.0).fillna(float("inf"))
    differ = [v for v in rows if (diff.loc[v] > 0).any()]
    return {
        "compared": True,
        "rows": len(rows),
        "columns": len(columns),
        "identical_rows": len(rows) - len(differ),
        "max_abs_difference": float(diff.to_numpy().max()) if len(rows) and columns else 0.0,
        "differ": differ,
        "missing_rows": [v for v in ref.index if v not in new.index],
    }


def _leaderboard(scratch: Path, dataset: str):
    import pandas as pd

    path = scratch / "reports" / dataset / "leaderboard.csv"
    return pd.read_csv(path) if path.is_file() else None


# --- floors and micro-benchmarks (run inside the scratch copy, in a fresh process each) ---------------------------

FLOOR_NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "empty", "metadata": {}, "outputs": [], "source": "pass"}
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}

PAPERMILL_FLOOR = """
import json, sys, papermill as pm
out = sys.argv[2]
pm.execute_notebook(sys.argv[1], out, kernel_name="python3", progress_bar=False)
nb = json.load(open(out))
print(json.dumps({"cells_seconds": sum(c["metadata"]["papermill"]["duration"] or 0 for c in nb["cells"])}))
"""


def notebook_floor(scratch: Path, env: dict, repeats: int) -> list[float]:
    """Wall seconds of a fresh process that runs a one-cell (``pass``) notebook through papermill, minus the cell."""
    folder = scratch / "bench-floor"
    folder.mkdir(exist_ok=True)
    nb = folder / "empty.ipynb"
    nb.write_text(json.dumps(FLOOR_NOTEBOOK))
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", PAPERMILL_FLOOR, str(nb), str(folder / "out.ipynb")],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        cells = json.loads(proc.stdout.strip().splitlines()[-1])["cells_seconds"]
        out.append(time.perf_counter() - started - cells)
    return out


MICRO = r"""
import json, sys, time
from pathlib import Path
import numpy as np
root, dataset, repeats = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
from lesionlab.config import load_params
from lesionlab.data.datasets import dataset_info, import_dataset
from lesionlab.data.prepare import build_image_cache, load_backbone_cache, load_prepared
from lesionlab.data.quality import load_image
params = load_params(root / "params.yaml")
info = dataset_info(dataset)
source = root / "results" / dataset / "prepared" / "source" if info.raw_dir is None else root / info.raw_dir
table = import_dataset(info, source)
out = {"n_images": len(table), "cache_build": [], "decode_only": [], "loader_augmented": [], "loader_mmap": []}
for _ in range(repeats):
    t = time.perf_counter()
    build_image_cache(table, params.prepare.image_size, workers=2, progress=False,
                      extra_size=params.prepare.backbone_image_size)
    out["cache_build"].append(len(table) / (time.perf_counter() - t))
    t = time.perf_counter()
    from PIL import Image
    for p in table["path"]:
        with Image.open(p) as im:
            im.load()
    out["decode_only"].append(len(table) / (time.perf_counter() - t))
import torch
from lesionlab.models import torch_train
data = load_prepared(root, dataset)
images = load_backbone_cache(root, dataset, data.table)
splits = __import__("pandas").read_csv(root / "results" / dataset / "splits.csv")
split_of = dict(zip(splits["image_id"], splits["split"]))
train = np.flatnonzero(data.table["image_id"].map(split_of).eq("train").to_numpy())
aug = params.augment
bs = params.finetune.batch_size
rng = np.random.default_rng(0)
for _ in range(repeats):
    for key, augment in (("loader_mmap", False), ("loader_augmented", True)):
        order = rng.permutation(train)
        t = time.perf_counter()
        for i in range(0, len(order), bs):
            batch = torch.from_numpy(np.asarray(images[np.sort(order[i:i + bs])]))
            if augment:
                batch = torch_train.augment_batch(batch, rng, aug.zoom, aug.brightness, aug.contrast)
        out[key].append(len(order) / (time.perf_counter() - t))
out["n_train"] = int(len(train))
out["batch_size"] = bs
print(json.dumps(out))
"""


def micro_benchmarks(scratch: Path, env: dict, dataset: str, repeats: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", MICRO, str(scratch), dataset, str(repeats)],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"image-cache / loader benchmark failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- reading a run's records ----------------------------------------------------------------------------------------


def family(stage: str, params) -> str:
    """The model family (and framework) of a stage, its seed replicates included, for throughput, memory and time."""
    from lesionlab.models.families import FAMILIES

    kind, _, name = stage.partition("@")
    name = re.sub(r"\.seed\d+$", "", name)  # a seed replicate (train@cnn_aug.seed43) belongs to its row's family
    for fam in FAMILIES.values():
        if kind in (fam.stage, fam.stage_name) and name in getattr(params, fam.section) and fam.describe:
            return fam.describe(params, name)
    if kind == "embed":
        return f"embedding (PyTorch, frozen, {params.prepare.backbone_image_size} px, 8 views per image)"
    return {
        "explain": "Grad-CAM",
        "compare": "comparison",
        "site": "report site",
        "prepare": "prepare (image cache)",
        "eda": "EDA",
        "split": "split",
    }.get(kind, kind)


def cold_split(scratch: Path, dataset: str, params, records: list[dict], total: float, jobs: int = 1) -> dict:
    """Where a cold run's time goes: per family, its stages, their wall time and the part of it the trainers
    report as training (``train_seconds`` of each run's metrics file: the epochs, validation included); the rest
    of a stage is its process start, imports, data loading, predictions and writing. ``between_stages``: the
    cold run's wall time outside every stage's own process (DVC's hashing and its dvc.lock rewrite per stage); with
    the model runs in ``jobs`` > 1 lanes the stages overlap, so it is not defined (``stage_seconds`` is their sum)."""
    families: dict[str, dict] = {}
    for r in records:
        name = r["stage"].partition("@")[2]  # a run's name: its metrics file (none for eda, compare, ...)
        metrics = scratch / "results" / dataset / "metrics" / f"{name}.json"
        train = json.loads(metrics.read_text()).get("train_seconds") if name and metrics.is_file() else None
        row = families.setdefault(family(r["stage"], params), {"stages": 0, "wall_seconds": 0.0, "train_seconds": 0.0})
        row["stages"] += 1
        row["wall_seconds"] = round(row["wall_seconds"] + r["wall_seconds"], 1)
        row["train_seconds"] = round(row["train_seconds"] + (train or 0.0), 1)
    inside = sum(r["wall_seconds"] for r in records)
    between = round(total - inside, 1) if jobs <= 1 else None
    return {
        "families": families,
        "between_stages_seconds": between,
        "stage_seconds": round(inside, 1),
        "lanes": jobs,
        "total_seconds": round(total, 1),
    }


def notebook_overheads(records: list[dict]) -> dict[str, float]:
    """Per notebook stage: process wall minus the cells' own time, plus the page's share of the site render."""
    site = next((r for r in records if r.get("stage") == "site" and r.get("pages")), None)
    per_page = site["render_seconds"] / site["pages"] if site else 0.0
    return {
        r["stage"]: r["wall_seconds"] - r["cells_seconds"] + per_page
        for r in records
        if r.get("cells_seconds") is not None
    }


def training_throughput(scratch: Path, dataset: str, params) -> dict[str, list[float]]:
    """Per family: images/s of every epoch of every variant (train split, one view per image per epoch)."""
    import pandas as pd

    results = scratch / "results" / dataset
    splits = pd.read_csv(results / "splits.csv")
    n_train = int((splits["split"] == "train").sum())
    out: dict[str, list[float]] = {}
    stages = [f"train@{v}" for v in params.variants] + [f"backbone@{v}" for v in [*params.probes, *params.finetunes]]
    for stage in stages:
        from lesionlab.models.record import read_record

        seconds = [s for s in read_record(results / "variants" / stage.split("@")[1]).epoch_seconds if s]
        out.setdefault(family(stage, params), []).extend(n_train / s for s in seconds)
    for name in params.tabulars:
        m = json.loads((results / "metrics" / f"{name}.json").read_text())
        if m.get("train_images_per_second"):
            out.setdefault(family(f"tabular@{name}", params), []).append(m["train_images_per_second"])
    for backbone in params.embed.backbones:
        e = json.loads((results / "embeddings" / backbone / "embed.json").read_text())
        out.setdefault(family(f"embed@{backbone}", params), []).append(e["images_per_second"] / e.get("views", 1))
    return out


def throughput_figures(scratch: Path, dataset: str, params) -> dict[str, dict]:
    """:func:`training_throughput` summarised per family (median, min, max, n)."""
    return {k: summarize(v, unit="images/s") for k, v in training_throughput(scratch, dataset, params).items()}


def peak_memory(records: list[dict], params) -> dict[str, list[float]]:
    """Per family: peak resident memory of each stage (the kernel's for notebook stages), MiB."""
    out: dict[str, list[float]] = {}
    for r in records:
        out.setdefault(family(r["stage"], params), []).append(max(r["peak_rss_mib"], r["children_peak_rss_mib"]))
    return out


# --- queue ------------------------------------------------------------------------------------------------------------


def _queue_idle(scratch: Path, env: dict) -> tuple[bool, str]:
    status = subprocess.run(["dvc", "queue", "status"], cwd=scratch, env=env, capture_output=True, text=True).stdout
    busy = any(word in status for word in ("Queued", "Running"))
    return not busy, status


def queue_run(scratch: Path, env: dict, jobs: int, changes: list[str], log: Path, timeout: float = 3600) -> dict:
    """Queue one experiment per ``-S`` change, run the queue with ``jobs`` workers; wall time until all finished."""
    for change in changes:
        _timed(["dvc", "exp", "run", "--queue", "-S", change], scratch, env, log)
    started = last = time.perf_counter()
    _timed(["dvc", "queue", "start", "--jobs", str(jobs)], scratch, env, log)
    while True:
        time.sleep(2)
        idle, status = _queue_idle(scratch, env)
        if idle:
            break
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"queue with {jobs} jobs still busy after {timeout:.0f} s:\n{status}")
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            print(f"[bench] queue, {jobs} job(s): {last - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    failed = status.count("Failed")
    if failed:
        raise RuntimeError(
            f"{failed} queued experiment(s) failed with {jobs} jobs; `dvc queue logs` in {scratch}:\n{status}"
        )
    return {"jobs": jobs, "experiments": len(changes), "seconds": round(seconds, 1), "changes": changes}


# --- the benchmark ------------------------------------------------------------------------------------------------


def _section(name: str, params) -> str:
    """The params.yaml section that defines a trainable variant."""
    for section in ("variants", "probes", "finetunes"):
        if name in getattr(params, section):
            return section
    raise ValueError(f"{name!r} is not a CNN variant, probe or fine-tune in params.yaml")


def _config(name: str, params):
    return params.variant(name) if _section(name, params) == "variants" else params.backbone_variant(name)


def run_bench(
    root: Path,
    repeats: int = 3,
    cold_repeats: int = 1,
    variant: str = "cnn_aug",
    queue: bool = True,
    workdir: Path | None = None,
    keep: bool = False,
    queue_variants: list[str] | None = None,
    one_run: bool = False,
    jobs: int = 1,
) -> dict:
    from lesionlab.config import load_params

    scratch = Path(workdir or tempfile.mkdtemp(prefix="lesionlab-bench-")) / "repo"
    if scratch.exists():
        raise FileExistsError(f"{scratch}: exists; pass an empty --workdir")
    logs = scratch.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"[bench] snapshot of {root} -> {scratch} (logs in {logs})", flush=True)
    commit = snapshot(root, scratch)
    params = load_params(scratch / "params.yaml")
    dataset = params.dataset
    reference = _leaderboard(scratch, dataset)  # the committed one, before the cold run replaces it
    result: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": commit,
        "dataset": dataset,
        "repeats": repeats,
        "cold_command": " ".join(repro_command(jobs)).replace(sys.executable, "python"),
        "machine": machine(),
    }
    figures: dict = {}

    if one_run:  # first: the cold run below leaves the workspace that the later figures need
        seconds, records = cold_one_run(scratch, dataset, logs, jobs)
        figures["cold_pipeline_one_run"] = summarize([seconds], target=TARGETS["cold_pipeline_one_run"])
        result["cold_one_run_stages"] = {r["stage"]: r["wall_seconds"] for r in records}
        # the first runs' throughput in this cold run too: on a shared VM two cold runs can differ (2026-12-06: CNN
        # epochs 1,538 vs 942 img/s median, minutes apart), so one figure alone can mislead
        result["training_images_per_second_one_run"] = throughput_figures(scratch, dataset, params)

    # cold
    cold, cold_records = [], []
    for i in range(cold_repeats):
        how = " ".join(repro_command(jobs)).replace(sys.executable, "python")
        print(f"[bench] cold pipeline {i + 1}/{cold_repeats} ({how}, empty cache)", flush=True)
        seconds, cold_records = cold_repro(scratch, dataset, logs, f"cold-{i + 1}", "cold pipeline", jobs)
        cold.append(seconds)
        print(f"[bench] cold pipeline {i + 1}: {cold[-1]:.0f} s", flush=True)
    figures["cold_pipeline"] = summarize(cold, target=TARGETS["cold_pipeline"])
    fresh = _leaderboard(scratch, dataset)
    if keep:  # the cold run's record, before the one-variant change below edits the scratch workspace
        kept = logs / "cold-result"
        shutil.copytree(scratch / "reports" / dataset, kept / "reports" / dataset)
        shutil.copy2(scratch / "dvc.lock", kept / "dvc.lock")
        for name in _git(scratch, "ls-files", f"results/{dataset}").splitlines():  # the git-tracked outputs
            if (scratch / name).is_file():  # (metrics, histories, dvclive logs: dvc.lock records their hashes)
                (kept / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(scratch / name, kept / name)
        print(f"[bench] the cold run's dvc.lock, reports/{dataset} and tracked results kept in {kept}", flush=True)
    result["reproduced"] = reproduced(reference, fresh)
    print(f"[bench] committed leaderboard reproduced: {result['reproduced']}", flush=True)
    if reference is not None and fresh is not None:  # the reproduction check anyone can run: `lesionlab verify`
        from lesionlab.evaluation import verify

        checked = verify.verify(reference, fresh)
        result["verify"] = verify.summary(checked)
        print(f"[bench] {verify.report(checked)}", flush=True)
    stage_wall = {r["stage"]: r["wall_seconds"] for r in cold_records}
    result["cold_stages"] = {
        r["stage"]: {
            k: r.get(k)
            for k in ("wall_seconds", "cells_seconds", "first_cell_seconds", "peak_rss_mib", "children_peak_rss_mib")
        }
        for r in cold_records
    }
    result["cold_by_family"] = {}
    for stage, seconds in stage_wall.items():
        fam = family(stage, params)
        result["cold_by_family"][fam] = round(result["cold_by_family"].get(fam, 0) + seconds, 1)
    result["cold_split"] = cold_split(scratch, dataset, params, cold_records, cold[-1], jobs)
    env = bench_env(scratch, logs / "noop.jsonl")

    # no-op
    status = [_timed(["dvc", "status"], scratch, env) for _ in range(repeats)]
    noop = [_timed(["dvc", "repro"], scratch, env) for _ in range(repeats)]
    figures["noop_repro"] = summarize(noop, floor=statistics.median(status), target=TARGETS["noop_repro"])
    figures["dvc_status"] = summarize(status)
    print(
        f"[bench] no-op dvc repro {figures['noop_repro']['median']} s (dvc status {figures['dvc_status']['median']} s)",
        flush=True,
    )
    if jobs > 1:  # what `make repro` runs, nothing changed: one status check in-process (lanes.repro)
        noop_lanes = [_timed(repro_command(jobs), scratch, env) for _ in range(repeats)]
        figures["noop_lanes"] = summarize(noop_lanes, floor=statistics.median(status), target=TARGETS["noop_repro"])
        print(f"[bench] no-op lesionlab repro --jobs {jobs}: {figures['noop_lanes']['median']} s", flush=True)

    # per-notebook overhead
    overhead = notebook_overheads(cold_records)
    floor = notebook_floor(scratch, env, repeats)
    figures["notebook_floor"] = summarize(floor)
    figures["notebook_overhead"] = summarize(
        overhead.values(), floor=statistics.median(floor), target=TARGETS["notebook_overhead"]
    )
    result["notebook_overhead_by_stage"] = {k: round(v, 2) for k, v in sorted(overhead.items())}
    site = next((r for r in cold_records if r.get("stage") == "site"), None)
    if site and site.get("pages"):
        figures["nbconvert_per_page"] = summarize([site["render_seconds"] / site["pages"]])

    # one variant changed
    param = f"variants.{variant}.dropout"
    base = params.variant(variant).dropout
    totals, trainings = [], []
    for i in range(repeats):
        timings = logs / f"variant-{i + 1}.jsonl"
        env = bench_env(scratch, timings)
        value = round(base + 0.01 * (i + 1), 4)
        print(f"[bench] one variant changed {i + 1}/{repeats}: dvc exp run -S {param}={value}", flush=True)
        totals.append(
            _timed(
                ["dvc", "exp", "run", "-S", f"++{param}={value}"],
                scratch,
                env,
                logs / f"variant-{i + 1}.log",
                progress="one-variant change",
            )
        )
        recs = {r["stage"]: r["wall_seconds"] for r in read_records(timings)}
        trainings.append(variant_training_seconds(recs, params.replicates(variant)))
        result.setdefault("variant_change_stages", []).append({k: round(v, 1) for k, v in recs.items()})
    over = [t - s for t, s in zip(totals, trainings) if s is not None]
    figures["variant_change"] = summarize(totals)
    figures["variant_training"] = summarize(trainings)
    figures["variant_change_overhead"] = summarize(over, target=TARGETS["variant_change_overhead"])
    result["variant_change_param"] = param

    # image cache and loader
    micro = micro_benchmarks(scratch, env, dataset, repeats)
    figures["cache_build"] = summarize(
        micro["cache_build"], unit="images/s", floor=statistics.median(micro["decode_only"])
    )
    figures["jpeg_decode_only"] = summarize(micro["decode_only"], unit="images/s")
    figures["loader_augmented"] = summarize(
        micro["loader_augmented"], unit="images/s", floor=statistics.median(micro["loader_mmap"])
    )
    figures["loader_mmap"] = summarize(micro["loader_mmap"], unit="images/s")
    result["image_cache"] = {
        "n_images": micro["n_images"],
        "n_train": micro["n_train"],
        "batch_size": micro["batch_size"],
    }

    # training throughput and memory
    result["training_images_per_second"] = throughput_figures(scratch, dataset, params)
    result["peak_memory_mib"] = {k: summarize(v, unit="MiB") for k, v in peak_memory(cold_records, params).items()}

    # scale-out
    if queue:
        env = bench_env(scratch, logs / "queue.jsonl")
        picks = queue_variants or list(params.probes)[:2]
        runs = []
        for jobs, bump in ((1, 0.05), (2, 0.06)):
            changes = [
                f"++{_section(v, params)}.{v}.dropout={round(_config(v, params).dropout + bump, 4)}" for v in picks
            ]
            print(f"[bench] queue: {len(changes)} experiments, --jobs {jobs}", flush=True)
            runs.append(queue_run(scratch, env, jobs, changes, logs / f"queue-{jobs}.log"))
        result["queue"] = {"runs": runs, "speedup_2_jobs": round(runs[0]["seconds"] / runs[1]["seconds"], 2)}
    result["figures"] = figures
    if not keep:
        shutil.rmtree(scratch.parent, ignore_errors=True)
    else:
        result["workdir"] = str(scratch.parent)
    return result


def variant_training_seconds(records: dict[str, float], runs: list[str]) -> float | None:
    """Wall seconds of every training run of one variant (its first run and each seed replicate, ``train@<run>``)
    among a run's stage records; None unless every run was retrained."""
    seconds = [records.get(f"train@{run}") for run in runs]
    return None if None in seconds else round(sum(seconds), 3)


def machine() -> dict:
    import multiprocessing

    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a broken CUDA install is "no GPU" here
        gpu = None
    return {
        "cpus": multiprocessing.cpu_count(),
        "memory_gib": memory,
        "gpu": gpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# --- the docs/cost.md table ----------------------------------------------------------------------------------

ROWS = [
    ("cold_pipeline", "default pipeline, cold (`{command}`, empty cache)"),
    ("cold_pipeline_one_run", "… with one run per model (`base.replicate_seeds: []`)"),
    ("noop_repro", "`dvc repro`, nothing changed"),
    ("noop_lanes", "`{command}`, nothing changed"),
    ("variant_change", "one variant's parameter changed → comparison rebuilt"),
    ("variant_change_overhead", "… of which not the variant's training runs (every seed)"),
    ("notebook_overhead", "per-notebook overhead (process + papermill + kernel + nbconvert)"),
    ("cache_build", "image cache build (decode + 2 sizes, 2 workers)"),
    ("loader_augmented", "fine-tune loader (memory map + augmentation)"),
]


def _fmt(x: float, unit: str) -> str:
    return f"{x:,.0f}" if unit == "images/s" or x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def markdown_table(bench: dict) -> str:
    """The table of docs/cost.md: median [min–max] (n), the floor and ratio, the target and whether it is met."""
    figures = bench["figures"]
    lines = ["| measure | median [min–max] (runs) | floor → ratio | target |", "|---|---|---|---|"]
    for key, label in ROWS:
        f = figures.get(key)
        if not f or not f.get("n"):
            continue
        unit = f["unit"]
        label = label.format(command=doctables.cold_command(bench))
        cell = f"{_fmt(f['median'], unit)} {unit} [{_fmt(f['min'], unit)}–{_fmt(f['max'], unit)}] ({f['n']})"
        floor = f"{_fmt(f['floor'], unit)} {unit} → ×{f['ratio_to_floor']}" if "floor" in f else "–"
        target = f"≤ {f['target']:g} s: {'met' if f['meets_target'] else '**not met**'}" if "target" in f else "–"
        lines.append(f"| {label} | {cell} | {floor} | {target} |")
    for name, f in bench.get("training_images_per_second", {}).items():
        if f.get("n"):
            mem = bench.get("peak_memory_mib", {}).get(name, {})
            memory = f", peak {mem['max']:,.0f} MiB" if mem.get("n") else ""
            lines.append(
                f"| training: {name} | {_fmt(f['median'], 'images/s')} images/s [{_fmt(f['min'], 'images/s')}–"
                f"{_fmt(f['max'], 'images/s')}] ({f['n']}){memory} | – | – |"
            )
    if bench.get("queue"):
        q = bench["queue"]
        runs = ", ".join(f"{r['jobs']} job(s) {r['seconds']:.0f} s" for r in q["runs"])
        lines.append(
            f"| {q['runs'][0]['experiments']} queued experiments (`dvc queue start --jobs N`) | {runs} "
            f"(1 run each) | – | ×{q['speedup_2_jobs']} with 2 jobs |"
        )
    m = bench["machine"]
    lines.append("")
    lines.append(
        "Training rows: images/s of every epoch of every variant of the family (train split, validation "
        "included; n = epochs), or one figure per stage (metadata, embedding); peak = the largest resident "
        "memory of the family's stages. The cold run is one run; the queue one run per setting."
    )
    if bench.get("cold_command"):
        lines.append(f"The cold runs ran `{bench['cold_command']}`.")
    rp = bench.get("reproduced", {})
    if rp.get("compared"):
        lines.append(
            f"The cold run reproduced the committed leaderboard in {rp['identical_rows']} of {rp['rows']} rows "
            f"({rp['columns']} metric columns, CIs included; largest difference {rp['max_abs_difference']:.4f})."
        )
    vf = bench.get("verify")
    if vf:
        lines.append(
            f"`lesionlab verify`: {vf['inside']} of {vf['checked']} values of the fresh run inside their committed CI"
            + (f"; outside: {', '.join(vf['outside'])}" if vf["outside"] else "")
            + (f"; missing rows: {', '.join(vf['missing'])}" if vf["missing"] else "")
            + "."
        )
    lines.append("")
    lines.append(
        f"Measured {bench['date']} on {m['cpus']} CPUs, {m['memory_gib']} GiB, GPU: {m['gpu'] or 'none'}; "
        f"dataset `{bench['dataset']}`, commit `{bench['git_commit']}`. Full figures: `reports/bench.json`."
    )
    return "\n".join(lines)


def update_readme(readme: Path, table: str, start: str = README_START, end: str = README_END) -> None:
    """Replace the text between the ``start`` and ``end`` markers (which must exist) with ``table``."""
    text = readme.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{readme}: no {start} ... {end} markers to put the benchmark table between")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="measure the pipeline's cost in a scratch "
        "copy (cold run, no-op, one-variant change, notebook overhead, cache/loader/training "
        "throughput, queue) -> reports/bench.json + the table in docs/cost.md",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per figure (median, min, max); default 3")
    p.add_argument(
        "--cold-repeats", type=int, default=1, help="cold pipeline runs (each is the whole pipeline); default 1"
    )
    p.add_argument("--variant", default="cnn_aug", help="the variant whose dropout the one-variant change edits")
    p.add_argument("--no-queue", action="store_true", help="skip the 1-vs-2-jobs `dvc queue` measurement")
    p.add_argument(
        "--queue-variants",
        nargs="+",
        default=None,
        help="the two (or more) variants changed in the queued experiments (default: the first two probes)",
    )
    p.add_argument("--workdir", default=None, help="an empty folder for the scratch copy (default: a temp folder)")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the scratch copy and its logs, and the cold run's dvc.lock, report and git-tracked results "
        "in logs/cold-result/",
    )
    p.add_argument(
        "--one-run",
        action="store_true",
        help="also time a cold pipeline with base.replicate_seeds: [] (one training run per model; ~12 min)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="lanes of the cold runs (`lesionlab repro --jobs N`: the CNN runs side by side); default 2, what "
        "`make repro` runs; 1 = plain `dvc repro`",
    )
    p.add_argument("--out", default="reports/bench.json")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite the benchmark table in docs/cost.md")
    args = p.parse_args(argv)

    from lesionlab.config import find_project_root

    root = find_project_root()
    result = run_bench(
        root,
        repeats=args.repeats,
        cold_repeats=args.cold_repeats,
        variant=args.variant,
        queue=not args.no_queue,
        workdir=Path(args.workdir) if args.workdir else None,
        keep=args.keep,
        queue_variants=args.queue_variants,
        one_run=args.one_run,
        jobs=args.jobs,
    )
    out = root / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown_table(result)
    if not args.no_docs:
        update_readme(root / "docs" / "cost.md", table)
        doctables.update(root)  # the generated before/after tables that read reports/bench.json (README, cost.md)
    print(table)
    print(f"[bench] wrote {out}" + ("" if args.no_docs else " and the tables in docs/cost.md and README.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

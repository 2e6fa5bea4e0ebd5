"""``make gpu-check`` (``python -m tools.gpu_check``): does every neural family run on the GPU? (a few minutes)

In a scratch copy of the checkout (:func:`tools.bench.snapshot`: the working copy is never touched) it shrinks
params.yaml to a tiny config (80 synthetic lesions, 1-2 epochs), puts Keras on its torch backend
(``compute.keras_backend: torch``, so one CUDA build of PyTorch serves every stage), runs ``dvc repro`` of one
row per neural family (the CNN ladder's ``cnn_baseline``, ``embed@efficientnet_lite0``, a linear probe, a partial
fine-tune) and reads back where each ran (``training.json`` / ``embed.json``: ``compute``). It fails unless every
one ran on ``cuda``. ``--expect cpu`` runs the same check on a machine without a GPU (the test suite does).
The figures go to ``--out`` (default ``gpu-check.json``). Research and education only: not for diagnosis.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lesionlab.config import prune_parents
from tools.bench import bench_env, snapshot

#: one row per neural family, and the DVC stages that train them
TARGETS = ["train@cnn_baseline", "embed@efficientnet_lite0", "probe@lite0_probe", "finetune@lite0_partial"]


def tiny_params(raw: dict) -> dict:
    """params.yaml shrunk to seconds per stage, the rows of :data:`TARGETS` kept, Keras on PyTorch."""
    raw = dict(raw)
    raw["compute"] = {**raw.get("compute", {}), "device": "auto", "keras_backend": "torch"}
    raw["synthetic"] = {**raw["synthetic"], "n_lesions": 80, "width": 64, "height": 48}
    raw["prepare"] = {**raw["prepare"], "image_size": 32, "backbone_image_size": 64}
    raw["train"] = {**raw["train"], "epochs": 2}
    raw["variants"] = {"cnn_baseline": raw["variants"]["cnn_baseline"]}
    raw["embed"] = {**raw["embed"], "backbones": ["efficientnet_lite0"]}
    raw["probes"] = {"lite0_probe": {**raw["probes"]["lite0_probe"], "epochs": 2}}
    raw["finetunes"] = {"lite0_partial": {**raw["finetunes"]["lite0_partial"], "epochs": 1}}
    raw["ensembles"], raw["external"] = {}, []
    raw["explain"] = {**raw["explain"], "variants": []}
    raw["compare"] = {**raw["compare"], "pairs": []}
    raw["base"] = {**raw["base"], "replicate_seeds": []}  # one run per row: the check is where each family ran
    return prune_parents(raw)


def where_it_ran(scratch: Path, dataset: str) -> dict[str, dict]:
    """stage -> the ``compute`` record it wrote."""
    results = scratch / "results" / dataset
    out = {}
    for stage in TARGETS:
        kind, name = stage.split("@")
        path = results / ("embeddings" if kind == "embed" else "variants") / name
        path = path / ("embed.json" if kind == "embed" else "training.json")
        record = json.loads(path.read_text()) if path.is_file() else {}
        out[stage] = record.get("compute") or {"device": record.get("device", "missing")}
    return out


def run_check(root: Path, expect: str, workdir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="lesionlab-gpu-check-", dir=workdir) as tmp:
        scratch = Path(tmp) / "repo"
        commit = snapshot(root, scratch)
        params_file = scratch / "params.yaml"
        raw = tiny_params(yaml.safe_load(params_file.read_text()))
        params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        env = bench_env(scratch, Path(tmp) / "timings.jsonl")
        env["LESIONLAB_OFFLINE"] = "1"
        started = time.perf_counter()
        log = Path(tmp) / "repro.log"
        with log.open("w") as handle:  # the targets and the stages they need (check_params, prepare, split)
            proc = subprocess.run(
                ["dvc", "repro", *TARGETS], cwd=scratch, env=env, stdout=handle, stderr=subprocess.STDOUT
            )
        seconds = time.perf_counter() - started
        ran = where_it_ran(scratch, raw["dataset"])
        failed = {stage: c.get("device") for stage, c in ran.items() if not str(c.get("device", "")).startswith(expect)}
        if proc.returncode != 0:
            failed["dvc repro"] = f"exit {proc.returncode}: " + log.read_text()[-3000:]
        import torch

        return {
            "commit": commit,
            "expect": expect,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__,
            "seconds": round(seconds, 1),
            "stages": ran,
            "failed": failed,
            "ok": not failed,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--expect", default="cuda", choices=["cuda", "cpu"], help="the device every stage must use")
    p.add_argument("--out", default="gpu-check.json")
    p.add_argument("--workdir", default=None, help="folder for the scratch copy (default: a temp folder)")
    args = p.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    result = run_check(root, args.expect, Path(args.workdir) if args.workdir else None)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for stage, c in result["stages"].items():
        print(f"{stage:28s} {c.get('device', '?'):6s} {c.get('precision', ''):9s} keras: {c.get('keras_backend', '')}")
    verdict = "every family ran on " + args.expect if result["ok"] else f"FAILED: {result['failed']}"
    print(f"gpu-check ({result['seconds']} s, {result['gpu'] or 'no GPU'}): {verdict}", flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

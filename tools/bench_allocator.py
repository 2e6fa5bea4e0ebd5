"""``make bench-allocator`` (``python -m tools.bench_allocator``): what keeping freed memory buys, measured.

Every PyTorch and Keras run tells glibc's malloc to keep the memory it frees (``lesionlab.models.compute``,
**memory**); ``LESIONLAB_MALLOC=system`` keeps glibc's defaults. This runs the same training stages with both,
alternating (system, keep, system, keep, ...) so that a drift of the machine's speed falls on both, in a scratch
snapshot of the checkout (``tools.bench.snapshot``; the working copy is not touched) after ``dvc repro split``
has prepared the data there. Per run it records the stage's wall time, its peak resident memory (the child's
own ``wait4`` rusage), the sum of its epoch seconds and images/s (``training.json``) and its test metrics, which
must be the same for both allocators (the allocator changes where tensors live, not what is computed).

Results go to ``reports/bench-allocator.json`` and to the table between the ``allocator`` markers in
docs/cost.md. Research and education only: the models are not for diagnosis.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tools.bench import bench_env, machine, snapshot, update_readme

DOCS_START, DOCS_END = "<!-- allocator:start -->", "<!-- allocator:end -->"
#: the stages measured by default: the full fine-tune (where it matters most) and a Keras CNN
DEFAULT_STAGES = ("backbone:lite0_full", "train:cnn_batchnorm")
ALLOCATORS = ("system", "keep")
#: metric keys that must not depend on the allocator
SAME = ("balanced_accuracy", "macro_auc", "accuracy")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_stage(scratch: Path, env: dict, stage: str, variant: str, allocator: str, dataset: str) -> dict:
    """One training stage in a fresh process with ``LESIONLAB_MALLOC=allocator``: its costs and metrics."""
    log = scratch / "bench-allocator" / f"{stage}@{variant}.{allocator}.log"
    log.parent.mkdir(exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lesionlab", "run", stage, "--variant", variant],
            cwd=scratch,
            env={**env, "LESIONLAB_MALLOC": allocator},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{stage}@{variant} with LESIONLAB_MALLOC={allocator} failed; see {log}")
    results = scratch / "results" / dataset
    record = json.loads((results / "variants" / variant / "training.json").read_text())
    metrics = json.loads((results / "metrics" / f"{variant}.json").read_text())
    import pandas as pd

    n_train = int((pd.read_csv(results / "splits.csv")["split"] == "train").sum())
    epochs = [s for s in record["epoch_seconds"] if s]
    return {
        "stage": f"{stage}@{variant}",
        "allocator": allocator,
        "memory": record["compute"].get("memory", ""),
        "wall_seconds": round(wall, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "epoch_seconds": round(sum(epochs), 2),
        "epochs": len(epochs),
        "images_per_second": round(n_train * len(epochs) / sum(epochs), 1),
        "metrics": {k: metrics[k] for k in SAME if k in metrics},
    }


def summarize(runs: list[dict]) -> list[dict]:
    """Per stage: the median of each allocator's runs, keep's speed-up over system and whether the metrics held."""
    rows = []
    for stage in dict.fromkeys(r["stage"] for r in runs):
        by = {a: [r for r in runs if r["stage"] == stage and r["allocator"] == a] for a in ALLOCATORS}
        med = {
            a: {k: statistics.median(r[k] for r in rs) for k in ("wall_seconds", "epoch_seconds", "peak_rss_mib")}
            for a, rs in by.items()
        }
        ips = {a: [r["images_per_second"] for r in rs] for a, rs in by.items()}
        rows.append(
            {
                "stage": stage,
                "runs_per_allocator": len(by["keep"]),
                "images_per_second": {a: [min(v), statistics.median(v), max(v)] for a, v in ips.items()},
                "median": med,
                "epoch_speedup": round(med["system"]["epoch_seconds"] / med["keep"]["epoch_seconds"], 3),
                "wall_speedup": round(med["system"]["wall_seconds"] / med["keep"]["wall_seconds"], 3),
                "peak_rss_change": round(med["keep"]["peak_rss_mib"] / med["system"]["peak_rss_mib"] - 1, 3),
                "same_metrics": len({json.dumps(r["metrics"], sort_keys=True) for r in by["system"] + by["keep"]}) == 1,
            }
        )
    return rows


def markdown_table(bench: dict) -> str:
    lines = [
        f"Measured {bench['date'][:10]} at `{bench['git_commit']}` on {bench['cpu']} "
        f"({bench['machine']['cpus']} cores), {bench['runs_per_allocator']} alternating runs per allocator, "
        "median (min–max images/s); `reports/bench-allocator.json`:",
        "",
        "| stage | images/s, glibc defaults | images/s, freed memory kept | epochs faster | wall faster "
        "| peak memory | same metrics |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in bench["stages"]:
        s, k = row["images_per_second"]["system"], row["images_per_second"]["keep"]
        lines.append(
            f"| `{row['stage']}` | {s[1]:.0f} ({s[0]:.0f}–{s[2]:.0f}) | {k[1]:.0f} ({k[0]:.0f}–{k[2]:.0f}) "
            f"| ×{row['epoch_speedup']:.2f} | ×{row['wall_speedup']:.2f} | {row['peak_rss_change']:+.0%} "
            f"| {'yes' if row['same_metrics'] else '**no**'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m tools.bench_allocator",
        description="Training stages with glibc's malloc defaults and with freed memory kept, alternating.",
    )
    p.add_argument("--repeats", type=int, default=2, help="runs per allocator and stage (default 2)")
    p.add_argument(
        "--stage",
        action="append",
        default=None,
        metavar="STAGE:VARIANT",
        help=f"a training stage to measure (repeatable; default {', '.join(DEFAULT_STAGES)})",
    )
    p.add_argument("--workdir", default=None, help="an empty folder for the scratch copy (default: a temp folder)")
    p.add_argument("--out", default="reports/bench-allocator.json")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite the table in docs/cost.md")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    stages = [s.split(":", 1) for s in (args.stage or DEFAULT_STAGES)]
    for s in stages:
        if len(s) != 2 or s[0] not in ("train", "backbone"):
            p.error(f"--stage {':'.join(s)!r}: use train:<variant> or backbone:<variant>")

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "src"))
    from lesionlab.config import load_params

    dataset = load_params(root / "params.yaml").dataset
    scratch = Path(args.workdir or tempfile.mkdtemp(prefix="lesionlab-bench-allocator-")) / "repo"
    commit = snapshot(root, scratch)
    env = bench_env(scratch, scratch / "bench-allocator-timings")
    print(f"[bench-allocator] {scratch}: dvc repro split (prepared data and splits)", flush=True)
    subprocess.run(["dvc", "repro", "split"], cwd=scratch, env=env, check=True, capture_output=True)
    runs = []
    for i in range(args.repeats):
        for allocator in ALLOCATORS:
            for stage, variant in stages:
                run = run_stage(scratch, env, stage, variant, allocator, dataset)
                runs.append(run)
                print(
                    f"[bench-allocator] {i + 1}/{args.repeats} {run['stage']} {allocator}: "
                    f"{run['images_per_second']} img/s, {run['wall_seconds']} s, {run['peak_rss_mib']} MiB",
                    flush=True,
                )
    bench = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "dataset": dataset,
        "machine": machine(),
        "cpu": cpu_name(),
        "runs_per_allocator": args.repeats,
        "stages": summarize(runs),
        "runs": runs,
    }
    out = root / args.out
    out.write_text(json.dumps(bench, indent=2) + "\n")
    table = markdown_table(bench)
    print(table)
    if not args.no_docs:
        update_readme(root / "docs" / "cost.md", table, DOCS_START, DOCS_END)
    return 0 if all(row["same_metrics"] for row in bench["stages"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())

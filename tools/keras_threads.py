"""How the Keras CNN's training throughput depends on TensorFlow's thread pools on this CPU.

    .venv/bin/python -m tools.keras_threads            # writes reports/keras-threads.json
    .venv/bin/python -m tools.keras_threads --epochs 8 --repeats 1 --out /tmp/kt.json

Each setting trains the project's BatchNorm CNN (``keras_cnn.build_cnn``, the ladder's cnn_batchnorm
configuration) on random 48 px images the size of the synthetic train split, in a fresh process per run, and
records every epoch's time. The settings, each fed the training arrays as ``model.fit`` takes them (Keras'
array adapter): TensorFlow's default pools; intra-op x inter-op threads fixed at 1x1, 2x1, 1x2 and 2x2; two 1x1
trainings at once, whose combined images/s is what a pipeline running two seed replicates side by side would
get. Then ``pipeline``: default pools, fed by the project's own tf.data pipeline
(``keras_common.training_batches``: one private tf.data thread, no autotuning), which is what the ladder's
training stages use. The first epoch (graph tracing) is left out of the figures. This is
a measurement for the design of the training stages, not a test: nothing here changes what the pipeline does.
The summary table is written between the ``keras-threads`` markers of docs/cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tools.bench import machine, source_commit, update_readme
from tools.bench_allocator import cpu_name

ROOT = Path(__file__).resolve().parents[1]
DOCS_START, DOCS_END = "<!-- keras-threads:start -->", "<!-- keras-threads:end -->"
N_TRAIN = 905  # images in the synthetic default's train split
#: setting -> (TensorFlow intra-op x inter-op threads or None for its default, what fit is fed)
SETTINGS = {
    "default": (None, "arrays"),
    "1x1": ((1, 1), "arrays"),
    "2x1": ((2, 1), "arrays"),
    "1x2": ((1, 2), "arrays"),
    "2x2": ((2, 2), "arrays"),
    "pipeline": (None, "pipeline"),
}


def worker(threads: tuple[int, int] | None, feed: str, epochs: int, seed: int) -> dict:
    """Train once in this process; the epoch times in seconds."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from lesionlab.config import AugmentParams
    from lesionlab.models import keras_cnn
    from lesionlab.models.families.cnn import TrainParams
    from lesionlab.models.keras_common import load_keras, training_batches

    keras = load_keras(seed)
    import tensorflow as tf

    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(threads[1])
    cfg = TrainParams(batchnorm=True, augment=True, class_weights=True)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (N_TRAIN, 48, 48, 3), dtype=np.uint8)
    y = rng.integers(0, 7, N_TRAIN)
    model = keras_cnn.build_cnn(cfg, AugmentParams(), 48, 7, seed)
    times: list[float] = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    if feed == "pipeline":
        batches = training_batches(x, y, cfg.batch_size, seed)
        model.fit(batches, epochs=epochs, shuffle=False, verbose=0, callbacks=[EpochClock()])
    else:
        model.fit(x, y, batch_size=cfg.batch_size, epochs=epochs, verbose=0, shuffle=True, callbacks=[EpochClock()])
    return {"epoch_seconds": [round(t, 4) for t in times]}


def _launch(setting: str, epochs: int, seed: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    cmd = [sys.executable, "-m", "tools.keras_threads", "--worker", setting, "--epochs", str(epochs)]
    cmd += ["--seed", str(seed)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def _collect(proc: subprocess.Popen, setting: str) -> dict:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"keras_threads: the {setting} worker failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def summarize(runs: list[dict], concurrent: int = 1) -> dict:
    """Images/s of the epochs after the first: per process (median epoch), and of all processes together.

    ``runs`` are the workers' records; with ``concurrent`` processes at once, the combined figure is the sum of
    their images over the longest one's time, repeat by repeat."""
    steady = [t for run in runs for t in run["epoch_seconds"][1:]]
    if not steady:
        raise ValueError("keras_threads: every run needs at least two epochs")
    per_process = N_TRAIN / statistics.median(steady)
    combined = []
    for i in range(0, len(runs), concurrent):
        group = runs[i : i + concurrent]
        images = sum(N_TRAIN * (len(r["epoch_seconds"]) - 1) for r in group)
        combined.append(images / max(sum(r["epoch_seconds"][1:]) for r in group))
    return {
        "processes_at_once": concurrent,
        "images_per_second_per_process_median": round(per_process, 1),
        "epoch_seconds_min": round(min(steady), 3),
        "epoch_seconds_max": round(max(steady), 3),
        "images_per_second_combined_median": round(statistics.median(combined), 1),
        "runs": runs,
    }


def markdown_table(record: dict) -> str:
    lines = [
        f"Measured {record['date'][:10]} at `{record['git_commit']}` on {record['cpu']} "
        f"({record['machine']['cpus']} cores), {record['repeats']} runs per setting of {record['epochs']} epochs, "
        "first epoch left out; `reports/keras-threads.json`:",
        "",
        "| fit fed | TensorFlow threads (intra-op × inter-op) | processes at once "
        "| images/s per process (median epoch) | epoch time min–max | images/s, all processes together |",
        "|---|---|---|---|---|---|",
    ]
    feeds = {"arrays": "the arrays (Keras' adapter)", "pipeline": "tf.data pipeline (`training_batches`)"}
    for name, s in record["settings"].items():
        threads, feed = SETTINGS.get(name, ((1, 1), "arrays"))  # two_1x1_at_once: two 1x1 runs on the arrays
        label = "TensorFlow's default" if threads is None else f"{threads[0]}×{threads[1]}"
        lines.append(
            f"| {feeds[feed]} | {label} | {s['processes_at_once']} | {s['images_per_second_per_process_median']:,.0f} "
            f"| {s['epoch_seconds_min']:.2f}–{s['epoch_seconds_max']:.2f} s "
            f"| {s['images_per_second_combined_median']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "keras-threads.json")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite the table in docs/cost.md")
    ap.add_argument("--worker", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be at least 2 (the first epoch is tracing and is left out)")
    if args.worker:
        print(json.dumps(worker(*SETTINGS[args.worker], args.epochs, args.seed)))
        return 0
    results = {}
    for setting in SETTINGS:
        runs = []
        for r in range(args.repeats):
            print(f"[keras_threads] {setting}, run {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
            runs.append(_collect(_launch(setting, args.epochs, args.seed + r), setting))
        results[setting] = summarize(runs)
    runs = []
    for r in range(args.repeats):
        print(f"[keras_threads] two 1x1 at once, run {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
        procs = [_launch("1x1", args.epochs, args.seed + 2 * r + k) for k in range(2)]
        runs.extend(_collect(p, "1x1 (two at once)") for p in procs)
    results["two_1x1_at_once"] = summarize(runs, concurrent=2)
    record = {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "git_commit": source_commit(ROOT),
        "machine": machine(),
        "cpu": cpu_name(),
        "model": "keras_cnn.build_cnn, cnn_batchnorm configuration, 48 px, batch 32, random images",
        "epochs": args.epochs,
        "repeats": args.repeats,
        "settings": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    table = markdown_table(record)
    print(table)
    if not args.no_docs:
        update_readme(ROOT / "docs" / "cost.md", table, DOCS_START, DOCS_END)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `lesionlab.pipeline.dvcfast` saves per DVC command on this machine, DVC alone against it, interleaved.

    .venv/bin/python -m tools.bench_dvcfast --workspace /tmp/bench/repo   # -> reports/dvcfast.json + docs/cost.md

``--workspace`` is a workspace where the whole pipeline has run (``make bench BENCH_ARGS=--keep`` leaves one,
``<workdir>/repo``): its dvc.lock is the size a real run rewrites. Each measure runs the same DVC command there
the two ways in turn, ``--repeats`` times, so that the VM's drift from minute to minute (docs/cost.md) falls on
both alike:

- ``record one stage``: ``dvc repro --force --single-item check_params``, the cheapest stage (a params check of
  under a second), run and recorded in dvc.lock: what every stage of a cold run pays DVC around its command;
- ``status``: ``dvc status dvc.yaml``, what a no-op costs.

The workspace's dvc.lock is put back after each run (check_params' outputs never change, so it is the same
file). A measurement for the docs, not a test: the test that both ways leave the same lock is
tests/test_dvcfast.py. The table is written between the ``dvcfast`` markers of docs/cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

from tools.bench import _timed, machine, source_commit, update_readme
from tools.bench_allocator import cpu_name

ROOT = Path(__file__).resolve().parents[1]
DOCS_START, DOCS_END = "<!-- dvcfast:start -->", "<!-- dvcfast:end -->"
MEASURES = {
    "record one stage": ["repro", "--force", "--single-item", "--quiet", "check_params"],
    "status": ["status", "--quiet", "dvc.yaml"],
}
WAYS = {"dvc": [sys.executable, "-m", "dvc"], "dvcfast": [sys.executable, "-m", "lesionlab.pipeline.dvcfast"]}


def measure(workspace: Path, repeats: int) -> dict:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the stage's `python`
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT / "src"), "PATH": path}
    lock = workspace / "dvc.lock"
    saved = lock.read_bytes()
    results = {}
    try:
        for name, args in MEASURES.items():
            runs = {way: [] for way in WAYS}
            for r in range(repeats):
                for way, prefix in WAYS.items():
                    print(f"[bench_dvcfast] {name}, {way}, run {r + 1}/{repeats}", file=sys.stderr, flush=True)
                    runs[way].append(round(_timed([*prefix, *args], workspace, env), 3))  # fails unless exit 0
                    lock.write_bytes(saved)
            medians = {way: statistics.median(v) for way, v in runs.items()}
            results[name] = {
                "command": "dvc " + " ".join(args),
                "seconds": runs,
                "median_seconds": medians,
                "saved_seconds": round(medians["dvc"] - medians["dvcfast"], 3),
            }
    finally:
        lock.write_bytes(saved)
    return results


def markdown_table(record: dict) -> str:
    lines = [
        f"Measured {record['date'][:10]} at `{record['git_commit']}` on {record['cpu']} "
        f"({record['machine']['cpus']} cores), in a workspace of {record['stages']} stages whose dvc.lock has "
        f"{record['lock_lines']:,} lines, {record['repeats']} runs each way, interleaved; "
        "`reports/dvcfast.json`:",
        "",
        "| DVC command | DVC alone: median (min–max) | through dvcfast: median (min–max) | saved |",
        "|---|---|---|---|",
    ]
    for name, m in record["measures"].items():
        cells = [
            f"{m['median_seconds'][way]:.2f} s ({min(m['seconds'][way]):.2f}–{max(m['seconds'][way]):.2f})"
            for way in WAYS
        ]
        lines.append(f"| {name}: `{m['command']}` | {cells[0]} | {cells[1]} | {m['saved_seconds']:.2f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True, help="a workspace where the pipeline has run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "dvcfast.json")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite the table in docs/cost.md")
    args = ap.parse_args(argv)
    workspace = args.workspace.resolve()
    if not (workspace / "dvc.lock").is_file():
        ap.error(f"{workspace}: no dvc.lock (run the pipeline there first: make bench BENCH_ARGS=--keep)")
    import yaml

    record = {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "git_commit": source_commit(ROOT),
        "machine": machine(),
        "cpu": cpu_name(),
        "stages": len(yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]),
        "lock_lines": len((workspace / "dvc.lock").read_text().splitlines()),
        "repeats": args.repeats,
        "measures": measure(workspace, args.repeats),
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

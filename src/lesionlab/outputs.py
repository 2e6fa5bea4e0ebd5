"""The files every model stage writes besides its predictions: metrics, history, training record.

Shared by the stages written after the CNN ladder and the backbones (tabular, ensembles), so that
``results/<ds>/metrics/<name>.json``, ``history/<name>.csv`` and ``variants/<name>/training.json``
look the same whoever wrote them.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import pandas as pd

from lesionlab.train import _rounded, history_file, metrics_file


def fresh_dir(folder: Path) -> Path:
    """An empty folder (a stage's output is rewritten whole, never patched)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def write_stage_files(root: Path, dataset: str, name: str, out: Path, metrics: dict, history: pd.DataFrame | None,
                      record: dict) -> None:
    """metrics/<name>.json (rounded, sorted), history/<name>.csv (if any), <out>/training.json."""
    mfile = metrics_file(root, dataset, name)
    mfile.parent.mkdir(parents=True, exist_ok=True)
    mfile.write_text(json.dumps(_rounded(metrics), indent=2, sort_keys=True) + "\n")
    if history is not None:
        hfile = history_file(root, dataset, name)
        hfile.parent.mkdir(parents=True, exist_ok=True)
        history.to_csv(hfile, index=False, float_format="%.6f")
    (out / "training.json").write_text(json.dumps({"variant": name, "dataset": dataset, **record,
                                                   "python": platform.python_version()}, indent=2) + "\n")


def write_skipped(root: Path, dataset: str, name: str, out: Path, reason: str, record: dict,
                  history_columns: list[str] | None = None) -> dict:
    """A stage that ran but could not train on this dataset: its outputs say why, and hold no number.

    metrics/<name>.json is ``{"skipped": reason}`` (the comparison lists the row as skipped, with the reason),
    history/<name>.csv has its header only (when the stage writes one), <out>/training.json records the reason."""
    print(f"[{name}] skipped: {reason}", flush=True)
    write_stage_files(root, dataset, name, out, {"skipped": reason},
                      pd.DataFrame(columns=history_columns) if history_columns is not None else None,
                      {**record, "skipped": reason})
    return {"skipped": reason}

"""The files every model stage writes besides its predictions: metrics, history, training record.

One writer for every family (CNN ladder, probes, fine-tunes, metadata models, ensembles), so that
``results/<ds>/metrics/<name>.json``, ``history/<name>.csv`` and ``<out>/training.json``
(:class:`lesionlab.models.record.TrainingRecord`) look the same whoever wrote them.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlab.models import runlog
from lesionlab.models.record import TrainingRecord, write_record
from lesionlab.paths import history_file, metrics_file


def rounded(d: dict, digits: int = 6) -> dict:
    """Floats to ``digits`` decimals, non-finite ones to None (JSON has no NaN): the metrics files' format."""
    return {
        k: (round(v, digits) if isinstance(v, float) and np.isfinite(v) else v if not isinstance(v, float) else None)
        for k, v in d.items()
    }


def write_stage_files(
    root: Path,
    dataset: str,
    name: str,
    out: Path,
    metrics: dict,
    history: pd.DataFrame | None,
    record: dict,
    predictions: pd.DataFrame | None = None,
) -> TrainingRecord:
    """metrics/<name>.json (rounded, sorted), history/<name>.csv (if any), <out>/training.json (``record``: the
    fields of :class:`lesionlab.models.record.TrainingRecord` besides variant and dataset; ``weights_file`` is
    hashed), and the row's dvclive log (:mod:`lesionlab.models.runlog`: the one the stage opened, else a new
    one): its steps from ``history`` when training logged none, the headline summary, the test-split plots of
    ``predictions`` (the contract's predictions table)."""
    mfile = metrics_file(root, dataset, name)
    mfile.parent.mkdir(parents=True, exist_ok=True)
    mfile.write_text(json.dumps(rounded(metrics), indent=2, sort_keys=True) + "\n")
    if history is not None:
        hfile = history_file(root, dataset, name)
        hfile.parent.mkdir(parents=True, exist_ok=True)
        history.to_csv(hfile, index=False, float_format="%.6f")
    with contextlib.ExitStack() as stack:
        log = runlog.current() or stack.enter_context(runlog.run_log(root, dataset, name))
        if log.steps == 0 and history is not None:
            for i, row in enumerate(history.to_dict("records"), start=1):
                log.step(row, row.get("epoch", i))
        log.finish(metrics, predictions, record.get("classes"))
    return write_record(out, variant=name, dataset=dataset, **record)


def write_skipped(
    root: Path, dataset: str, name: str, out: Path, reason: str, record: dict, history_columns: list[str] | None = None
) -> dict:
    """A stage that ran but could not train on this dataset: its outputs say why, and hold no number.

    metrics/<name>.json is ``{"skipped": reason}`` (the comparison lists the row as skipped, with the reason),
    history/<name>.csv has its header only (when the stage writes one), <out>/training.json records the reason."""
    print(f"[{name}] skipped: {reason}", flush=True)
    write_stage_files(
        root,
        dataset,
        name,
        out,
        {"skipped": reason},
        pd.DataFrame(columns=history_columns) if history_columns is not None else None,
        {**record, "skipped": reason},
    )
    return {"skipped": reason}

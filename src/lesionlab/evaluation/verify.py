"""``lesionlab verify``: does a fresh run reproduce the committed findings?

Trained networks are not bit-identical across machines (oneDNN picks its kernels per instruction set), so
equality is the wrong test. A fresh run reproduces the committed leaderboard when each row's fresh value lies
inside the committed row's CI, which (with seed replicates) resamples training runs as well as test lesions:
the uncertainty of exactly this kind of rerun. Rows outside are listed, with how far outside.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

#: the metrics checked by default: the leaderboard's headline (balanced accuracy) and its two AUCs
VERIFIED = ("balanced_accuracy", "macro_auc", "malignant_auc")
#: the leaderboard CSVs are written with 4 decimals: a value on the boundary may be rounded across it
ROUNDING = 5e-5


def committed_leaderboard(root: Path, dataset: str, rev: str = "HEAD") -> pd.DataFrame:
    """``reports/<dataset>/leaderboard.csv`` as committed at ``rev`` (git), whatever the working tree holds."""
    path = f"reports/{dataset}/leaderboard.csv"
    out = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise FileNotFoundError(
            f"{path} is not committed at {rev!r} ({out.stderr.strip() or 'git failed'}): nothing to verify against; "
            "pass --reference FILE"
        )
    return pd.read_csv(io.StringIO(out.stdout))


def verify(reference: pd.DataFrame, fresh: pd.DataFrame, metrics: tuple[str, ...] = VERIFIED) -> pd.DataFrame:
    """One line per reference row and metric: the committed value and CI, the fresh value, and whether the fresh
    value lies inside the CI (``status``: inside | outside | missing | undefined, the last when the metric is
    undefined on this data in both runs, e.g. no malignant class)."""
    ref, new = reference.set_index("variant"), fresh.set_index("variant")
    lines = []
    for row in ref.index:
        for m in metrics:
            if m not in ref.columns or f"{m}_lo" not in ref.columns:
                continue
            value, lo, hi = (float(ref.loc[row, c]) for c in (m, f"{m}_lo", f"{m}_hi"))
            runs = int(ref.loc[row, "n_runs"]) if "n_runs" in ref.columns and pd.notna(ref.loc[row, "n_runs"]) else 1
            line = {"variant": row, "metric": m, "runs": runs, "committed": value, "lo": lo, "hi": hi}
            if row not in new.index or m not in new.columns:
                lines.append({**line, "fresh": np.nan, "status": "missing", "off_by": np.nan})
                continue
            got = float(new.loc[row, m])
            if not np.isfinite(value) and not np.isfinite(got):
                status, off = "undefined", 0.0
            elif not (np.isfinite(got) and np.isfinite(lo) and np.isfinite(hi)):
                status, off = "outside", np.inf
            else:
                off = max(lo - ROUNDING - got, got - hi - ROUNDING, 0.0)
                status = "inside" if off == 0 else "outside"
            lines.append({**line, "fresh": got, "status": status, "off_by": off})
    return pd.DataFrame(
        lines, columns=["variant", "metric", "runs", "committed", "lo", "hi", "fresh", "status", "off_by"]
    )


def summary(table: pd.DataFrame) -> dict:
    """Counts, the rows outside or missing, and the verdict (every checked value inside its CI)."""
    bad = table[table["status"].isin(["outside", "missing"])]
    return {
        "checked": int(len(table)),
        "inside": int((table["status"] == "inside").sum()),
        "outside": sorted({f"{r.variant} {r.metric}" for r in bad.itertuples() if r.status == "outside"}),
        "missing": sorted(set(bad.loc[bad["status"] == "missing", "variant"])),
        "passed": bool(len(table)) and bad.empty,
    }


def report(table: pd.DataFrame) -> str:
    """The terminal report: the verdict, then each value outside its CI or missing."""
    s = summary(table)
    rows = table["variant"].nunique()
    head = (
        f"verify: {s['inside']} of {s['checked']} values ({rows} rows x {table['metric'].nunique()} metrics) lie "
        "inside their committed CI"
    )
    if s["passed"]:
        return head + ": the fresh run reproduces the committed findings."
    lines = [head + ":"]
    for r in table[table["status"].isin(["outside", "missing"])].itertuples():
        if r.status == "missing":
            lines.append(f"  {r.variant} {r.metric}: missing from the fresh run")
        else:
            lines.append(
                f"  {r.variant} {r.metric}: fresh {r.fresh:.4f}, committed {r.committed:.4f} "
                f"[{r.lo:.4f}, {r.hi:.4f}] ({r.runs} run{'s' if r.runs != 1 else ''}), outside by {r.off_by:.4f}"
            )
    return "\n".join(lines)

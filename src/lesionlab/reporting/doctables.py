"""Tables in the Markdown docs that are generated from committed result files, never typed by hand.

A generated table sits between two markers::

    <!-- table: leaderboard reports/ham10000/leaderboard.csv top=5 include=cnn_baseline -->
    ...
    <!-- end table -->

``python -m lesionlab docs`` rewrites every such block in README.md and docs/*.md; ``docs --check`` (run by the
tests) fails when one differs from what its file gives, so a table cannot drift from the CSV it shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

_BLOCK = re.compile(r"(<!-- table: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)

#: metric column -> header (the leaderboard CSVs' names)
METRIC_LABELS = {
    "balanced_accuracy": "balanced accuracy (95 % CI)",
    "macro_auc": "macro AUC",
    "malignant_auc": "malignant AUC",
    "melanoma_sensitivity": "melanoma sensitivity",
    "ece": "ECE",
}


def leaderboard_table(csv: Path, top: int | None = None, include: tuple[str, ...] = ()) -> str:
    """A leaderboard CSV as a Markdown table: its rows by balanced accuracy (the ``top`` best, plus ``include``),
    the main metric with its CI."""
    board = pd.read_csv(csv)
    if "balanced_accuracy" in board.columns:
        board = board.sort_values("balanced_accuracy", ascending=False, kind="stable")
    if top is not None:
        board = board[board["variant"].isin([*board["variant"].head(top), *include])]
    metrics = [m for m in METRIC_LABELS if m in board.columns]
    lines = ["| row | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for _, row in board.iterrows():
        cells = [
            f"{row[m]:.3f} [{row[m + '_lo']:.3f}, {row[m + '_hi']:.3f}]"
            if f"{m}_lo" in board.columns and m == "balanced_accuracy"
            else f"{row[m]:.3f}"
            for m in metrics
        ]
        lines.append(f"| `{row['variant']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(spec: str, root: Path) -> str:
    kind, path, *options = spec.split()
    opts = dict(o.split("=", 1) for o in options)
    if kind != "leaderboard":
        raise ValueError(f"unknown generated table {kind!r} (known: leaderboard)")
    return leaderboard_table(
        root / path,
        int(opts["top"]) if "top" in opts else None,
        tuple(opts.get("include", "").split(",")) if opts.get("include") else (),
    )


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def update(root: Path, check: bool = False) -> list[str]:
    """Rewrite (or, with ``check``, only compare) every generated block; returns the files that differ."""
    stale = []
    for doc in documents(root):
        text = doc.read_text()
        new = _BLOCK.sub(lambda m: m.group(1) + render(m.group("spec"), root) + m.group(4), text)
        if new != text:
            stale.append(str(doc.relative_to(root)))
            if not check:
                doc.write_text(new)
    return stale

"""Tables in the Markdown docs that are generated from committed result files, never typed by hand.

A generated table sits between two markers::

    <!-- table: leaderboard reports/ham10000/leaderboard.csv top=5 include=cnn_baseline -->
    ...
    <!-- end table -->

Kinds: ``leaderboard`` (rows by balanced accuracy, the ``top`` best plus ``include``), ``columns``
(every row in the file's order, the named columns; ``name:ci`` adds the column's 95 % CI, ``bold=a,b`` marks the
best value of those columns), ``steps`` (a ``paired.csv``'s ablation steps with their verdicts; ``metric=`` and
``comparison=preprocessing`` pick other rows, also of a ``paired_external.csv``) and ``spread``
(a ``seeds.csv``: each row's runs, mean ± sd, min–max) and ``bench`` (two ``make bench`` records, before → after:
``<!-- table: bench reports/bench-2026-11-23.json reports/bench.json -->``, ``brief`` for fewer rows) and
``cold-split`` (one ``make bench`` record's cold run: per family, training against the rest of its stages;
``frontier``: ``tools.frontier``'s record)::

    <!-- table: columns reports/ham10000/leaderboard_binary.csv malignant_auc:ci sensitivity_at_90_specificity -->

``python -m lesionlab docs`` rewrites every such block in README.md and docs/*.md; ``docs --check`` (run by the
tests) fails when one differs from what its file gives, so a table cannot drift from the CSV it shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from lesionlab.evaluation.metrics import METRIC_LABELS

_BLOCK = re.compile(r"(<!-- table: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)

#: metric column -> header of the ``leaderboard`` tables
HEADLINE_LABELS = {
    "balanced_accuracy": "balanced accuracy (95 % CI)",
    "macro_auc": "macro AUC",
    "malignant_auc": "malignant AUC",
    "melanoma_sensitivity": "melanoma sensitivity",
    "ece": "ECE",
}

#: headers of the ``columns`` tables (a column not listed is shown under its CSV name)
COLUMN_LABELS = {
    "variant": "variant",
    **METRIC_LABELS,
    # leaderboard_external.csv
    "melanoma_auc_internal": "melanoma AUC, internal test",
    "melanoma_auc_drop": "melanoma AUC drop (internal − external)",
    "malignant_auc_internal": "malignant AUC, internal test",
    "malignant_auc_drop": "malignant AUC drop",
    "sensitivity": "sensitivity at the internal operating point",
    "specificity": "specificity at the internal operating point",
    "ece": "ECE",
    "uncertain_share": "flagged uncertain",
}


def leaderboard_table(csv: Path, top: int | None = None, include: tuple[str, ...] = ()) -> str:
    """A leaderboard CSV as a Markdown table: its rows by balanced accuracy (the ``top`` best, plus ``include``),
    the main metric with its CI."""
    board = pd.read_csv(csv)
    if "balanced_accuracy" in board.columns:
        board = board.sort_values("balanced_accuracy", ascending=False, kind="stable")
    if top is not None:
        board = board[board["variant"].isin([*board["variant"].head(top), *include])]
    metrics = [m for m in HEADLINE_LABELS if m in board.columns]
    lines = ["| row | " + " | ".join(HEADLINE_LABELS[m] for m in metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for _, row in board.iterrows():
        cells = [
            f"{row[m]:.3f} [{row[m + '_lo']:.3f}, {row[m + '_hi']:.3f}]"
            if f"{m}_lo" in board.columns and m == "balanced_accuracy"
            else f"{row[m]:.3f}"
            for m in metrics
        ]
        lines.append(f"| `{row['variant']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def columns_table(csv: Path, columns: list[str], bold: tuple[str, ...] = ()) -> str:
    """Every row of a results CSV, in the file's order: the variant, then ``columns`` (``name:ci`` with its CI);
    the best (largest) value of each ``bold`` column in bold."""
    board = pd.read_csv(csv)
    names = [c.split(":")[0] for c in columns]
    missing = [n for n in ["variant", *names] if n not in board.columns]
    if missing:
        raise ValueError(f"{csv}: no column(s) {missing} (has {list(board.columns)})")
    best = {n: board[n].max() for n in bold}
    lines = [
        "| variant | " + " | ".join(COLUMN_LABELS.get(n, n) for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for _, row in board.iterrows():
        cells = []
        for spec, n in zip(columns, names):
            value = f"{row[n]:.3f}"
            if n in best and row[n] == best[n]:
                value = f"**{value}**"
            if spec.endswith(":ci"):
                value += f" [{row[n + '_lo']:.3f}, {row[n + '_hi']:.3f}]"
            cells.append(value)
        lines.append(f"| `{row['variant']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def steps_table(csv: Path, metric: str = "balanced_accuracy", comparison: str = "step") -> str:
    """Paired differences from a comparison's ``paired.csv`` (or ``paired_external.csv``) labelled ``comparison``
    (``step``: the ablation's step effects, rung − parent; ``preprocessing``: each preprocessing ablation − its
    twin) on ``metric``, with the CI (over lesions and training runs) and the verdict; one line per external set
    where the file names them."""
    paired = pd.read_csv(csv)
    part = paired[(paired["comparison"] == comparison) & (paired["metric"] == metric)]
    label = COLUMN_LABELS.get(metric, metric)
    where = "dataset" in part.columns
    lines = [
        f"| {'set | ' if where else ''}{'step' if comparison == 'step' else 'pair'} | Δ {label} [95 % CI] | verdict |",
        f"|{'---|' if where else ''}---|---:|---|",
    ]
    for _, r in part.iterrows():
        verdict = ("robust gain" if r["difference"] > 0 else "robust loss") if r["ci_excludes_zero"] else "not robust"
        lines.append(
            f"| {r['dataset'] + ' | ' if where else ''}`{r['a']}` − `{r['b']}` | "
            f"{r['difference']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def spread_table(csv: Path, metric: str = "balanced_accuracy") -> str:
    """The seed spread of each replicated row from a comparison's ``seeds.csv``: runs, mean ± sd and min–max."""
    spread = pd.read_csv(csv)
    label = COLUMN_LABELS.get(metric, metric)
    lines = [f"| variant | runs | {label}: mean ± sd | min–max |", "|---|---:|---:|---:|"]
    for _, r in spread.iterrows():
        lines.append(
            f"| `{r['variant']}` | {int(r['n_runs'])} | {r[metric + '_mean']:.3f} ± {r[metric + '_sd']:.3f} | "
            f"{r[metric + '_min']:.3f}–{r[metric + '_max']:.3f} |"
        )
    return "\n".join(lines) + "\n"


#: the ``bench`` table's time rows: (label, key in the record's ``figures``)
BENCH_SECONDS = [
    ("default pipeline, cold, one run per model (empty cache)", "cold_one_run"),
    ("default pipeline, cold, with the seed replicates", "cold_replicates"),
    ("`dvc repro`, nothing changed", "noop_repro"),
    ("`lesionlab repro --jobs N` (`make repro`), nothing changed", "noop_lanes"),
    ("`dvc status`, nothing changed", "dvc_status"),
    ("per-notebook overhead (process + papermill + kernel + nbconvert)", "notebook_overhead"),
]
_PX = re.compile(r",? (\d+) px")


def cold_command(record: dict) -> str:
    """The command a ``make bench`` record's cold runs ran (records made before it was recorded ran ``dvc repro``)."""
    return record.get("cold_command", "dvc repro")


def _bench_config(record: dict) -> str:
    stages = record.get("cold_stages") or {}
    how = cold_command(record)
    return f"{record.get('date', '?')[:10]}, commit `{record.get('git_commit', '?')}`: {len(stages)} stages, `{how}`"


def _bench_seconds(record: dict, key: str) -> float | None:
    """A time figure of a ``make bench`` record. The cold pipeline is two figures, compared like with like: one
    run per model (``cold_pipeline_one_run``, or ``cold_pipeline`` of a record whose run had no seed replicate
    stages, as before they existed) and with the seed replicates (``cold_pipeline`` of a record that had them)."""
    figures = record.get("figures", {})
    replicates = any(".seed" in stage for stage in record.get("cold_stages") or {})
    if key == "cold_one_run":
        key = "cold_pipeline_one_run" if replicates else "cold_pipeline"
    elif key == "cold_replicates":
        if not replicates:
            return None
        key = "cold_pipeline"
    return figures.get(key, {}).get("median")


def _bench_families(record: dict) -> dict[str, tuple[float, str]]:
    """Training throughput per family, keyed by the family's label without its input size: (images/s, size)."""
    out = {}
    for label, fig in (record.get("training_images_per_second") or {}).items():
        size = _PX.search(label)
        out[_PX.sub("", label)] = (fig["median"], f" at {size.group(1)} px" if size else "")
    return out


#: the rows a ``brief`` bench table keeps: these time figures and the families whose label starts so
BENCH_BRIEF_TIMES = ("cold_one_run", "cold_replicates", "noop_repro", "noop_lanes")
BENCH_BRIEF_FAMILIES = ("CNN", "fine-tune")


def bench_table(before_json: Path, after_json: Path, brief: bool = False) -> str:
    """Two ``make bench`` records side by side: each time figure and each family's training throughput, before →
    after, with the speed-up (before ÷ after for a time, after ÷ before for images/s: > 1 is faster). A family
    measured at another input size says so in its cells. ``brief``: the cold pipeline, the no-op, the CNN and
    fine-tune throughputs and Grad-CAM only (the README's version)."""
    import json

    before, after = (json.loads(Path(p).read_text()) for p in (before_json, after_json))
    lines = [
        "| measure | before | after | speed-up |",
        "|---|---:|---:|---:|",
        f"| run | {_bench_config(before)} | {_bench_config(after)} | |",
    ]
    for label, key in BENCH_SECONDS:
        if brief and key not in BENCH_BRIEF_TIMES:
            continue
        a, b = (_bench_seconds(r, key) for r in (before, after))
        if b is None:
            continue
        fmt = "{:,.0f} s" if max(a or 0, b) >= 100 else "{:.2f} s"
        if a is None:  # measured only in the later record (e.g. the seed replicates): no ratio to show
            lines.append(f"| {label} | – | {fmt.format(b)} | |")
            continue
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | ×{a / b:.2f} |")
    families_before, families_after = _bench_families(before), _bench_families(after)
    for family, (b_ips, b_px) in families_before.items():
        if family not in families_after or (brief and not family.startswith(BENCH_BRIEF_FAMILIES)):
            continue
        a_ips, a_px = families_after[family]
        lines.append(
            f"| training: {family}, images/s | {b_ips:,.0f}{b_px} | {a_ips:,.0f}{a_px} | ×{a_ips / b_ips:.2f}"
            + (" (another size)" if a_px != b_px else "")
            + " |"
        )
    a, b = ((r.get("cold_by_family") or {}).get("Grad-CAM") for r in (before, after))
    if a and b:
        lines.append(f"| Grad-CAM, every explained variant (s) | {a:,.0f} s | {b:,.0f} s | ×{a / b:.2f} |")
    return "\n".join(lines) + "\n"


def cold_split_table(path: Path) -> str:
    """A ``make bench`` record's cold run split by family: stages, wall time, the part its trainers report as
    training (their epochs, validation included) and the rest of those stages (process start, imports, data,
    predictions, writing), largest first; then the time between stages (DVC) and the whole run."""
    import json

    record = json.loads(Path(path).read_text())
    split = record.get("cold_split")
    if not split:
        return f"`{path.name}` has no `cold_split` (made before `make bench` recorded it): re-run `make bench`.\n"
    lines = [
        "| part of the cold run | stages | seconds | training (epochs, validation included) "
        "| rest of these stages (process, imports, data, predictions, writing) |",
        "|---|---:|---:|---:|---:|",
    ]
    families = sorted(split["families"].items(), key=lambda kv: -kv[1]["wall_seconds"])
    for name, row in families:
        train, wall, n = row["train_seconds"], row["wall_seconds"], row["stages"]
        rest, trained = wall - train, f"{train:,.0f}" if train else "–"
        lines.append(f"| {name} | {n} | {wall:,.0f} | {trained} | {rest:,.0f} ({rest / n:.1f} a stage) |")
    between = split["between_stages_seconds"]
    stages = sum(r["stages"] for _, r in families)
    train = sum(r["train_seconds"] for _, r in families)
    total = split["total_seconds"]
    if between is None:  # the model runs in lanes side by side (`lesionlab repro --jobs N`): the stages overlap
        inside, lanes = split.get("stage_seconds", 0.0), split.get("lanes", 2)
        lines.append(
            f"| **cold run**, model runs in {lanes} lanes side by side | {stages} | **{total:,.0f}** "
            f"| {train:,.0f} | stages' own times add up to {inside:,.0f} s: ×{inside / total:.2f} the wall time |"
        )
    else:
        lines.append(
            f"| between stages (DVC: hashing, dvc.lock rewritten after each stage) | – | {between:,.0f} | – | – |"
        )
        lines.append(
            f"| **cold run** | {stages} | **{total:,.0f}** | {train:,.0f} ({train / total:.0%}) "
            f"| {total - train:,.0f} ({(total - train) / total:.0%}, stages and DVC) |"
        )
    lines.append("")
    lines.append(f"From `{path.name}` ({record.get('date', '?')}, commit `{record.get('git_commit', '?')}`).")
    return "\n".join(lines) + "\n"


def frontier_table(path: Path) -> str:
    """``python -m tools.frontier``'s record: per backbone and input size the short run's validation balanced
    accuracy with its lesion-bootstrap CI, the training throughput of each mode (float32 → bfloat16) and the
    projected hours of a HAM10000 run's fine-tune and embedding stages; the proposal below, in bold in the table."""
    import json

    record = json.loads(Path(path).read_text())
    proposal = record.get("proposal") or {}
    lines = [
        "| backbone | input | val balanced accuracy [95% CI] | partial fine-tune, img/s (fp32 → bf16) "
        "| full fine-tune, img/s (fp32 → bf16) | inference, img/s | fine-tunes + embedding, projected |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["rows"]:
        ips = row["train_images_per_second"]
        modes = []
        for strategy in ("partial", "full"):
            fp32, bf16 = ips.get(f"{strategy}_float32"), ips.get(f"{strategy}_bfloat16")
            modes.append(f"{fp32:,.0f} → {bf16:,.0f}" if fp32 and bf16 else f"{fp32 or bf16:,.0f}")
        name = row["backbone"].replace("efficientnet_", "EfficientNet-").replace("lite", "Lite")
        chosen = (row["backbone"], row["image_size"]) == (proposal.get("backbone"), proposal.get("image_size"))
        acc = f"{row['balanced_accuracy']:.3f} [{row['ci'][0]:.3f}, {row['ci'][1]:.3f}]"
        infer = next(iter(row["inference_images_per_second"].values()))
        hours = f"{row['projected']['hours']:.1f} h"
        cells = [name, f"{row['image_size']} px", acc, *modes, f"{infer:,.0f}", hours]
        lines.append("| " + " | ".join(f"**{c}**" if chosen else c for c in cells) + " |")
    run = record["short_run"]
    plan = record["plan"]
    lines.append("")
    lines.append(
        f"Short runs: {run['strategy']} fine-tune, {run['epochs']} epochs on {run['train_images']:,} training images, "
        f"scored on {run['val_images']:,} validation images (lesion-grouped split; the test split is not read); "
        f"{record['date']}. Projection: {len(plan['strategies'])} fine-tunes × {plan['seeds']} runs × "
        f"{plan['epochs']} epochs on {plan['n_train']:,} images, TTA {'on' if plan['tta'] else 'off'}, "
        f"embeddings of {plan['n_images']:,} images × 8 views."
    )
    if proposal:
        name = proposal["backbone"].replace("efficientnet_", "EfficientNet-").replace("lite", "Lite")
        lines.append(
            f"Proposed for the next HAM10000 run (budget {record['budget_hours']:g} h, of which "
            f"{record['rest_hours']:g} h outside these stages): **{name} at {proposal['image_size']} px, "
            f"{proposal['precision']}**, projected {proposal['projected_hours']:.1f} h in all."
        )
    else:
        lines.append(f"No configuration fits the {record['budget_hours']:g} h budget.")
    return "\n".join(lines) + "\n"


def render(spec: str, root: Path) -> str:
    kind, path, *options = spec.split()
    opts = dict(o.split("=", 1) for o in options if "=" in o)
    if kind == "steps":
        return steps_table(root / path, opts.get("metric", "balanced_accuracy"), opts.get("comparison", "step"))
    if kind == "spread":
        return spread_table(root / path)
    if kind == "bench":
        return bench_table(root / path, root / options[0], brief="brief" in options)
    if kind == "frontier":
        return frontier_table(root / path)
    if kind == "cold-split":
        return cold_split_table(root / path)
    if kind == "columns":
        return columns_table(
            root / path, [o for o in options if "=" not in o], tuple(filter(None, opts.get("bold", "").split(",")))
        )
    if kind != "leaderboard":
        known = "leaderboard, columns, steps, spread, bench, cold-split, frontier"
        raise ValueError(f"unknown generated table {kind!r} (known: {known})")
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

"""Figures for the notebooks: each function takes plain tables/arrays and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from lesionlab.data.taxonomy import malignant_classes
from lesionlab.evaluation.metrics import binary_auc, confusion_matrix, malignant_score

sns.set_theme(style="whitegrid", context="notebook")
#: user strings (sites, ids, file names, labels) are drawn as text: a '$' is a dollar sign, never TeX to parse
plt.rcParams["text.parse_math"] = False
PALETTE = dict(
    zip(
        ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc", "scc", "benign", "malignant"), sns.color_palette("tab10", 10)
    )
)


def _palette(classes) -> dict:
    """A colour per class: the fixed ones above, then a husl colour for any other label (generic sources)."""
    extra = [c for c in classes if c not in PALETTE]
    return {**PALETTE, **dict(zip(extra, sns.color_palette("husl", max(len(extra), 1))))}


# --- EDA -------------------------------------------------------------------------------


def class_balance(table: pd.DataFrame, classes) -> plt.Figure:
    counts = table["label"].value_counts().reindex(classes, fill_value=0)
    lesions = table.groupby("label")["lesion_id"].nunique().reindex(classes, fill_value=0)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(classes))
    ax.bar(x - 0.2, counts.values, 0.4, label="images", color=[_palette(classes)[c] for c in classes])
    ax.bar(x + 0.2, lesions.values, 0.4, label="lesions", color="lightgray", edgecolor="gray")
    for xi, n in zip(x, counts.values):
        ax.text(xi - 0.2, n, f"{n}\n{n / counts.sum():.1%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, classes)
    ax.set_ylabel("count")
    ratio = counts.max() / max(counts[counts > 0].min(), 1)
    ax.set_title(f"Class balance (imbalance ratio largest/smallest = {ratio:.1f}:1)")
    ax.legend()
    ax.margins(y=0.25)
    fig.tight_layout()
    return fig


def missing_metadata(table: pd.DataFrame) -> dict[str, str]:
    """Panels of :func:`metadata_by_class` this dataset cannot fill: panel -> the one-line reason."""
    from lesionlab.data.datasets import unrecorded_features

    reasons = {
        "age": "no ages in this dataset",
        "sex": "sex is unknown for every image",
        "site": "no body sites in this dataset",
    }
    return {f: reasons[f] for f in unrecorded_features(table)}


def metadata_by_class(table: pd.DataFrame, classes) -> plt.Figure | None:
    """Age, sex and body site by class; a panel the dataset has no data for is left out (see
    :func:`missing_metadata`); None when none is left."""
    missing = missing_metadata(table)
    panels = [p for p in ("age", "sex", "site") if p not in missing]
    if not panels:
        return None
    widths = {"age": 1, "sex": 1, "site": 1.6}
    fig, axs = plt.subplots(
        1,
        len(panels),
        figsize=(5 * sum(widths[p] for p in panels) / 1.2, 4.5),
        squeeze=False,
        gridspec_kw={"width_ratios": [widths[p] for p in panels]},
    )
    axes = dict(zip(panels, axs[0]))
    if "age" in axes:
        _age_panel(table, classes, axes["age"])
    if "sex" in axes:
        _sex_panel(table, classes, axes["sex"])
    if "site" in axes:
        _site_panel(table, classes, axes["site"])
    fig.tight_layout()
    return fig


def _age_panel(table: pd.DataFrame, classes, ax) -> None:
    present = [
        c for c in classes if pd.to_numeric(table.loc[table["label"] == c, "age"], errors="coerce").notna().any()
    ]
    sns.boxplot(
        data=table[table["label"].isin(present)],
        x="label",
        y="age",
        order=present,
        hue="label",
        palette=_palette(classes),
        legend=False,
        ax=ax,
    )
    ax.set_title("age by class")


def _sex_panel(table: pd.DataFrame, classes, ax) -> None:
    sex = pd.crosstab(table["label"], table["sex"], normalize="index").reindex(classes).fillna(0)
    sex.plot.bar(stacked=True, ax=ax, colormap="Pastel1", rot=0)
    ax.set_title("sex by class (share)")
    ax.legend(fontsize=8, loc="lower right")


def _site_panel(table: pd.DataFrame, classes, ax) -> None:
    site = pd.crosstab(table["site"], table["label"], normalize="columns").reindex(columns=classes).fillna(0)
    sns.heatmap(site, annot=True, fmt=".0%", cmap="Blues", cbar=False, ax=ax, annot_kws={"fontsize": 7})
    ax.set_title("body site by class (share of class)")
    ax.set_xlabel("")
    ax.set_ylabel("")


def images_per_lesion(table: pd.DataFrame) -> plt.Figure:
    per = table.groupby("lesion_id").size()
    counts = per.value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(counts.index.astype(str), counts.values, color="slategray")
    ax.set_xlabel("images of the same lesion")
    ax.set_ylabel("lesions")
    repeat = int((per - 1).sum())
    ax.set_title(f"{repeat} of {len(table)} images are repeat views of a lesion ({repeat / len(table):.0%})")
    fig.tight_layout()
    return fig


def sample_grid(images: np.ndarray, table: pd.DataFrame, classes, per_class: int = 8, seed: int = 0) -> plt.Figure:
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 1.3, len(classes) * 1.4))
    for r, c in enumerate(classes):
        rows = np.flatnonzero(table["label"].to_numpy() == c)
        pick = rng.choice(rows, size=min(per_class, len(rows)), replace=False) if len(rows) else []
        for k in range(per_class):
            ax = axes[r, k]
            ax.axis("off")
            if k < len(pick):
                ax.imshow(images[pick[k]])
        axes[r, 0].text(-0.1, 0.5, c, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=11)
    fig.suptitle("Random images per class (from the image cache)")
    fig.tight_layout()
    return fig


def colour_statistics(images: np.ndarray, table: pd.DataFrame, classes) -> tuple[plt.Figure, pd.DataFrame]:
    """Per-image mean of R, G, B and brightness spread, by class."""
    means = np.stack([img.reshape(-1, 3).mean(axis=0) for img in images])
    stats = pd.DataFrame(means, columns=["R", "G", "B"])
    stats["std (brightness)"] = [img.mean(axis=2).std() for img in images]
    stats["label"] = table["label"].to_numpy()
    long = stats.melt(id_vars="label", value_vars=["R", "G", "B"], var_name="channel", value_name="mean")
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    sns.boxplot(
        data=long,
        x="label",
        y="mean",
        hue="channel",
        order=classes,
        palette=["#d62728", "#2ca02c", "#1f77b4"],
        fliersize=1,
        ax=axes[0],
    )
    axes[0].set_title("mean channel intensity per image")
    sns.boxplot(
        data=stats,
        x="label",
        y="std (brightness)",
        order=classes,
        hue="label",
        palette=_palette(classes),
        legend=False,
        fliersize=1,
        ax=axes[1],
    )
    axes[1].set_title("within-image brightness spread")
    fig.tight_layout()
    table_out = (
        stats.groupby("label")[["R", "G", "B", "std (brightness)"]].agg(["mean", "std"]).reindex(classes).round(1)
    )
    return fig, table_out


def lesion_area_table(masks: np.ndarray, table: pd.DataFrame, has_mask: np.ndarray, classes) -> pd.DataFrame:
    """Per class: images with a mask and the lesion's share of the image (mean, median, quartiles)."""
    area = pd.Series(masks.reshape(len(masks), -1).mean(axis=1), index=table.index)[has_mask]
    label = table["label"][has_mask]
    stats = area.groupby(label).describe()[["count", "mean", "25%", "50%", "75%"]].reindex(classes)
    stats.columns = ["images with mask", "mean area", "q25", "median", "q75"]
    return stats.round(3)


def lesion_area(masks: np.ndarray, table: pd.DataFrame, classes, has_mask: np.ndarray | None = None) -> plt.Figure:
    keep = np.ones(len(table), dtype=bool) if has_mask is None else has_mask
    area = masks.reshape(len(masks), -1).mean(axis=1)[keep]
    df = pd.DataFrame({"label": table["label"].to_numpy()[keep], "lesion area (share of image)": area})
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.boxplot(
        data=df,
        x="label",
        y="lesion area (share of image)",
        order=classes,
        hue="label",
        palette=_palette(classes),
        legend=False,
        fliersize=1,
        ax=ax,
    )
    ax.set_title("lesion area from the masks")
    fig.tight_layout()
    return fig


# --- split -----------------------------------------------------------------------------


def split_composition(table: pd.DataFrame, splits: pd.DataFrame, classes) -> plt.Figure:
    df = table[["image_id", "label"]].merge(splits, on="image_id")
    share = pd.crosstab(df["split"], df["label"], normalize="index").reindex(
        index=["train", "val", "test"], columns=list(classes), fill_value=0
    )
    fig, ax = plt.subplots(figsize=(8, 2.8))
    share.plot.barh(stacked=True, ax=ax, color=[_palette(classes)[c] for c in classes], width=0.7)
    ax.set_xlabel("share of the split's images")
    ax.set_ylabel("")
    ax.invert_yaxis()
    ax.legend(ncol=7, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    ax.set_title("class composition of each split")
    fig.tight_layout()
    return fig


# --- one variant ---------------------------------------------------------------------------


def training_curves(history: pd.DataFrame, title: str = "") -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    axes[0].plot(history["epoch"], history["loss"], label="train loss")
    axes[0].plot(history["epoch"], history["val_loss"], label="val loss")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    axes[1].plot(history["epoch"], history["accuracy"], label="train accuracy")
    axes[1].plot(history["epoch"], history["val_accuracy"], label="val accuracy")
    axes[1].plot(history["epoch"], history["val_balanced_accuracy"], label="val balanced accuracy", lw=2.5)
    best = history.loc[history["val_balanced_accuracy"].idxmax()]
    axes[1].axvline(best["epoch"], color="gray", ls=":", label=f"best epoch {int(best['epoch'])}")
    axes[1].set_xlabel("epoch")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    return fig


def confusion_figure(y_true: np.ndarray, proba: np.ndarray, classes, title: str = "", ax=None) -> plt.Figure:
    """Row-normalised confusion matrix (recall on the diagonal) with counts."""
    cm = confusion_matrix(y_true, proba.argmax(axis=1), len(classes))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.2, 4.5))
    annot = np.array([[f"{s:.0%}\n{n}" if n else "" for s, n in zip(rs, rn)] for rs, rn in zip(share, cm)])
    sns.heatmap(
        share,
        annot=annot,
        fmt="",
        cmap="Blues",
        vmin=0,
        vmax=1,
        cbar=False,
        xticklabels=classes,
        yticklabels=classes,
        ax=ax,
        annot_kws={"fontsize": 7},
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised)", fontsize=10)
    if own:
        fig.tight_layout()
        return fig
    return ax.figure


# --- comparison ----------------------------------------------------------------------------


def _roc_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-score, kind="stable")
    pos = positive[order].astype(float)
    tpr = np.concatenate([[0], np.cumsum(pos) / max(pos.sum(), 1)])
    fpr = np.concatenate([[0], np.cumsum(1 - pos) / max((1 - pos).sum(), 1)])
    return fpr, tpr


def roc_overlay(
    tests: dict[str, tuple[np.ndarray, np.ndarray]], classes, groups: dict[str, str] | None = None
) -> plt.Figure:
    """Malignant-vs-benign and melanoma-vs-rest ROC curves on the test split, one row of panels per group of rows
    (``groups``: row -> its family; default one group), so that no panel carries more curves than it can label."""
    groups = groups or {}
    order = list(dict.fromkeys(groups.get(n.removesuffix("+tta"), "all rows") for n in tests))
    mel = list(classes).index("mel") if "mel" in classes else None
    fig, axes = plt.subplots(len(order), 2, figsize=(12, 4.2 * len(order)), squeeze=False)
    for group, row in zip(order, axes):
        members = {n: v for n, v in tests.items() if groups.get(n.removesuffix("+tta"), "all rows") == group}
        colours = sns.color_palette("husl", len(members))
        for (name, (y, p)), colour in zip(members.items(), colours):
            malignant = np.isin(y, [list(classes).index(c) for c in malignant_classes(classes)])
            score = malignant_score(p, classes)
            fpr, tpr = _roc_points(malignant, score)
            row[0].plot(fpr, tpr, color=colour, label=f"{name} ({binary_auc(malignant, score):.3f})")
            if mel is not None:
                fpr, tpr = _roc_points(y == mel, p[:, mel])
                row[1].plot(fpr, tpr, color=colour, label=f"{name} ({binary_auc(y == mel, p[:, mel]):.3f})")
        for ax, title in zip(row, ("malignant vs benign", "melanoma vs rest")):
            ax.plot([0, 1], [0, 1], color="lightgray", ls="--")
            ax.set_xlabel("1 - specificity")
            ax.set_ylabel("sensitivity")
            ax.set_title(f"{group}: {title} (AUC)", fontsize=10)
            if ax.lines[:-1]:
                ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _confusion_panel(ax, y_true: np.ndarray, proba: np.ndarray, classes, title: str) -> None:
    """confusion_figure's look drawn with plain matplotlib: seaborn's heatmap redraws the whole figure on every
    call (to check tick-label overlap), which made a grid of 23 panels take 30 s instead of 2."""
    cm = confusion_matrix(y_true, proba.argmax(axis=1), len(classes))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (i, j), n in np.ndenumerate(cm):
        if n:
            ax.text(
                j,
                i,
                f"{share[i, j]:.0%}\n{n}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share[i, j] > 0.55 else "#262626",
            )
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes, rotation="vertical", va="center")
    ax.tick_params(length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)


def confusion_grid(tests: dict[str, tuple[np.ndarray, np.ndarray]], classes, ncols: int = 4) -> plt.Figure:
    """One row-normalised confusion matrix (recall on the diagonal, counts below) per model."""
    n = len(tests)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 4.2, nrows * 3.9), squeeze=False)
    for ax, (name, (y, p)) in zip(axes.flat, tests.items()):
        _confusion_panel(ax, y, p, classes, name)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def recall_heatmap(tests: dict[str, tuple[np.ndarray, np.ndarray]], classes) -> plt.Figure:
    rows = {}
    for name, (y, p) in tests.items():
        cm = confusion_matrix(y, p.argmax(axis=1), len(classes))
        rows[name] = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    df = pd.DataFrame(rows, index=classes).T
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    sns.heatmap(df, annot=True, fmt=".2f", cmap="RdYlGn", vmin=0, vmax=1, ax=ax, cbar_kws={"label": "recall"})
    ax.set_title("per-class recall (sensitivity) on the test split")
    fig.tight_layout()
    return fig


def curves_overlay(histories: dict[str, pd.DataFrame], groups: dict[str, str] | None = None) -> plt.Figure:
    """Validation balanced accuracy and loss per step, one row of panels per group (``groups``: row -> family);
    the metadata models' boosting rounds get their own x axis instead of sharing the epochs'."""
    groups = groups or {}
    order = list(dict.fromkeys(groups.get(n, "all rows") for n in histories))
    fig, axes = plt.subplots(len(order), 2, figsize=(12, 3.6 * len(order)), squeeze=False)
    for group, row in zip(order, axes):
        members = {n: h for n, h in histories.items() if groups.get(n, "all rows") == group}
        colours = sns.color_palette("husl", len(members))
        for (name, h), colour in zip(members.items(), colours):
            row[0].plot(h["epoch"], h["val_balanced_accuracy"], color=colour, label=name)
            row[1].plot(h["epoch"], h["val_loss"], color=colour, label=name)
        step = "boosting round" if "metadata" in group else "epoch"
        for ax, title in zip(row, ("validation balanced accuracy", "validation loss")):
            ax.set_title(f"{group}: {title}", fontsize=10)
            ax.set_xlabel(step)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        row[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def forest_plot(board: pd.DataFrame, metrics: list[str], labels: dict[str, str]) -> plt.Figure:
    """Point estimate and CI per variant, one panel per metric. The interval is drawn from its own ends: a
    percentile bootstrap CI of a small test set need not contain the point estimate."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.45 * len(board) + 1.4), sharey=True)
    y = np.arange(len(board))[::-1]
    for ax, m in zip(np.atleast_1d(axes), metrics):
        ax.hlines(y, board[f"{m}_lo"], board[f"{m}_hi"], color="gray")
        ax.plot(board[f"{m}_lo"], y, "|", board[f"{m}_hi"], y, "|", color="gray", markersize=8)
        ax.plot(board[m], y, "o", color="black")
        ax.set_title(labels.get(m, m), fontsize=10)
        ax.set_yticks(y, board["variant"])
    fig.tight_layout()
    return fig


def _shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (the table beside a figure holds the whole text)."""
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def step_effect_plot(steps: pd.DataFrame, label: str = "balanced accuracy") -> plt.Figure:
    """The ablation ladder as steps: each rung minus its parent with the paired CI; filled when it excludes 0."""
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(steps) + 1.4))
    y = np.arange(len(steps))[::-1]
    ax.axvline(0, color="lightgray", lw=1)
    ax.hlines(y, steps["lo"], steps["hi"], color="gray")
    filled = steps["ci_excludes_zero"].to_numpy(bool)
    ax.plot(steps["effect"][filled], y[filled], "o", color="black", label="CI excludes 0")
    ax.plot(steps["effect"][~filled], y[~filled], "o", mfc="white", color="black", label="CI includes 0")
    ax.set_yticks(y, [f"{s}\n({_shorten(c, 48)})" for s, c in zip(steps["step"], steps["change"])], fontsize=8)
    ax.set_xlabel(f"Δ {label} (rung − parent), 95 % CI over lesions (paired) and training runs")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def reliability_grid(curves: dict[str, tuple[dict, dict, float]], ncols: int = 5) -> plt.Figure:
    """Reliability diagrams: per row, test accuracy against confidence before (grey) and after (blue) temperature
    scaling; the diagonal is perfect calibration. ``curves``: name -> (bins before, bins after, temperature)."""
    n = len(curves)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 3.0, nrows * 3.0), squeeze=False, sharex=True, sharey=True)
    for ax, (name, (before, after, t)) in zip(axes.flat, curves.items()):
        ax.plot([0, 1], [0, 1], color="lightgray", ls="--", lw=1)
        for bins, colour, label in ((before, "gray", "raw"), (after, "#2c7fb8", f"T = {t:.2f}")):
            ok = bins["count"] > 0
            ax.plot(bins["confidence"][ok], bins["accuracy"][ok], "o-", color=colour, ms=3, lw=1.2, label=label)
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("confidence")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    fig.tight_layout()
    return fig


def coverage_overlay(curves: dict[str, dict]) -> plt.Figure:
    """Selective prediction: accuracy and balanced accuracy on the most confident share of test cases."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    colours = sns.color_palette("husl", len(curves))
    for (name, c), colour in zip(curves.items(), colours):
        axes[0].plot(c["coverage"], c["accuracy"], color=colour, label=name)
        axes[1].plot(c["coverage"], c["balanced_accuracy"], color=colour, label=name)
    for ax, title in zip(axes, ("accuracy on the kept cases", "balanced accuracy on the kept cases")):
        ax.set_xlabel("coverage (share of test cases not referred)")
        ax.set_title(title)
        ax.invert_xaxis()
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


# --- explanations and subgroups ----------------------------------------------------------


def explanation_panels(
    images: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray,
    table: pd.DataFrame,
    picks: pd.DataFrame,
    classes,
    per_class: int,
) -> plt.Figure:
    """Grad-CAM over the image (jet, translucent) with the lesion mask's outline (white): per true class (rows),
    the most confident correct cases, then the most confident errors (columns). Titles: predicted class and p."""
    position = {image_id: i for i, image_id in enumerate(table["image_id"])}
    cols = 2 * per_class
    fig, axes = plt.subplots(len(classes), cols, figsize=(1.3 * cols + 0.8, 1.45 * len(classes) + 0.5), squeeze=False)
    fig.subplots_adjust(left=0.1, right=0.99, top=1 - 0.45 / fig.get_figheight(), bottom=0.01, wspace=0.06, hspace=0.3)
    for ax in axes.flat:
        ax.axis("off")
    for r, c in enumerate(classes):
        axes[r, 0].text(
            -0.12, 0.5, c, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=10, fontweight="bold"
        )
        for kind, offset in (("correct", 0), ("incorrect", per_class)):
            rows = picks[(picks["label"] == c) & (picks["panel"] == kind)]
            for j, (_, row) in enumerate(rows.iterrows()):
                ax, i = axes[r, offset + j], position[row["image_id"]]
                ax.imshow(images[i])
                ax.imshow(maps[i], cmap="jet", alpha=0.4, vmin=0, vmax=1)
                if masks[i].any():
                    ax.contour(masks[i], levels=[0.5], colors="white", linewidths=0.8)
                ax.set_title(
                    f"{row['predicted']} {row['confidence']:.2f}",
                    fontsize=7,
                    pad=2,
                    color="#1a7f37" if kind == "correct" else "#b42318",
                )
    top = 1 - 0.15 / fig.get_figheight()
    for kind, offset in (("correct (most confident)", 0), ("incorrect (most confident)", per_class)):
        box = axes[0, offset].get_position()
        fig.text(box.x0, top, kind, fontsize=9, fontweight="bold", va="top")
    return fig


def mask_energy_plot(summary: pd.DataFrame) -> plt.Figure:
    """Per explained variant: share of Grad-CAM energy inside the lesion mask and pointing-game hit rate, with
    CIs; the grey mark is chance (the mean mask area)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.42 * len(summary) + 1.5), sharey=True)
    y = np.arange(len(summary))[::-1]
    for ax, m, title in zip(
        axes,
        ("mask_energy", "pointing_hit_rate"),
        ("Grad-CAM energy inside the lesion mask", "pointing game: maximum inside the mask"),
    ):
        ax.errorbar(
            summary[m],
            y,
            xerr=[summary[m] - summary[f"{m}_lo"], summary[f"{m}_hi"] - summary[m]],
            fmt="o",
            color="black",
            ecolor="gray",
            capsize=3,
        )
        ax.scatter(summary["chance"], y, marker="|", s=200, color="#b42318", label="chance (mask area)")
        ax.set_xlim(0, 1)
        ax.set_title(title, fontsize=10)
        ax.set_yticks(y, summary["variant"])
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def slice_heatmap(table: pd.DataFrame, metric: str = "balanced_accuracy") -> plt.Figure:
    """Rows x subgroup slices of one metric (point estimates); slices marked too small are greyed out and hatched,
    so that their colour cannot read as a finding."""
    pivot = table.pivot(index="variant", columns="slice", values=metric).reindex(
        index=table["variant"].unique(), columns=table["slice"].unique()
    )
    small = table.pivot(index="variant", columns="slice", values="too_small").reindex_like(pivot).fillna(False)
    fig, ax = plt.subplots(figsize=(0.55 * pivot.shape[1] + 3, 0.38 * pivot.shape[0] + 2))
    sns.heatmap(pivot, annot=True, fmt=".2f", cmap="RdYlGn", vmin=0, vmax=1, ax=ax, cbar=False, annot_kws={"size": 7})
    for (r, c), too_small in np.ndenumerate(small.to_numpy(dtype=bool)):
        if too_small:  # desaturate: a light grey veil over the cell, then the hatching
            ax.add_patch(plt.Rectangle((c, r), 1, 1, facecolor="#f2f2f2", alpha=0.85, edgecolor="none", zorder=2))
            ax.add_patch(plt.Rectangle((c, r), 1, 1, fill=False, hatch="///", edgecolor="gray", lw=0, zorder=3))
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(
        f"{metric.replace('_', ' ')} by subgroup (grey, hatched: too few lesions to say anything)", fontsize=10
    )
    fig.tight_layout()
    return fig


def ita_histogram(tones: pd.DataFrame) -> plt.Figure:
    """Histogram of the ITA angle with the category boundaries (:mod:`lesionlab.data.skin`)."""
    from lesionlab.data.skin import ITA_CATEGORIES

    fig, ax = plt.subplots(figsize=(8, 3))
    values = tones["ita"].dropna()
    ax.hist(values, bins=40, color="#b07d62")
    for name, lower in ITA_CATEGORIES[:-1]:
        ax.axvline(lower, color="gray", lw=0.8, ls="--")
        ax.text(lower, ax.get_ylim()[1] * 0.95, f" {name} >", fontsize=7, va="top", color="dimgray")
    ax.set_xlabel("ITA (degrees) of the skin around the lesion")
    ax.set_ylabel("images")
    ax.set_title(f"Skin tone estimate (ITA) of {len(values)} images")
    fig.tight_layout()
    return fig

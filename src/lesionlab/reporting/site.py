"""The ``site`` stage: the report a reviewer opens, ``reports/<dataset>/index.html``, and every stage's page.

Stages execute their notebooks (papermill) into ``results/<ds>/notebooks/``; this stage renders them all
(nbconvert, inputs hidden) with one navigation bar, a provenance header, sortable tables and the
research-only notice, and writes the index: the leaderboard with paired-difference marks, the figures,
and a table of every page. Provenance comes from ``dvc.lock`` (the stage's params, the data's hash,
the hashes of the code it ran) and from papermill's record of the run (wall time).

Pages are self-contained: figures are embedded as data URIs, the little JavaScript (table sorting) is
inline, nothing is fetched from a CDN, so the site reads offline from disk.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from lesionlab.models.families import FAMILIES
from lesionlab.paths import reports_dir, results_dir
from lesionlab.pipeline import timing
from lesionlab.reporting.report import EXPLANATIONS, Html, esc, explanation_link, git_commit, link, package_versions

DISCLAIMER = (
    "<b>Research and education only.</b> These models are not medical devices and must not be used to "
    "diagnose, treat or triage any person."
)


@dataclass(frozen=True)
class Page:
    stage: str  # the DVC stage that executed the notebook (eda, train@cnn_aug, compare, ...)
    notebook: str  # executed notebook, under results/<ds>/notebooks/
    html: str  # the page, relative to reports/<ds>/
    title: str
    section: str  # overview | CNN ladder | backbone | metadata | ensemble | explanation


def site_pages(params) -> list[Page]:
    """Every page of the current params.yaml, in reading order."""
    pages = [
        Page("eda", "eda.ipynb", "eda.html", "Exploratory data analysis", "overview"),
        Page("split", "split.ipynb", "split.html", "Lesion-grouped split", "overview"),
        Page("compare", "compare.ipynb", "compare.html", "Comparison of every variant", "overview"),
    ]
    for family in FAMILIES.values():  # every model family's rows (lesionlab.models.families), in registry order
        for v in getattr(params, family.section):
            pages.append(
                Page(
                    f"{family.stage_name}@{v}",
                    f"{family.stage}@{v}.ipynb",
                    f"{family.outputs}/{v}.html",
                    v,
                    family.group or family.label,
                )
            )
    pages.append(Page("explain", "explain.ipynb", EXPLANATIONS, "Grad-CAM explanations", "explanation"))
    return pages


# --- provenance ------------------------------------------------------------------------------------------------


def read_lock(root: Path) -> dict:
    """dvc.lock's stages ({} before the first `dvc repro`)."""
    lock = root / "dvc.lock"
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def code_check(root: Path, entry: dict) -> tuple[list[str], list[str]]:
    """(matching, differing) code files among a stage's recorded dependencies: its notebook, and the modules its
    code fingerprint (``results/code/<stage>.txt``) lists when the fingerprint it ran with is this checkout's
    (else the fingerprint is the differing file: a module it imports changed since it ran)."""
    from lesionlab.pipeline.stagedeps import FINGERPRINTS

    same, differ = [], []
    for dep in entry.get("deps", []):
        path = dep["path"]
        if not path.startswith(("src/", "notebooks/", FINGERPRINTS + "/")) or str(dep.get("md5", "")).endswith(".dir"):
            continue
        f = root / path
        matches = f.is_file() and _md5(f) == dep.get("md5")
        if path.startswith(FINGERPRINTS + "/") and matches:
            same += [line.split("  ", 1)[1] for line in f.read_text().splitlines() if line and not line.startswith("#")]
        else:
            (same if matches else differ).append(path)
    return same, differ


def data_hash(lock: dict, dataset: str, source_path: str) -> str:
    """The dataset's DVC hash: the prepare stage's dependency on ``source_path`` (params ``dataset_source``:
    data/<ds> or the generator) and its output."""
    entry = lock.get("prepare", {})
    source = next((d for d in entry.get("deps", []) if d["path"] == source_path), None)
    prepared = next((o for o in entry.get("outs", []) if o["path"] == f"results/{dataset}/prepared"), None)
    if source is None:
        return "not recorded (run `dvc repro`)"
    text = f"<code>{html.escape(source['path'])}</code> md5 <code>{str(source['md5'])[:12]}</code>"
    if prepared:
        text += f", prepared md5 <code>{str(prepared['md5'])[:12]}</code>"
    return text


def run_record(notebook: dict) -> dict:
    """Papermill's record of the run (start, duration) and lesionlab's (the git commit at execution)."""
    pm = notebook.get("metadata", {}).get("papermill", {})
    ll = notebook.get("metadata", {}).get("lesionlab", {})
    return {"started": pm.get("start_time"), "seconds": pm.get("duration"), "commit": ll.get("git_commit")}


def provenance_html(
    root: Path,
    dataset: str,
    page: Page,
    entry: dict | None,
    record: dict,
    lock: dict,
    versions: str,
    commit: str,
    source_path: str,
) -> str:
    """The header's facts: stage, dataset + DVC hash (of ``source_path``), seed, wall time, git ``commit`` (of the
    checkout, computed once per site) and code check, params, packages."""
    params = (entry or {}).get("params", {}).get("params.yaml", {})
    seed = params.get("base.seed", "–")
    seconds = record.get("seconds")
    wall = f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "–"
    started = (record.get("started") or "")[:19].replace("T", " ")
    if entry is None:
        code = "stage not in dvc.lock (executed outside `dvc repro`)"
    else:
        same, differ = code_check(root, entry)
        code = (
            f"the {len(same)} code files this stage ran match this checkout (dvc.lock md5)"
            if not differ
            else f"<b>differs from this checkout</b>: {', '.join(differ)}"
        )
    executed = f" · executed at <code>{html.escape(record['commit'])}</code>" if record.get("commit") else ""
    facts = [
        f"stage <code>{html.escape(page.stage)}</code>",
        f"dataset <b>{html.escape(dataset)}</b> ({data_hash(lock, dataset, source_path)})",
        f"seed {seed}",
        f"wall time {wall}" + (f" (started {started} UTC)" if started else ""),
        f"git <code>{html.escape(commit)}</code>{executed} · {code}",
    ]
    shown = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(json.dumps(v))}</code></td></tr>"
        for k, v in sorted(params.items())
    )
    return (
        f"<div class='ll-facts'>{' · '.join(facts)}</div>"
        f"<details><summary>params of this stage (dvc.lock) and package versions</summary>"
        f"<table class='ll-params'>{shown or '<tr><td>none recorded</td></tr>'}</table>"
        f"<p>{html.escape(versions)}</p></details>"
    )


# --- page chrome -------------------------------------------------------------------------------------------------

SITE_CSS = """<style>
.ll-top { font-family: system-ui, sans-serif; font-size: 13px; border-bottom: 1px solid #ccd; background: #f6f8fa;
  padding: 8px 16px; margin: 0 0 8px 0; }
.ll-nav a { margin-right: 14px; font-weight: 600; text-decoration: none; color: #0b5cad; }
.ll-nav .ll-here { margin-right: 14px; font-weight: 700; color: #333; }
.ll-facts { margin-top: 4px; color: #333; line-height: 1.5; }
.ll-warn { margin-top: 4px; padding: 4px 8px; background: #fff4e5; border-left: 4px solid #e69500; }
.ll-toc { position: fixed; right: 12px; top: 12px; width: 230px; max-height: 85vh; overflow-y: auto; z-index: 10;
  background: #fff; border: 1px solid #ccd; border-radius: 4px; padding: 6px 10px; font: 12px system-ui, sans-serif; }
.ll-toc ol { margin: 4px 0 0 0; padding-left: 18px; } .ll-toc a { text-decoration: none; color: #0b5cad; }
@media (max-width: 1400px) { .ll-toc { position: sticky; top: 0; right: auto; width: auto; max-height: 30vh;
  border-radius: 0; border-width: 0 0 1px 0; } .ll-toc ol { display: inline; padding: 0; }
  .ll-toc li { display: inline; margin-left: 12px; } }
.ll-metrics { margin-top: 6px; padding: 6px 8px; background: #eef6ee; border-left: 4px solid #2e7d32; font-size: 14px; }
.ll-params th { text-align: left; padding-right: 12px; font-weight: 600; }
table.dataframe thead th { cursor: pointer; }
th.ll-asc::after { content: " ▲"; color: #0b5cad; } th.ll-desc::after { content: " ▼"; color: #0b5cad; }
</style>"""

#: click a header cell to sort a table by that column (numbers by their leading value, "–" last); inline, offline
SORT_SCRIPT = """<script>
(function () {
  function key(cell) {
    var t = (cell ? cell.textContent : "").trim().replace(/\\u2212/g, "-");
    var m = t.match(/^[+-]?(\\d+\\.?\\d*|\\.\\d+)(e[+-]?\\d+)?/i);
    if (m) return parseFloat(m[0]);
    return (t === "" || t === "\\u2013") ? null : t.toLowerCase();
  }
  document.querySelectorAll("table").forEach(function (table) {
    var head = table.tHead;
    if (!head || !table.tBodies.length || !head.rows.length) return;
    var row = head.rows[head.rows.length - 1];
    Array.prototype.forEach.call(row.cells, function (th, col) {
      th.title = "click to sort";
      th.addEventListener("click", function () {
        var dir = th.classList.contains("ll-desc") ? "asc" : "desc";
        Array.prototype.forEach.call(row.cells, function (o) { o.classList.remove("ll-asc", "ll-desc"); });
        th.classList.add("ll-" + dir);
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (x === null || y === null) return (x === null) - (y === null);
          var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
          return dir === "asc" ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
</script>"""


def nav_html(page_html: str, dataset: str) -> str:
    """The navigation bar; links are relative to the page (pages in sub-folders go one level up)."""
    up = "../" * page_html.count("/")
    items = [("Index", "index.html"), ("EDA", "eda.html"), ("Split", "split.html"), ("Comparison", "compare.html")]
    links = "".join(
        f"<span class='ll-here'>{t}</span>" if href == page_html else f"<a href='{up}{href}'>{t}</a>"
        for t, href in items
    )
    return f"<div class='ll-nav'><b>lesionlab · {html.escape(dataset)}</b> &nbsp; {links}</div>"


#: how a notebook's own disclaimer line starts (dropped from its page: the banner carries it once)
NOTEBOOK_DISCLAIMER = "> **Research and education only.**"


def chrome(page_html: str, dataset: str, provenance: str, summary: str = "") -> str:
    """The top of every page: navigation, provenance, the one disclaimer, and (row pages) the test metrics."""
    return (
        f"{SITE_CSS}<div class='ll-top'>{nav_html(page_html, dataset)}{provenance}"
        f"<div class='ll-warn'>{DISCLAIMER}</div>{summary}</div>"
    )


def metrics_strip(board: pd.DataFrame | None, stage: str) -> str:
    """A row page's test metrics, first thing on the page: balanced accuracy, macro and malignant AUC (95 % CIs)
    and ECE, for the row and its ``+tta`` twin."""
    from lesionlab.evaluation import compare

    if board is None or "@" not in stage:
        return ""
    row = stage.split("@", 1)[1]
    lines = []
    for name in (row, row + compare.TTA_SUFFIX):
        found = board[board["variant"] == name]
        if found.empty:
            continue
        r = found.iloc[0]
        cells = [
            f"{label} {compare.format_ci(r[m], r[m + '_lo'], r[m + '_hi'])}"
            for m, label in (
                ("balanced_accuracy", "balanced accuracy"),
                ("macro_auc", "macro AUC"),
                ("malignant_auc", "malignant AUC"),
            )
            if m in r and pd.notna(r[m])
        ]
        if pd.notna(r.get("ece")):
            cells.append(f"ECE {r['ece']:.3f}")
        if cells:
            lines.append(f"<b>{esc(name)}</b> on the test split: " + " · ".join(cells))
    return f"<div class='ll-metrics'>{'<br>'.join(lines)}</div>" if lines else ""


_EXTERNAL_SCRIPT = re.compile(r'<script[^>]+src="https?://[^"]*"[^>]*>\s*</script>\s*', re.IGNORECASE)
#: inline scripts that would import code from a CDN (the lab template's mermaid loader): dropped, pages stay offline
_CDN_IMPORT_SCRIPT = re.compile(
    r"<script[^>]*>(?:(?!</script>).)*?https?://cdn[^\"']*(?:(?!</script>).)*</script>\s*", re.IGNORECASE | re.DOTALL
)
_BODY = re.compile(r"<body[^>]*>", re.IGNORECASE)


def inject(document: str, top: str) -> str:
    """``top`` right after <body>, the sort script before </body>; CDN scripts (and inline ones that import from a
    CDN) removed."""
    document = _CDN_IMPORT_SCRIPT.sub("", _EXTERNAL_SCRIPT.sub("", document))
    match = _BODY.search(document)
    if match is None:
        raise ValueError("not an HTML document: no <body>")
    document = document[: match.end()] + top + document[match.end() :]
    at = document.lower().rfind("</body>")
    return document[:at] + SORT_SCRIPT + document[at:]


_HEAD_STYLE = re.compile(r"<style[^>]*>(.*?)</style>\s*", re.IGNORECASE | re.DOTALL)
#: the stylesheet every page links (nbconvert's template CSS, written once instead of inlined in every page)
STYLESHEET = "assets/notebook.css"


def share_styles(document: str, page_html: str, out: Path) -> str:
    """Move the ``<style>`` blocks of the page's ``<head>`` (nbconvert's template CSS, the same for every page) to
    ``out/``:data:`STYLESHEET` and link it (relative to the page, so the site works from disk). Styles inside
    the body (a table's own scoped style) stay where they are."""
    at = document.lower().find("</head>")
    if at < 0:
        return document
    head, rest = document[:at], document[at:]
    css = "\n".join(m.group(1).strip() for m in _HEAD_STYLE.finditer(head))
    if not css:
        return document
    sheet = out / STYLESHEET
    if not sheet.is_file():  # the first page writes it; build_site clears it before the first page
        sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.write_text(css + "\n", encoding="utf-8")
    elif sheet.read_text(encoding="utf-8") != css + "\n":
        raise ValueError(f"{page_html}: its template CSS differs from the other pages' ({sheet} is shared)")
    link = f'<link rel="stylesheet" href="{"../" * page_html.count("/")}{STYLESHEET}">\n'
    return _HEAD_STYLE.sub("", head) + link + rest


_H2 = re.compile(r"<h2 id=\"([^\"]+)\"[^>]*>(.*?)</h2>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")


def with_toc(document: str) -> str:
    """A long page gets a table of contents of its sections that stays in view (sticky, on the right)."""
    entries = [(anchor, _TAGS.sub("", text).replace("¶", "").strip()) for anchor, text in _H2.findall(document)]
    if len(entries) < 3:
        return document
    links = "".join(
        f"<li><a href='#{html.escape(a, quote=True)}'>{html.escape(html.unescape(t))}</a></li>" for a, t in entries
    )
    toc = f"<nav class='ll-toc'><b>On this page</b><ol>{links}</ol></nav>"
    match = _BODY.search(document)
    return document if match is None else document[: match.end()] + toc + document[match.end() :]


class Renderer:
    """nbconvert's lab template, inputs and prompts hidden (one exporter for every page)."""

    def __init__(self):
        from nbconvert import HTMLExporter

        self.exporter = HTMLExporter(template_name="lab")
        self.exporter.exclude_input = True
        self.exporter.exclude_input_prompt = True
        self.exporter.exclude_output_prompt = True

    def __call__(self, notebook, title: str) -> str:
        for cell in notebook.cells:
            if cell.cell_type == "markdown":  # the page's banner says it once (chrome); the notebook's copy goes
                cell.source = "\n".join(
                    line for line in cell.source.split("\n") if not line.startswith(NOTEBOOK_DISCLAIMER)
                )
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    output["text"] = without_progress("".join(output.get("text", "")))
        body, _ = self.exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
        return body


#: a progress bar's line (tqdm: "name:  40%|████      | 4/10 [...]")
_PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+")


def without_progress(text: str) -> str:
    """A stream's text as a reader wants it: each line as a terminal would leave it (after its last carriage
    return), progress bars dropped."""
    lines = []
    for line in text.split("\n"):
        shown = line.rsplit("\r", 1)[-1]
        if not _PROGRESS.search(shown) and not (shown.strip() == "" and "\r" in line):
            lines.append(shown)
    return "\n".join(lines)


# --- the index ---------------------------------------------------------------------------------------------------


def _figure_html(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f"<img alt='figure' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def index_leaderboard(board: pd.DataFrame, paired: pd.DataFrame, params) -> pd.DataFrame:
    """The index's table, best balanced accuracy first: each row with its page, headline metrics and CIs (the best
    value of each metric in bold), paired marks, Grad-CAM in-mask share."""
    from lesionlab.evaluation import compare

    board = board.sort_values("balanced_accuracy", ascending=False, na_position="last", kind="stable")
    best = {m: board[m].max() for m in ("balanced_accuracy", "macro_auc", "malignant_auc", "melanoma_sensitivity")}
    best["ece"] = board["ece"].min()

    def ci(r, m):
        if pd.isna(r.get(m)):
            return "–"
        return compare.format_ci(r[m], r[f"{m}_lo"], r[f"{m}_hi"], bold=m in best and r[m] == best[m])

    def plain(r, m):
        if pd.isna(r.get(m)):
            return "–"
        return Html(f"<b>{r[m]:.3f}</b>") if r[m] == best[m] else f"{r[m]:.3f}"

    vs_base = compare.difference_marks(paired, "vs baseline")
    vs_best = compare.difference_marks(paired, "vs best")
    p_base = {
        r["a"]: r["mcnemar_p"]
        for _, r in paired[
            (paired["comparison"] == "vs baseline") & (paired["metric"] == "balanced_accuracy")
        ].iterrows()
    }
    kinds = {v: family.label for family in FAMILIES.values() for v in getattr(params, family.section)}
    rows = []
    for _, r in board.iterrows():
        v = r["variant"]
        base = v.removesuffix(compare.TTA_SUFFIX)
        energy = ci(r, "mask_energy") if "mask_energy" in r else "–"
        if energy != "–":
            energy = Html(f"<a href='{esc(explanation_link(base))}'>{energy}</a>")
        rows.append(
            {
                "variant": link(compare.row_report(v, params), v),
                "kind": kinds.get(base, "") + (" + TTA" if v != base else ""),
                "runs": int(r["n_runs"]) if "n_runs" in r and pd.notna(r["n_runs"]) else 1,
                "balanced accuracy": ci(r, "balanced_accuracy"),
                "macro AUC": ci(r, "macro_auc"),
                "malignant AUC": ci(r, "malignant_auc"),
                "melanoma sensitivity": plain(r, "melanoma_sensitivity"),
                "Δ bal. acc. vs baseline": vs_base.get(v, "–"),
                "McNemar p vs baseline": (
                    f"{p_base[v]:.2g}" if v in p_base and p_base[v] >= 1e-4 else ("<1e-4" if v in p_base else "–")
                ),
                "Δ bal. acc. vs best": vs_best.get(v, "–"),
                "Grad-CAM energy in mask": energy,
                "ECE": plain(r, "ece"),
            }
        )
    return pd.DataFrame(rows)


def best_by_kind(board: pd.DataFrame, params) -> Html:
    """'Best single model: X (…); best ensemble: Y (…).' on balanced accuracy, each with its CI."""
    from lesionlab.evaluation import compare

    ensembles = set(getattr(params, FAMILIES["ensemble"].section)) if "ensemble" in FAMILIES else set()
    parts = []
    for label, rows in (
        ("Best single model", board[~board["variant"].isin(ensembles)]),
        ("best ensemble", board[board["variant"].isin(ensembles)]),
    ):
        rows = rows[rows["balanced_accuracy"].notna()]
        if len(rows):
            r = rows.loc[rows["balanced_accuracy"].idxmax()]
            value = compare.format_ci(r["balanced_accuracy"], r["balanced_accuracy_lo"], r["balanced_accuracy_hi"])
            parts.append(f"{label}: <b>{esc(r['variant'])}</b>, {value}")
    return Html("; ".join(parts) + "." if parts else "")


def build_index(root: Path, params, dataset: str, pages: list[Page], records: dict[str, dict], top: str) -> str:
    from lesionlab.evaluation import compare
    from lesionlab.evaluation.metrics import METRIC_LABELS
    from lesionlab.reporting import figures
    from lesionlab.reporting.report import table_html

    out = reports_dir(root, dataset)
    board = pd.read_csv(out / "leaderboard.csv")
    paired = pd.read_csv(out / "paired.csv")
    slices = pd.read_csv(out / "slices.csv") if (out / "slices.csv").is_file() else None
    best = str(board.loc[board["balanced_accuracy"].idxmax(), "variant"])
    parts = [
        f"<h1>Skin-lesion classification on <code>{html.escape(dataset)}</code></h1>",
        f"<p>{compare.headline(board, params.compare.baseline)} {best_by_kind(board, params)}</p>",
        f"<p>Test split: {int(board['n_test_images'].iloc[0])} images of {int(board['n_test_lesions'].iloc[0])} "
        f"lesions, the same for every row; 95 % CIs resample lesions ({params.compare.bootstrap} resamples, seed "
        f"{params.base.seed}) and, for a row trained once per seed (<i>runs</i> &gt; 1: the value is the mean of "
        "its runs), its training runs too. ▲ / ▼: the paired CI of the difference excludes 0. Click a column "
        "header to sort.</p>",
    ]
    if slices is not None and len(slices):
        parts.append(f"<p>{compare.worst_slice(slices, best)}</p>")
    parts.append("<h2>Leaderboard (test split)</h2>")
    parts.append(table_html(index_leaderboard(board, paired, params), table_id="leaderboard"))
    parts.append(
        "<p>Full tables: <a href='compare.html'>the comparison page</a> (task views, calibration, "
        "abstention, subgroups, explanations) · CSV: <a href='leaderboard.csv'>leaderboard</a>, "
        "<a href='paired.csv'>paired</a>, <a href='slices.csv'>slices</a>, "
        "<a href='calibration.csv'>calibration</a>.</p>"
    )
    steps = compare.step_effects(paired, params)
    if len(steps):
        parts.append("<h2>The ablation ladder, step by step</h2>")
        parts.append(
            "<p>Each rung against the <code>parent:</code> it names in params.yaml: the change in balanced accuracy "
            "(rung − parent) with its 95 % CI, paired over lesions and, for rows trained once per seed, over training "
            "runs; filled when the CI excludes 0 (a robust effect).</p>"
        )
        parts.append(_figure_html(figures.step_effect_plot(steps)))
    parts.append("<h2>Confidence intervals</h2>")
    shown = [
        m for m in ("balanced_accuracy", "macro_auc", "malignant_auc", "melanoma_sensitivity") if board[m].notna().any()
    ]
    parts.append(_figure_html(figures.forest_plot(board, shown, METRIC_LABELS)))
    explained = pd.read_csv(out / "explanations.csv") if (out / "explanations.csv").is_file() else None
    if explained is not None and compare.has_mask_scores(explained):
        parts.append("<h2>Where the models look (Grad-CAM inside the lesion mask)</h2>")
        parts.append(f"<p>{compare.explanation_verdict(explained)}</p>")
        parts.append(_figure_html(figures.mask_energy_plot(explained)))
    external = pd.read_csv(out / "leaderboard_external.csv") if (out / "leaderboard_external.csv").is_file() else None
    if external is not None and len(external):
        from lesionlab.evaluation.external import external_display

        parts.append("<h2>External validation (never trained or tuned on)</h2>")
        parts.append(
            "<p>The same models on other datasets, with lesion-bootstrap CIs; the operating point is chosen on "
            "the internal validation split; <i>internal → drop</i> is the internal test AUC and internal − "
            "external. Details: <a href='compare.html#External-validation'>the comparison page</a>.</p>"
        )
        for name, part in external.groupby("dataset", sort=False):
            parts.append(f"<h3>{html.escape(str(name))}</h3>")
            shown = external_display(part)
            shown.insert(0, "report", [link(compare.row_report(v, params), v) for v in shown.pop("variant")])
            parts.append(table_html(shown))
    listing = pd.DataFrame(
        [
            {
                "page": link(p.html, p.title),
                "section": p.section,
                "stage": Html(f"<code>{esc(p.stage)}</code>"),
                "wall time (s)": (
                    f"{records[p.stage]['seconds']:.1f}"
                    if isinstance(records.get(p.stage, {}).get("seconds"), (int, float))
                    else "–"
                ),
            }
            for p in pages
        ]
    )
    parts.append("<h2>Every page</h2>")
    parts.append(table_html(listing))
    body = "\n".join(parts)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>lesionlab · {html.escape(dataset)}"
        f"</title><style>body {{ font-family: system-ui, sans-serif; margin: 0; }} main {{ padding: 0 16px 32px; }}"
        f" table.dataframe {{ border-collapse: collapse; font-size: 13px; }} table.dataframe td, "
        f"table.dataframe th {{ padding: 4px 8px; border-bottom: 1px solid #e4e4e4; text-align: left; }}"
        f" img {{ max-width: 100%; }}</style></head><body>{top}<main>{body}</main>{SORT_SCRIPT}</body></html>"
    )


# --- the stage ---------------------------------------------------------------------------------------------------


def build_site(root: Path, params, progress: bool = True) -> list[Path]:
    """Render every page of the current params and the index; returns the files written."""
    from lesionlab.pipeline.notebooks import skip_slow_schema_formats

    skip_slow_schema_formats()
    import nbformat

    dataset = params.dataset
    executed_dir, out = results_dir(root, dataset) / "notebooks", reports_dir(root, dataset)
    pages = site_pages(params)
    missing = [p.notebook for p in pages if not (executed_dir / p.notebook).is_file()]
    if missing:
        raise FileNotFoundError(f"{executed_dir}: no executed notebook for {missing}; run `dvc repro` first")
    lock, versions, render = read_lock(root), package_versions(), Renderer()
    shutil.rmtree(out / Path(STYLESHEET).parent, ignore_errors=True)  # written afresh by the first page
    board = pd.read_csv(out / "leaderboard.csv") if (out / "leaderboard.csv").is_file() else None
    facts = dict(lock=lock, versions=versions, commit=git_commit(root), source_path=params.dataset_source)
    written, records = [], {}
    started = time.perf_counter()
    for page in pages:
        nb = nbformat.read(executed_dir / page.notebook, as_version=4)
        records[page.stage] = record = run_record(nb)
        provenance = provenance_html(root, dataset, page, lock.get(page.stage), record, **facts)
        top = chrome(page.html, dataset, provenance, metrics_strip(board, page.stage))
        target = out / page.html
        target.parent.mkdir(parents=True, exist_ok=True)
        document = inject(render(nb, f"{page.title} ({dataset})"), top)
        if page.html in ("compare.html", EXPLANATIONS):
            document = with_toc(document)
        target.write_text(share_styles(document, page.html, out), encoding="utf-8")
        written.append(target)
    site_page = Page("compare", "compare.ipynb", "index.html", "Index", "overview")  # the index shows compare's tables
    top = chrome(
        "index.html",
        dataset,
        provenance_html(root, dataset, site_page, lock.get("compare"), records["compare"], **facts),
    )
    index = out / "index.html"
    index.write_text(build_index(root, params, dataset, pages, records, top), encoding="utf-8")
    written.append(index)
    seconds = time.perf_counter() - started
    timing.note(pages=len(written), render_seconds=round(seconds, 3))
    if progress:
        print(f"[site] {len(written)} pages in {out} ({seconds:.1f} s)", flush=True)
    return written

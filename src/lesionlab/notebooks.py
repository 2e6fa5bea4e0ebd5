"""Run a stage's notebook with papermill, keep the executed copy, render it with nbconvert.

Executed copies go to ``results/<ds>/notebooks/``; HTML (inputs hidden, figures
embedded as data URIs, no script loaded from a CDN) to ``reports/<ds>/``.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from lesionlab.paths import ensemble_report, reports_dir, results_dir, variant_report

KERNEL = "python3"  # the interpreter running this code (the project's .venv)


@dataclass(frozen=True)
class NotebookStage:
    notebook: str
    title: str


STAGES = {
    "eda": NotebookStage("01_eda.ipynb", "Exploratory data analysis"),
    "split": NotebookStage("02_split.ipynb", "Lesion-grouped stratified split"),
    "train": NotebookStage("03_train.ipynb", "Variant"),
    "backbone": NotebookStage("04_backbone.ipynb", "Backbone variant"),
    "tabular": NotebookStage("05_tabular.ipynb", "Metadata model"),
    "ensemble": NotebookStage("06_ensemble.ipynb", "Ensemble"),
    "compare": NotebookStage("07_compare.ipynb", "Comparison of every variant"),
}


def stage_paths(root: Path, dataset: str, stage: str, variant: str | None = None) -> tuple[Path, Path]:
    """(executed notebook, HTML report) of a stage."""
    executed_dir = results_dir(root, dataset) / "notebooks"
    if stage in ("train", "backbone", "tabular"):
        return executed_dir / f"{stage}@{variant}.ipynb", variant_report(root, dataset, variant)
    if stage == "ensemble":
        return executed_dir / f"{stage}@{variant}.ipynb", ensemble_report(root, dataset, variant)
    html = reports_dir(root, dataset) / ("index.html" if stage == "compare" else f"{stage}.html")
    return executed_dir / f"{stage}.ipynb", html


_EXTERNAL_SCRIPT = re.compile(r'<script[^>]+src="https?://[^"]*"[^>]*>\s*</script>\s*', re.IGNORECASE)


def render_html(executed: Path, html: Path, title: str) -> Path:
    """nbconvert the executed notebook to a self-contained HTML page with inputs hidden."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    # MathJax / require.js come from a CDN in nbconvert's template; our reports need neither,
    # and a reviewer's browser offline must not wait for them.
    body = _EXTERNAL_SCRIPT.sub("", body)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(body, encoding="utf-8")
    return html


def run_notebook(root: Path, dataset: str, stage: str, variant: str | None = None) -> tuple[Path, Path]:
    """Execute ``notebooks/<stage notebook>`` with papermill, then render it; returns (executed, html)."""
    import papermill as pm

    spec = STAGES[stage]
    executed, html = stage_paths(root, dataset, stage, variant)
    executed.parent.mkdir(parents=True, exist_ok=True)
    parameters = {"dataset": dataset}
    if variant is not None:
        parameters["variant"] = variant
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    started = time.perf_counter()
    print(f"[{stage}{'@' + variant if variant else ''}] papermill {spec.notebook} -> {executed.relative_to(root)}", flush=True)
    pm.execute_notebook(
        str(root / "notebooks" / spec.notebook),
        str(executed),
        parameters=parameters,
        kernel_name=KERNEL,
        cwd=str(root / "notebooks"),
        log_output=True,
        progress_bar=False,
    )
    title = f"{spec.title}: {variant}" if variant else spec.title
    render_html(executed, html, f"{title} ({dataset})")
    print(f"[{stage}{'@' + variant if variant else ''}] report {html.relative_to(root)} "
          f"({time.perf_counter() - started:.1f} s)", flush=True)
    return executed, html

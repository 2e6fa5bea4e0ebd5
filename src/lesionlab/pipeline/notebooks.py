"""Run a stage's notebook with papermill and keep the executed copy in ``results/<ds>/notebooks/``.

The HTML pages are rendered from those copies by the ``site`` stage (:mod:`lesionlab.reporting.site`), which
adds the navigation, the provenance header and the index.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lesionlab.paths import results_dir
from lesionlab.pipeline import timing
from lesionlab.reporting.report import git_commit

KERNEL = "python3"  # the interpreter running this code (the project's .venv)


@dataclass(frozen=True)
class NotebookStage:
    notebook: str
    title: str


def _stages() -> dict[str, NotebookStage]:
    """Every stage notebook: the data stages, then one per model family's stage (lesionlab.models.families), then the
    explanation and the comparison."""
    from lesionlab.models.families import discover

    stages = {
        "eda": NotebookStage("01_eda.ipynb", "Exploratory data analysis"),
        "split": NotebookStage("02_split.ipynb", "Lesion-grouped stratified split"),
    }
    for family in discover().values():
        stages.setdefault(family.stage, NotebookStage(family.notebook, family.title))
    stages["explain"] = NotebookStage("07_explain.ipynb", "Explanations")
    stages["compare"] = NotebookStage("08_compare.ipynb", "Comparison of every variant")
    return stages


STAGES = _stages()


def skip_slow_schema_formats() -> None:
    """Keep jsonschema from importing ``rfc3987_syntax`` in this process.

    nbformat validates notebooks with jsonschema, whose format checkers import ``rfc3987_syntax`` when it is
    installed (jupyter-events pulls it in); that module compiles a Lark grammar at import, about 2 s per process
    on a 2-core CPU, and only serves the ``iri`` formats, which no notebook schema uses. jsonschema imports it
    under ``suppress(ImportError)``, so marking it absent only drops those two checkers.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]


def stage_context():
    """(project root, validated params.yaml, the dataset it selects): what every stage notebook starts from, run by
    papermill or by hand in JupyterLab. The dataset is params.yaml's alone, never a notebook parameter, so a page
    cannot name one dataset while its model trains on another (`dvc exp run -S dataset=...` switches both)."""
    from lesionlab.config import find_project_root, load_params

    root = find_project_root()
    params = load_params(root / "params.yaml")
    return root, params, params.dataset


def executed_path(root: Path, dataset: str, stage: str, variant: str | None = None) -> Path:
    """The executed copy of a stage's notebook: ``results/<ds>/notebooks/<stage>[@<variant>].ipynb``."""
    return results_dir(root, dataset) / "notebooks" / (f"{stage}@{variant}.ipynb" if variant else f"{stage}.ipynb")


def run_notebook(root: Path, dataset: str, stage: str, variant: str | None = None) -> Path:
    """Execute ``notebooks/<stage notebook>`` with papermill; returns the executed copy (git commit recorded)."""
    skip_slow_schema_formats()
    import nbformat
    import papermill as pm

    spec = STAGES[stage]
    executed = executed_path(root, dataset, stage, variant)
    executed.parent.mkdir(parents=True, exist_ok=True)
    parameters = {} if variant is None else {"variant": variant}  # the dataset is params.yaml's (stage_context)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    started = time.perf_counter()
    print(
        f"[{stage}{'@' + variant if variant else ''}] papermill {spec.notebook} -> {executed.relative_to(root)}",
        flush=True,
    )
    pm.execute_notebook(
        str(root / "notebooks" / spec.notebook),
        str(executed),
        parameters=parameters,
        kernel_name=KERNEL,
        cwd=str(root / "notebooks"),
        log_output=True,
        progress_bar=False,
    )
    nb = nbformat.read(executed, as_version=4)
    timing.note(
        papermill_seconds=nb.metadata.get("papermill", {}).get("duration"),
        cells_seconds=round(sum(c.metadata.get("papermill", {}).get("duration") or 0 for c in nb.cells), 3),
        first_cell_seconds=next(
            (
                c.metadata.get("papermill", {}).get("duration")
                for c in nb.cells
                if c.cell_type == "code"
                and "parameters" not in c.metadata.get("tags", [])
                and "injected-parameters" not in c.metadata.get("tags", [])
            ),
            None,
        ),
    )
    nb.metadata["lesionlab"] = {"stage": stage, "variant": variant, "dataset": dataset, "git_commit": git_commit(root)}
    nbformat.write(nb, executed)
    print(
        f"[{stage}{'@' + variant if variant else ''}] executed in {time.perf_counter() - started:.1f} s; "
        "`python -m lesionlab site` renders its page",
        flush=True,
    )
    return executed

"""Run a stage's notebook with papermill and keep the executed copy in ``results/<ds>/notebooks/``.

The HTML pages are rendered from those copies by the ``site`` stage (:mod:`lesionlab.reporting.site`), which
adds the navigation, the provenance header and the index.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lesionlab.paths import results_dir
from lesionlab.pipeline import timing
from lesionlab.reporting.report import git_commit

KERNEL = "python3"  # papermill's kernel: the interpreter running this code (the project's .venv)
#: the stage name the generic model page (09_model.ipynb) passes to :func:`stage_context`
GENERIC_STAGE = "model"


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


def stage_context(stage: str, variant: str | None = None, epochs: int | None = None, seed: int | None = None):
    """(project root, validated params.yaml, the dataset it selects): what every stage notebook starts from.

    Run by DVC (papermill, :func:`run_notebook`), the root is the project's and ``epochs`` must be None. Run by
    hand (JupyterLab), the root is a scratch copy of the project (:func:`lesionlab.pipeline.sandbox.sandbox`): the
    notebook reads the tracked results and writes its own outputs there, never over DVC's; ``epochs`` (the quick
    knob of the parameters cell) then overrides the row's training length. The dataset is params.yaml's alone,
    never a notebook parameter, so a page cannot name one dataset while its model trains on another. ``seed``: the
    run is the row's seed replicate (its scratch copy is that of dvc.yaml's ``<stage>_seed@<row>-<seed>``); the
    notebook then calls ``params.replicate(variant, seed)``."""
    from lesionlab.config import find_project_root, load_params, parse_params, read_yaml
    from lesionlab.pipeline import sandbox

    root = find_project_root()
    params = load_params(root / "params.yaml")
    if sandbox.in_pipeline():
        if epochs is not None:
            raise ValueError("`epochs` is a knob for runs by hand; DVC's run takes params.yaml's")
        return root, params, params.dataset
    from lesionlab.models.families import generic_rows, of_row

    if stage == GENERIC_STAGE:
        variant = variant or next(iter(generic_rows(params)), None)
        if variant is None:  # no family uses the generic page: it trains and writes nothing
            return root, params, params.dataset
    row_stage = stage
    if variant is not None:
        family = of_row(params, variant)
        row_stage = family.dvc_stage or family.stage
        if epochs is not None:
            raw = read_yaml((root / "params.yaml").read_text(), "params.yaml")
            row = raw.setdefault(family.section, {}).get(variant) or {}
            raw[family.section][variant] = {**row, "epochs": int(epochs)}
            params = parse_params(raw, "params.yaml (+ epochs from the notebook)", root)
    if seed is not None and seed != params.base.seed:
        params.replicate(variant, seed)  # a seed that is not one of base's training seeds: a named error, now
        scratch = sandbox.sandbox(root, params.dataset, f"{row_stage}_seed", variant, seed)
    else:
        scratch = sandbox.sandbox(root, params.dataset, row_stage, variant)
    print(
        f"Run by hand: reading the tracked results, writing this stage's outputs to {scratch.relative_to(root)}/ "
        "(DVC's outputs are written only by `dvc repro` / `dvc exp run`)"
        + (f"; epochs = {epochs}" if epochs is not None else "")
    )
    return scratch, params, params.dataset


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
    from lesionlab.pipeline.sandbox import PIPELINE_ENV

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.WARNING)  # no "Executing Cell N" / "Ending Cell N" markers
    started = time.perf_counter()
    print(
        f"[{stage}{'@' + variant if variant else ''}] papermill {spec.notebook} -> {executed.relative_to(root)}",
        flush=True,
    )
    # the kernel papermill starts inherits these: it is DVC's run (stage_context); TensorFlow's C++ log (oneDNN and
    # absl notices, a graph-version "NodeDef mentions attribute" line printed twice per stage) stays out of the log
    # unless the user set their own level: a TensorFlow failure still raises in the cell
    kernel_env = {PIPELINE_ENV: "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    previous = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    try:
        pm.execute_notebook(
            str(root / "notebooks" / spec.notebook),
            str(executed),
            parameters=parameters,
            kernel_name=KERNEL,
            cwd=str(root / "notebooks"),
            log_output=False,  # the cells' own output, as printed (no display objects' reprs)
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
            progress_bar=False,
            # the kernel's own log (TCP transport notice, the KeyboardInterrupt of its shutdown): a kernel that
            # fails still fails the stage, through papermill
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            # every cell has run and replied by now: end the kernel at once instead of asking it to shut down (a
            # kernel holding TensorFlow or PyTorch spends ~1.4 s tearing them down, ~40 s over a cold pipeline)
            shutdown_kernel="immediate",
        )
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
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
        f"[{stage}{'@' + variant if variant else ''}] done in {time.perf_counter() - started:.1f} s"
        + _summary(root, dataset, variant),
        flush=True,
    )
    return executed


def _summary(root: Path, dataset: str, variant: str | None) -> str:
    """``: test balanced accuracy 0.612, macro AUC 0.903`` from the row's dvclive summary, when it has one."""
    import json

    from lesionlab.paths import live_dir

    if variant is None:
        return ""
    path = live_dir(root, dataset, variant) / "metrics.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    if "skipped" in summary:
        return ": skipped (see its page)"
    shown = [
        (label, summary.get(key))
        for key, label in (("balanced_accuracy", "test balanced accuracy"), ("macro_auc", "macro AUC"))
    ]
    return ": " + ", ".join(f"{label} {value:.3f}" for label, value in shown if isinstance(value, (int, float)))

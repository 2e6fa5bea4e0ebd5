"""Notebooks are committed thin: no outputs, a tagged parameters cell with working defaults."""

from __future__ import annotations

import nbformat
import pytest
import yaml
from conftest import REPO

from lesionlab.pipeline.notebooks import STAGES

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_every_stage_has_its_notebook():
    assert {s.notebook for s in STAGES.values()} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_parameters(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "Research and education only" in nb.cells[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert nb.metadata["kernelspec"]["name"] == "lesionlab"  # the project kernel (make setup registers it)


def _python(source: str) -> str:
    """A cell without its IPython magics (``%autoreload 2``)."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_parameter_drives_the_run_or_does_not_exist(path):
    """Each name the parameters cell sets is read by the cells after it; the dataset is never one (it is
    params.yaml's, through stage_context: a page cannot name one dataset and train on another)."""
    import ast

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    names = {
        t.id
        for node in ast.walk(ast.parse(_python(code[first].source)))
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    read = {
        node.id
        for c in code[first + 1 :]
        for node in ast.walk(ast.parse(_python(c.source)))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    assert "dataset" not in names
    assert names <= read, f"parameters set but never read: {sorted(names - read)}"
    assert "stage_context(" in code[first + 1].source
    assert nb.metadata["kernelspec"]["name"] == "lesionlab"  # the project kernel (make setup registers it)


def test_dvc_stages_run_the_notebooks_they_depend_on():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    dvc_stages = {"backbone": ["probe", "finetune"]}  # one notebook serves both backbone stages
    for stage, spec in STAGES.items():
        for name in dvc_stages.get(stage, [stage]):
            body = dvc["stages"][name].get("do", dvc["stages"][name])
            assert f"notebooks/{spec.notebook}" in body["deps"]
            assert f"lesionlab run {stage}" in body["cmd"]

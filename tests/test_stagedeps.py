"""Every dvc.yaml stage depends on exactly the package modules its command can import (lesionlab.pipeline.stagedeps):
so `dvc repro` can never call stale outputs up to date after a change to a module a stage imports."""

from __future__ import annotations

import shutil

from conftest import REPO

from lesionlab.pipeline import stagedeps


def test_every_stage_depends_on_exactly_the_modules_it_can_import():
    assert stagedeps.check(REPO) == {}, "run `python -m lesionlab deps`"


def _copy(tmp_path):
    root = tmp_path / "repo"
    for name in ("src", "notebooks"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copy2(REPO / "params.yaml", root / "params.yaml")  # the plot overlays are written from its rows
    return root


def test_a_missing_dependency_is_caught_and_rewritten(tmp_path):
    root = _copy(tmp_path)
    text = (root / "dvc.yaml").read_text()
    # 1. a module dropped from a stage's list by hand
    start = text.index("  train:\n")
    cut = text.index("        - src/lesionlab/evaluation/metrics.py\n", start)
    (root / "dvc.yaml").write_text(text[:cut] + text[cut + len("        - src/lesionlab/evaluation/metrics.py\n") :])
    assert stagedeps.check(root) == {"train": (["src/lesionlab/evaluation/metrics.py"], [])}
    # 2. a new import, three modules away from the notebook (03_train -> train -> keras_cnn -> fitting -> new_helper)
    (root / "src/lesionlab/new_helper.py").write_text("VALUE = 1\n")
    fitting = root / "src/lesionlab/models/fitting.py"
    fitting.write_text(
        fitting.read_text() + "\n\ndef _uses_helper():\n    from lesionlab import new_helper\n\n"
        "    return new_helper.VALUE\n"
    )
    found = stagedeps.check(root)
    assert (
        "src/lesionlab/new_helper.py" in found["train"][0]
        and "src/lesionlab/evaluation/metrics.py" in found["train"][0]
    )
    assert "src/lesionlab/new_helper.py" in found["compare"][0]  # compare loads models: the fitting code too
    assert "eda" not in found  # the EDA does not import fitting.py
    stagedeps.rewrite(root)
    assert stagedeps.check(root) == {}
    rewritten = (root / "dvc.yaml").read_text()
    assert "# the raw data (data/<dataset>) or, for synthetic, the generator" in rewritten  # comments kept


def test_a_stage_command_maps_to_its_handler_and_notebook():
    modules = stagedeps.command_modules(REPO, "python -m lesionlab run train --variant ${key}")
    assert "src/lesionlab/models/keras_cnn.py" in modules and "src/lesionlab/models/train.py" in modules
    assert "src/lesionlab/reporting/site.py" not in modules and "src/lesionlab/evaluation/compare.py" not in modules
    site = stagedeps.command_modules(REPO, "python -m lesionlab site")
    assert "src/lesionlab/reporting/site.py" in site and "src/lesionlab/reporting/report.py" in site

"""Every dvc.yaml stage depends on its code fingerprint (lesionlab.pipeline.stagedeps): the md5 of each package module
its command can import, written by the pipeline's first stage from the code as it is, so `dvc repro` can never
call stale outputs up to date after a change to a module a stage imports, and re-runs no stage that cannot import
it."""

from __future__ import annotations

import shutil

from conftest import REPO

from lesionlab.pipeline import stagedeps


def test_every_stage_depends_on_its_code_fingerprint_and_on_no_module_file():
    assert stagedeps.check(REPO) == {}, "run `python -m lesionlab deps`"


def _copy(tmp_path):
    root = tmp_path / "repo"
    for name in ("src", "notebooks"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copy2(REPO / "params.yaml", root / "params.yaml")  # the plot overlays are written from its rows
    return root


def test_a_module_listed_by_hand_or_a_missing_fingerprint_is_caught_and_rewritten(tmp_path):
    root = _copy(tmp_path)
    text = (root / "dvc.yaml").read_text()
    start = text.index("  train:\n")
    line = "        - results/code/train.txt\n"
    at = text.index(line, start)
    (root / "dvc.yaml").write_text(
        text[:at] + "        - src/lesionlab/evaluation/metrics.py\n" + text[at + len(line) :]
    )
    assert stagedeps.check(root) == {"train": (["results/code/train.txt"], ["src/lesionlab/evaluation/metrics.py"])}
    stagedeps.rewrite(root)
    assert stagedeps.check(root) == {}
    rewritten = (root / "dvc.yaml").read_text()
    assert "# the raw data (data/<dataset>) or, for synthetic, the generator" in rewritten  # comments kept
    assert "src/lesionlab/evaluation/metrics.py" not in rewritten
    assert (root / "results/code/train.txt").is_file()  # and the fingerprints are written


def test_a_fingerprint_follows_the_import_closure_and_changes_only_for_stages_that_import_the_module(tmp_path):
    root = _copy(tmp_path)
    first = stagedeps.fingerprints(root)
    assert set(first) == {name for name, _ in stagedeps._stage_bodies(stagedeps._load(root))} - {"code"}
    assert "src/lesionlab/models/keras_cnn.py" in first["train"] and "src/lesionlab/reporting/site.py" in first["site"]
    assert stagedeps.write_fingerprints(root) == sorted(first, key=list(first).index)  # all written the first time
    assert stagedeps.write_fingerprints(root) == []  # and nothing changes without a code change
    # a new import, three modules away from the notebook (03_train -> train -> keras_cnn -> fitting -> new_helper):
    # in the fingerprint of every stage that can reach it, at once (no `lesionlab deps` needed)
    (root / "src/lesionlab/new_helper.py").write_text("VALUE = 1\n")
    fitting = root / "src/lesionlab/models/fitting.py"
    fitting.write_text(
        fitting.read_text() + "\n\ndef _uses_helper():\n    from lesionlab import new_helper\n\n"
        "    return new_helper.VALUE\n"
    )
    changed = stagedeps.write_fingerprints(root)
    assert "train" in changed and "compare" in changed and "eda" not in changed  # the EDA does not import fitting
    assert "src/lesionlab/new_helper.py" in (root / "results/code/train.txt").read_text()
    # a change to a module only the report site imports touches the site's fingerprint alone
    report = root / "src/lesionlab/reporting/site.py"
    report.write_text(report.read_text() + "\n# a comment\n")
    assert stagedeps.write_fingerprints(root) == ["site"]


def test_a_stage_command_maps_to_its_handler_and_notebook():
    modules = stagedeps.command_modules(REPO, "python -m lesionlab run train --variant ${key}")
    assert "src/lesionlab/models/keras_cnn.py" in modules and "src/lesionlab/models/train.py" in modules
    assert "src/lesionlab/reporting/site.py" not in modules and "src/lesionlab/evaluation/compare.py" not in modules
    site = stagedeps.command_modules(REPO, "python -m lesionlab site")
    assert "src/lesionlab/reporting/site.py" in site and "src/lesionlab/reporting/report.py" in site


def test_dvc_lock_records_only_stages_that_dvc_yaml_defines():
    """DVC never drops the lock entry of a stage that was removed or renamed (e.g. the per-variant `explain@*`
    stages before the one `explain`): such entries are dead weight that DVC parses and re-dumps after every stage."""
    import yaml
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        defined = {stage.name for stage in repo.index.stages if getattr(stage, "name", None)}
    locked = set(yaml.safe_load((REPO / "dvc.lock").read_text())["stages"])
    assert "explain" in defined and "train@cnn_baseline" in defined  # the index saw the expanded stages
    assert locked - defined == set(), "remove these entries from dvc.lock"

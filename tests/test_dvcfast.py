"""lesionlab.pipeline.dvcfast: DVC with dvc.lock parsed by the safe loader and params files parsed once per version.

The patched DVC must leave exactly what DVC leaves: the committed locks come back byte for byte, a stage recorded
either way gives the same dvc.lock, dvc.yaml's comments are DVC's business as before, and an edited params file
is read again."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from lesionlab.pipeline import dvcfast

LOCKS = [REPO / "dvc.lock", *sorted((REPO / "reports").glob("*/dvc.lock"))]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_safe_loader_gives_every_committed_lock_back_byte_for_byte(lock):
    from dvc.utils.serialize._yaml import _dump, parse_yaml, parse_yaml_for_update

    text = lock.read_text()
    ours, dvcs = io.StringIO(), io.StringIO()
    _dump(parse_yaml(text, str(lock)), ours)
    _dump(parse_yaml_for_update(text, str(lock)), dvcs)
    assert ours.getvalue() == dvcs.getvalue() == text


def _dvc_project(root: Path, value: int) -> None:
    root.mkdir()
    (root / "params.yaml").write_text(f"# the knob\nstep:\n  value: {value}\n  other: 0.0001\n")
    (root / "dvc.yaml").write_text(
        "# a comment DVC must keep\nstages:\n"
        "  make:\n    cmd: python -c \"open('out.txt', 'w').write('x')\"\n"
        "    params: [step.value]\n    outs: [out.txt]\n"
        "  copy:\n    cmd: python -c \"open('copy.txt', 'w').write(open('out.txt').read())\"\n"
        "    deps: [out.txt]\n    params: [step]\n    outs: [copy.txt]\n"
    )
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, env=env, check=True)


def _dvc(root: Path, fast: bool, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(REPO / "src")}
    argv = [sys.executable, "-m", "lesionlab.pipeline.dvcfast" if fast else "dvc"]
    return subprocess.run([*argv, *args], cwd=root, env=env, capture_output=True, text=True, check=True)


def test_a_pipeline_recorded_through_dvcfast_leaves_dvcs_own_lock(tmp_path):
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    for root in (plain, fast):
        _dvc_project(root, 1)
    for root, patched in ((plain, False), (fast, True)):
        _dvc(root, patched, "repro", "-q")
        (root / "params.yaml").write_text((root / "params.yaml").read_text().replace("value: 1", "value: 22"))
        _dvc(root, patched, "repro", "-q")  # the lock rewritten, with a lock already there
    assert (fast / "dvc.lock").read_text() == (plain / "dvc.lock").read_text()
    assert "value: 22" in (fast / "dvc.lock").read_text()
    assert (fast / "dvc.yaml").read_text().startswith("# a comment DVC must keep\n")
    assert "up to date" in _dvc(fast, True, "status").stdout


def test_an_edited_params_file_is_parsed_again_and_every_caller_gets_its_own_copy(tmp_path):
    from dvc.fs import LocalFileSystem

    parses = []

    def load_path(fs_path, fs, **kwargs):
        parses.append(fs_path)
        return {"step": {"value": Path(fs_path).read_text().count("x")}}

    params = tmp_path / "params.yaml"
    params.write_text("x")
    cached = dvcfast._cached_loader(load_path)
    fs = LocalFileSystem()
    first = cached(str(params), fs)
    first["step"]["value"] = 99  # a caller that changes what it got changes nothing for the next
    assert cached(str(params), fs) == {"step": {"value": 1}} and len(parses) == 1
    params.write_text("xx")
    assert cached(str(params), fs) == {"step": {"value": 2}} and len(parses) == 2
    cached(str(params), fs, encoding="utf-8")  # loader arguments it does not know: DVC's own path, uncached
    assert len(parses) == 3


def test_another_dvc_runs_unpatched_and_says_so(monkeypatch, capsys):
    from dvc.dependency import param

    monkeypatch.delattr(param, "load_path")
    assert dvcfast.install() == []
    assert "unpatched" in capsys.readouterr().err


def test_install_twice_wraps_once(monkeypatch):
    from dvc import dvcfile
    from dvc.dependency import param

    monkeypatch.setattr(dvcfile, "modify_yaml", dvcfile.modify_yaml)  # restored after the test
    monkeypatch.setattr(param, "load_path", param.load_path)
    assert len(dvcfast.install()) == 2
    wrapped = (dvcfile.modify_yaml, param.load_path)
    dvcfast.install()
    assert (dvcfile.modify_yaml, param.load_path) == wrapped


def test_dvc_yaml_and_other_files_keep_dvcs_round_trip(tmp_path):
    """Only dvc.lock changes parser: a YAML file DVC edits in place keeps its comments."""
    from dvc.utils.serialize import _common, _yaml

    calls = []

    def original(path, fs=None):
        calls.append(path)
        return _yaml.modify_yaml(path, fs=fs)

    modify = dvcfast._lock_modifier(original, _common._modify_data, _yaml.parse_yaml, _yaml._dump)
    other = tmp_path / "dvc.yaml"
    other.write_text("# keep me\nstages: {}\n")
    with modify(str(other)) as data:
        data["stages"]["x"] = {"cmd": "true"}
    assert other.read_text().startswith("# keep me\n") and calls == [str(other)]
    lock = tmp_path / "dvc.lock"
    shutil.copy(LOCKS[0], lock)
    with modify(str(lock)) as data:
        assert type(data) is dict  # the safe loader's plain mapping, not ruamel's round-trip one
    assert lock.read_text() == LOCKS[0].read_text() and calls == [str(other)]


def test_the_dvcfast_benchmark_times_both_ways_and_puts_the_lock_back(tmp_path, monkeypatch):
    """tools/bench_dvcfast on a two-stage project: every command timed both ways, dvc.lock as it was."""
    from tools import bench_dvcfast

    root = tmp_path / "ws"
    _dvc_project(root, 1)
    (root / "dvc.yaml").write_text((root / "dvc.yaml").read_text().replace("  make:", "  check_params:"))
    _dvc(root, False, "repro", "-q")
    before = (root / "dvc.lock").read_bytes()
    measures = bench_dvcfast.measure(root, repeats=2)
    assert (root / "dvc.lock").read_bytes() == before
    assert set(measures) == set(bench_dvcfast.MEASURES)
    for m in measures.values():
        assert all(len(m["seconds"][way]) == 2 and min(m["seconds"][way]) > 0 for way in bench_dvcfast.WAYS)
    record = {
        "date": "2026-12-08T00:00",
        "git_commit": "abc",
        "machine": {"cpus": 2},
        "cpu": "x",
        "stages": 2,
        "lock_lines": len(before.splitlines()),
        "repeats": 2,
        "measures": measures,
    }
    table = bench_dvcfast.markdown_table(record)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(measures) and "`dvc status --quiet dvc.yaml`" in table  # header + a row each

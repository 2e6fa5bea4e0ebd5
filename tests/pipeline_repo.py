"""A scratch copy of the repository in which a test runs the real `dvc repro` (the e2e tests share it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO

from lesionlab.config import prune_parents

COPY = [
    "src",
    "notebooks",
    "dvc.yaml",
    "params.yaml",
    "data.dvc",
    ".dvcignore",
    "pyproject.toml",
    ".gitignore",
    "Makefile",
    "tools",  # the benchmark's family labels (test_families)
]


def run(cmd: list[str], cwd: Path, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if ok:
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}"
    return proc


def make_repo(repo: Path, params_update) -> tuple[dict, dict]:
    """Copy the project into ``repo`` (git + dvc initialised) with params.yaml changed by ``params_update``
    (a function of the loaded mapping); returns (environment for subprocesses, the params written)."""
    for name in COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params_update(params)
    prune_parents(params)  # a fixture that keeps some rows drops the parents it removed
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(repo / "src"),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.org",
    }
    env.pop("LESIONLAB_ROOT", None)
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["dvc", "config", "core.analytics", "false"], repo, env)
    return env, params

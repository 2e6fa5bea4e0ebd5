"""A stage process that loaded TensorFlow or PyTorch ends without their teardown, having flushed what it printed;
any other process exits the normal way."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import atexit, sys, types
if {heavy}:
    sys.modules["torch"] = types.ModuleType("torch")  # stands for a loaded framework (its teardown is what is skipped)
from lesionlab.cli import quick_exit
atexit.register(lambda: print("teardown ran", flush=True))
with open(sys.argv[1], "w") as f:
    f.write("written")
print("printed, not flushed")  # stdout is a pipe here: block-buffered
quick_exit(3)
print("returned")
sys.exit(4)
"""


def _run(tmp_path, heavy: bool, **env):
    out = tmp_path / "out.txt"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(heavy=heavy), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    return proc, out.read_text()


def test_a_process_with_a_framework_loaded_ends_at_once_with_its_output_flushed(tmp_path):
    proc, written = _run(tmp_path, heavy=True)
    assert proc.returncode == 3 and written == "written"
    assert proc.stdout == "printed, not flushed\n"  # flushed before the exit; no atexit teardown, no return


@pytest.mark.parametrize("heavy, env", [(False, {}), (True, {"LESIONLAB_SLOW_EXIT": "1"})], ids=["light", "asked"])
def test_other_processes_and_a_slow_exit_asked_for_return_and_tear_down_normally(tmp_path, heavy, env):
    proc, written = _run(tmp_path, heavy=heavy, **env)
    assert proc.returncode == 4 and written == "written"
    assert proc.stdout == "printed, not flushed\nreturned\nteardown ran\n"

"""Per-command timing records for the benchmark (``make bench``: tools/bench.py), off unless asked for.

With ``LESIONLAB_TIMINGS=<file>`` in the environment, every ``python -m lesionlab <command>`` that dvc.yaml runs
appends one JSON line to that file when it ends: the command and its stage name, wall time from the process's
own start (interpreter start-up and imports included), the peak resident memory of the process and of its
children (for notebook stages, the Jupyter kernel that ran the cells) and whatever the command noted, e.g.
papermill's duration and the cells' own time. Nothing is written, and nothing is imported, otherwise.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

ENV = "LESIONLAB_TIMINGS"

_notes: dict = {}
_IMPORTED = time.perf_counter()


def note(**fields) -> None:
    """Add fields to this process's record (kept even when timing is off, so callers need no check)."""
    _notes.update(fields)


def process_seconds() -> float:
    """Seconds since this process started (Linux /proc; elsewhere since this module was imported)."""
    try:
        start_ticks = float(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


def peak_rss_mib(who: int) -> float:
    """Peak resident set size of RUSAGE_SELF or RUSAGE_CHILDREN (the largest waited-for child), MiB."""
    kib = resource.getrusage(who).ru_maxrss
    return round(kib / (1024 if sys.platform != "darwin" else 1024 * 1024), 1)


def record(command: str, stage: str | None, status: int) -> dict | None:
    """Append this process's record to $LESIONLAB_TIMINGS; returns it (None when timing is off)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    row = {
        "command": command,
        "stage": stage or command,
        "status": status,
        "wall_seconds": round(process_seconds(), 3),
        "peak_rss_mib": peak_rss_mib(resource.RUSAGE_SELF),
        "children_peak_rss_mib": peak_rss_mib(resource.RUSAGE_CHILDREN),
        "finished": time.time(),
        **_notes,
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row

"""DVC's own commands with two costs of its YAML handling taken out: ``python -m lesionlab.pipeline.dvcfast ARGS``
runs ``dvc ARGS`` (``lesionlab repro`` runs every DVC command of its lanes this way).

1. **dvc.lock rewritten after every stage.** After each stage it runs (and on ``dvc commit``), DVC parses the
   whole dvc.lock with ruamel's round-trip loader, which keeps comments and is pure Python, then dumps it again:
   about 1 s a stage for the default pipeline's 5,600-line lock on the 2-core CPU (``python -m cProfile`` on
   ``dvc repro``: ``_dump_lockfile`` is its largest item). dvc.lock is DVC's own output and holds no comment;
   here it is parsed with ruamel's safe loader (its C parser, ~10 times faster), and DVC's own dumper writes it.
   Same data, same bytes: tests/test_dvcfast.py checks that both ways give the committed locks back unchanged,
   and that a stage recorded both ways leaves the same dvc.lock.
2. **params.yaml parsed once per stage.** DVC reads a stage's params by parsing the params file again for
   every stage that has params (~60 here) when it checks their status, and again when it records them. Here a
   parse is kept for as long as the file's size and modification time stay the same (local files only), and
   each caller gets its own deep copy.

Nothing else changes: the same DVC (requirements.lock), commands, arguments and outputs; a plain ``dvc ...``
works as always. When DVC's internals are not the ones this expects (another DVC version), it says so and runs
DVC unpatched.
"""

from __future__ import annotations

import copy
import os
import sys
from contextlib import contextmanager

#: the lock file whose round-trip parse is replaced (DVC names it so in every stage folder)
LOCK_NAME = "dvc.lock"


def install() -> list[str]:
    """Patch this process's DVC; returns what was patched (empty: nothing, DVC is not the expected version)."""
    try:
        from dvc import dvcfile
        from dvc.dependency import param
        from dvc.utils.serialize import _common, _yaml
    except ImportError:
        return []
    patched = []
    needed = (
        (dvcfile, "modify_yaml"),
        (_common, "_modify_data"),
        (_yaml, "parse_yaml"),
        (_yaml, "_dump"),
        (param, "load_path"),
    )
    if not all(callable(getattr(module, name, None)) for module, name in needed):
        print("[dvcfast] this DVC's internals are not the expected ones: running it unpatched", file=sys.stderr)
        return patched
    if not getattr(dvcfile.modify_yaml, "_lesionlab", False):
        dvcfile.modify_yaml = _lock_modifier(dvcfile.modify_yaml, _common._modify_data, _yaml.parse_yaml, _yaml._dump)
    patched.append("dvc.lock: safe loader")
    if not getattr(param.load_path, "_lesionlab", False):
        param.load_path = _cached_loader(param.load_path)
    patched.append("params: one parse per file version")
    return patched


def _lock_modifier(original, modify_data, parse, dump):
    """DVC's ``modify_yaml``, with dvc.lock parsed by the safe loader (any other file: DVC's own)."""

    @contextmanager
    def modify_yaml(path, fs=None):
        if os.path.basename(os.fspath(path)) == LOCK_NAME:
            with modify_data(path, parse, dump, fs=fs) as data:
                yield data
        else:
            with original(path, fs=fs) as data:
                yield data

    modify_yaml._lesionlab = True
    return modify_yaml


def _cached_loader(load_path):
    """DVC's ``load_path`` for params files, keeping each parse while the file's size and mtime stay the same."""
    cache: dict = {}  # absolute path -> (size, mtime, parsed)

    def cached(fs_path, fs, **kwargs):
        version = _version(fs_path, fs, kwargs)
        if version is None:
            return load_path(fs_path, fs, **kwargs)
        path, *stamp = version
        if path not in cache or cache[path][0] != stamp:  # params.yaml edited during a run is read again
            cache[path] = (stamp, load_path(fs_path, fs, **kwargs))
        return copy.deepcopy(cache[path][1])

    cached._lesionlab = True
    return cached


def _version(fs_path, fs, kwargs):
    """(path, size, mtime) of a local file, else None (another file system, extra loader arguments)."""
    if kwargs or getattr(fs, "protocol", None) != "local":
        return None
    try:
        stat = os.stat(fs_path)
    except OSError:
        return None
    return os.path.abspath(fs_path), stat.st_size, stat.st_mtime_ns


def main(argv: list[str] | None = None) -> int:
    from dvc.cli import main as dvc_main

    install()
    return dvc_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())

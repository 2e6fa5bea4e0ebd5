"""A stage notebook run by hand (JupyterLab) writes to a scratch copy of the project, never to DVC's outputs.

Only DVC's run writes ``results/``: :func:`lesionlab.pipeline.notebooks.run_notebook` (what dvc.yaml's commands
call) marks its kernel with :data:`PIPELINE_ENV`. Without that mark, :func:`sandbox` builds
``scratch/<stage>[@<row>]/``: every file and folder of the project as a symbolic link to the real one, except the
outputs dvc.yaml declares for that stage, which the run then writes there, fresh. Everything the stage reads
(prepared data, the split, other rows' models) is the real, tracked file; everything it writes stays in the
scratch folder (git- and DVC-ignored), so ``git status`` and ``dvc status`` stay clean.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

#: set in the environment of the kernels that DVC's stages start (papermill through `lesionlab run`)
PIPELINE_ENV = "LESIONLAB_PIPELINE_RUN"
SCRATCH = "scratch"
#: never mirrored into a scratch copy
_SKIP = {".git", ".dvc", SCRATCH}


def in_pipeline() -> bool:
    return os.environ.get(PIPELINE_ENV) == "1"


def stage_outputs(root: Path, dataset: str, stage: str, row: str | None, seed: int | None = None) -> list[str]:
    """The paths (relative to the root) dvc.yaml declares as the outputs and metrics of ``stage`` (``${key}`` /
    ``${item}`` / a matrix stage's ``${item.variant}`` standing for ``row``, ``${item.seed}`` for ``seed``), with the
    dataset filled in."""
    import yaml

    dvc = yaml.safe_load((Path(root) / "dvc.yaml").read_text(encoding="utf-8"))
    body = dvc["stages"][stage]
    body = body.get("do", body)
    out = []
    for entry in [*body.get("outs", []), *body.get("metrics", []), *body.get("plots", [])]:
        path = entry if isinstance(entry, str) else next(iter(entry))
        path = path.replace("${dataset}", dataset)
        if row is not None:
            path = path.replace("${key}", row).replace("${item.variant}", row).replace("${item}", row)
        if seed is not None:
            path = path.replace("${item.seed}", str(seed))
        if re.search(r"\$\{", path):
            raise ValueError(f"dvc.yaml: stage {stage!r} output {path!r} has a variable a hand run cannot fill")
        out.append(path.rstrip("/"))
    return out


def _mirror(real: Path, copy: Path, rel: str, outputs: list[str]) -> None:
    """``copy/rel`` mirrors ``real/rel``: a link, unless an output is (or lies below) it."""
    here = copy / rel if rel else copy
    if rel in outputs:
        return  # the stage writes it, fresh
    if rel and not any(o.startswith(rel + "/") for o in outputs):
        here.symlink_to(real / rel, target_is_directory=(real / rel).is_dir())
        return
    here.mkdir(parents=True, exist_ok=True)
    source = real / rel if rel else real
    if source.is_dir():
        for child in sorted(source.iterdir()):
            if not rel and child.name in _SKIP:
                continue
            _mirror(real, copy, f"{rel}/{child.name}" if rel else child.name, outputs)


def sandbox(root: Path, dataset: str, dvc_stage: str, row: str | None = None, seed: int | None = None) -> Path:
    """``scratch/<dvc_stage>[@<row>[-<seed>]]/`` rebuilt from the project at ``root``: links to everything but the
    stage's outputs (their parent folders are real, empty of them). Returns its path, the root a hand run works in.
    ``seed``: a seed replicate's matrix stage (``<dvc_stage>`` is then e.g. ``train_seed``)."""
    root = Path(root).resolve()
    outputs = stage_outputs(root, dataset, dvc_stage, row, seed)
    name = dvc_stage if not row else f"{dvc_stage}@{row}" + (f"-{seed}" if seed is not None else "")
    target = root / SCRATCH / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    _mirror(root, target, "", outputs)
    for out in outputs:  # the folders a stage fills are created by its code; their parents exist here
        (target / out).parent.mkdir(parents=True, exist_ok=True)
    return target

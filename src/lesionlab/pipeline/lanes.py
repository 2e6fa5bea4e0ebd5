"""`lesionlab repro --jobs N`: `dvc repro` with the light model runs of the pipeline in N lanes.

DVC runs a pipeline's stages one after the other. The CNN ladder's runs, the linear probes and the metadata
models (first runs and seed replicates: about half of a cold default run) and the EDA page do not depend on each
other, and one of them leaves much of a 2-core CPU idle: a Keras CNN computes on ``compute.keras_threads``
threads (default 1), a probe or a metadata model is mostly process start and imports. The fine-tunes and the
embedding are left alone: they keep every core busy, and one beside another stage only slows both. This runs
the light stages side by side with DVC's own commands, nothing of its own that decides what is stale (`make
repro` runs this with 2 lanes):

0. nothing stale (``dvc status dvc.yaml`` empty): done, after one status check;
1. ``dvc repro`` of what the lane stages depend on (code fingerprints, params check, prepare, split, embed);
2. the stale lane stages, spread over the lanes by their expected cost. Lane 0 is this workspace. Every other
   lane is a copy in ``.dvc/tmp/lanes/<n>/`` (the workspace files copied, its stages' inputs hard-linked) that
   shares this workspace's DVC cache, and runs ``dvc repro --single-item`` of its stages there. Only seed
   replicates (stages without a notebook page, whose outputs do not name the git commit) go to the copies;
3. each copy's outputs are moved here and recorded with ``dvc commit`` of exactly its stages, once every input
   they read is checked to be this workspace's (else that stage is left stale, to run here);
4. ``dvc repro`` of everything else, as usual.

Each stage runs the same command with the same inputs and the same number of threads as under a plain
``dvc repro``, so the outputs and metrics are the same (a test compares every run's predictions byte for byte);
only the wall time changes. ``dvc.lock`` ends as a plain ``dvc repro`` would leave it. When a lane fails the
others are stopped at once, as Ctrl-C stops `dvc repro` (the runs this workspace finished stay recorded in
dvc.lock, a copy's are dropped), and killed if they have not ended :data:`STOP_GRACE_S` later; every lane's log
is kept in ``.dvc/tmp/lanes/<n>.log``. Every DVC command here runs through :mod:`lesionlab.pipeline.dvcfast` (DVC
with dvc.lock and params.yaml parsed faster, the same dvc.lock).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

#: the stage groups (dvc.yaml names) whose stale stages are spread over the lanes: the CNN ladder's runs, the
#: linear probes, the metadata models and the EDA page, independent of each other and light on the CPU; seed
#: replicates may go to any lane, first runs (notebook stages) stay here
FIRST_RUNS = ("train", "probe", "tabular", "eda")
REPLICATES = ("train_seed", "probe_seed")

#: expected seconds of one stage on a 2-core CPU (default config; docs/cost.md's cold split), to balance lanes
COST = {"train": 19.0, "probe": 6.0, "tabular": 4.5, "eda": 7.5, "finetune_partial": 32.0, "finetune_full": 77.0}

LANES_DIR = Path(".dvc") / "tmp" / "lanes"

#: seconds a lane stopped with SIGINT (Ctrl-C) gets to end before its process group is killed
STOP_GRACE_S = 30.0


class LaneError(RuntimeError):
    """A lane's `dvc repro` failed (its log names the stage)."""


@dataclass
class Lane:
    index: int
    workdir: Path
    stages: list[str] = field(default_factory=list)
    cost: float = 0.0


def group(addressing: str) -> str:
    """``train_seed@cnn_aug-43`` -> ``train_seed``."""
    return addressing.split("@", 1)[0]


def stage_cost(addressing: str, params) -> float:
    """The expected cost of one stage (the balance only: a wrong guess costs time, never a result)."""
    kind = group(addressing).removesuffix("_seed")
    if kind == "finetune":
        row = addressing.split("@", 1)[1]
        row = row.rsplit("-", 1)[0] if group(addressing) == "finetune_seed" else row
        strategy = params.row_config(row, "finetune").strategy if row in params.finetunes else "partial"
        return COST["finetune_full" if strategy == "full" else "finetune_partial"]
    return COST.get(kind, 5.0)


def plan(stale: list[str], jobs: int, cost) -> list[list[str]]:
    """Stages per lane: notebook stages (first runs) in lane 0, seed replicates on the least loaded lane, the
    costliest first (longest-processing-time-first)."""
    lanes: list[list[str]] = [[] for _ in range(jobs)]
    load = [0.0] * jobs
    for name in stale:
        if group(name) in FIRST_RUNS:
            lanes[0].append(name)
            load[0] += cost(name)
    for name in sorted((s for s in stale if group(s) in REPLICATES), key=cost, reverse=True):
        i = min(range(jobs), key=lambda k: (load[k], k))
        lanes[i].append(name)
        load[i] += cost(name)
    return lanes


def spawn(argv: list[str], **popen) -> subprocess.Popen:
    """Start a lane's process in its own process group (stopping the lane stops the stage it runs too), with
    SIGINT at its default even where this process ignores it: a command started in the background (``cmd &``
    in a script, ``nohup``) inherits SIGINT ignored, and its lanes would then not stop on the Ctrl-C that
    :func:`_wait` sends. Exec resets a handled signal to its default and keeps an ignored one ignored, so this
    process handles SIGINT while it forks (from the main thread only: Python's rule for signal handlers)."""
    main = threading.current_thread() is threading.main_thread()
    ignored = main and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(argv, start_new_session=True, **popen)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def dvc_command(args: list[str]) -> list[str]:
    """A DVC command as the lanes run it: DVC itself, with dvc.lock and params.yaml parsed faster
    (:mod:`lesionlab.pipeline.dvcfast`: same outputs, same dvc.lock)."""
    return [sys.executable, "-m", "lesionlab.pipeline.dvcfast", *args]


def _dvc(args: list[str], cwd: Path, env: dict, log, prefix: str = "") -> subprocess.Popen:
    proc = spawn(
        dvc_command(args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )

    def pump():
        for line in proc.stdout:
            log.write(line)
            log.flush()
            sys.stdout.write(prefix + line)
            sys.stdout.flush()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    proc.pump = thread  # type: ignore[attr-defined]
    return proc


def _run_dvc(args: list[str], cwd: Path) -> None:
    """A dvc command in this workspace (through :func:`dvc_command`), its output straight to ours."""
    status = subprocess.run(dvc_command(args), cwd=cwd, check=False).returncode
    if status != 0:
        raise LaneError(f"`dvc {' '.join(args)}` failed (exit {status}); its output is above")


def _stale_model_stages(root: Path) -> tuple[list[str], dict, Path]:
    """The lane stages `dvc repro` would run now; for each what its copy needs: the paths its dependencies
    name, each widened to the stage output that holds it (a stage may read more of an upstream folder than the
    files it lists: a colour-constancy CNN decodes the prepared source images again); and the DVC cache folder
    the copies share."""
    from dvc.repo import Repo

    wanted = FIRST_RUNS + REPLICATES
    with Repo(str(root)) as repo:
        outs = [o.def_path for s in repo.index.stages for o in s.outs]
        stages = [s for s in repo.index.stages if group(s.addressing) in wanted]
        stale = set(repo.status(targets=[s.addressing for s in stages]))
        deps = {s.addressing: [_holder(d.def_path, outs) for d in s.deps] for s in stages if s.addressing in stale}
        cache_dir = Path(repo.cache.local_cache_dir).resolve()
    return [s.addressing for s in stages if s.addressing in stale], deps, cache_dir


def _holder(path: str, outs: list[str]) -> str:
    """The stage output that is ``path`` or a folder above it, else ``path``."""
    above = [o for o in outs if path == o or path.startswith(o.rstrip("/") + "/")]
    return min(above, key=len) if above else path


def _prefix_targets(root: Path) -> list[str] | None:
    """The stages that some lane stage depends on, lane stages excluded; None when nothing is stale (``dvc status
    dvc.yaml`` is empty: a ``.dvc`` file's data, such as data.dvc's when the raw data is not in this cache, is not
    `dvc repro`'s business)."""
    import networkx as nx
    from dvc.repo import Repo

    wanted = FIRST_RUNS + REPLICATES
    with Repo(str(root)) as repo:
        if not repo.status(targets=["dvc.yaml"]):
            return None
        graph = repo.index.graph
        models = [s for s in repo.index.stages if group(s.addressing) in wanted]
        upstream = set().union(*(nx.descendants(graph, s) for s in models)) if models else set()
        return sorted(s.addressing for s in upstream if group(s.addressing) not in wanted)


#: what a lane's copy needs besides its stages' dependencies: what `dvc repro` and `python -m lesionlab` read
WORKSPACE_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore", "pyproject.toml", ".dvc/config")


def make_lane(root: Path, lane: Lane, deps: dict, cache_dir: Path, raw: str | None = None) -> None:
    """Lay out ``lane.workdir``: copies of the workspace files (DVC rewrites dvc.lock in place), hard links
    (copies across file systems) to every dependency of the lane's stages and to the raw data folder ``raw``
    (read there, never written: a stage writes only its own outputs, new files); DVC there without git,
    sharing ``cache_dir``."""
    if lane.workdir.exists():
        shutil.rmtree(lane.workdir)
    for rel in WORKSPACE_FILES:
        if (root / rel).is_file():
            (lane.workdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, lane.workdir / rel)
    linked = {p for s in lane.stages for p in deps[s]} - set(WORKSPACE_FILES)
    if raw and (root / raw).is_dir():
        linked.add(raw)
    for rel in sorted(linked):
        src, dst = root / rel, lane.workdir / rel
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True, copy_function=_link, dirs_exist_ok=True)
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            _link(src, dst)
    (lane.workdir / ".dvc" / "config.local").write_text(
        f"[core]\n    no_scm = true\n    analytics = false\n[cache]\n    dir = {cache_dir}\n"
    )


def _link(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def repro(root: Path, jobs: int, keep: bool = False) -> int:
    """The whole pipeline as ``dvc repro`` leaves it, the stale lane stages spread over ``jobs`` lanes."""
    from lesionlab.config import load_params
    from lesionlab.pipeline import dvcfast

    root = root.resolve()
    os.chdir(root)  # DVC names a stage relative to the working folder: here, by its dvc.yaml name
    dvcfast.install()  # this process's own DVC calls (the status checks below) too
    if jobs <= 1:
        _run_dvc(["repro"], root)
        return 0
    prefix = _prefix_targets(root)
    if prefix is None:  # one status check, not the three DVC loads of the lanes' way
        print("Data and pipelines are up to date.", flush=True)
        return 0
    print(f"[repro] {jobs} lanes: first what the lane stages (CNNs, probes, EDA, ...) depend on", flush=True)
    _run_dvc(["repro", *prefix], root)
    stale, deps, cache_dir = _stale_model_stages(root)
    params = load_params(root / "params.yaml")
    assignment = plan(stale, jobs, lambda s: stage_cost(s, params))
    lanes = [Lane(i, root if i == 0 else root / LANES_DIR / str(i), names) for i, names in enumerate(assignment)]
    lanes = [lane for lane in lanes if lane.stages]
    for lane in lanes:
        lane.cost = sum(stage_cost(s, params) for s in lane.stages)
        print(f"[repro] lane {lane.index}: {len(lane.stages)} stages, ~{lane.cost:.0f} s expected", flush=True)
        if lane.index:
            make_lane(root, lane, deps, cache_dir, raw=params.dataset_source)
    (root / LANES_DIR).mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for lane in lanes:
            env = {**os.environ, "LESIONLAB_ROOT": str(lane.workdir)}
            log = open(root / LANES_DIR / f"{lane.index}.log", "w")  # noqa: SIM115 - closed below
            prefix = "" if lane.index == 0 else f"[lane {lane.index}] "
            procs.append((lane, log, _dvc(["repro", "--single-item", *lane.stages], lane.workdir, env, log, prefix)))
        failed = _wait(procs)
        if failed:
            logs = ", ".join(str(root / LANES_DIR / f"{lane.index}.log") for lane in failed)
            raise LaneError(f"lane {', '.join(str(lane.index) for lane in failed)} failed: see {logs}")
        for lane in lanes:
            if lane.index:
                adopt(root, lane, deps)
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:  # interrupted (Ctrl-C) or an error here: no lane outlives this command
                _stop(proc, signal.SIGINT)
                try:
                    proc.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    _stop(proc, signal.SIGKILL)
        if not keep:
            for lane in lanes:
                if lane.index:
                    shutil.rmtree(lane.workdir, ignore_errors=True)
    print("[repro] lanes done: the rest of the pipeline", flush=True)
    _run_dvc(["repro"], root)
    return 0


def _wait(procs: list) -> list[Lane]:
    """Wait for every lane; the first that fails stops the others at once. Returns the lanes that failed (one
    stopped here is not counted: its unfinished stages are simply left stale)."""
    failed: list[Lane] = []
    stopped: dict[int, float] = {}  # lane index -> when it was sent SIGINT
    running = list(procs)
    while running:
        for item in list(running):
            lane, log, proc = item
            code = proc.poll()
            if code is None:
                if lane.index in stopped and time.monotonic() - stopped[lane.index] > STOP_GRACE_S:
                    _stop(proc, signal.SIGKILL)  # a stage that does not end on SIGINT
                continue
            running.remove(item)
            proc.pump.join()
            log.close()
            if code != 0 and lane.index not in stopped:
                failed.append(lane)
                for other, _, other_proc in running:
                    if other.index not in stopped:
                        stopped[other.index] = time.monotonic()
                        _stop(other_proc, signal.SIGINT)  # what Ctrl-C sends: DVC stops the stage, frees its locks
        if running:
            time.sleep(0.2)
    return failed


def _stop(proc: subprocess.Popen, sig: int) -> None:
    """Stop a lane's `dvc repro` and the stage it is running (its own process group)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def adopt(root: Path, lane: Lane, deps: dict) -> None:
    """Bring a finished lane's runs into this workspace and record them with ``dvc commit``, as if ``dvc repro``
    had run them here. DVC's run cache would do this itself, but it keeps no stage with an uncached output (the
    replicates' metrics, history and dvclive files are in git). Only when every input is the one the lane read:
    the same dvc.yaml and params.yaml, and each dependency the same file (a hard link) or the same bytes; else
    the stage is left stale and the final ``dvc repro`` runs it here."""
    from dvc.repo import Repo

    same = [f for f in ("dvc.yaml", "params.yaml") if _same_file(root / f, lane.workdir / f)]
    adopted = []
    with Repo(str(lane.workdir)) as there:
        outs = {s.name: [o.def_path for o in s.outs] for s in there.index.stages if s.name in lane.stages}
    for name in lane.stages:
        if len(same) < 2 or not all(_same_tree(root / d, lane.workdir / d) for d in deps[name]):
            print(f"[repro] {name}: an input changed while it ran; it runs again", flush=True)
            continue
        for rel in outs[name]:
            src, dst = lane.workdir / rel, root / rel
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        adopted.append(name)
    if adopted:
        _run_dvc(["commit", "--force", "--quiet", *adopted], root)
        print(f"[repro] lane {lane.index}: {len(adopted)} runs recorded in dvc.lock (dvc commit)", flush=True)


def _same_file(a: Path, b: Path) -> bool:
    if not (a.is_file() and b.is_file()):
        return False
    return os.path.samefile(a, b) or a.read_bytes() == b.read_bytes()


def _same_tree(a: Path, b: Path) -> bool:
    """``b`` holds the same files as ``a`` (a file or a folder): a hard link or equal bytes each."""
    if a.is_file() or b.is_file():
        return _same_file(a, b)
    if not (a.is_dir() and b.is_dir()):
        return not a.exists() and not b.exists()
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(_same_file(a / f, b / f) for f in files_a)

"""Process hygiene for the commands dvc.yaml runs: a stage dies with the ``dvc`` that started it, and a stage
never runs twice at once in one workspace.

- :func:`die_with_parent`: the process asks Linux for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``) and
  watches the parent itself too (a shell between ``dvc`` and the command, or another OS); on SIGTERM it exits
  through ``SystemExit``, so papermill shuts its kernel down (the kernel also polls its own parent).
- :func:`stage_lock`: an exclusive ``flock`` on ``.dvc/tmp/lesionlab-locks/<stage>.lock`` held for the life of the
  process. The kernel releases it when the process dies, however it dies; a second run of the same stage while
  an orphan of the first still writes its outputs is refused with the orphan's pid.
- :func:`worker_pool`: a process pool whose workers die with the stage and do not hold its lock (a forked worker
  inherits the lock's file; an orphaned worker would otherwise block every later run of the stage).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path


class StageBusy(RuntimeError):
    """The same stage is already running in this workspace (an orphan of a stopped ``dvc``, or a second run)."""


_HELD: set = set()  # the lock files this process holds open (closed in forked workers: see worker_pool)


def _terminate(signum, frame) -> None:  # SIGTERM -> SystemExit: finally blocks (papermill's kernel shutdown) run
    raise SystemExit(128 + signum)


def _signal_on_parent_death(signum: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signum)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def die_with_parent(poll_seconds: float = 1.0) -> None:
    """End this process when the process that started it ends (``dvc`` killed, its terminal closed)."""
    parent = os.getppid()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    _signal_on_parent_death(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        event = threading.Event()
        while not event.wait(poll_seconds):
            if os.getppid() != parent:  # re-parented: the parent is gone
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="lesionlab-parent-watch", daemon=True).start()


def lock_folder(root: Path) -> Path | None:
    """Where the stage locks live: DVC's own scratch folder of this workspace (``.dvc/tmp``, never committed)."""
    dvc = Path(root) / ".dvc"
    return dvc / "tmp" / "lesionlab-locks" if dvc.is_dir() else None


@contextmanager
def stage_lock(root: Path, stage: str):
    """Hold the lock of ``stage`` (e.g. ``train@cnn_aug``) while the block runs; :class:`StageBusy` if another
    process holds it. Outside a DVC workspace (no ``.dvc/``) there is nothing to guard."""
    import fcntl

    folder = lock_folder(root)
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (stage.replace("/", "_") + ".lock")
    handle = open(path, "a+")  # noqa: SIM115 - held open for the stage's lifetime: closing it releases the lock
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise StageBusy(
                f"stage {stage} is already running in this workspace (process {holder}; an earlier run "
                f"whose dvc was stopped?): wait for it to end, or stop it (`kill {holder}`), then run "
                "again. Its outputs were left alone"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _HELD.add(handle)
        yield
    finally:
        _HELD.discard(handle)
        handle.close()  # closing releases the lock (so does the process's death)


def _worker_init(parent: int) -> None:
    """In a forked pool worker: let go of the stage locks (the stage keeps them) and die with the stage."""
    for handle in list(_HELD):
        handle.close()  # this copy only: the lock stays with the stage process, which holds its own
    _HELD.clear()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a worker has no cleanup to run
    _signal_on_parent_death(signal.SIGKILL)
    if os.getppid() != parent:  # the stage died while this worker started
        os._exit(1)


def worker_pool(workers: int):
    """A :class:`~concurrent.futures.ProcessPoolExecutor` of ``workers`` processes that end with this one and
    never hold its stage lock."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=max(1, workers), initializer=_worker_init, initargs=(os.getpid(),))

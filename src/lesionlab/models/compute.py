"""Where and how the networks run: device, numeric precision, memory layout and Keras' backend.

params.yaml's ``compute:`` section chooses; :func:`resolve` turns the choice into what this machine does and
why, and every training or embedding run records it (``training.json`` / ``embed.json``: ``compute``).

- **device** ``auto``: CUDA when PyTorch sees a GPU, else the CPU. (With ``keras_backend: torch`` the Keras
  models use the same device through Keras' torch backend: one CUDA build serves every stage.)
- **precision** ``auto``: bfloat16 autocast where the hardware computes in bfloat16 natively (a CUDA GPU that
  supports it; a CPU with AVX512_BF16 or AMX), else float32. On a CPU without those instructions bfloat16 is
  emulated and slower than float32, so ``auto`` keeps float32 there; ``bfloat16`` forces it anyway. A cap on
  oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA``, e.g. ``AVX2``: how one sees another CPU's behaviour on this
  one) below the bfloat16 ISAs counts as a CPU without them.
- **channels_last**: convolutions on NHWC memory (oneDNN's and cuDNN's fast path; ``make bench`` measures it).
- **depthwise gradients in float32** (training in bfloat16 on a CPU, :meth:`Compute.for_training`): PyTorch's CPU
  backward of a bfloat16 depthwise convolution with stride 2 or a 5x5 kernel is an order of magnitude slower than
  in float32 at EfficientNet-Lite0's shapes (seen on AVX512_BF16 and AMX CPUs), which made a full fine-tune's
  backward five times its forward. The forward stays the bfloat16 convolution autocast
  runs (the same numbers); only the gradients of trainable depthwise convolutions are computed in float32
  (:func:`lesionlab.models.torch_models.float32_depthwise_gradients`).
- **memory** (:func:`keep_freed_memory`, every PyTorch and Keras run): glibc's malloc gives each large block
  (over ~32 MB, and at first over 128 KB) its own ``mmap`` and returns it to the kernel when it is freed, so a
  training step that allocates the same activations and gradients again touches fresh pages every time; the
  kernel zero-fills each 4 KiB page on its first touch. On the 2-core VM this project is developed on, that made
  one ``fill_`` of a 30 MB gradient buffer take 40-210 ms instead of ~1 ms, and a full fine-tune's backward
  30-70 % slower and erratic. The runs tell glibc to keep freed memory for the next allocations (no ``mmap``
  blocks, no trimming): the same numbers, a few % more peak memory. ``LESIONLAB_MALLOC=system`` keeps glibc's
  defaults (to compare, or with another allocator preloaded). Recorded as the run's ``compute.memory``.

Imports torch only inside the functions.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

#: CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: oneDNN ISA names (``ONEDNN_MAX_CPU_ISA``) whose cap still includes bfloat16 arithmetic (DEFAULT / ALL: no cap)
BF16_ISA_CAPS = (
    "AVX512_CORE_BF16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
    "DEFAULT",
    "ALL",
)


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(device: str) -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 natively, and the evidence."""
    if device == "cuda":
        import torch

        ok = bool(torch.cuda.is_bf16_supported())
        return ok, f"{torch.cuda.get_device_name(0)}: bfloat16 {'supported' if ok else 'not supported'}"
    flags = cpu_flags() & set(BF16_CPU_FLAGS)
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if flags and cap and cap not in BF16_ISA_CAPS:
        return False, f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below bfloat16 (it would be emulated)"
    if flags:
        return True, "CPU has " + ", ".join(sorted(flags))
    return False, "CPU has neither " + " nor ".join(BF16_CPU_FLAGS) + " (bfloat16 would be emulated)"


@dataclass(frozen=True)
class Compute:
    device: str  # cuda | cpu
    precision: str  # float32 | bfloat16
    channels_last: bool
    keras_backend: str
    reason: str  # why this precision
    depthwise_grad_float32: bool = False  # training: trainable depthwise convolutions' gradients in float32
    memory: str = ""  # what keep_freed_memory did in the run's process ("" in records made before it existed)
    threads: int | None = None  # a Keras run's CPU threads (compute.keras_threads; 0 = one per core); None: not set

    def for_training(self) -> Compute:
        """This compute for a run that trains convolutions: on a CPU in bfloat16 the depthwise convolutions'
        gradients are computed in float32 (module docstring; recorded in the run's ``compute``)."""
        return replace(self, depthwise_grad_float32=self.device == "cpu" and self.precision == "bfloat16")

    def autocast(self):
        """The context the forward passes run in: bfloat16 autocast, or nothing."""
        if self.precision != "bfloat16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device, dtype=torch.bfloat16)

    def prepare_model(self, model):
        """``model`` on the device, in the memory layout chosen (a model that lays out its own inputs, such as
        :class:`lesionlab.models.torch_models.BackboneNet`, is told to through its ``channels_last``)."""
        import torch

        if hasattr(model, "channels_last"):
            model.channels_last = self.channels_last
        model = model.to(self.device)
        if self.depthwise_grad_float32:
            from lesionlab.models.torch_models import float32_depthwise_gradients

            float32_depthwise_gradients(model)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        layout = ", channels-last" if self.channels_last else ""
        grads = ", depthwise gradients in float32" if self.depthwise_grad_float32 else ""
        threads = ""
        if self.threads is not None:
            threads = f", {self.threads} CPU thread(s)" if self.threads else ", a thread per core"
        return f"{self.device}, {self.precision}{layout}{grads}{threads} ({self.reason})"


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: the most memory glibc may keep free at the top of its heap (mallopt takes an int)
_KEEP_BYTES = 2**31 - 1
_memory_choice: str | None = None


def keep_freed_memory() -> str:
    """Have glibc's malloc keep the memory this process frees for its next allocations (module docstring:
    **memory**); once per process. Returns what was done, as the run records it. Elsewhere than glibc (or with
    ``LESIONLAB_MALLOC=system``) it changes nothing and says so."""
    global _memory_choice
    if _memory_choice is None:
        _memory_choice = _set_malloc()
    return _memory_choice


def _set_malloc() -> str:
    choice = os.environ.get("LESIONLAB_MALLOC", "keep").strip().lower() or "keep"
    if choice not in ("keep", "system"):
        raise ValueError(f"LESIONLAB_MALLOC={choice!r}: use 'keep' (the default) or 'system'")
    if choice == "system":
        return "system allocator (LESIONLAB_MALLOC=system)"
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt, libc_version = libc.mallopt, libc.gnu_get_libc_version
    except (AttributeError, OSError, TypeError):  # no C library found, or not glibc (musl, macOS, Windows)
        return "system allocator (not glibc)"
    libc_version.restype = ctypes.c_char_p
    version = libc_version().decode()
    if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)):
        return f"system allocator (glibc {version} refused mallopt)"
    return f"glibc {version}: freed memory kept (mmap_max 0, trim_threshold {_KEEP_BYTES})"


def pick_device(choice: str = "auto") -> str:
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compute.device is 'cuda' but PyTorch sees no GPU (set compute.device: auto or cpu)")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def resolve(cfg=None) -> Compute:
    """params.yaml's ``compute:`` (a :class:`lesionlab.config.ComputeParams`; defaults when None) on this machine."""
    device = pick_device(getattr(cfg, "device", "auto"))
    precision = getattr(cfg, "precision", "auto")
    native, evidence = native_bf16(device)
    if precision == "auto":
        precision, reason = ("bfloat16" if native else "float32"), f"auto: {evidence}"
    else:
        reason = f"set in params: {evidence}"
    return Compute(
        device=device,
        precision=precision,
        channels_last=bool(getattr(cfg, "channels_last", True)),
        keras_backend=getattr(cfg, "keras_backend", "tensorflow"),
        reason=reason,
        memory=keep_freed_memory(),
    )

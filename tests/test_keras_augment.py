"""The Keras models' augmentation: flips, rotation, zoom and shift as one affine resampling (keras_augment).

Keras (TensorFlow) runs in a child process: TensorFlow loaded into the test process would crash a later
test that imports torchvision there."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from lesionlab.config import AugmentParams
    from lesionlab.models.keras_augment import augmenter, register
    from lesionlab.models.keras_common import load_keras
    from lesionlab.models.predictor import safe_keras_load

    out_path, folder = sys.argv[1], sys.argv[2]
    keras = load_keras(0)
    layer = lambda **kw: register(keras)(**kw)
    run = lambda l, x, training=True: keras.ops.convert_to_numpy(l(x, training=training))
    images = lambda n=64, size=25, seed=0: np.random.default_rng(seed).random((n, size, size, 3)).astype("float32")
    out = {}
    x = images()
    out["x"] = x
    out["inference"] = run(layer(flip=True, rotation=0.5, zoom=0.05, translate=0.1, seed=1), x, training=False)
    out["x200"] = images(n=200)
    out["flips"] = run(layer(flip=True, seed=3), out["x200"])
    out["turned"] = run(layer(flip=False, rotation=0.5, zoom=0.05, seed=4), x)
    kw = dict(flip=True, rotation=0.5, zoom=0.05)
    out["seed7a"], out["seed7b"] = run(layer(seed=7, **kw), x), run(layer(seed=7, **kw), x)
    out["seed8"] = run(layer(seed=8, **kw), x)
    block = augmenter(keras, AugmentParams(), seed=5)
    out["block_layers"] = np.array([l.__class__.__name__ for l in block.layers])
    out["nothing"] = np.array(augmenter(keras, AugmentParams(flip=False, rotation=0, zoom=0, brightness=0,
                                                              contrast=0), seed=5) is None)
    geometry = augmenter(keras, AugmentParams(), seed=5, geometry_only=True)
    out["geometry_layers"] = np.array([l.__class__.__name__ for l in geometry.layers])
    inputs = keras.Input((25, 25, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(block(inputs)))
    model.save(folder + "/m.keras")
    loaded = safe_keras_load(keras, folder + "/m.keras")
    config = loaded.get_layer("augment").get_layer("geometry").get_config()
    out["loaded_rotation"], out["loaded_seed"] = np.array(config["rotation"]), np.array(config["seed"])
    small = images(n=4)
    out["model_out"] = keras.ops.convert_to_numpy(model(small))
    out["loaded_out"] = keras.ops.convert_to_numpy(loaded(small))
    np.savez(out_path, **out)
    """
)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_augment")
    out = folder / "out.npz"
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(out), str(folder)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


def test_outside_training_the_images_pass_unchanged(ran):
    np.testing.assert_array_equal(ran["inference"], ran["x"])


def test_flips_alone_give_exactly_the_four_flips_each_about_equally_often(ran):
    kinds = []
    for a, b in zip(ran["x200"], ran["flips"]):
        flips = [a, a[:, ::-1], a[::-1], a[::-1, ::-1]]
        matches = [k for k, f in enumerate(flips) if np.allclose(b, f, atol=1e-5)]
        assert len(matches) == 1, "each output is one flip of its input, pixel for pixel"
        kinds.append(matches[0])
    counts = np.bincount(kinds, minlength=4)
    assert counts.min() > 25, counts  # ~50 each of 200


def test_rotation_and_zoom_turn_about_the_centre_and_really_transform(ran):
    x, out = ran["x"], ran["turned"]
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_allclose(out[:, 12, 12], x[:, 12, 12], atol=1e-5)  # the centre pixel stays
    moved = np.abs(out - x).mean(axis=(1, 2, 3))
    assert (moved > 0.01).mean() > 0.9  # nearly every image changed elsewhere
    assert out.min() >= x.min() - 1e-5 and out.max() <= x.max() + 1e-5  # bilinear + reflect: no new values


def test_the_same_seed_gives_the_same_batch_and_another_seed_another(ran):
    np.testing.assert_array_equal(ran["seed7a"], ran["seed7b"])
    assert np.abs(ran["seed7a"] - ran["seed8"]).max() > 0.1


def test_the_block_follows_params_and_a_saved_model_loads_in_safe_mode(ran):
    assert list(ran["block_layers"]) == ["RandomGeometry", "RandomBrightness", "RandomContrast"]
    assert bool(ran["nothing"])
    assert list(ran["geometry_layers"]) == ["RandomGeometry"]
    assert float(ran["loaded_rotation"]) == 0.5 and int(ran["loaded_seed"]) == 5
    np.testing.assert_allclose(ran["loaded_out"], ran["model_out"], atol=1e-6)

"""The Keras models' augmentation: flips, rotation, zoom and shift as one affine resampling (keras_augment)."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlab.config import AugmentParams

pytest.importorskip("keras")


@pytest.fixture(scope="module")
def keras():
    from lesionlab.models.keras_common import load_keras

    return load_keras(0)


def _layer(keras, **kwargs):
    from lesionlab.models.keras_augment import register

    return register(keras)(**kwargs)


def _images(n=64, size=25, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3)).astype("float32")


def _run(keras, layer, x, training=True):
    return keras.ops.convert_to_numpy(layer(x, training=training))


def test_outside_training_the_images_pass_unchanged(keras):
    x = _images()
    layer = _layer(keras, flip=True, rotation=0.5, zoom=0.05, translate=0.1, seed=1)
    np.testing.assert_array_equal(_run(keras, layer, x, training=False), x)


def test_flips_alone_give_exactly_the_four_flips_each_about_equally_often(keras):
    x = _images(n=200)
    out = _run(keras, _layer(keras, flip=True, seed=3), x)
    kinds = []
    for a, b in zip(x, out):
        flips = [a, a[:, ::-1], a[::-1], a[::-1, ::-1]]
        matches = [k for k, f in enumerate(flips) if np.allclose(b, f, atol=1e-5)]
        assert len(matches) == 1, "each output is one flip of its input, pixel for pixel"
        kinds.append(matches[0])
    counts = np.bincount(kinds, minlength=4)
    assert counts.min() > 25, counts  # ~50 each of 200


def test_rotation_and_zoom_turn_about_the_centre_and_really_transform(keras):
    x = _images(size=25)
    out = _run(keras, _layer(keras, flip=False, rotation=0.5, zoom=0.05, seed=4), x)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_allclose(out[:, 12, 12], x[:, 12, 12], atol=1e-5)  # the centre pixel stays
    moved = np.abs(out - x).mean(axis=(1, 2, 3))
    assert (moved > 0.01).mean() > 0.9  # nearly every image changed elsewhere
    assert out.min() >= x.min() - 1e-5 and out.max() <= x.max() + 1e-5  # bilinear + reflect: no new values


def test_the_same_seed_gives_the_same_batch_and_another_seed_another(keras):
    x = _images()
    kwargs = dict(flip=True, rotation=0.5, zoom=0.05)
    a = _run(keras, _layer(keras, seed=7, **kwargs), x)
    b = _run(keras, _layer(keras, seed=7, **kwargs), x)
    c = _run(keras, _layer(keras, seed=8, **kwargs), x)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_the_block_follows_params_and_a_saved_model_loads_in_safe_mode(keras, tmp_path):
    from lesionlab.models.keras_augment import augmenter
    from lesionlab.models.predictor import safe_keras_load

    block = augmenter(keras, AugmentParams(), seed=5)
    assert [layer.__class__.__name__ for layer in block.layers] == [
        "RandomGeometry",
        "RandomBrightness",
        "RandomContrast",
    ]
    assert augmenter(keras, AugmentParams(flip=False, rotation=0, zoom=0, brightness=0, contrast=0), seed=5) is None
    geometry = augmenter(keras, AugmentParams(), seed=5, geometry_only=True)
    assert [layer.__class__.__name__ for layer in geometry.layers] == ["RandomGeometry"]
    inputs = keras.Input((25, 25, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(block(inputs)))
    model.save(tmp_path / "m.keras")
    loaded = safe_keras_load(keras, tmp_path / "m.keras")
    geometry = loaded.get_layer("augment").get_layer("geometry")
    assert geometry.get_config()["rotation"] == AugmentParams().rotation and geometry.get_config()["seed"] == 5
    x = _images(n=4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)

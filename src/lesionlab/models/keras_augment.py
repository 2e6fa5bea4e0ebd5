"""Training-time augmentation for the Keras models: flips, rotation, zoom and shift drawn per image and applied as
**one** affine resampling (``keras.ops.image.affine_transform``), then brightness and contrast.

Keras' own layers (``RandomFlip`` -> ``RandomRotation`` -> ``RandomZoom`` -> ``RandomTranslation``) resample the
batch once per layer: three bilinear interpolations of a 48-px image blur it three times and cost ~11 ms per batch
of 64 on a 2-core CPU, ~20 % of a BatchNorm CNN's training step. Composed into one matrix the same distribution
of transforms costs ~5 ms and interpolates once.

The layer is registered with Keras (``lesionlab>RandomGeometry``), so a saved model loads with ``safe_mode`` on
once :func:`register` has run (``keras_common.load_keras`` runs it). TensorFlow / PyTorch are imported inside the
functions: importing this module costs nothing.
"""

from __future__ import annotations

import math

_LAYER = None


def register(keras):
    """The ``RandomGeometry`` layer class, defined and registered with Keras once per process."""
    global _LAYER
    if _LAYER is None:
        _LAYER = _define(keras)
    return _LAYER


def _define(keras):
    ops = keras.ops

    @keras.saving.register_keras_serializable(package="lesionlab")
    class RandomGeometry(keras.layers.Layer):
        """Per image: a horizontal and a vertical flip (each with probability 1/2, when ``flip``), a rotation
        uniform in ±``rotation`` of a full turn, a scale uniform in 1 ± ``zoom`` and a shift uniform in
        ±``translate`` of the side, about the image centre; reflected borders; the identity outside training."""

        def __init__(self, flip=True, rotation=0.0, zoom=0.0, translate=0.0, seed=None, **kwargs):
            super().__init__(**kwargs)
            self.flip, self.rotation, self.zoom, self.translate = bool(flip), rotation, zoom, translate
            self.seed = seed
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.supports_masking = True

        def call(self, images, training=False):
            if not training:
                return images
            shape = ops.shape(images)
            n = shape[0]
            h, w = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
            u = 2.0 * keras.random.uniform((n, 6), seed=self.seed_generator) - 1.0  # uniform in [-1, 1)
            angle = u[:, 0] * (self.rotation * 2.0 * math.pi)
            scale = 1.0 + u[:, 1] * self.zoom
            one = ops.ones_like(angle)
            fx = ops.where(u[:, 2] < 0.0, -one, one) if self.flip else one
            fy = ops.where(u[:, 3] < 0.0, -one, one) if self.flip else one
            cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
            # output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): flip, then rotate and scale
            a0, a1, b0, b1 = cos * fx, -sin * fy, sin * fx, cos * fy
            cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
            a2 = cx - a0 * cx - a1 * cy + u[:, 4] * (self.translate * w)
            b2 = cy - b0 * cx - b1 * cy + u[:, 5] * (self.translate * h)
            zero = ops.zeros_like(angle)
            transform = ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)
            out = ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")
            return ops.cast(out, images.dtype)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {
                **super().get_config(),
                "flip": self.flip,
                "rotation": self.rotation,
                "zoom": self.zoom,
                "translate": self.translate,
                "seed": self.seed,
            }

    return RandomGeometry


def augmenter(keras, aug, seed: int, geometry_only: bool = False):
    """The augmentation block of ``aug`` (params.yaml ``augment:``) as one Keras layer (``None`` if it does
    nothing): the geometry in one resampling, then brightness and contrast (skipped with ``geometry_only``)."""
    layers = keras.layers
    blocks = []
    if aug.flip or aug.rotation or aug.zoom or aug.translate:
        blocks.append(register(keras)(aug.flip, aug.rotation, aug.zoom, aug.translate, seed=seed, name="geometry"))
    if not geometry_only:
        if aug.brightness:
            blocks.append(layers.RandomBrightness(aug.brightness, value_range=(0.0, 1.0), seed=seed + 4))
        if aug.contrast:
            blocks.append(layers.RandomContrast(aug.contrast, seed=seed + 5))
    return keras.Sequential(blocks, name="augment") if blocks else None

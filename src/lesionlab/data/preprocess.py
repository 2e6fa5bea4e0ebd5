"""Image preprocessing shared by prepare, external test sets and ``lesionlab predict``: one code path, so that a
model sees at prediction time exactly what it was trained on.

Two options (``prepare:`` in params.yaml; the prepare stage records non-default ones in ``summary.json``, and
predict reads them from there):

- ``color_constancy``: ``none``, or ``shades_of_gray`` (Finlayson & Trezzi 2004, Minkowski norm p = 6): the
  illuminant is estimated per image as the p-norm of each channel and divided out, which removes much of the
  colour cast of different dermatoscopes and cameras (ISIC challenge winners use it, e.g. Barata et al. 2015,
  Gessert et al. 2020). Applied to the full-resolution image before any resize.
- ``resize``: how a W x H image becomes S x S. ``squash`` (the default: the whole image, aspect ratio changed),
  ``crop`` (the centred square of side min(W, H), then resized: nothing distorted, the sides cut),
  ``pad`` (the image fitted inside the square with its aspect ratio, the rest filled with the mean colour of
  its border: nothing distorted, nothing cut). Lesion masks follow the same geometry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lesionlab.data import detmath as dm

COLOR_CONSTANCY = ("none", "shades_of_gray")
RESIZE = ("squash", "crop", "pad")
MINKOWSKI_P = 6


@dataclass(frozen=True)
class Preprocess:
    color_constancy: str = "none"
    resize: str = "squash"

    def __post_init__(self):
        if self.color_constancy not in COLOR_CONSTANCY:
            raise ValueError(f"color_constancy must be one of {COLOR_CONSTANCY}, got {self.color_constancy!r}")
        if self.resize not in RESIZE:
            raise ValueError(f"resize must be one of {RESIZE}, got {self.resize!r}")

    @property
    def is_default(self) -> bool:
        return self == Preprocess()

    def record(self) -> dict:
        """What summary.json records (nothing for the defaults, so existing prepared data keep their bytes)."""
        return {} if self.is_default else {"preprocess": asdict(self)}

    @classmethod
    def from_summary(cls, summary: dict) -> Preprocess:
        return cls(**summary.get("preprocess", {}))


def shades_of_gray(rgb: np.ndarray, p: int = MINKOWSKI_P) -> np.ndarray:
    """Shades-of-Gray colour constancy of a uint8 RGB image: each channel divided by its Minkowski p-norm mean
    (the illuminant estimate, normalised to unit length) times sqrt(3), so a neutral illuminant is unchanged."""
    if int(p) != p or p < 1:
        raise ValueError(f"shades_of_gray: the Minkowski p must be a whole number >= 1, got {p}")
    x = np.asarray(rgb, dtype=np.float64)
    # x**p by multiplications (exact: 255**6 < 2**53) and the p-th root by detmath, not np.power, whose SIMD
    # kernel numpy picks per CPU: the corrected bytes are the same on every machine
    powered = x.copy()
    for _ in range(int(p) - 1):
        powered *= x
    mean = np.mean(powered, axis=(0, 1))
    illuminant = np.where(mean > 0, dm.exp(dm.log(mean) / p), 0.0)
    norm = np.sqrt(np.sum(illuminant * illuminant))
    if norm <= 0:
        return np.asarray(rgb, dtype=np.uint8)
    out = x / (illuminant / norm * np.sqrt(3))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def square_box(width: int, height: int, policy: str) -> tuple[int, int, int, int]:
    """``crop``: the centred square (left, top, right, bottom) to cut out; otherwise the whole image."""
    if policy != "crop" or width == height:
        return 0, 0, width, height
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def to_square(im, size: int, policy: str, resample, fill=None):
    """A PIL image -> ``size`` x ``size`` by the resize ``policy`` (``fill``: the padding colour for ``pad``)."""
    from PIL import Image

    if policy == "crop":
        im = im.crop(square_box(*im.size, "crop"))
    if policy != "pad" or im.size[0] == im.size[1]:
        return im.resize((size, size), resample)
    w, h = im.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    canvas = Image.new(im.mode, (size, size), fill if fill is not None else 0)
    canvas.paste(im.resize(new, resample), ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def border_colour(rgb: np.ndarray) -> tuple[int, ...]:
    """The mean colour of an image's one-pixel border (the padding colour of ``pad``)."""
    a = np.asarray(rgb)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return tuple(int(round(v)) for v in border.mean(axis=0))

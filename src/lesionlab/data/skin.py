"""Skin tone as a subgroup: the individual typology angle (ITA) of the skin around each lesion.

ITA = arctan((L* - 50) / b*) in degrees, from the CIELAB colour of the *skin*: the pixels outside the lesion
mask where the image has one, else the outer ring of the image (the lesion is centred in dermoscopy). The
median L* and b* of those pixels give one angle per image, binned into the standard categories (Chardon et
al. 1991, Del Bino et al. 2013): very light > 55°, light 41-55°, intermediate 28-41°, tan 10-28°,
brown -30-10°, dark < -30°.

Dermoscopy images are taken under the device's own light and often colour-cast, so ITA from them is an
estimate (no colour calibration), good for finding who a model serves worse, not for typing a person's skin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: (name, lower bound in degrees), from light to dark; the first whose bound the angle exceeds is its category
ITA_CATEGORIES: tuple[tuple[str, float], ...] = (
    ("very light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -np.inf),
)
#: the share of the image side that counts as the outer ring when there is no mask
RING = 0.15
#: fewer skin pixels than this: no estimate
MIN_SKIN_PIXELS = 16

_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in 0..255, any leading shape, last axis RGB."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """sRGB in 0..255 (floats, clipped) of CIELAB (D65) values: the inverse of :func:`srgb_to_lab`."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE
    linear = np.clip(xyz @ np.linalg.inv(_RGB_TO_XYZ).T, 0, 1)
    c = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(c * 255.0, 0, 255)


def ita_angle(lightness: float, b: float) -> float:
    """ITA in degrees: arctan((L* - 50) / b*) (arctan2, so b* = 0 gives ±90°)."""
    return float(np.degrees(np.arctan2(lightness - 50.0, b)))


def ita_category(angle: float) -> str:
    if not np.isfinite(angle):
        return "unknown"
    return next(name for name, lower in ITA_CATEGORIES if angle > lower)


def skin_pixels(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(n, 3) RGB pixels of the skin: outside the lesion mask, or (no mask) the outer ring of the image."""
    h, w = image.shape[:2]
    if mask is not None and mask.any():
        keep = ~mask.astype(bool)
    else:
        ring_h, ring_w = max(1, int(round(h * RING))), max(1, int(round(w * RING)))
        keep = np.zeros((h, w), dtype=bool)
        keep[:ring_h], keep[-ring_h:], keep[:, :ring_w], keep[:, -ring_w:] = True, True, True, True
    return image[keep].reshape(-1, 3)


def image_ita(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The ITA of one image's skin (median L* and b* of :func:`skin_pixels`); NaN with too few skin pixels."""
    pixels = skin_pixels(np.asarray(image), mask)
    if len(pixels) < MIN_SKIN_PIXELS:
        return float("nan")
    lab = srgb_to_lab(pixels)
    return ita_angle(float(np.median(lab[:, 0])), float(np.median(lab[:, 2])))


def skin_tone_table(images: np.ndarray, masks: np.ndarray, has_mask: np.ndarray, image_ids) -> pd.DataFrame:
    """``image_id, ita, ita_category, skin_from`` ('outside mask' or 'image border') for every image."""
    angles, source = [], []
    for img, m, ok in zip(images, masks, has_mask):
        angles.append(image_ita(img, m if ok else None))
        source.append("outside mask" if ok and np.asarray(m).any() else "image border")
    return pd.DataFrame(
        {
            "image_id": list(image_ids),
            "ita": angles,
            "ita_category": [ita_category(a) for a in angles],
            "skin_from": source,
        }
    )


def category_order() -> list[str]:
    return [name for name, _ in ITA_CATEGORIES] + ["unknown"]

"""The embedded default dataset: synthetic dermoscopy-like images in HAM10000's layout.

Each *lesion* gets a label, patient metadata and a set of visual traits drawn from
class-dependent distributions that overlap (a share of lesions are "mimics" whose
traits come from another class, as real seborrhoeic keratoses mimic melanoma).
Each lesion is photographed one or more times; follow-up views re-render the same
lesion rotated, shifted, zoomed and re-lit, with new hair and sensor noise.

The traits follow the dermoscopic vocabulary: asymmetry, border irregularity and
sharpness, colour variegation, pigment network, dots/globules, arborising vessels,
milia-like cysts, scale, central white patch, lacunae and blue-white veil.

Generation is deterministic: lesion *i* draws from ``SeedSequence([seed, i])``,
so the same seed gives byte-identical images, masks and metadata table, whatever
the order or number of worker processes, and whatever the CPU: every elementary
function and random draw that numpy or libm would pick per CPU (SIMD kernels of
``sin``/``exp``, libm's ``log`` inside ``Generator.normal``) comes from
:mod:`lesionlab.data.detmath`, built from correctly rounded IEEE operations only;
``tests/test_determinism.py`` holds the golden hash.

Output layout (that of the published HAM10000 download)::

    <out>/HAM10000_metadata.csv   lesion_id,image_id,dx,dx_type,age,sex,localization
    <out>/images/<image_id>.jpg
    <out>/masks/<image_id>_segmentation.png
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lesionlab.data import detmath as dm
from lesionlab.data.taxonomy import HAM10000_CLASSES

SITES = (
    "back",
    "lower extremity",
    "trunk",
    "upper extremity",
    "abdomen",
    "face",
    "chest",
    "foot",
    "neck",
    "scalp",
    "hand",
    "ear",
    "genital",
    "acral",
    "unknown",
)

# --- class-conditional distributions -------------------------------------------------
# Means and spreads are chosen so that classes overlap; no single trait separates them.

#: lesion radius as a fraction of image height (mean, sd)
_RADIUS = {
    "akiec": (0.24, 0.05),
    "bcc": (0.25, 0.05),
    "bkl": (0.28, 0.06),
    "df": (0.17, 0.04),
    "mel": (0.30, 0.06),
    "nv": (0.23, 0.05),
    "vasc": (0.19, 0.04),
}
#: amplitude of low-order boundary harmonics (shape asymmetry)
_ASYMMETRY = {"akiec": 0.10, "bcc": 0.10, "bkl": 0.08, "df": 0.04, "mel": 0.14, "nv": 0.05, "vasc": 0.05}
#: amplitude of high-order boundary harmonics (border irregularity)
_IRREGULARITY = {"akiec": 0.05, "bcc": 0.05, "bkl": 0.04, "df": 0.02, "mel": 0.08, "nv": 0.02, "vasc": 0.02}
#: width of the lesion edge in lesion radii (small = sharp "stuck-on" border)
_EDGE = {"akiec": 0.22, "bcc": 0.12, "bkl": 0.06, "df": 0.28, "mel": 0.10, "nv": 0.08, "vasc": 0.06}
#: base pigment colour, RGB in [0, 1]
_BASE_COLOUR = {
    "akiec": (0.78, 0.47, 0.43),
    "bcc": (0.76, 0.52, 0.52),
    "bkl": (0.62, 0.45, 0.30),
    "df": (0.66, 0.46, 0.35),
    "mel": (0.40, 0.24, 0.16),
    "nv": (0.55, 0.35, 0.22),
    "vasc": (0.60, 0.18, 0.28),
}
#: number of colour blotches (Poisson mean) and the palette they are drawn from
_BLOTCHES = {"akiec": 1.0, "bcc": 1.2, "bkl": 1.5, "df": 0.3, "mel": 3.5, "nv": 0.5, "vasc": 0.8}
_PALETTE = {
    "dark_brown": (0.30, 0.17, 0.10),
    "black": (0.10, 0.08, 0.08),
    "blue_gray": (0.40, 0.45, 0.55),
    "red": (0.75, 0.25, 0.25),
    "light_brown": (0.70, 0.52, 0.38),
    "purple": (0.45, 0.15, 0.35),
    "white": (0.90, 0.88, 0.86),
}
_BLOTCH_COLOURS = {
    "akiec": ("red", "white", "light_brown"),
    "bcc": ("blue_gray", "red", "white"),
    "bkl": ("dark_brown", "light_brown", "black"),
    "df": ("light_brown",),
    "mel": ("black", "blue_gray", "red", "dark_brown", "white"),
    "nv": ("dark_brown", "light_brown"),
    "vasc": ("purple", "red"),
}
#: probability that a lesion shows each dermoscopic structure
_STRUCTURES = {
    #            network dots  vessels milia scale white_patch lacunae veil
    "akiec": (0.05, 0.15, 0.35, 0.05, 0.80, 0.10, 0.02, 0.02),
    "bcc": (0.03, 0.10, 0.80, 0.05, 0.10, 0.15, 0.05, 0.08),
    "bkl": (0.15, 0.10, 0.05, 0.65, 0.30, 0.05, 0.02, 0.02),
    "df": (0.30, 0.05, 0.05, 0.03, 0.05, 0.85, 0.02, 0.02),
    "mel": (0.55, 0.65, 0.15, 0.03, 0.05, 0.20, 0.03, 0.40),
    "nv": (0.70, 0.35, 0.03, 0.08, 0.03, 0.03, 0.02, 0.03),
    "vasc": (0.02, 0.05, 0.10, 0.02, 0.02, 0.02, 0.92, 0.05),
}
_STRUCTURE_NAMES = ("network", "dots", "vessels", "milia", "scale", "white_patch", "lacunae", "veil")

#: patient age (mean, sd) by class, roughly as in HAM10000
_AGE = {
    "akiec": (66, 11),
    "bcc": (66, 12),
    "bkl": (64, 13),
    "df": (52, 14),
    "mel": (61, 14),
    "nv": (47, 15),
    "vasc": (50, 18),
}
#: share of male patients by class
_MALE = {"akiec": 0.68, "bcc": 0.62, "bkl": 0.57, "df": 0.46, "mel": 0.60, "nv": 0.51, "vasc": 0.43}
#: localisation weights by class (order of SITES)
_SITE_WEIGHTS = {
    "akiec": (2, 4, 2, 6, 1, 14, 2, 1, 3, 4, 3, 2, 0, 0, 1),
    "bcc": (9, 5, 6, 6, 3, 12, 5, 1, 4, 3, 1, 2, 0, 0, 1),
    "bkl": (8, 6, 6, 5, 3, 10, 6, 1, 3, 2, 1, 1, 0, 0, 2),
    "df": (2, 16, 3, 5, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1),
    "mel": (12, 8, 5, 9, 3, 6, 4, 1, 2, 2, 1, 1, 0, 1, 2),
    "nv": (14, 12, 12, 6, 8, 1, 4, 2, 1, 1, 1, 0, 1, 1, 2),
    "vasc": (4, 4, 7, 3, 6, 3, 2, 1, 1, 0, 1, 0, 0, 0, 1),
}
#: how the diagnosis was confirmed (histo, follow_up, consensus, confocal) by class;
#: recorded because HAM10000 has it, and it leaks the label: never a feature.
_DX_TYPE = {
    "akiec": (0.97, 0.0, 0.03, 0.0),
    "bcc": (1.0, 0.0, 0.0, 0.0),
    "bkl": (0.46, 0.0, 0.41, 0.13),
    "df": (0.35, 0.0, 0.65, 0.0),
    "mel": (1.0, 0.0, 0.0, 0.0),
    "nv": (0.28, 0.55, 0.17, 0.0),
    "vasc": (0.45, 0.0, 0.55, 0.0),
}
_DX_TYPES = ("histo", "follow_up", "consensus", "confocal")


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator (mirrors the ``synthetic:`` section of params.yaml)."""

    n_lesions: int = 1000
    width: int = 160
    height: int = 120
    priors: dict[str, float] = field(default_factory=dict)
    #: probability of 1, 2, 3, ... views (photographs) per lesion
    views_per_lesion: tuple[float, ...] = (0.72, 0.18, 0.07, 0.03)
    #: share of lesions whose appearance is drawn from another class (mimics)
    mimic_rate: float = 0.12
    #: share of lesions with at least one hair
    hair_rate: float = 0.35
    #: share of missing ages and "unknown" sex
    missing_rate: float = 0.01
    jpeg_quality: int = 92


# --- lesion and view sampling -----------------------------------------------------------


def _allocate_counts(n: int, priors: dict[str, float], minimum: int = 1) -> dict[str, int]:
    """Largest-remainder allocation of ``n`` lesions to classes, at least ``minimum`` each."""
    total = sum(priors.values())
    raw = {c: n * p / total for c, p in priors.items()}
    counts = {c: max(minimum, int(np.floor(v))) for c, v in raw.items()}
    order = sorted(priors, key=lambda c: raw[c] - np.floor(raw[c]), reverse=True)
    i = 0
    while sum(counts.values()) < n:
        counts[order[i % len(order)]] += 1
        i += 1
    while sum(counts.values()) > n:  # only when minimums pushed us over: take from the largest
        largest = max(counts, key=counts.get)
        counts[largest] -= 1
    return counts


def sample_lesion(rng: np.random.Generator, label: str, cfg: SyntheticConfig) -> dict:
    """Draw one lesion's metadata and visual traits."""
    look = label
    if rng.random() < cfg.mimic_rate:
        look = str(rng.choice([c for c in HAM10000_CLASSES if c != label]))
    mean_r, sd_r = _RADIUS[look]
    n_low, n_high = 3, 8
    lesion = {
        "label": label,
        "look": look,
        "radius": float(np.clip(dm.normal(rng, mean_r, sd_r), 0.09, 0.42)),
        "elongation": float(rng.uniform(1.0, 1.35)),
        "low_amp": dm.gamma(rng, 2.0, _ASYMMETRY[look] / 2.0, size=n_low) / np.arange(1, n_low + 1),
        "low_phase": rng.uniform(0, 2 * np.pi, size=n_low),
        "high_amp": dm.gamma(rng, 2.0, _IRREGULARITY[look] / 2.0, size=n_high) / np.sqrt(np.arange(1, n_high + 1)),
        "high_phase": rng.uniform(0, 2 * np.pi, size=n_high),
        "edge": float(np.clip(dm.normal(rng, _EDGE[look], 0.03), 0.03, 0.4)),
        "base": np.clip(np.array(_BASE_COLOUR[look]) * rng.uniform(0.8, 1.15) + dm.normal(rng, 0, 0.02, 3), 0.05, 0.95),
        "centre_dark": float(rng.uniform(0.0, 0.35)),
        "skin": np.clip(np.array([0.90, 0.72, 0.63]) * rng.uniform(0.7, 1.05) + dm.normal(rng, 0, 0.015, 3), 0.3, 1.0),
    }
    palette = _BLOTCH_COLOURS[look]
    n_blotch = int(dm.poisson(rng, _BLOTCHES[look]))
    lesion["blotches"] = [
        (
            rng.uniform(-0.6, 0.6, 2),
            rng.uniform(0.15, 0.45),
            np.array(_PALETTE[str(rng.choice(palette))]),
            rng.uniform(0.4, 0.9),
        )
        for _ in range(n_blotch)
    ]
    present = rng.random(len(_STRUCTURE_NAMES)) < np.array(_STRUCTURES[look])
    lesion["structures"] = {name: bool(p) for name, p in zip(_STRUCTURE_NAMES, present)}
    irregular = look in ("mel", "akiec", "bcc")
    lesion["network_freq"] = float(rng.uniform(9, 14))
    lesion["network_contrast"] = float(rng.uniform(0.15, 0.35) * (1.5 if irregular else 1.0))
    n_dots = int(rng.integers(5, 18))
    if irregular:  # atypical dots: scattered towards the periphery, various sizes
        r = rng.uniform(0.4, 1.0, n_dots)
        size = rng.uniform(0.03, 0.09, n_dots)
    else:  # regular globules: evenly spread in the centre, similar sizes
        r = np.sqrt(rng.uniform(0, 0.45, n_dots))
        size = np.full(n_dots, rng.uniform(0.04, 0.06))
    a = rng.uniform(0, 2 * np.pi, n_dots)
    lesion["dots"] = (np.stack([r * dm.cos(a), r * dm.sin(a)], 1), size)
    lesion["vessels"] = _branching_vessels(rng)
    n_milia = int(rng.integers(3, 9))
    rm, am = np.sqrt(rng.uniform(0, 0.6, n_milia)), rng.uniform(0, 2 * np.pi, n_milia)
    lesion["milia"] = (np.stack([rm * dm.cos(am), rm * dm.sin(am)], 1), rng.uniform(0.04, 0.07, n_milia))
    n_lac = int(rng.integers(4, 10))
    rl, al = np.sqrt(rng.uniform(0, 0.55, n_lac)), rng.uniform(0, 2 * np.pi, n_lac)
    lesion["lacunae"] = (np.stack([rl * dm.cos(al), rl * dm.sin(al)], 1), rng.uniform(0.10, 0.20, n_lac))
    lesion["veil"] = (rng.uniform(-0.3, 0.3, 2), rng.uniform(0.3, 0.5))
    lesion["scale_seed"] = int(rng.integers(0, 2**31))
    # metadata
    age_mean, age_sd = _AGE[label]
    age = float(np.clip(5 * np.round(dm.normal(rng, age_mean, age_sd) / 5), 5, 85))
    lesion["age"] = None if rng.random() < cfg.missing_rate else age
    sex = "male" if rng.random() < _MALE[label] else "female"
    lesion["sex"] = "unknown" if rng.random() < cfg.missing_rate else sex
    w = np.array(_SITE_WEIGHTS[label], dtype=float)
    lesion["site"] = SITES[int(rng.choice(len(SITES), p=w / w.sum()))]
    lesion["dx_type"] = _DX_TYPES[int(rng.choice(4, p=np.array(_DX_TYPE[label]) / sum(_DX_TYPE[label])))]
    return lesion


def _branching_vessels(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Arborising vessels: a few trunks that fork into thinner branches (lesion frame)."""
    segments = []
    for _ in range(int(rng.integers(2, 5))):
        p = rng.uniform(-0.6, 0.6, 2)
        angle = rng.uniform(0, 2 * np.pi)
        stack = [(p, angle, 0.035, 0)]
        while stack:
            p, angle, width, depth = stack.pop()
            length = rng.uniform(0.15, 0.35) / (1 + depth * 0.5)
            q = p + length * np.array([dm.cos(angle), dm.sin(angle)])
            segments.append((p, q, width))
            if depth < 3:
                for turn in (-1, 1) if rng.random() < 0.6 else (rng.choice([-1, 1]),):
                    stack.append((q, angle + turn * rng.uniform(0.3, 0.9), width * 0.7, depth + 1))
    return segments


def sample_view(rng: np.random.Generator, first: bool) -> dict:
    """Photograph-specific nuisances: pose, light, hair, vignetting, sensor noise."""
    return {
        "angle": float(rng.uniform(0, 2 * np.pi)),
        "flip": bool(rng.random() < 0.5),
        "shift": dm.normal(rng, 0, 0.04 if first else 0.08, 2),
        "zoom": float(rng.uniform(0.9, 1.1) if first else rng.uniform(0.8, 1.25)),
        "brightness": float(dm.normal(rng, 1.0, 0.07 if first else 0.12)),
        "contrast": float(dm.normal(rng, 1.0, 0.06 if first else 0.10)),
        "cast": dm.normal(rng, 0, 0.015, 3),
        "gradient": dm.normal(rng, 0, 0.08, 2),
        "vignette": float(rng.uniform(0.0, 0.5) if rng.random() < 0.5 else 0.0),
        "noise_seed": int(rng.integers(0, 2**31)),
        "hair_seed": int(rng.integers(0, 2**31)),
    }


# --- rendering ------------------------------------------------------------------------


def _segment_distance(px: np.ndarray, py: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    (p0, p1), (d0, d1) = p.tolist(), (q - p).tolist()
    t = np.clip(((px - p0) * d0 + (py - p1) * d1) * (1.0 / max(d0 * d0 + d1 * d1, 1e-9)), 0.0, 1.0)
    return dm.hypot(px - (p0 + t * d0), py - (p1 + t * d1))


def _discs(u: np.ndarray, v: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Soft union of discs in lesion coordinates, in [0, 1]."""
    out = np.zeros_like(u)
    for (cx, cy), r in zip(centres.tolist(), radii.tolist()):
        out = np.maximum(out, 1.5 - dm.hypot(u - cx, v - cy) * (1.0 / r))
    return np.clip(out, 0.0, 1.0)


def _blend(img: np.ndarray, colour, weight: np.ndarray) -> np.ndarray:
    w = np.clip(weight, 0.0, 1.0, dtype=np.float32)[..., None]
    return img + (np.asarray(colour, dtype=np.float32) - img) * w


def render_view(lesion: dict, view: dict, width: int, height: int, hair: bool) -> tuple[np.ndarray, np.ndarray]:
    """Render one photograph of a lesion: (RGB uint8 image, uint8 mask with 255 = lesion)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # python floats keep every array float32 (numpy scalars would promote to float64)
    radius_px = float(lesion["radius"] * height * view["zoom"])
    cx = float(width / 2 + view["shift"][0] * width)
    cy = float(height / 2 + view["shift"][1] * height)
    dx, dy = (xx - cx) / radius_px, (yy - cy) / radius_px
    ca, sa = float(dm.cos(view["angle"])), float(dm.sin(view["angle"]))
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    if view["flip"]:
        u = -u
    u = u / float(lesion["elongation"])
    rho, theta = dm.hypot(u, v), dm.arctan2(v, u)
    boundary = np.ones_like(theta)
    for k, (amp, ph) in enumerate(zip(lesion["low_amp"], lesion["low_phase"]), start=1):
        boundary += float(amp) * dm.cos(k * theta + float(ph))
    for k, (amp, ph) in enumerate(zip(lesion["high_amp"], lesion["high_phase"]), start=5):
        boundary += float(amp) * dm.cos(k * theta + float(ph))
    s = rho / np.maximum(boundary, 0.3)  # < 1 inside the lesion
    mask = s < 1.0
    alpha = 1.0 / (1.0 + dm.exp(np.clip((s - 1.0) * float(2.0 / lesion["edge"]), -30, 30)))

    # skin with slow variations
    skin = np.broadcast_to(lesion["skin"].astype(np.float32), (height, width, 3)).copy()
    skin *= 1.0 + 0.04 * dm.sin(xx / width * 3.1 + lesion["low_phase"][0])[..., None]

    # lesion pigment
    body = np.broadcast_to(lesion["base"].astype(np.float32), (height, width, 3)).copy()
    body *= (1.0 - lesion["centre_dark"] * np.clip(1.0 - s, 0, 1))[..., None]
    for centre, r, colour, strength in lesion["blotches"]:
        c0, c1 = centre.tolist()
        w = float(strength) * dm.exp(-((u - c0) ** 2 + (v - c1) ** 2) * float(0.5 / (r * r)))
        body = _blend(body, colour, w)
    st = lesion["structures"]
    if st["network"]:
        f = lesion["network_freq"]
        wobble = 0.25 * dm.sin(3 * v + lesion["low_phase"][1]) if lesion["look"] in ("mel",) else 0.0
        lines = (np.abs(dm.sin(f * u + wobble)) < 0.35) | (np.abs(dm.sin(f * v)) < 0.35)
        fade = np.clip(1.2 - s, 0, 1)
        body = _blend(body, _PALETTE["dark_brown"], lines * lesion["network_contrast"] * fade)
    if st["veil"]:
        (vx, vy), vr = lesion["veil"]
        body = _blend(body, (0.55, 0.62, 0.72), 0.6 * dm.exp(-((u - vx) ** 2 + (v - vy) ** 2) / (2 * vr * vr)))
    if st["white_patch"]:
        body = _blend(body, _PALETTE["white"], 0.75 * dm.exp(-(u**2 + v**2) / (2 * 0.22 * 0.22)))
    if st["scale"]:
        srng = np.random.default_rng(lesion["scale_seed"])
        coarse = srng.random((height // 3 + 2, width // 3 + 2)).astype(np.float32)
        grain = np.kron(coarse, np.ones((3, 3), np.float32))[:height, :width]
        body = _blend(body, (0.93, 0.90, 0.86), (grain > 0.72) * 0.55 * np.clip(1.3 - s, 0, 1))
    if st["lacunae"]:
        body = _blend(body, (0.55, 0.08, 0.22), 0.9 * _discs(u, v, *lesion["lacunae"]))
    if st["dots"]:
        body = _blend(body, (0.12, 0.08, 0.07), 0.85 * _discs(u, v, *lesion["dots"]))
    if st["milia"]:
        body = _blend(body, (0.96, 0.95, 0.88), 0.85 * _discs(u, v, *lesion["milia"]))
    if st["vessels"]:
        vessel = np.zeros_like(u)
        for p, q, w in lesion["vessels"]:
            vessel = np.maximum(vessel, 1.5 - _segment_distance(u, v, p, q) * float(1.0 / w))
        body = _blend(body, (0.78, 0.12, 0.15), 0.9 * vessel)

    img = skin * (1 - alpha[..., None]) + body * alpha[..., None]

    if hair:
        img = _draw_hair(img, np.random.default_rng(view["hair_seed"]), xx, yy)
    # photograph: light gradient, colour cast, contrast, brightness, vignetting, noise
    gx, gy = view["gradient"]
    light = 1.0 + gx * (xx / width - 0.5) + gy * (yy / height - 0.5)
    img = img * light[..., None] + view["cast"]
    img = (img - 0.5) * view["contrast"] + 0.5
    img = img * view["brightness"]
    if view["vignette"] > 0:
        rr = dm.hypot((xx - width / 2) / (width / 2), (yy - height / 2) / (height / 2))
        img = img * (1.0 - view["vignette"] * np.clip((rr - 0.9) / 0.4, 0, 1))[..., None]
    img = img + dm.normal(np.random.default_rng(view["noise_seed"]), 0, 0.015, img.shape)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, (mask * 255).astype(np.uint8)


def _draw_hair(img: np.ndarray, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    h, w = xx.shape
    hair = np.zeros_like(xx)
    for _ in range(int(rng.integers(1, 7))):
        p = rng.uniform([0, 0], [w, h])
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(4):  # a slightly curved hair of four segments
            q = p + rng.uniform(8, 25) * np.array([dm.cos(angle), dm.sin(angle)])
            hair = np.maximum(hair, 1.2 - _segment_distance(xx, yy, p, q) * (1 / 0.7))
            p, angle = q, angle + dm.normal(rng, 0, 0.25)
    return _blend(img, (0.18, 0.12, 0.10), hair * 0.85)


# --- the dataset ------------------------------------------------------------------------


def _lesion_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def plan_lesions(cfg: SyntheticConfig, seed: int) -> list[str]:
    """Labels of all lesions, in lesion order (class counts follow the priors exactly)."""
    priors = cfg.priors or {}
    missing = set(HAM10000_CLASSES) - set(priors)
    if missing:
        raise ValueError(f"synthetic.priors: missing classes {sorted(missing)}")
    counts = _allocate_counts(cfg.n_lesions, {c: priors[c] for c in HAM10000_CLASSES}, minimum=4)
    labels = [c for c in HAM10000_CLASSES for _ in range(counts[c])]
    order = np.random.default_rng(np.random.SeedSequence([seed, 2**31 - 1])).permutation(len(labels))
    return [labels[i] for i in order]


def generate_lesion(
    index: int, label: str, cfg: SyntheticConfig, seed: int
) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """All photographs of lesion ``index``: [(metadata row, image, mask), ...]."""
    rng = _lesion_rng(seed, index)
    lesion = sample_lesion(rng, label, cfg)
    p = np.asarray(cfg.views_per_lesion, dtype=float)
    n_views = 1 + int(rng.choice(len(p), p=p / p.sum()))
    has_hair = rng.random() < cfg.hair_rate
    out = []
    for k in range(n_views):
        view = sample_view(rng, first=(k == 0))
        image, mask = render_view(lesion, view, cfg.width, cfg.height, hair=has_hair)
        row = {
            "lesion_id": f"SYNL_{index:07d}",
            "image_id": f"SYN_{index:07d}_{k}",
            "dx": label,
            "dx_type": lesion["dx_type"],
            "age": "" if lesion["age"] is None else f"{lesion['age']:.1f}",
            "sex": lesion["sex"],
            "localization": lesion["site"],
        }
        out.append((row, image, mask))
    return out


def _encode(image: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _generate_chunk(args: tuple[list[int], list[str], SyntheticConfig, int]) -> list[tuple[dict, bytes, bytes]]:
    indices, labels, cfg, seed = args
    out = []
    for index, label in zip(indices, labels):
        for row, image, mask in generate_lesion(index, label, cfg, seed):
            out.append((row, _encode(image, "JPEG", quality=cfg.jpeg_quality), _encode(mask, "PNG")))
    return out


def generate(out_dir: str | Path, cfg: SyntheticConfig, seed: int, workers: int = 1, progress: bool = True) -> Path:
    """Write the synthetic dataset in HAM10000's published layout under ``out_dir``.

    The bytes written depend on ``cfg`` and ``seed`` only, not on ``workers``.
    """
    from tqdm.auto import tqdm

    from lesionlab.pipeline.guard import worker_pool

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    labels = plan_lesions(cfg, seed)
    chunk = 50
    jobs = [
        (list(range(i, min(i + chunk, len(labels)))), labels[i : i + chunk], cfg, seed)
        for i in range(0, len(labels), chunk)
    ]
    rows = []
    bar = tqdm(total=len(labels), desc="synthetic lesions", unit="lesion", disable=not progress, mininterval=2)
    with worker_pool(workers) as pool:
        for (indices, *_), results in zip(jobs, pool.map(_generate_chunk, jobs)):
            for row, jpeg, png in results:
                (out / "images" / f"{row['image_id']}.jpg").write_bytes(jpeg)
                (out / "masks" / f"{row['image_id']}_segmentation.png").write_bytes(png)
                rows.append(row)
            bar.update(len(indices))
    bar.close()
    with open(out / "HAM10000_metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])
        writer.writeheader()
        writer.writerows(rows)
    return out


def fingerprint(cfg: SyntheticConfig, seed: int, n_lesions: int = 40) -> str:
    """sha256 of the first ``n_lesions`` lesions: metadata rows, raw image and mask arrays, and the JPEG/PNG bytes
    written to disk. The same on every CPU (tests/test_determinism.py holds a golden value and runs it with numpy's
    SIMD dispatch switched off)."""
    digest = hashlib.sha256()
    for index, label in enumerate(plan_lesions(cfg, seed)[:n_lesions]):
        for row, image, mask in generate_lesion(index, label, cfg, seed):
            digest.update(repr(sorted(row.items())).encode())
            digest.update(image.tobytes())
            digest.update(mask.tobytes())
            digest.update(_encode(image, "JPEG", quality=cfg.jpeg_quality))
            digest.update(_encode(mask, "PNG"))
    return digest.hexdigest()

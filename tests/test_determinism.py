"""Byte-stable data on any CPU: the synthetic generator and colour constancy give the same bytes whatever SIMD
numpy or libm pick at run time, and a golden hash fails CI on any machine where they drift."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lesionlab.data import detmath as dm
from lesionlab.data import synthetic
from lesionlab.data.preprocess import shades_of_gray
from lesionlab.data.taxonomy import HAM10000_PRIORS

ROOT = Path(__file__).resolve().parents[1]

# sha256 of the first 12 lesions of the default generator at 160 x 120, seed 42 (metadata rows, raw image and
# mask arrays, the JPEG/PNG bytes), then Shades of Gray on those images, then what prepare makes of each JPEG
# (decoded at 48 and 96 px; squashed, centre-cropped with Shades of Gray, and padded). Regenerate only on purpose:
# a change here changes the embedded dataset, and every committed synthetic result with it.
GOLDEN = "e0c938d16c75e129e40424bf14e4d2af29597dbb94f80cc5898ee67a0e2ea05f"
GOLDEN_LESIONS = 12

_SCRIPT = """
import hashlib, json, sys, tempfile
from pathlib import Path
from lesionlab.data import synthetic
from lesionlab.data.preprocess import Preprocess, shades_of_gray
from lesionlab.data.quality import load_image
from lesionlab.data.taxonomy import HAM10000_PRIORS

n = int(sys.argv[1])
cfg = synthetic.SyntheticConfig(n_lesions=1000, width=160, height=120, priors=dict(HAM10000_PRIORS))
digest = hashlib.sha256(synthetic.fingerprint(cfg, seed=42, n_lesions=n).encode())
folder = Path(tempfile.mkdtemp())
settings = (Preprocess(), Preprocess("shades_of_gray", "crop"), Preprocess("none", "pad"))
for index, label in enumerate(synthetic.plan_lesions(cfg, 42)[:n]):
    for view, (_, image, _) in enumerate(synthetic.generate_lesion(index, label, cfg, 42)):
        digest.update(shades_of_gray(image).tobytes())
        path = folder / f"{index}_{view}.jpg"  # what prepare reads: the JPEG, decoded, corrected and resized
        path.write_bytes(synthetic._encode(image, "JPEG", quality=cfg.jpeg_quality))
        for preprocess in settings:
            for array in load_image(str(path), (48, 96), preprocess, min_side=16)[0]:
                digest.update(array.tobytes())
from numpy._core._multiarray_umath import __cpu_features__, __cpu_dispatch__
print(json.dumps({"hash": digest.hexdigest(),
                  "dispatch": sorted(f for f in __cpu_dispatch__ if __cpu_features__.get(f))}))
"""


def _optional_features() -> list[str]:
    """numpy's dispatch targets this CPU has (the ones NPY_DISABLE_CPU_FEATURES may switch off)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return sorted(f for f in __cpu_dispatch__ if __cpu_features__.get(f))


def _run(n: int, extra_env: dict[str, str]) -> dict:
    env = {**os.environ, **extra_env, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(n)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_data_bytes_do_not_depend_on_the_cpus_simd():
    """Generation in a subprocess with every optional numpy SIMD target this CPU has switched off (and glibc's
    FMA/AVX2 variants of libm, and libjpeg-turbo's SIMD, with it) gives the same bytes as with them on, and the
    committed golden hash."""
    features = _optional_features()
    default = _run(GOLDEN_LESIONS, {})
    plain = _run(
        GOLDEN_LESIONS,
        {
            "NPY_DISABLE_CPU_FEATURES": " ".join(features),
            "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F,-AVX_Usable,-FMA_Usable",
            "JSIMD_FORCENONE": "1",  # libjpeg-turbo (Pillow's JPEG encoder) without its SIMD code
        },
    )
    if features:  # the switch took: the second run had no optional SIMD
        assert plain["dispatch"] == [] and default["dispatch"] == features
    assert default["hash"] == plain["hash"], f"SIMD changed the data (dispatch on: {features})"
    assert default["hash"] == GOLDEN, (
        f"the synthetic generator's bytes drifted from the committed golden hash on this CPU ({features}): "
        f"{default['hash']}"
    )


def test_detmath_matches_numpy_to_a_few_ulp():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-50, 50, 20000), rng.uniform(-1e-3, 1e-3, 1000), np.arange(-20, 21) * np.pi / 4])
    np.testing.assert_allclose(dm.sin(x), np.sin(x), rtol=0, atol=4e-16 * np.maximum(1, np.abs(x)).max())
    np.testing.assert_allclose(dm.cos(x), np.cos(x), rtol=0, atol=4e-16 * np.maximum(1, np.abs(x)).max())
    e = rng.uniform(-700, 700, 20000)
    np.testing.assert_allclose(dm.exp(e), np.exp(e), rtol=2e-15)
    pos = np.concatenate([rng.uniform(0, 10, 10000) ** 8, [1.0, 2.0, 0.5, np.e, 1e-300, 1e300]])
    np.testing.assert_allclose(dm.log(pos), np.log(pos), rtol=2e-15, atol=2e-16)
    y, z = rng.normal(size=20000), rng.normal(size=20000)
    edge = np.array([0.0, 0.0, 1.0, -1.0, 0.0, -0.0])
    y, z = np.concatenate([y, edge, [1.0, -1.0]]), np.concatenate([z, edge[::-1], [0.0, 0.0]])
    np.testing.assert_allclose(dm.arctan2(y, z), np.arctan2(y, z), rtol=0, atol=2e-15)
    np.testing.assert_allclose(dm.hypot(y, z), np.hypot(y, z), rtol=4e-16)
    assert dm.log(0.0) == -np.inf and dm.exp(-1000.0) < 1e-300
    with pytest.raises(ValueError, match="negative"):
        dm.log(-1.0)
    with pytest.raises(ValueError, match="1e6"):
        dm.sin(np.array([2e6]))


def test_detmath_keeps_float32_and_scalars():
    f = np.linspace(-3, 3, 7, dtype=np.float32)
    assert dm.sin(f).dtype == np.float32 and dm.exp(f).dtype == np.float32 and dm.hypot(f, 1.0).dtype == np.float32
    assert dm.arctan2(f, 1.0).dtype == np.float32
    assert isinstance(dm.cos(0.5), float | np.floating) and np.ndim(dm.cos(0.5)) == 0


def test_detmath_draws_follow_their_distributions():
    rng = np.random.default_rng(1)
    z = dm.normal(rng, 2.0, 3.0, 200_000)
    assert abs(z.mean() - 2.0) < 0.03 and abs(z.std() - 3.0) < 0.03
    # tails: a normal's share beyond 2 sd is 4.55 %
    assert abs(np.mean(np.abs(z - 2.0) > 6.0) - 0.0455) < 0.003
    g = dm.gamma(rng, 2.0, 0.5, size=20_000)
    assert g.min() > 0 and abs(g.mean() - 1.0) < 0.03 and abs(g.var() - 0.5) < 0.04
    small = dm.gamma(rng, 0.5, 1.0, size=20_000)  # shape < 1 goes through the boost
    assert abs(small.mean() - 0.5) < 0.03
    p = np.array([dm.poisson(rng, 3.5) for _ in range(20_000)])
    assert abs(p.mean() - 3.5) < 0.06 and abs(p.var() - 3.5) < 0.15
    assert dm.poisson(rng, 0.0) == 0
    with pytest.raises(ValueError, match="poisson mean"):
        dm.poisson(rng, 50.0)
    # the same generator state gives the same draws (only Generator.random is consumed)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(dm.normal(a, size=17), dm.normal(b, size=17))


def test_shades_of_gray_refuses_a_fractional_p():
    with pytest.raises(ValueError, match="whole number"):
        shades_of_gray(np.zeros((4, 4, 3), np.uint8), p=2.5)


def test_fingerprint_moves_with_the_seed_and_the_config():
    cfg = synthetic.SyntheticConfig(n_lesions=20, width=32, height=24, priors=dict(HAM10000_PRIORS))
    a = synthetic.fingerprint(cfg, seed=1, n_lesions=3)
    assert a == synthetic.fingerprint(cfg, seed=1, n_lesions=3)
    assert a != synthetic.fingerprint(cfg, seed=2, n_lesions=3)
    wider = synthetic.SyntheticConfig(n_lesions=20, width=40, height=24, priors=dict(HAM10000_PRIORS))
    assert a != synthetic.fingerprint(wider, seed=1, n_lesions=3)

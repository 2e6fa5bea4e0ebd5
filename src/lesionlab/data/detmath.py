"""Elementary functions and random draws with the same bits on every CPU.

numpy picks the kernels of ``sin``, ``cos``, ``exp``, ``arctan2`` at run time from the CPU's features (AVX-512
SVML on one machine, libm on another) and their last bits differ; its random ``normal``, ``gamma`` and ``poisson``
call libm's ``exp``/``log``, which glibc also picks per CPU (FMA or not). A threshold or a uint8 rounding turns a
last-bit difference into a different pixel, so the synthetic dataset's bytes depended on the machine.

Everything here is built from IEEE-754 basic operations only (``+ - * /``, ``sqrt``, ``floor``, ``frexp``,
``ldexp``, comparisons), each correctly rounded whatever the vector width, and numpy never fuses ``a * b + c``
across ufunc calls: the results are bitwise identical on any IEEE-754 machine. Accuracy is a few ulp (relative
error < 1e-15 on the ranges used), far below what an 8-bit image can show. Random draws use only
``Generator.random`` (exact integer-to-float conversion) and the transforms below.
"""

from __future__ import annotations

import numpy as np

# pi/2 in three 33-bit pieces (Cody-Waite): k * piece is exact for |k| < 2**20
_PIO2 = (1.57079632673412561417e00, 6.07710050630396597660e-11, 2.02226624871116645580e-21)
_TWO_OVER_PI = 6.36619772367581382433e-01
# ln 2 in two pieces: k * _LN2_HI is exact for |k| < 2**11
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_PI = 3.14159265358979311600e00
_PIO4 = 7.85398163397448278999e-01
_TAN_PI_8 = 4.14213562373095145475e-01

# minimax polynomials of sin and cos on [-pi/4, pi/4] (the classic fdlibm kernels' coefficients)
_SIN = (
    -1.66666666666666324348e-01,
    8.33333333332248946124e-03,
    -1.98412698298579493134e-04,
    2.75573137070700676789e-06,
    -2.50507602534068634195e-08,
    1.58969099521155010221e-10,
)
_COS = (
    4.16666666666666019037e-02,
    -1.38888888888741095749e-03,
    2.48015872894767294178e-05,
    -2.75573143513906633035e-07,
    2.08757232129817482790e-09,
    -1.13596475577881948265e-11,
)


def _out(result: np.ndarray, like):
    """A scalar for a scalar input, else the array; float32 in, float32 out (rounded once, correctly)."""
    if getattr(like, "dtype", None) == np.float32:
        result = result.astype(np.float32)
    return result[()] if np.ndim(like) == 0 else result


def _horner(z: np.ndarray, coefficients) -> np.ndarray:
    acc = z * coefficients[-1] + coefficients[-2]
    for c in reversed(coefficients[:-2]):
        acc = acc * z + c
    return acc


def _reduce_pio2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r, quadrant) with x = k * pi/2 + r, |r| <= pi/4 (|x| < 1e6: k * each piece of pi/2 is exact)."""
    if x.size and np.abs(x).max() >= 1e6:
        raise ValueError("detmath: sin/cos argument beyond 1e6 radians (range reduction would lose accuracy)")
    k = np.floor(x * _TWO_OVER_PI + 0.5)
    r = ((x - k * _PIO2[0]) - k * _PIO2[1]) - k * _PIO2[2]
    return r, k.astype(np.int64) & 3


def _sin_cos_kernel(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = r * r
    s = r + (r * z) * _horner(z, _SIN)
    c = (1.0 - 0.5 * z) + (z * z) * _horner(z, _COS)
    return s, c


def _sincos(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, q = _reduce_pio2(a)
    s, c = _sin_cos_kernel(r)
    sin_ = np.where(q == 0, s, np.where(q == 1, c, np.where(q == 2, -s, -c)))
    cos_ = np.where(q == 0, c, np.where(q == 1, -s, np.where(q == 2, -c, s)))
    return sin_, cos_


def sin(x):
    return _out(_sincos(np.asarray(x, dtype=np.float64))[0], x)


def cos(x):
    return _out(_sincos(np.asarray(x, dtype=np.float64))[1], x)


# exp(r) on |r| <= ln2/2: Taylor terms 1/n! up to n = 13 (the next term is < 4e-18)
_EXP = tuple(1.0 / float(np.prod(np.arange(1, n + 1, dtype=np.float64))) for n in range(14))


def exp(x):
    a = np.clip(np.asarray(x, dtype=np.float64), -745.0, 709.0)
    k = np.floor(a * _INV_LN2 + 0.5)
    r = (a - k * _LN2_HI) - k * _LN2_LO
    return _out(np.ldexp(_horner(r, _EXP), k.astype(np.int64)), x)


def log(x):
    """Natural logarithm of x > 0 (0 gives -inf; a negative value raises)."""
    a = np.asarray(x, dtype=np.float64)
    if (a < 0).any() or np.isnan(a).any():
        raise ValueError("detmath.log: negative or NaN argument")
    m, e = np.frexp(np.where(a > 0, a, 1.0))  # a = m * 2**e, m in [0.5, 1)
    low = m < 0.70710678118654757
    m, e = np.where(low, m * 2.0, m), np.where(low, e - 1, e).astype(np.float64)
    f = m - 1.0
    s = f / (2.0 + f)  # log(1 + f) = 2 atanh(s), |s| <= 0.1716
    z = s * s
    series = _horner(z, tuple(1.0 / (2 * n + 1) for n in range(12)))
    out = e * _LN2_HI + (e * _LN2_LO + 2.0 * s * series)
    return _out(np.where(a > 0, out, -np.inf), x)


def _atan_unit(t: np.ndarray) -> np.ndarray:
    """atan(t) for t in [0, 1]."""
    big = t > _TAN_PI_8
    u = np.where(big, (t - 1.0) / (t + 1.0), t)  # atan(t) = pi/4 + atan((t - 1) / (t + 1)), |u| <= tan(pi/8)
    z = u * u
    series = _horner(z, tuple((-1.0) ** n / (2 * n + 1) for n in range(22)))
    return np.where(big, _PIO4 + u * series, u * series)


def arctan2(y, x):
    """The angle of (x, y) in [-pi, pi] (0 at the origin), as numpy's."""
    yy, xx = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64))
    ay, ax = np.abs(yy), np.abs(xx)
    hi, lo = np.maximum(ax, ay), np.minimum(ax, ay)
    a = _atan_unit(np.where(hi > 0, lo / np.where(hi > 0, hi, 1.0), 0.0))
    a = np.where(ay > ax, 0.5 * _PI - a, a)
    a = np.where(np.signbit(xx), _PI - a, a)  # signed zeros as numpy: arctan2(0, -0) = pi
    out = np.where(np.signbit(yy), -a, a)
    return _out(out, y if np.ndim(y) else x)


def hypot(x, y):
    """sqrt(x**2 + y**2) (no overflow guard: image coordinates)."""
    xx, yy = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return _out(np.sqrt(xx * xx + yy * yy), x if np.ndim(x) else y)


# --- random draws -----------------------------------------------------------------------------------------------


def _uniform_open(rng: np.random.Generator, size) -> np.ndarray:
    """Uniform on (0, 1]: never 0, so its log is finite."""
    return 1.0 - rng.random(size)


def normal(rng: np.random.Generator, loc=0.0, scale=1.0, size=None):
    """Normal draws by Box-Muller: each pair of uniforms gives two draws (the cosine and the sine branch)."""
    shape = () if size is None else (size if isinstance(size, tuple) else (int(size),))
    n = int(np.prod(shape))
    pairs = (n + 1) // 2
    u1, u2 = _uniform_open(rng, pairs), rng.random(pairs)
    radius = np.sqrt(-2.0 * log(u1))
    s, c = _sincos(2.0 * _PI * u2)
    z = np.concatenate([radius * c, radius * s])[:n].reshape(shape)
    out = loc + scale * z
    return float(out) if size is None and np.ndim(loc) == 0 and np.ndim(scale) == 0 else out


def _gamma_one(rng: np.random.Generator, shape: float) -> float:
    """One Gamma(shape, 1) draw: Marsaglia and Tsang (2000); shape < 1 through Gamma(shape + 1) * U**(1/shape)."""
    if shape <= 0:
        raise ValueError(f"gamma shape must be > 0, got {shape}")
    boost = 1.0
    if shape < 1.0:
        boost = float(exp(float(log(float(_uniform_open(rng, ())))) / shape))
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / float(np.sqrt(9.0 * d))
    while True:
        x = normal(rng)
        v = 1.0 + c * x
        if v <= 0:
            continue
        v = v * v * v
        u = float(_uniform_open(rng, ()))
        if float(log(u)) < 0.5 * x * x + d - d * v + d * float(log(v)):
            return d * v * boost


def gamma(rng: np.random.Generator, shape: float, scale=1.0, size=None):
    n = 1 if size is None else int(np.prod(size))
    draws = np.array([_gamma_one(rng, float(shape)) for _ in range(n)]) * scale
    return float(draws[0]) if size is None and np.ndim(scale) == 0 else draws.reshape(() if size is None else size)


def poisson(rng: np.random.Generator, lam: float) -> int:
    """One Poisson(lam) draw by multiplying uniforms (Knuth), for the small means a generator uses (lam <= 30)."""
    if not 0 <= lam <= 30:
        raise ValueError(f"poisson mean must be in [0, 30], got {lam}")
    limit, k, p = float(exp(-lam)), 0, 1.0
    while True:
        p *= float(rng.random())
        if p <= limit:
            return k
        k += 1

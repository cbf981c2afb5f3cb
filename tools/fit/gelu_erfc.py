"""Coefficients of the f32 gelu in src/kernel/lanes.rs (`Ops::gelu_f32`).

erfc(z) = t * Q(t) * exp(-z^2) with t = 1 / (1 + z/2): Q(t) = erfcx(z) / t is
smooth for z in [0, 9.33] (beyond, exp(-z^2) is below the kernel's exponential
floor e^-87). Q is fitted as a degree-9 polynomial in t by least squares on
Chebyshev nodes, reweighted (Lawson) towards the minimax relative error.

    pip install numpy scipy && python3 tools/fit/gelu_erfc.py

prints the ten coefficients (constant first) and the largest relative error of
t * Q(t) against erfcx over 200 001 points of z in [0, 9.33] (1.7e-8).
"""

import numpy as np
from scipy.special import erfcx

P, DEGREE, Z_MAX, NODES = 0.5, 9, 9.33, 2000


def fit():
    t_min = 1 / (1 + P * Z_MAX)
    k = np.arange(NODES)
    t = (t_min + 1) / 2 + (1 - t_min) / 2 * np.cos(np.pi * (k + 0.5) / NODES)
    q = erfcx((1 / t - 1) / P) / t
    v = np.vander(t, DEGREE + 1, increasing=True)
    w = 1 / q
    for step in range(30):
        c, *_ = np.linalg.lstsq(v * w[:, None], q * w, rcond=None)
        if step < 29:
            r = np.abs((v @ c - q) / q)
            w = w * (r / r.max()) ** 0.3
    return c


def worst_relative_error(c):
    z = np.linspace(0, Z_MAX, 200_001)
    t = 1 / (1 + P * z)
    poly = np.zeros_like(t)
    for a in c[::-1]:
        poly = poly * t + a
    return np.abs(t * poly / erfcx(z) - 1).max()


if __name__ == "__main__":
    c = fit()
    for a in c:
        print(f"{a:.10e}")
    print(f"worst relative error {worst_relative_error(c):.2e}")

"""Damped harmonic oscillator (docs/physics.md) in numpy, for the PyTorch benchmarks.

Independent of the Rust code: the exact one-step propagator M = exp(A Δt) in
closed form (column convention s_{n+1} = M s_n), state sampling by energy and
phase, and fixed data sets of T-token trajectories.
"""

import math

import numpy as np


def propagator(omega0, gamma, dt):
    """exp(A dt) for A = [[0, 1], [-omega0^2, -2 gamma]] (f64, 2x2).

    Underdamped closed form (docs/physics.md); the critically and overdamped forms
    are included for completeness (no series near the boundaries: the
    benchmarks only use the underdamped seed cases).
    """
    decay = math.exp(-gamma * dt)
    if gamma < omega0:
        w = math.sqrt(omega0 ** 2 - gamma ** 2)
        c, s = math.cos(w * dt), math.sin(w * dt)
        m = [[c + gamma / w * s, s / w], [-(omega0 ** 2) / w * s, c - gamma / w * s]]
    elif gamma == omega0:
        m = [[1 + gamma * dt, dt], [-(omega0 ** 2) * dt, 1 - gamma * dt]]
    else:
        k = math.sqrt(gamma ** 2 - omega0 ** 2)
        c, s = math.cosh(k * dt), math.sinh(k * dt)
        m = [[c + gamma / k * s, s / k], [-(omega0 ** 2) / k * s, c - gamma / k * s]]
    return decay * np.array(m, dtype=np.float64)


def expm_taylor(a, terms=40):
    """Independent check: exp(a) by scaling and squaring a Taylor series (f64)."""
    n = max(0, int(math.ceil(math.log2(max(np.abs(a).sum(), 1e-300)))) + 1)
    b = a / 2.0 ** n
    out, term = np.eye(2), np.eye(2)
    for k in range(1, terms):
        term = term @ b / k
        out = out + term
    for _ in range(n):
        out = out @ out
    return out


def sample_states(rng, n, omega0, e_max):
    """[n, 2] states: E ~ U[0, e_max], phase ~ U[0, 2π),
    x = sqrt(2E)/omega0 cos φ, p = sqrt(2E) sin φ (docs/physics.md)."""
    e = rng.uniform(0.0, e_max, n)
    phi = rng.uniform(0.0, 2 * math.pi, n)
    amp = np.sqrt(2 * e)
    return np.stack([amp / omega0 * np.cos(phi), amp * np.sin(phi)], axis=-1)


def make_dataset(rng, n, context, omega0, gamma, dt, e_max):
    """inputs [n, T, 2] = s_0..s_{T-1} of one exact trajectory per row,
    targets [n, T, 2] = s_1..s_T (f64)."""
    m = propagator(omega0, gamma, dt)
    s = sample_states(rng, n, omega0, e_max)
    seq = [s]
    for _ in range(context):
        seq.append(seq[-1] @ m.T)
    traj = np.stack(seq, axis=1)  # [n, T+1, 2]
    return traj[:, :-1], traj[:, 1:]


if __name__ == "__main__":
    for g in (0.0, 0.1, 1.9, 2.0, 2.5):
        a = np.array([[0.0, 1.0], [-4.0, -2 * g]])
        err = np.abs(propagator(2.0, g, 0.1) - expm_taylor(a * 0.1)).max()
        print(f"gamma={g}: max |closed form - Taylor expm| = {err:.2e}")

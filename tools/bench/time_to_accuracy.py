#!/usr/bin/env python3
"""Time to accuracy of the PyTorch reference model on ONE seed case.

Trains the seed model (docs/physics.md: ω0 = 2, Δt = 0.1, γ = 0.1 by default; one
layer, one head, d_model = d_head = 2, context 1) on a fixed set of 100 000
states (E ~ U[0, 1], φ ~ U[0, 2π), target = exact propagator M·s) for 100
epochs at batch 256 (shuffled every epoch, last incomplete batch dropped:
390 steps per epoch), AdamW lr 1e-3 (betas 0.9/0.999, eps 1e-8, wd 0), cosine
decay to zero over the whole run, f32, with the fastest loop measured by
torch_bench.py (the whole step as one torch.compile graph; `--mode eager`
for torch.optim.AdamW(fused=True) in eager mode). Then rolls 64 trajectories
(E0 ~ U[0, 4]) out for 200 steps and reports the median and max over them of
‖ŝ−s‖/‖s‖ at step 200, as `physlens run` does.

    python3 tools/bench/time_to_accuracy.py [--json] [--mode compile|eager]

Wall times reported: `data_s` (building the 100k set), `train_s` (the
training loop, including torch.compile's compilation, which happens on the
first step; `compile_s` is that first step alone), `eval_s` (MSE, rollout,
readout) and `total_s` (all of it, from the start of main(), i.e. without
the Python/torch import). compare.py also times the whole process from the
outside.
"""

import argparse
import json
import math
import os
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in tools/ (tools/reference is read-only here)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import oscillator  # noqa: E402
import torch_bench as tb  # noqa: E402

SEED_CFG = tb.CONFIGS["blog"]


class EpochPool:
    """The fixed training set, reshuffled at the start of every epoch (like
    physlens's Batches: torch.randperm from a seeded generator, an
    incomplete last batch dropped)."""

    def __init__(self, x, y, batch, seed):
        self.x, self.y, self.batch = x, y, batch
        self.n_batches = x.shape[0] // batch
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = -1
        self.rows = []

    def index(self, i):
        epoch, j = divmod(i, self.n_batches)
        if epoch != self.epoch:
            perm = torch.randperm(self.x.shape[0], generator=self.gen)[: self.n_batches * self.batch]
            self.rows = list(perm.view(self.n_batches, self.batch).unbind(0))
            self.epoch = epoch
        return self.rows[j]


def affine_map(P):
    """Column-convention M and c of a one-layer, context-1 model (docs/model-and-checkpoint.md)."""
    D = P["W_E"].shape[1]
    hk = P["W_O.0"].shape[0]
    w_v = P["W_QKV.0"][:, 2 * hk:]  # [D, H*K], the V block
    mid = torch.eye(D, dtype=torch.float64) + w_v.double() @ P["W_O.0"].double()
    m_row = P["W_E"].double() @ mid @ P["W_U"].double()
    c_row = P["b_E"].double() @ mid @ P["W_U"].double() + P["b_U"].double()
    return m_row.T.numpy(), c_row.numpy()


def readout(m, dt):
    """Spectral readout (docs/physics.md): γ = −ln(det M)/(2Δt), ω = |arg λ|/Δt, ω0² = ω² + γ²."""
    det = float(np.linalg.det(m))
    lam = np.linalg.eigvals(m)
    gamma = -math.log(det) / (2 * dt) if det > 0 else float("nan")
    omega = abs(float(np.angle(lam[0]))) / dt
    return dict(omega0=math.sqrt(omega ** 2 + gamma ** 2), gamma=gamma)


@torch.no_grad()
def rollout(P, cfg, omega0, gamma, dt, e_max, n, steps, seed):
    """Autoregressive rollout of the f32 model from n exact starts; the exact
    state at step k is propagator(kΔt)·s0, computed afresh (f64)."""
    rng = np.random.default_rng(seed)
    s0 = oscillator.sample_states(rng, n, omega0, e_max)  # [n, 2]
    mask = tb.causal_mask(cfg)
    state = torch.tensor(s0, dtype=torch.float32).view(n, 1, 2)
    rel = np.empty((steps + 1, n))
    rel[0] = 0.0
    for k in range(1, steps + 1):
        state = tb.forward_fast(P, cfg, state, mask)
        exact = s0 @ oscillator.propagator(omega0, gamma, k * dt).T
        err = np.linalg.norm(state.view(n, 2).double().numpy() - exact, axis=1)
        rel[k] = err / np.linalg.norm(exact, axis=1)
    return dict(steps=steps, n=n, median_rel_err_final=float(np.median(rel[-1])),
                max_rel_err_final=float(rel[-1].max()), max_rel_err=float(rel.max()))


@torch.no_grad()
def mse(P, cfg, x, y):
    return float(tb.loss_fast(tb.forward_fast(P, cfg, x, tb.causal_mask(cfg)), y, cfg))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--mode", choices=["compile", "eager"], default="compile")
    ap.add_argument("--compile-mode", default="default")
    ap.add_argument("--omega0", type=float, default=2.0)
    ap.add_argument("--gamma", type=float, default=0.1)
    ap.add_argument("--dt", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--n-train", type=int, default=100_000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=3900, help="steps between loss printouts (stderr)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    tb.ADAMW["lr"] = args.lr
    cfg = SEED_CFG
    t_start = time.perf_counter()

    # data: docs/physics.md, exact targets (f64 numpy, then f32)
    rng = np.random.default_rng(args.seed)
    x, y = oscillator.make_dataset(rng, args.n_train, 1, args.omega0, args.gamma, args.dt, 1.0)
    xv, yv = oscillator.make_dataset(rng, 4096, 1, args.omega0, args.gamma, args.dt, 4.0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    xv, yv = torch.tensor(xv, dtype=torch.float32), torch.tensor(yv, dtype=torch.float32)
    pool = EpochPool(x, y, args.batch, args.seed)
    steps = args.epochs * pool.n_batches
    params_ref = tb.init_reference_layout(cfg, seed=args.seed, scheme="physlens")
    t_data = time.perf_counter()

    # training loop
    lr0 = args.lr
    if args.mode == "compile":
        def cosine(step):  # step: 0-d f64 tensor, 0-based; lr_min = 0
            return 0.5 * lr0 * (1 + torch.cos(math.pi * step / steps))
        step_fn, params_fn = tb.compiled_whole_step(cfg, "matmul", pool, params_ref, args.compile_mode, lr=cosine)
        impl = "whole step (gather, forward, loss, backward, AdamW, cosine lr) as one torch.compile graph"
    else:
        step_fn0, params_fn = tb.eager_step(cfg, "matmul", "fused", pool, params_ref)
        group = step_fn0.optimizer.param_groups[0]

        def step_fn(i):  # the cosine lr of step i, then the eager step
            group["lr"] = 0.5 * lr0 * (1 + math.cos(math.pi * i / steps))
            return step_fn0(i)
        impl = "eager, torch.optim.AdamW(fused=True), lr set per step"

    losses = []
    t0 = time.perf_counter()
    loss = step_fn(0)
    compile_s = time.perf_counter() - t0
    first_loss = float(loss.detach())
    for i in range(1, steps):
        loss = step_fn(i)
        if (i + 1) % args.log_every == 0 or i + 1 == steps:
            losses.append((i + 1, float(loss.detach())))
            print(f"step {i + 1}/{steps} loss {float(loss.detach()):.3e} ({time.perf_counter() - t0:.1f}s)",
                  file=sys.stderr, flush=True)
    t_train = time.perf_counter()

    # evaluation
    P = tb.to_fast(params_fn(), cfg)
    train_mse = mse(P, cfg, x, y)
    valid_mse = mse(P, cfg, xv, yv)
    ro = rollout(P, cfg, args.omega0, args.gamma, args.dt, 4.0, 64, 200, args.seed + 1)
    m, c = affine_map(P)
    m_exact = oscillator.propagator(args.omega0, args.gamma, args.dt)
    learned = readout(m, args.dt)
    t_end = time.perf_counter()

    out = {
        "case": dict(omega0=args.omega0, gamma=args.gamma, dt=args.dt, epochs=args.epochs, steps=steps,
                     batch=args.batch, n_train=args.n_train, lr=args.lr, schedule="cosine to 0",
                     dtype="f32", threads=torch.get_num_threads(), mode=args.mode, impl=impl,
                     torch=torch.__version__),
        "wall": dict(data_s=t_data - t_start, compile_s=compile_s if args.mode == "compile" else None,
                     train_s=t_train - t_data, eval_s=t_end - t_train, total_s=t_end - t_start,
                     steps_per_s=steps / (t_train - t_data)),
        "accuracy": dict(first_loss=first_loss, final_batch_loss=float(loss.detach()), train_mse=train_mse,
                         valid_mse=valid_mse, rollout=ro, learned=learned,
                         map_error=float(np.abs(m - m_exact).max()), offset=c.tolist()),
        "losses": losses,
    }
    if args.json:
        print(json.dumps(out))
    else:
        w, a = out["wall"], out["accuracy"]
        print(f"PyTorch {torch.__version__}, {args.mode}: {steps} steps in {w['train_s']:.1f}s "
              f"(compile {w['compile_s'] or 0:.1f}s, {w['steps_per_s']:.0f} steps/s), total {w['total_s']:.1f}s")
        print(f"train MSE {a['train_mse']:.3e}, valid MSE {a['valid_mse']:.3e}, rollout@200 median "
              f"{ro['median_rel_err_final']:.3e} max {ro['max_rel_err_final']:.3e}; "
              f"learned ω0 {learned['omega0']:.7f} γ {learned['gamma']:.3e}")


if __name__ == "__main__":
    main()

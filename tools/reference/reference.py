"""PyTorch reference implementation of the physlens model (docs/physics.md).

Writes JSON fixtures that the Rust tests compare against: forward pass,
activation cache, loss, gradients and 5 AdamW steps, for a few small
configurations, in float64 and float32.

Regenerate (from the repository root):

    python3 tools/reference/reference.py --out tests/fixtures

It refuses to write when matmul does not round like the FMA kernel the
committed fixtures were made with (MKL on a non-Intel CPU): see README.md,
"Reproducing the fixtures".

The model is a transformer in the row convention (a token is a row vector),
attention-only unless the config sets ``d_mlp`` > 0 (then each layer adds an
MLP after attention, TransformerLens style). Parameters live in a plain dict
keyed by the TransformerLens checkpoint names (``embed.W_E``,
``blocks.0.attn.W_Q``, ``blocks.0.mlp.W_in``, ...). No attention biases, no
LayerNorm.
"""

import argparse
import json
import math
import os
import sys
from fractions import Fraction

import torch
import torch.nn.functional as F

D_IN = 2

# name, config, AdamW hyper-parameters, seed
CASES = [
    (
        "seed",
        dict(d_model=2, n_heads=1, d_head=2, n_layers=1, n_ctx=1,
             attn_scale="d_model", causal=True, positional=False),
        dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01),
        1,
    ),
    (
        "deep",
        dict(d_model=4, n_heads=2, d_head=3, n_layers=2, n_ctx=5,
             attn_scale="d_head", causal=True, positional=True),
        dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
        2,
    ),
    (
        "noncausal",
        dict(d_model=3, n_heads=2, d_head=2, n_layers=1, n_ctx=4,
             attn_scale="d_model", causal=False, positional=True),
        dict(lr=3e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
        3,
    ),
    (
        "mlp",
        dict(d_model=4, n_heads=2, d_head=3, n_layers=2, n_ctx=5,
             attn_scale="d_head", causal=True, positional=True,
             d_mlp=8, act="gelu"),
        dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.05),
        4,
    ),
    (
        "mlp_relu",
        dict(d_model=3, n_heads=1, d_head=2, n_layers=1, n_ctx=3,
             attn_scale="d_model", causal=True, positional=False,
             d_mlp=5, act="relu"),
        dict(lr=3e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
        5,
    ),
]
BATCH = 7  # odd on purpose
STEPS = 5

# MLP activations; "gelu" is the exact erf form (approximate="none").
ACTS = {"gelu": F.gelu, "relu": torch.relu}


# ---------------------------------------------------------------- model ----

def d_mlp(cfg):
    """MLP width; 0 (no MLP) when the config has no ``d_mlp`` key."""
    return cfg.get("d_mlp", 0)


def param_shapes(cfg):
    """Checkpoint tensor names and shapes, in checkpoint order."""
    D, H, K, T = cfg["d_model"], cfg["n_heads"], cfg["d_head"], cfg["n_ctx"]
    M = d_mlp(cfg)
    shapes = {"embed.W_E": [D_IN, D], "embed.b_E": [D]}
    if cfg["positional"]:
        shapes["pos_embed.W_pos"] = [T, D]
    for l in range(cfg["n_layers"]):
        for w in ("W_Q", "W_K", "W_V"):
            shapes[f"blocks.{l}.attn.{w}"] = [H, D, K]
        shapes[f"blocks.{l}.attn.W_O"] = [H, K, D]
        if M:
            shapes[f"blocks.{l}.mlp.W_in"] = [D, M]
            shapes[f"blocks.{l}.mlp.b_in"] = [M]
            shapes[f"blocks.{l}.mlp.W_out"] = [M, D]
            shapes[f"blocks.{l}.mlp.b_out"] = [D]
    shapes["unembed.W_U"] = [D, D_IN]
    shapes["unembed.b_U"] = [D_IN]
    return shapes


def init_params(cfg, gen, dtype):
    """N(0, 0.5^2) weights, N(0, 0.1^2) biases (b_E, b_in, b_out, b_U);
    drawn in f64 in checkpoint order, then cast."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        std = 0.1 if name.split(".")[-1].startswith("b_") else 0.5
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * std
        params[name] = x.to(dtype)
    return params


def forward(params, cfg, s, cache=None):
    """s: [B, T, 2] -> pred [B, T, 2]. Fills `cache` (a dict) if given."""
    T = s.shape[1]
    scale = 1.0 / math.sqrt(cfg["d_model"] if cfg["attn_scale"] == "d_model"
                            else cfg["d_head"])
    if cache is None:
        cache = {}

    embed = s @ params["embed.W_E"] + params["embed.b_E"]
    cache["embed"] = embed
    r = embed
    if cfg["positional"]:
        r = r + params["pos_embed.W_pos"][None, :T]

    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # j > i
    for l in range(cfg["n_layers"]):
        p = f"blocks.{l}"
        cache[f"{p}.resid_pre"] = r
        q = torch.einsum("btd,hdk->bthk", r, params[f"{p}.attn.W_Q"])
        k = torch.einsum("btd,hdk->bthk", r, params[f"{p}.attn.W_K"])
        v = torch.einsum("btd,hdk->bthk", r, params[f"{p}.attn.W_V"])
        scores = torch.einsum("bihk,bjhk->bhij", q, k) * scale
        if cfg["causal"]:
            scores = scores.masked_fill(mask, float("-inf"))
        pattern = torch.softmax(scores, dim=-1)
        z = torch.einsum("bhij,bjhk->bihk", pattern, v)
        result = torch.einsum("bthk,hkd->bthd", z, params[f"{p}.attn.W_O"])
        r = r + result.sum(dim=2)
        cache.update({
            f"{p}.attn.q": q, f"{p}.attn.k": k, f"{p}.attn.v": v,
            f"{p}.attn.scores": scores, f"{p}.attn.pattern": pattern,
            f"{p}.attn.z": z, f"{p}.attn.result": result,
        })
        if d_mlp(cfg):
            cache[f"{p}.resid_mid"] = r
            pre = r @ params[f"{p}.mlp.W_in"] + params[f"{p}.mlp.b_in"]
            post = ACTS[cfg["act"]](pre)
            mlp_out = post @ params[f"{p}.mlp.W_out"] + params[f"{p}.mlp.b_out"]
            r = r + mlp_out
            cache.update({f"{p}.mlp.pre": pre, f"{p}.mlp.post": post,
                          f"{p}.mlp_out": mlp_out})
        cache[f"{p}.resid_post"] = r

    pred = r @ params["unembed.W_U"] + params["unembed.b_U"]
    cache["pred"] = pred
    return pred


def loss_fn(pred, target, cfg):
    """Mean over batch (and positions) of the squared error norm."""
    if not cfg["causal"]:
        pred, target = pred[:, -1], target[:, -1]
    return ((pred - target) ** 2).sum(-1).mean()


# ------------------------------------------------------------- fixtures ----

def make_data(cfg, gen):
    """Inputs N(0,1); targets = one damped-rotation step of the inputs + noise."""
    T = cfg["n_ctx"]
    s = torch.randn(BATCH, T, D_IN, generator=gen, dtype=torch.float64)
    th = 0.3
    A = 0.98 * torch.tensor([[math.cos(th), math.sin(th)],
                             [-math.sin(th), math.cos(th)]], dtype=torch.float64)
    noise = 0.05 * torch.randn(BATCH, T, D_IN, generator=gen, dtype=torch.float64)
    return s, s @ A.T + noise


def arr(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": t.reshape(-1).tolist()}


def build_fixture(name, cfg, opt_cfg, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    params = init_params(cfg, gen, dtype)
    s, y = make_data(cfg, gen)
    s, y = s.to(dtype), y.to(dtype)

    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    cache = {}
    pred = forward(leaves, cfg, s, cache)
    loss = loss_fn(pred, y, cfg)
    loss.backward()
    grads = {k: v.grad.clone() for k, v in leaves.items()}

    cache_out = {}
    for k, v in cache.items():
        v = v.detach()
        if k.endswith(".scores"):
            v = v.masked_fill(torch.isinf(v), 0.0)  # masked -inf dumped as 0.0
        cache_out[k] = arr(v)

    # AdamW: 5 steps on the same batch, single-tensor path, constant lr.
    train = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.AdamW(
        list(train.values()), lr=opt_cfg["lr"],
        betas=(opt_cfg["beta1"], opt_cfg["beta2"]), eps=opt_cfg["eps"],
        weight_decay=opt_cfg["weight_decay"], foreach=False)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        l = loss_fn(forward(train, cfg, s), y, cfg)
        losses.append(l.item())
        l.backward()
        opt.step()
    with torch.no_grad():
        loss_final = loss_fn(forward(train, cfg, s), y, cfg).item()

    fixture = {
        "name": name,
        "dtype": "f64" if dtype == torch.float64 else "f32",
        "config": cfg,
        "params": {k: arr(v) for k, v in params.items()},
        "inputs": arr(s),
        "targets": arr(y),
        "outputs": arr(pred),
        "loss": loss.item(),
        "grads": {k: arr(v) for k, v in grads.items()},
        "cache": cache_out,
        "adamw": dict(opt_cfg, steps=STEPS),
        "losses": losses,
        "loss_final": loss_final,
        "params_after": {k: arr(v) for k, v in train.items()},
    }
    return fixture, params, s, y, cache


# ---------------------------------------------------------- self-checks ----

def self_check(name, cfg, params, s, y, cache):
    """f64 only: gradcheck, finite differences, pattern sanity, MLP
    activation and residual sums, affine case."""
    names = list(params)

    def f(*ts):
        return loss_fn(forward(dict(zip(names, ts)), cfg, s), y, cfg)

    inputs = tuple(params[k].clone().requires_grad_(True) for k in names)
    ok = torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)
    print(f"[{name}] torch.autograd.gradcheck (all params): {ok}")

    # central finite differences on a few entries
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss_fn(forward(leaves, cfg, s), y, cfg).backward()
    h = 1e-6
    last = cfg["n_layers"] - 1
    entries = [("embed.W_E", (1, 0)), (f"blocks.{last}.attn.W_Q", (0, 1, 0)),
               ("blocks.0.attn.W_V", (0, 0, 1)), ("unembed.b_U", (1,))]
    if d_mlp(cfg):
        entries += [(f"blocks.{last}.mlp.W_in", (1, 2)), ("blocks.0.mlp.b_in", (3,)),
                    ("blocks.0.mlp.W_out", (2, 1)), (f"blocks.{last}.mlp.b_out", (0,))]
    for k, idx in entries:
        plus = {n: v.clone() for n, v in params.items()}
        minus = {n: v.clone() for n, v in params.items()}
        plus[k][idx] += h
        minus[k][idx] -= h
        fd = (loss_fn(forward(plus, cfg, s), y, cfg)
              - loss_fn(forward(minus, cfg, s), y, cfg)).item() / (2 * h)
        an = leaves[k].grad[idx].item()
        print(f"[{name}] FD {k}{list(idx)}: autograd={an:.12e} fd={fd:.12e} "
              f"|diff|={abs(an - fd):.2e}")

    T = cfg["n_ctx"]
    masked = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for l in range(cfg["n_layers"]):
        pat = cache[f"blocks.{l}.attn.pattern"].detach()
        row_err = (pat.sum(-1) - 1).abs().max().item()
        msg = f"[{name}] layer {l}: max |pattern row sum - 1| = {row_err:.2e}"
        if cfg["causal"]:
            msg += f", max |masked pattern entry| = {pat[..., masked].abs().max().item() if masked.any() else 0.0:.1e}"
        print(msg)

    if d_mlp(cfg):
        # exact erf GELU / ReLU written out, and the two residual sums
        closed = {"gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
                  "relu": lambda x: x.clamp(min=0)}[cfg["act"]]
        for l in range(cfg["n_layers"]):
            p = f"blocks.{l}"
            c = {k: v.detach() for k, v in cache.items() if k.startswith(p + ".")}
            act_err = (c[f"{p}.mlp.post"] - closed(c[f"{p}.mlp.pre"])).abs().max().item()
            mid_err = (c[f"{p}.resid_mid"] - c[f"{p}.resid_pre"]
                       - c[f"{p}.attn.result"].sum(2)).abs().max().item()
            post_err = (c[f"{p}.resid_post"] - c[f"{p}.resid_mid"]
                        - c[f"{p}.mlp_out"]).abs().max().item()
            # gradcheck/FD need every pre-activation away from ReLU's kink
            min_pre = c[f"{p}.mlp.pre"].abs().min().item()
            print(f"[{name}] layer {l}: max |post - {cfg['act']}(pre) closed form| = {act_err:.2e}, "
                  f"max |resid_mid - resid_pre - sum_h result| = {mid_err:.2e}, "
                  f"max |resid_post - resid_mid - mlp_out| = {post_err:.2e}, "
                  f"min |pre| = {min_pre:.2e}")

    # docs/model-and-checkpoint.md: one layer, context 1, no MLP => exactly affine
    if cfg["n_layers"] == 1 and T == 1 and not d_mlp(cfg):
        P = params
        Dm = cfg["d_model"]
        mid = torch.eye(Dm, dtype=torch.float64) + sum(
            P["blocks.0.attn.W_V"][h] @ P["blocks.0.attn.W_O"][h]
            for h in range(cfg["n_heads"]))
        M_row = P["embed.W_E"] @ mid @ P["unembed.W_U"]
        c_row = P["embed.b_E"] @ mid @ P["unembed.W_U"] + P["unembed.b_U"]
        err = (s @ M_row + c_row - cache["pred"].detach()).abs().max().item()
        print(f"[{name}] affine closed form (docs/model-and-checkpoint.md) vs forward: max |diff| = {err:.2e}")


# ------------------------------------------------------ reproducibility ----

def matmul_rounds_like_fma():
    """True if float64 matmul rounds like an FMA kernel, as MKL's Intel code
    path does: the committed fixtures were made on that path.

    On a non-Intel CPU MKL takes a path without FMA, and every fixture then
    changes in its last bits (README, "Reproducing the fixtures")."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    w = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    X, W, Y = x.tolist(), w.tolist(), (x @ w).tolist()

    def fma_dot(i, j):  # x0*w0 rounded, then + x1*w1 with a single rounding
        return float(Fraction(X[i][1]) * Fraction(W[1][j]) + Fraction(X[i][0] * W[0][j]))

    return all(Y[i][j] == fma_dot(i, j) for i in range(len(X)) for j in range(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures", help="output directory")
    ap.add_argument("--allow-blas-drift", action="store_true",
                    help="write even though matmul does not round like the FMA "
                         "kernel the committed fixtures were made with")
    args = ap.parse_args()
    print(f"torch {torch.__version__}")
    if not matmul_rounds_like_fma():
        msg = ("matmul here does not round like the FMA kernel the committed "
               "fixtures were made with (MKL on a non-Intel CPU?), so every "
               "fixture would change in its last bits; see tools/reference/"
               "README.md, 'Reproducing the fixtures'.")
        if not args.allow_blas_drift:
            sys.exit(f"error: {msg} Pass --allow-blas-drift to write anyway.")
        print(f"warning: {msg}")
    os.makedirs(args.out, exist_ok=True)

    for name, cfg, opt_cfg, seed in CASES:
        preds = {}
        for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
            fx, params, s, y, cache = build_fixture(name, cfg, opt_cfg, seed, dtype)
            preds[tag] = torch.tensor(fx["outputs"]["data"], dtype=torch.float64)
            path = os.path.join(args.out, f"{name}_{tag}.json")
            with open(path, "w") as fh:
                json.dump(fx, fh, allow_nan=False)
            print(f"wrote {path} ({os.path.getsize(path)} bytes), "
                  f"loss={fx['loss']:.6g}, losses={[f'{v:.6g}' for v in fx['losses']]}, "
                  f"loss_final={fx['loss_final']:.6g}")
            if dtype == torch.float64:
                self_check(name, cfg, params, s, y, cache)
        print(f"[{name}] max |pred f32 - pred f64| = "
              f"{(preds['f32'] - preds['f64']).abs().max().item():.2e}")


if __name__ == "__main__":
    main()

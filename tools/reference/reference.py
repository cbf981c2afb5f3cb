"""PyTorch reference implementation of the physlens model (docs/physics.md).

Writes JSON fixtures that the Rust tests compare against: forward pass,
activation cache, loss, gradients and 5 AdamW steps, for a few small
configurations, in float64 and float32.

Regenerate (from the repository root):

    python3 tools/reference/reference.py --out tests/fixtures

The model is an attention-only transformer in the row convention (a token is a
row vector). Parameters live in a plain dict keyed by the TransformerLens
checkpoint names (``embed.W_E``, ``blocks.0.attn.W_Q``, ...). No attention
biases, no LayerNorm, no MLP.
"""

import argparse
import json
import math
import os

import torch

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
]
BATCH = 7  # odd on purpose
STEPS = 5


# ---------------------------------------------------------------- model ----

def param_shapes(cfg):
    """Checkpoint tensor names and shapes, in checkpoint order."""
    D, H, K, T = cfg["d_model"], cfg["n_heads"], cfg["d_head"], cfg["n_ctx"]
    shapes = {"embed.W_E": [D_IN, D], "embed.b_E": [D]}
    if cfg["positional"]:
        shapes["pos_embed.W_pos"] = [T, D]
    for l in range(cfg["n_layers"]):
        for w in ("W_Q", "W_K", "W_V"):
            shapes[f"blocks.{l}.attn.{w}"] = [H, D, K]
        shapes[f"blocks.{l}.attn.W_O"] = [H, K, D]
    shapes["unembed.W_U"] = [D, D_IN]
    shapes["unembed.b_U"] = [D_IN]
    return shapes


def init_params(cfg, gen, dtype):
    """N(0, 0.5^2) weights, N(0, 0.1^2) biases; drawn in f64, then cast."""
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
            f"{p}.resid_post": r,
        })

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
    """f64 only: gradcheck, finite differences, pattern sanity, affine case."""
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
    for k, idx in (("embed.W_E", (1, 0)), (f"blocks.{last}.attn.W_Q", (0, 1, 0)),
                   ("blocks.0.attn.W_V", (0, 0, 1)), ("unembed.b_U", (1,))):
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

    # docs/model-and-checkpoint.md: one layer, context 1 => exactly affine
    if cfg["n_layers"] == 1 and T == 1:
        P = params
        Dm = cfg["d_model"]
        mid = torch.eye(Dm, dtype=torch.float64) + sum(
            P["blocks.0.attn.W_V"][h] @ P["blocks.0.attn.W_O"][h]
            for h in range(cfg["n_heads"]))
        M_row = P["embed.W_E"] @ mid @ P["unembed.W_U"]
        c_row = P["embed.b_E"] @ mid @ P["unembed.W_U"] + P["unembed.b_U"]
        err = (s @ M_row + c_row - cache["pred"].detach()).abs().max().item()
        print(f"[{name}] affine closed form (docs/model-and-checkpoint.md) vs forward: max |diff| = {err:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures", help="output directory")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"torch {torch.__version__}")

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

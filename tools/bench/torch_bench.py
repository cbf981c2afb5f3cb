#!/usr/bin/env python3
"""Steady-state training speed of the physlens model in PyTorch (CPU, f32).

The PyTorch side of `physlens bench --json` (docs/cli.md): the same configs
(workload.py: blog, wide, deep, deep_mlp), the same batches and the same step
(gather a batch from a fixed pool, forward, loss, backward, AdamW), printed
in the same JSON shape with an extra `"mode": "eager" | "compile"` key per
row. `--configs` and `--batches` filter the rows, like physlens's flags.

    python3 tools/bench/torch_bench.py --json              # the table
    python3 tools/bench/torch_bench.py --json --configs deep --batches 64 --modes eager
    python3 tools/bench/torch_bench.py --check             # correctness only

How the PyTorch side is made fast (each choice measured, see README.md):

* the model is the one of `tools/reference/reference.py` with its weights in
  a GEMM-friendly layout: W_Q, W_K, W_V of a layer concatenated into one
  `[d_model, 3·H·K]` matrix and W_O flattened to `[H·K, d_model]` (a re-layout
  of the same checkpoint tensors, converted both ways by `to_fast` /
  `to_reference`); embed / unembed are `addmm`s, attention is batched matmul
  + softmax with an additive causal mask (or `scaled_dot_product_attention`,
  `--impl sdpa`), the MLP (configs with d_mlp > 0) two `addmm`s around the
  activation (exact GELU for deep_mlp); the loss is `2·mse_loss` = squared
  error summed over the 2 components, averaged over samples and positions,
  exactly the reference's `loss_fn`;
* eager mode: `torch.optim.AdamW` with `fused=True`, `foreach=True` and the
  single-tensor path are all timed (plus the unmodified reference forward)
  and the fastest is kept per row;
* compile mode: the WHOLE step — index gather, forward, loss, backward (via
  `torch.func.grad_and_value`) and the AdamW update (the same formula as
  `torch.optim.AdamW`, written out so that it lives in the same graph) — is
  one `torch.compile(fullgraph=True, dynamic=False)` graph. If that fails,
  the fallback compiles model+loss (backward through AOTAutograd) and
  `torch.optim.AdamW(foreach=True).step` separately. `--check` verifies every
  variant against the reference + `torch.optim.AdamW(foreach=False)`.

Data: a fixed pool of 100 000 sequences (docs/physics.md states, exact targets;
T-token trajectories for `wide`), batches gathered every step by a
pre-shuffled index (one permutation of the pool, cycled) — like physlens,
which gathers each batch from its fixed set by shuffled index.

Timing: warm-up (and compilation), then `--rounds` rounds of timed steps;
each round first waits (up to `--quiet-timeout` s) for the machine to be
quiet, the row reports the median step time of its best round and the load
other processes put on the CPU during each round.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback

sys.dont_write_bytecode = True  # leave no __pycache__ in tools/ (tools/reference is read-only here)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import machine  # noqa: E402
import oscillator  # noqa: E402
import reference  # noqa: E402  (tools/reference/reference.py, imported read-only)
from workload import BATCHES, CONFIGS, select_rows  # noqa: E402

ADAMW = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
SYSTEM = dict(omega0=2.0, gamma=0.1, dt=0.1, e_max=1.0)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ model ----

MLP_WEIGHTS = ("W_in", "b_in", "W_out", "b_out")  # same layout in both, key "W_in.{l}" in the fast one


def _hk(cfg):
    return cfg["n_heads"] * cfg["d_head"]


def to_fast(ref_params, cfg):
    """Checkpoint-layout tensors (reference.param_shapes) -> fast layout."""
    D = cfg["d_model"]
    out = {"W_E": ref_params["embed.W_E"], "b_E": ref_params["embed.b_E"],
           "W_U": ref_params["unembed.W_U"], "b_U": ref_params["unembed.b_U"]}
    if cfg["positional"]:
        out["W_pos"] = ref_params["pos_embed.W_pos"]
    for l in range(cfg["n_layers"]):
        a = f"blocks.{l}.attn"
        out[f"W_QKV.{l}"] = torch.cat(
            [ref_params[f"{a}.{w}"].permute(1, 0, 2).reshape(D, _hk(cfg))
             for w in ("W_Q", "W_K", "W_V")], dim=1)
        out[f"W_O.{l}"] = ref_params[f"{a}.W_O"].reshape(_hk(cfg), D)
        if reference.d_mlp(cfg):
            for w in MLP_WEIGHTS:
                out[f"{w}.{l}"] = ref_params[f"blocks.{l}.mlp.{w}"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def to_reference(fast, cfg):
    """Fast layout -> checkpoint-layout tensors (inverse of to_fast)."""
    D, H, K = cfg["d_model"], cfg["n_heads"], cfg["d_head"]
    out = {"embed.W_E": fast["W_E"], "embed.b_E": fast["b_E"]}
    if cfg["positional"]:
        out["pos_embed.W_pos"] = fast["W_pos"]
    for l in range(cfg["n_layers"]):
        q, k, v = fast[f"W_QKV.{l}"].split(H * K, dim=1)
        for name, w in (("W_Q", q), ("W_K", k), ("W_V", v)):
            out[f"blocks.{l}.attn.{name}"] = w.reshape(D, H, K).permute(1, 0, 2)
        out[f"blocks.{l}.attn.W_O"] = fast[f"W_O.{l}"].reshape(H, K, D)
        if reference.d_mlp(cfg):
            for w in MLP_WEIGHTS:
                out[f"blocks.{l}.mlp.{w}"] = fast[f"{w}.{l}"]
    out["unembed.W_U"] = fast["W_U"]
    out["unembed.b_U"] = fast["b_U"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def init_reference_layout(cfg, seed, scheme="physlens"):
    """Checkpoint-layout f32 weights. scheme "physlens": like Model::init in
    src/model/transformer.rs (weights N(0, 1/fan_in) with fan_in = shape[-2], so
    W_in N(0, 1/d_model) and W_out N(0, 1/d_mlp); biases b_E, b_in, b_out, b_U 0;
    W_pos N(0, 0.1²)); "reference": reference.init_params (N(0, .5²), N(0, .1²))."""
    gen = torch.Generator().manual_seed(seed)
    if scheme == "reference":
        return reference.init_params(cfg, gen, torch.float32)
    params = {}
    for name, shape in reference.param_shapes(cfg).items():
        if name.split(".")[-1].startswith("b_"):
            params[name] = torch.zeros(shape, dtype=torch.float32)
            continue
        std = 0.1 if name == "pos_embed.W_pos" else 1.0 / math.sqrt(shape[-2])
        params[name] = (torch.randn(shape, generator=gen, dtype=torch.float64) * std).float()
    return params


def causal_mask(cfg):
    """Additive mask [T, T]: 0 on and below the diagonal, -inf above (None if not causal)."""
    T = cfg["n_ctx"]
    if not cfg["causal"]:
        return None
    return torch.triu(torch.full((T, T), float("-inf"), dtype=torch.float32), diagonal=1)


def forward_fast(P, cfg, s, mask, attn="matmul"):
    """s [B, T, 2] -> pred [B, T, 2]; the reference model in the fast layout."""
    B, T, _ = s.shape
    D, H, K = cfg["d_model"], cfg["n_heads"], cfg["d_head"]
    scale = 1.0 / math.sqrt(D if cfg["attn_scale"] == "d_model" else K)
    r = torch.addmm(P["b_E"], s.reshape(B * T, 2), P["W_E"])  # [BT, D]
    if cfg["positional"]:
        r = (r.view(B, T, D) + P["W_pos"][:T]).view(B * T, D)
    for l in range(cfg["n_layers"]):
        qkv = torch.mm(r, P[f"W_QKV.{l}"]).view(B, T, 3, H, K).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, H, T, K]
        if attn == "sdpa":
            z = F.scaled_dot_product_attention(q, k, v, is_causal=cfg["causal"], scale=scale)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale
            if mask is not None:
                scores = scores + mask
            z = torch.matmul(torch.softmax(scores, dim=-1), v)
        r = torch.addmm(r, z.transpose(1, 2).reshape(B * T, H * K), P[f"W_O.{l}"])
        if reference.d_mlp(cfg):
            post = reference.ACTS[cfg["act"]](torch.addmm(P[f"b_in.{l}"], r, P[f"W_in.{l}"]))
            r = torch.addmm(r + P[f"b_out.{l}"], post, P[f"W_out.{l}"])
    return torch.addmm(P["b_U"], r, P["W_U"]).view(B, T, 2)


def loss_fast(pred, target, cfg):
    """Mean over samples (and positions) of the squared error norm = reference.loss_fn."""
    if not cfg["causal"]:
        pred, target = pred[:, -1], target[:, -1]
    return F.mse_loss(pred, target) * 2.0  # mse_loss averages over the 2 components too


def make_loss(cfg, impl, mask):
    """loss(P, s, t) for impl "matmul" / "sdpa" (fast layout) or "reference"
    (checkpoint layout, reference.forward + reference.loss_fn)."""
    if impl == "reference":
        return lambda P, s, t: reference.loss_fn(reference.forward(P, cfg, s), t, cfg)
    return lambda P, s, t: loss_fast(forward_fast(P, cfg, s, mask, impl), t, cfg)


def adamw_update_(P, G, M, V, step, lr, hp):
    """In-place AdamW on dicts of tensors, the formula of torch.optim.AdamW
    (see tools/reference/README.md). `step` is a 0-d tensor already
    incremented; `lr` a float or 0-d tensor."""
    b1, b2, eps, wd = hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"]
    bc1 = 1 - b1 ** step
    bc2_sqrt = (1 - b2 ** step).sqrt()
    step_size = lr / bc1
    for k in P:
        p, g, m, v = P[k], G[k], M[k], V[k]
        if wd != 0.0:
            p.mul_(1 - lr * wd)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.sub_(step_size * m / (v.sqrt() / bc2_sqrt + eps))


# ------------------------------------------------------------------ steps ----

class Pool:
    """A fixed data set on CPU and a pre-shuffled index cut into batches."""

    def __init__(self, cfg, n, batch, seed=0, system=SYSTEM):
        rng = np.random.default_rng(seed)
        x, y = oscillator.make_dataset(rng, n, cfg["n_ctx"], system["omega0"], system["gamma"],
                                       system["dt"], system["e_max"])
        self.x = torch.tensor(x, dtype=torch.float32).contiguous()  # [N, T, 2]
        self.y = torch.tensor(y, dtype=torch.float32).contiguous()
        self.set_batch(batch, seed)

    def set_batch(self, batch, seed=0):
        n = self.x.shape[0]
        if batch > n:
            raise ValueError(f"batch {batch} larger than the pool ({n})")
        self.batch = batch
        self.n_batches = n // batch
        g = torch.Generator().manual_seed(seed + 1)
        perm = torch.randperm(n, generator=g)[: self.n_batches * batch]
        self.idx = perm.view(self.n_batches, batch).contiguous()
        self.rows = [self.idx[i] for i in range(self.n_batches)]  # pre-sliced views

    def index(self, i):
        return self.rows[i % self.n_batches]


def eager_step(cfg, impl, opt_kind, pool, params_ref):
    """A step closure (gather, forward, loss, backward, torch.optim.AdamW) in eager mode."""
    mask = causal_mask(cfg)
    if impl == "reference":
        P = {k: v.clone().requires_grad_(True) for k, v in params_ref.items()}
    else:
        P = {k: v.requires_grad_(True) for k, v in to_fast(params_ref, cfg).items()}
    flag = {"fused": dict(fused=True), "foreach": dict(foreach=True),
            "single": dict(foreach=False)}[opt_kind]
    opt = torch.optim.AdamW(list(P.values()), lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]),
                            eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"], **flag)
    loss_of = make_loss(cfg, impl, mask)
    x, y = pool.x, pool.y

    def step(i):
        idx = pool.index(i)
        loss = loss_of(P, x.index_select(0, idx), y.index_select(0, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def params():
        return P if impl == "reference" else to_reference(P, cfg)
    step.optimizer = opt  # for callers that set the learning rate per step
    return step, params


def compiled_whole_step(cfg, impl, pool, params_ref, compile_mode, lr=None):
    """The whole step as ONE compiled graph: gather + forward + loss +
    backward (torch.func.grad_and_value) + AdamW (adamw_update_). `lr`: None
    for the constant ADAMW lr, or a callable step -> lr evaluated in-graph
    (e.g. cosine), from a 0-d step tensor."""
    mask = causal_mask(cfg)
    P = to_fast(params_ref, cfg) if impl != "reference" else {k: v.clone() for k, v in params_ref.items()}
    M = {k: torch.zeros_like(v) for k, v in P.items()}
    V = {k: torch.zeros_like(v) for k, v in P.items()}
    t = torch.zeros((), dtype=torch.float64)  # step count (f64 like the Python floats of torch.optim)
    loss_of = make_loss(cfg, impl, mask)
    grad_fn = torch.func.grad_and_value(loss_of)
    x, y = pool.x, pool.y
    lr_of = lr if lr is not None else (lambda step: ADAMW["lr"])

    def full(idx):
        grads, loss = grad_fn(P, x[idx], y[idx])
        lr_now = lr_of(t)  # lr of step t (0-based), before the increment
        t.add_(1)
        adamw_update_(P, grads, M, V, t, lr_now, ADAMW)
        return loss

    torch._dynamo.reset()  # each candidate compiles `full` afresh (same code object)
    fn = torch.compile(full, mode=compile_mode, fullgraph=True, dynamic=False)

    def step(i):
        return fn(pool.index(i))

    def params():
        return P if impl == "reference" else to_reference(P, cfg)
    return step, params


def compiled_split_step(cfg, impl, pool, params_ref, compile_mode):
    """Fallback: compiled model+loss (compiled backward through AOTAutograd),
    eager .backward(), compiled torch.optim.AdamW(foreach=True).step."""
    mask = causal_mask(cfg)
    P = {k: v.requires_grad_(True) for k, v in to_fast(params_ref, cfg).items()}
    opt = torch.optim.AdamW(list(P.values()), lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]),
                            eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"], foreach=True)
    loss_of = make_loss(cfg, impl, mask)
    x, y = pool.x, pool.y
    torch._dynamo.reset()
    fwd = torch.compile(lambda idx: loss_of(P, x[idx], y[idx]), mode=compile_mode, dynamic=False)

    @torch.compile(mode=compile_mode, dynamic=False)
    def opt_step():
        opt.step()

    def step(i):
        loss = fwd(pool.index(i))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt_step()
        return loss
    return step, lambda: to_reference(P, cfg)


# ----------------------------------------------------------------- timing ----

def measure(step, seconds, rounds, min_steps, quiet_threshold, quiet_timeout):
    """Median step time (µs) of each of `rounds` rounds of about seconds/rounds;
    and the other processes' load (cores) during each round."""
    medians, loads, counts = [], [], []
    i = 10 ** 6  # continue the index stream after warm-up
    for _ in range(rounds):
        machine.wait_quiet(quiet_threshold, quiet_timeout)
        meter = machine.LoadMeter()
        times = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds / rounds or len(times) < min_steps:
            t0 = time.perf_counter()
            step(i)
            times.append(time.perf_counter() - t0)
            i += 1
        medians.append(statistics.median(times) * 1e6)
        loads.append(round(meter.others_cores(), 3))
        counts.append(len(times))
    return medians, loads, counts


def warm(step, seconds, min_steps=5):
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds or n < min_steps:
        step(n)
        n += 1


def run_candidate(kind, cfg, impl, opt_kind, pool, params_ref, args):
    """Builds and times one candidate; returns a dict (or raises)."""
    t0 = time.perf_counter()
    if kind == "eager":
        step, _ = eager_step(cfg, impl, opt_kind, pool, params_ref)
        compile_s = None
    elif kind == "whole":
        step, _ = compiled_whole_step(cfg, impl, pool, params_ref, args.compile_mode)
    else:
        step, _ = compiled_split_step(cfg, impl, pool, params_ref, args.compile_mode)
    if kind != "eager":
        step(0)  # compiles
        compile_s = time.perf_counter() - t0
    warm(step, args.warmup)
    medians, loads, counts = measure(step, args.seconds, args.rounds, args.min_steps,
                                     args.quiet_threshold, args.quiet_timeout)
    return dict(medians=medians, loads=loads, counts=counts, compile_s=compile_s)


def candidates(mode, cfg, args):
    """(kind, impl, optimizer) tried for a row in `mode`."""
    impls = args.impl.split(",")
    if mode == "eager":
        out = [("eager", impl, o) for impl in impls if impl != "reference"
               for o in args.eager_opt.split(",")]
        if "reference" in impls:
            out.append(("eager", "reference", args.eager_opt.split(",")[0]))
    else:
        out = [("whole", impl, "adamw-in-graph") for impl in impls if impl != "reference"]
    return out


def bench(args, selected):
    """Times every candidate of the (config, batch) rows `selected` in each
    mode; returns the best candidate per row and mode, the errors, and every
    candidate's figures."""
    rows, errors, details = [], [], []
    for name in dict.fromkeys(n for n, _ in selected):
        cfg = CONFIGS[name]
        params_ref = init_reference_layout(cfg, seed=0)
        for batch in [b for n, b in selected if n == name]:
            # --pool 0: like src/train/bench.rs, max(batch, 4096) sequences
            pool = Pool(cfg, args.pool or max(batch, 4096), batch, seed=0)
            for mode in args.modes.split(","):
                best = None
                for kind, impl, opt_kind in candidates(mode, cfg, args):
                    if impl == "sdpa" and cfg["n_ctx"] == 1 and not args.sdpa_on_t1:
                        continue
                    label = f"{name} B={batch} {mode}: {impl} / {opt_kind}"
                    try:
                        r = run_candidate(kind, cfg, impl, opt_kind, pool, params_ref, args)
                    except Exception as e:  # noqa: BLE001 - report and keep going
                        msg = f"{label}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        log("FAILED " + msg)
                        if args.verbose:
                            traceback.print_exc()
                        errors.append(msg)
                        if kind == "whole":
                            kind, opt_kind = "split", "torch.optim.AdamW(foreach=True), compiled"
                            label = f"{name} B={batch} {mode}: {impl} / {opt_kind} (fallback)"
                            try:
                                r = run_candidate(kind, cfg, impl, opt_kind, pool, params_ref, args)
                            except Exception as e2:  # noqa: BLE001
                                msg = f"{label}: {type(e2).__name__}: {str(e2).splitlines()[0] if str(e2) else ''}"
                                log("FAILED " + msg)
                                errors.append(msg)
                                continue
                        else:
                            continue
                    us = min(r["medians"])
                    cs = f", compile {r['compile_s']:.1f}s" if r["compile_s"] is not None else ""
                    log(f"{label}: {us:9.1f} µs/step  {batch / us * 1e6:10.4g} samples/s  "
                        f"(round medians {[round(m, 1) for m in r['medians']]}, "
                        f"other load {r['loads']} cores{cs})")
                    cand = dict(config=name, batch=batch, mode=mode, kind=kind, impl=impl,
                                optimizer=opt_kind, us_per_step=us, round_medians_us=r["medians"],
                                others_cores=r["loads"], steps_per_round=r["counts"],
                                compile_s=r["compile_s"], denormals=args.denormals)
                    details.append(cand)
                    if best is None or us < best["us_per_step"]:
                        best = cand
                if best is None:
                    continue
                us = best["us_per_step"]
                chosen = best["round_medians_us"].index(us)
                rows.append({
                    "config": name, "batch": batch, "dtype": "f32",
                    "threads": torch.get_num_threads(), "us_per_step": us,
                    "samples_per_sec": batch / (us * 1e-6), "mode": mode,
                    "impl": best["impl"], "optimizer": best["optimizer"], "denormals": best["denormals"],
                    "step": "whole step compiled" if best["kind"] == "whole" else
                            ("model+loss and optimizer compiled separately" if best["kind"] == "split"
                             else "eager"),
                    "others_cores": best["others_cores"][chosen],
                })
    return rows, errors, details


# ------------------------------------------------------------------ check ----

# the bench configs and tools/reference's fixture cases of context > 1
CHECK_CONFIGS = dict(CONFIGS, **{f"fixture_{name}": cfg for name, cfg, _, _ in reference.CASES
                                 if cfg["n_ctx"] > 1})


def check(args):
    """Every variant against reference.forward + torch.optim.AdamW(foreach=False):
    5 steps on a pool of 512, batch 64; f32 tolerances. --configs picks from
    CHECK_CONFIGS (default: all). The fixture cases start from
    reference.init_params, the bench configs from the physlens init with the
    blocks' weights halved: reference.init_params's N(0, .5²) through 8 layers
    gives predictions ~1e16 in deep_mlp, and even the physlens init grows the
    residual stream ~2× per layer (initial loss ~5e4), where 5 AdamW steps are
    chaotic: the reference alone in f32 and in f64 ends 95 % apart."""
    ok = True
    names = args.configs.split(",") if args.configs else list(CHECK_CONFIGS)
    unknown = [n for n in names if n not in CHECK_CONFIGS]
    if unknown:
        sys.exit(f"error: unknown config(s) {unknown}; known: {list(CHECK_CONFIGS)}")
    for name in names:
        cfg = CHECK_CONFIGS[name]
        pool = Pool(cfg, 512, 64, seed=3)
        if name in CONFIGS:
            params_ref = {k: v * 0.5 if k.startswith("blocks.") else v
                          for k, v in init_reference_layout(cfg, seed=5).items()}
        else:
            params_ref = init_reference_layout(cfg, seed=5, scheme="reference")
        base_step, base_params = eager_step(cfg, "reference", "single", pool, params_ref)
        base_losses = [base_step(i).item() for i in range(5)]
        base = base_params()
        variants = [("eager", impl, o) for impl in ("matmul", "sdpa") for o in ("fused", "foreach", "single")]
        variants += [("whole", "matmul", None), ("whole", "sdpa", None), ("whole", "reference", None),
                     ("split", "matmul", None)]
        for kind, impl, o in variants:
            try:
                if kind == "eager":
                    step, params = eager_step(cfg, impl, o, pool, params_ref)
                elif kind == "whole":
                    step, params = compiled_whole_step(cfg, impl, pool, params_ref, args.compile_mode)
                else:
                    step, params = compiled_split_step(cfg, impl, pool, params_ref, args.compile_mode)
                losses = [step(i).item() for i in range(5)]
                got = params()
            except Exception as e:  # noqa: BLE001
                print(f"[{name}] {kind:5} {impl:9} {o or '':8}  ERROR {type(e).__name__}: {e}")
                ok = False
                continue
            dl = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(losses, base_losses))
            dp = max((got[k] - base[k]).abs().max().item() for k in base)
            good = dl < 1e-4 and dp < 1e-5
            ok &= good
            print(f"[{name}] {kind:5} {impl:9} {o or '':8}  max rel loss diff {dl:.1e}  "
                  f"max |param diff| after 5 AdamW steps {dp:.1e}  {'ok' if good else 'MISMATCH'}")
    return ok


# ------------------------------------------------------------------- main ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print {\"results\": [...]} on stdout")
    ap.add_argument("--check", action="store_true", help="only verify all variants against the reference")
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per candidate (all rounds)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per candidate; the best round's median counts")
    ap.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per candidate (after compiling)")
    ap.add_argument("--min-steps", type=int, default=10, help="at least this many timed steps per round")
    ap.add_argument("--configs", help=f"comma list (default: all of {list(CONFIGS)}; "
                                      "with --check, also the fixture_* cases of tools/reference)")
    ap.add_argument("--batches", help="comma list filtering each config's batches (default: all of "
                                      f"{BATCHES})")
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--impl", default="matmul,sdpa,reference",
                    help="model implementations to try (reference = tools/reference forward, eager only)")
    ap.add_argument("--sdpa-on-t1", action="store_true",
                    help="also try scaled_dot_product_attention at context 1 (slower there)")
    ap.add_argument("--eager-opt", default="fused,foreach,single",
                    help="torch.optim.AdamW flavours to try in eager mode")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode (default, max-autotune-no-cudagraphs, ...)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--pool", type=int, default=100_000, help="sequences in the fixed data pool (0: max(batch, 4096), what physlens bench uses)")
    ap.add_argument("--quiet-threshold", type=float, default=0.25,
                    help="a round starts once other processes use fewer cores than this ...")
    ap.add_argument("--quiet-timeout", type=float, default=60.0, help="... or after this many seconds")
    ap.add_argument("--denormals", default="keep", choices=["keep", "flush"],
                    help="keep (PyTorch's default) or flush: torch.set_flush_denormal(True) before any "
                         "thread starts (threads inherit it), subnormal floats flushed to zero as "
                         "physlens's kernels do")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.denormals == "flush" and not torch.set_flush_denormal(True):
        sys.exit("--denormals flush: this CPU cannot flush subnormal numbers")
    torch._dynamo.config.recompile_limit = 64  # several rows compile the same functions
    if args.check:
        sys.exit(0 if check(args) else 1)

    try:
        selected = select_rows(args.configs, args.batches)
    except ValueError as e:
        sys.exit(f"error: {e}")
    t0 = time.perf_counter()
    rows, errors, details = bench(args, selected)
    meta = {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "compile_mode": args.compile_mode, "pool": args.pool,
        "data": "fixed pool, batch gathered per step by a pre-shuffled index (one permutation, cycled)",
        "timing": f"{args.rounds} rounds of ~{args.seconds / args.rounds:.2f}s after {args.warmup}s warm-up; "
                  "median step time of the best round; best candidate per row",
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                                "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")},
        "errors": errors, "candidates": details, "seconds": time.perf_counter() - t0,
    }
    if args.json:
        print(json.dumps({"results": rows, "meta": meta}))
    else:
        print(f"{'config':<8} {'batch':>6} {'mode':>8} {'µs/step':>12} {'samples/s':>12}  impl / optimizer")
        for r in rows:
            print(f"{r['config']:<8} {r['batch']:>6} {r['mode']:>8} {r['us_per_step']:>12.1f} "
                  f"{r['samples_per_sec']:>12.4g}  {r['impl']} / {r['optimizer']}")
        for e in errors:
            print("error:", e)
    if not rows:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The benchmark workloads: configs, batches and the flops of a training step.

Shared by torch_bench.py and compare.py. It imports nothing heavy on purpose:
compare.py reads the peak RSS of its children with os.wait4, and a child's
ru_maxrss is never below the RSS of the process that started it, so
compare.py must stay small (no torch, no numpy).
"""

CONFIGS = {
    # docs/cli.md / src/train/bench.rs
    "blog": dict(d_model=2, n_heads=1, d_head=2, n_layers=1, n_ctx=1,
                 attn_scale="d_model", causal=True, positional=False),
    "wide": dict(d_model=16, n_heads=2, d_head=8, n_layers=1, n_ctx=16,
                 attn_scale="d_model", causal=True, positional=False),
    "deep": dict(d_model=32, n_heads=2, d_head=16, n_layers=8, n_ctx=40,
                 attn_scale="d_model", causal=True, positional=True, d_mlp=0),
    "deep_mlp": dict(d_model=32, n_heads=2, d_head=16, n_layers=8, n_ctx=40,
                     attn_scale="d_model", causal=True, positional=True, d_mlp=128, act="gelu"),
}
BATCHES = {"blog": [256, 1024, 16384], "wide": [256, 1024, 16384],
           "deep": [64, 256, 1024], "deep_mlp": [64, 256, 1024]}


def forward_macs(cfg):
    """Multiply-adds of the forward pass of ONE sequence, matmuls only:
    embed, q/k/v, scores and pattern·v (causal: only the T(T+1)/2 unmasked
    entries), W_O, the MLP's W_in and W_out, unembed."""
    D, H, K, L, T = (cfg[k] for k in ("d_model", "n_heads", "d_head", "n_layers", "n_ctx"))
    M = cfg.get("d_mlp", 0)
    pairs = T * (T + 1) // 2 if cfg["causal"] else T * T
    layer = T * D * 3 * H * K + 2 * H * pairs * K + T * H * K * D + 2 * T * D * M
    return T * 2 * D + L * layer + T * D * 2


def flops_per_sequence(cfg):
    """Flops of one training step per sequence: forward + backward, the
    backward counted as twice the forward's matmuls, a multiply-add as 2
    flops; element-wise work (softmax, activation, biases, residual sums,
    loss, AdamW) is not counted."""
    return 3 * 2 * forward_macs(cfg)


def select_rows(configs=None, batches=None):
    """[(config, batch), ...] in the order of CONFIGS and BATCHES, filtered
    by the comma lists `configs` and `batches` (None: all), like the
    `--configs` / `--batches` flags of `physlens bench`. ValueError for an
    unknown config or a batch that none of the selected configs has."""
    names = configs.split(",") if configs else list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; known: {list(CONFIGS)}")
    wanted = [int(b) for b in batches.split(",")] if batches else None
    stray = [b for b in wanted or [] if all(b not in BATCHES[n] for n in names)]
    if stray:
        raise ValueError(f"batch(es) {stray} belong to none of {names}: "
                         f"{ {n: BATCHES[n] for n in names} }")
    return [(n, b) for n in CONFIGS if n in names for b in BATCHES[n] if wanted is None or b in wanted]

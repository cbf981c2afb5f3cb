# %% [markdown]
# # physlens from Python
#
# Train the seed model (one layer, one head, d_model 2, context 1) on the
# damped oscillator, run it with a cache, plot its attention and the
# eigenvalues of its map, and open it in TransformerLens.
#
# Cells are marked `# %%` (VS Code, Jupyter via jupytext, or run the whole
# file: `python examples/notebook.py`). Needs the bindings (`pip install
# ./python`), numpy and matplotlib; the last cell needs torch and
# transformer_lens and is skipped without them.

# %%
import numpy as np
import matplotlib

if __name__ == "__main__" and not hasattr(__builtins__, "__IPYTHON__"):
    matplotlib.use("Agg")  # run as a script: write PNGs instead of opening windows
import matplotlib.pyplot as plt

import physlens

# %% [markdown]
# ## Train
# A config is a dict of sections (or the path of a TOML file); every key not
# given keeps its default (docs/config.md). This trains and evaluates one
# model into `runs/notebook/` (Ctrl-C stops it resumably:
# `physlens.resume("runs/notebook")`).

# %%
config = {
    "system": {"omega0": 2.0, "gamma": 0.1, "dt": 0.1},
    "train": {"steps": 20000, "dtype": "f64"},
}
run = physlens.train(config, "runs/notebook", force=True, quiet=False)
print(run.summary["valid_mse"], run.summary["learned"])

# %% [markdown]
# ## Run it with a cache
# States go in as `[B, T, 2]` arrays of `(x, p)` (T = the model's context);
# the cache holds every activation under the names of `physlens interpret --dump`.

# %%
model = run.model
rng = np.random.default_rng(0)
states = rng.normal(size=(512, model.n_ctx, 2))
pred, cache = model.run_with_cache(states)
print(sorted(cache))
print("pattern", cache["blocks.0.attn.pattern"].shape)

# %% [markdown]
# ## Attention
# With one token in context the softmax is 1: the pattern is a 1 × 1 matrix
# of ones. A model with a longer context (below) attends over its tokens.

# %%
ctx = physlens.train(
    {
        "data": {"context": 8},
        "model": {"d_model": 8, "n_heads": 2, "d_head": 4, "positional": True},
        "train": {"steps": 3000},
    },
    "runs/notebook-context",
    force=True,
)
_, ctx_cache = ctx.model.run_with_cache(rng.normal(size=(64, 8, 2)), names=["blocks.0.attn.pattern"])
pattern = ctx_cache["blocks.0.attn.pattern"].mean(axis=0)  # [H, T, T], averaged over the batch
fig, axes = plt.subplots(1, pattern.shape[0], figsize=(4 * pattern.shape[0], 3.6))
for h, ax in enumerate(np.atleast_1d(axes)):
    im = ax.imshow(pattern[h], vmin=0, vmax=1, cmap="viridis")
    ax.set(title=f"head {h}", xlabel="key position", ylabel="query position")
fig.colorbar(im, ax=axes)
fig.savefig("runs/notebook-context/attention.png", dpi=120)

# %% [markdown]
# ## Eigenvalues of the learned map
# `physlens.interpret` returns the object of `physlens interpret --json`:
# the effective map, its eigenvalues, the learned ω0 and γ, the nearest
# update rule. The exact propagator's eigenvalues are e^{(−γ ± iω)Δt}.

# %%
report = physlens.interpret("runs/notebook/model.safetensors")
learned = np.array([complex(e["re"], e["im"]) for e in report["eigenvalues"]])
omega0, gamma, dt = 2.0, 0.1, 0.1
omega = np.sqrt(omega0**2 - gamma**2)
exact = np.exp((-gamma + np.array([1j, -1j]) * omega) * dt)
print("learned ω0, γ:", report["learned"]["omega0"], report["learned"]["gamma"])
print("nearest rule:", report["nearest_method"])

fig, ax = plt.subplots(figsize=(4.5, 4.5))
t = np.linspace(0, 2 * np.pi, 400)
ax.plot(np.cos(t), np.sin(t), color="0.8", lw=1)
ax.scatter(exact.real, exact.imag, s=120, facecolors="none", edgecolors="k", label="exact e^{(−γ±iω)Δt}")
ax.scatter(learned.real, learned.imag, s=20, color="C3", label="learned map")
ax.set(xlabel="Re λ", ylabel="Im λ", aspect="equal", xlim=(0.9, 1.02), ylim=(-0.25, 0.25))
ax.legend(loc="lower left")
fig.savefig("runs/notebook/eigenvalues.png", dpi=120)

# %% [markdown]
# ## In TransformerLens
# `physlens export --transformer-lens` (or `physlens.transformer_lens`
# directly) maps the checkpoint to a TransformerLens 4 `TransformerBridge`;
# states enter as `inputs_embeds = states @ W_E`. Predictions and cached
# activations agree with physlens's (docs/transformer-lens.md has the hook
# names).

# %%
try:
    from physlens import transformer_lens as ptl
except ImportError as e:
    print(f"skipped: {e}")
else:
    bridge = ptl.from_physlens("runs/notebook-context/model.safetensors")
    states8 = rng.normal(size=(16, 8, 2))
    tl_pred, tl_cache = ptl.run_with_cache(bridge, states8)  # torch tensors, TransformerLens hook names
    print("pattern hook:", tuple(tl_cache["blocks.0.attn.hook_pattern"].shape))
    tl_pred, tl_acts = ptl.physlens_cache(bridge, states8)  # numpy, under physlens's dump names
    ours, our_acts = ctx.model.run_with_cache(states8)
    print("max |TransformerLens − physlens| prediction:", float(np.abs(tl_pred - ours).max()))
    print(
        "max |TransformerLens − physlens| pattern:",
        float(np.abs(tl_acts["blocks.0.attn.pattern"] - our_acts["blocks.0.attn.pattern"]).max()),
    )

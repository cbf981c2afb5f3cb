"""physlens: train small transformers on a damped harmonic oscillator and read
the physics back out of them.

The compiled core (Rust, ``physlens._native``) does the work; this package
re-exports it::

    import numpy as np
    import physlens

    run = physlens.train({"train": {"steps": 500}}, "runs/tiny")  # trains and evaluates
    model = physlens.load("runs/tiny/model.safetensors")          # or run.model
    states = np.zeros((8, model.n_ctx, 2))                        # [B, T, 2]: (x, p) per token
    pred, cache = model.run_with_cache(states, names=["blocks.0.attn.pattern"])
    report = physlens.interpret("runs/tiny/model.safetensors")    # dict: effective_map, learned, ...

``physlens.transformer_lens`` (needs torch and transformer_lens) is imported
on demand: ``import physlens.transformer_lens``.
"""

try:
    from ._native import (
        DivergedError,
        Model,
        Run,
        __version__,
        interpret,
        load,
        patch,
        resume,
        train,
    )
except ImportError as e:  # the source folder python/physlens/ without the compiled core
    raise ImportError(
        f"physlens: the compiled core physlens._native is missing ({e}); install the package with "
        "`pip install ./python` from the repository root (a Python started inside python/ imports the "
        "uncompiled source folder instead of the installed package)"
    ) from e

__all__ = [
    "DivergedError",
    "Model",
    "Run",
    "__version__",
    "interpret",
    "load",
    "patch",
    "resume",
    "train",
]

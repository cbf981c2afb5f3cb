"""physlens models in TransformerLens 4.x (``TransformerBridge``).

Needs ``torch`` and ``transformer_lens`` (``pip install transformer-lens``);
``import physlens`` never imports this module. Reading and exporting
checkpoints (:func:`export_state_dict`, :func:`export`) needs only numpy and
safetensors. The mapping is docs/transformer-lens.md; in short::

    embed.W_E [2, D]                  -> embed.W_E          (d_vocab = 2: the input (x, p))
    embed.b_E [D] (+ pos_embed.W_pos) -> pos_embed.W_pos = W_pos + b_E  (b_E on every row without W_pos)
    blocks.{l}.attn.W_Q/W_K/W_V/W_O   -> the same, plus zero b_Q/b_K/b_V [H, K] and b_O [D]
    blocks.{l}.mlp.*, unembed.*       -> the same
    attn_scale "d_model" / "d_head"   -> TransformerBridgeConfig(attn_scale=sqrt(d_model) / sqrt(d_head))
    causal true / false               -> attention_dir "causal" / "bidirectional"

A state sequence ``states [B, T, 2]`` enters the bridge as
``inputs_embeds = states @ bridge.W_E`` (a float tensor passed as the input),
which :func:`forward` and :func:`run_with_cache` do::

    from physlens import transformer_lens as ptl
    bridge = ptl.load("tl.safetensors")          # from `physlens export --transformer-lens`
    # or: bridge = ptl.from_physlens("runs/x/model.safetensors")
    pred, cache = ptl.run_with_cache(bridge, states)          # pred [B, T, 2]
    cache["blocks.0.attn.hook_pattern"]                        # [B, H, T, T]
    pred, acts = ptl.physlens_cache(bridge, states)            # numpy, physlens dump names

Hook-name correspondence (the physlens names are those of ``physlens
interpret --dump``; every row checked against physlens's dumps by
``python/tests/test_transformer_lens.py``)::

    physlens name             shape          TransformerBridge hook            note
    input                     [B, T, 2]      (none)                            the states
    embed                     [B, T, D]      (none)                            = states @ W_E + bridge.physlens_b_E
    blocks.{l}.resid_pre      [B, T, D]      blocks.{l}.hook_resid_pre
    blocks.{l}.attn.q/k/v     [B, T, H, K]   blocks.{l}.attn.hook_q/hook_k/hook_v
    blocks.{l}.attn.scores    [B, H, T, T]   (none)                            TL 4.3's hook_attn_scores holds the
                                                                               pattern; = q·k / cfg.attn_scale,
                                                                               masked entries 0 (TL masks with -inf)
    blocks.{l}.attn.pattern   [B, H, T, T]   blocks.{l}.attn.hook_pattern      masked entries 0 in both
    blocks.{l}.attn.z         [B, T, H, K]   blocks.{l}.attn.hook_z
    blocks.{l}.attn.result    [B, T, H, D]   (none)                            = einsum(z, W_O[l]); its sum over heads
                                                                               is blocks.{l}.hook_attn_out
    blocks.{l}.resid_mid      [B, T, D]      blocks.{l}.hook_resid_mid         MLP models
    blocks.{l}.mlp.pre        [B, T, M]      blocks.{l}.mlp.hook_pre           MLP models
    blocks.{l}.mlp.post       [B, T, M]      blocks.{l}.mlp.hook_post          MLP models
    blocks.{l}.mlp_out        [B, T, D]      blocks.{l}.hook_mlp_out           MLP models
    blocks.{l}.resid_post     [B, T, D]      blocks.{l}.hook_resid_post
    pred                      [B, T, 2]      the bridge's output (logits)      also unembed.hook_out
    (none)                    [B, T, D]      hook_pos_embed                    W_pos + b_E, broadcast over B

Errors: a missing file raises ``FileNotFoundError``; a file that is neither
an export nor a physlens checkpoint, a missing tensor, a wrong shape or a bad
``states`` array raises ``ValueError`` naming it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

TL_CONFIG_KEY = "transformer_lens_config"
"""Metadata key of the ``TransformerBridgeConfig`` kwargs (JSON) in an export."""
B_E_KEY = "physlens_b_E"
"""Metadata key of the folded ``embed.b_E`` (a JSON array) in an export."""
EXPORT_FORMAT = "physlens-transformer-lens/1"
"""The ``format`` metadata value of an export."""
CHECKPOINT_FORMAT = "physlens/1"
"""The ``format`` metadata value of a physlens checkpoint."""

PathLike = Union[str, "Path"]

__all__ = [
    "B_E_KEY",
    "CHECKPOINT_FORMAT",
    "EXPORT_FORMAT",
    "TL_CONFIG_KEY",
    "bridge_from_state_dict",
    "embed",
    "export",
    "export_state_dict",
    "forward",
    "from_physlens",
    "hook_name",
    "load",
    "physlens_cache",
    "run_with_cache",
    "transformer_lens_config",
]


# ---------------------------------------------------------------- files


def _read(path: PathLike) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """The tensors and ``__metadata__`` of the safetensors file at ``path``."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file; expected a .safetensors checkpoint or export")
    if p.is_dir():
        raise ValueError(f"{p}: is a directory; expected a .safetensors checkpoint or export")
    try:
        with safe_open(str(p), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{p}: not a readable safetensors file ({e})") from e
    return tensors, dict(meta)


def _json(path: Path, meta: Dict[str, str], key: str) -> Any:
    try:
        return json.loads(meta[key])
    except KeyError:
        raise ValueError(f"{path}: the metadata has no `{key}`") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: metadata `{key}` is not JSON ({e})") from e


# ---------------------------------------------------------------- mapping

_MODEL_FIELDS = ("d_model", "n_heads", "d_head", "n_layers", "n_ctx", "attn_scale", "causal", "positional")


def _model(model: Dict[str, Any]) -> Dict[str, Any]:
    """The physlens ``model`` metadata with its defaults filled in, checked."""
    missing = [f for f in _MODEL_FIELDS if f not in model]
    if missing:
        raise ValueError(f"`model` metadata: missing field(s) {', '.join(missing)}")
    out = dict(model)
    out.setdefault("d_mlp", 0)
    out.setdefault("act", "gelu")
    for f in ("d_model", "n_heads", "d_head", "n_layers", "n_ctx", "d_mlp"):
        out[f] = int(out[f])
    if out["attn_scale"] not in ("d_model", "d_head"):
        raise ValueError(f"`model` metadata: attn_scale = {out['attn_scale']!r}; expected 'd_model' or 'd_head'")
    if out["act"] not in ("gelu", "relu"):
        raise ValueError(f"`model` metadata: act = {out['act']!r}; expected 'gelu' or 'relu'")
    return out


def _tl_attn_scale(model: Dict[str, Any]) -> Tuple[float, float]:
    """TransformerLens's score divisor and the factor W_Q is multiplied by
    (1, except for d_model = 1 with d_head > 1: TL refuses attn_scale = 1)."""
    width = model["d_model"] if model["attn_scale"] == "d_model" else model["d_head"]
    if width == 1 and model["d_head"] > 1:
        s = math.sqrt(model["d_head"])
        return s, s
    return math.sqrt(width), 1.0


def transformer_lens_config(model: Dict[str, Any]) -> Dict[str, Any]:
    """The ``TransformerBridgeConfig`` kwargs for a physlens ``model`` config
    (the checkpoint's ``model`` metadata); the same JSON the CLI writes."""
    m = _model(model)
    mlp = m["d_mlp"] > 0
    return {
        "model_name": "physlens",
        "architecture": "TransformerLensNative",
        "d_model": m["d_model"],
        "d_head": m["d_head"],
        "n_heads": m["n_heads"],
        "n_layers": m["n_layers"],
        "n_ctx": m["n_ctx"],
        "d_vocab": 2,
        "d_vocab_out": 2,
        "d_mlp": m["d_mlp"] if mlp else None,
        "act_fn": m["act"],
        "attn_only": not mlp,
        "normalization_type": None,
        "positional_embedding_type": "standard",
        "use_attn_scale": True,
        "attn_scale": _tl_attn_scale(m)[0],
        "attention_dir": "causal" if m["causal"] else "bidirectional",
        "tokenizer_prepends_bos": False,
    }


def _expected(m: Dict[str, Any]) -> Dict[str, Tuple[int, ...]]:
    """The physlens tensors and shapes of ``model`` (docs/model-and-checkpoint.md)."""
    d, h, k, t, mm = m["d_model"], m["n_heads"], m["d_head"], m["n_ctx"], m["d_mlp"]
    out: Dict[str, Tuple[int, ...]] = {"embed.W_E": (2, d), "embed.b_E": (d,)}
    if m["positional"]:
        out["pos_embed.W_pos"] = (t, d)
    for l in range(m["n_layers"]):
        for w in ("W_Q", "W_K", "W_V"):
            out[f"blocks.{l}.attn.{w}"] = (h, d, k)
        out[f"blocks.{l}.attn.W_O"] = (h, k, d)
        if mm:
            out[f"blocks.{l}.mlp.W_in"] = (d, mm)
            out[f"blocks.{l}.mlp.b_in"] = (mm,)
            out[f"blocks.{l}.mlp.W_out"] = (mm, d)
            out[f"blocks.{l}.mlp.b_out"] = (d,)
    out["unembed.W_U"] = (d, 2)
    out["unembed.b_U"] = (2,)
    return out


def export_state_dict(
    tensors: Dict[str, np.ndarray], model: Dict[str, Any]
) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """A physlens model as TransformerLens's property-format state dict and
    ``TransformerBridgeConfig`` kwargs: the same tensors ``physlens export
    --transformer-lens`` writes, in the checkpoint's dtype.

    ``tensors``: the checkpoint's arrays by name; ``model``: its ``model``
    metadata (a dict). Raises ``ValueError`` naming a missing, unexpected or
    wrongly shaped tensor.

    Shapes: ``embed.W_E [2, D]``, ``pos_embed.W_pos [T, D]`` (= W_pos + b_E),
    ``blocks.{l}.attn.W_Q/W_K/W_V [H, D, K]``, ``W_O [H, K, D]``,
    ``b_Q/b_K/b_V [H, K]`` and ``b_O [D]`` (zeros), the MLP tensors as
    physlens's, ``unembed.W_U [D, 2]``, ``unembed.b_U [2]``.
    """
    m = _model(model)
    expected = _expected(m)
    missing = [n for n in expected if n not in tensors]
    extra = [n for n in tensors if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing tensor(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected tensor(s) {', '.join(extra)}")
        raise ValueError("; ".join(parts) + " for the `model` metadata")
    for n, shape in expected.items():
        if tuple(tensors[n].shape) != shape:
            raise ValueError(f"tensor `{n}` has shape {tuple(tensors[n].shape)}; the `model` metadata needs {shape}")
    dtype = tensors["embed.W_E"].dtype
    d, h, k, t = m["d_model"], m["n_heads"], m["d_head"], m["n_ctx"]
    b_e = tensors["embed.b_E"]
    w_pos = tensors.get("pos_embed.W_pos", np.zeros((t, d), dtype))
    out: Dict[str, np.ndarray] = {
        "embed.W_E": tensors["embed.W_E"],
        "pos_embed.W_pos": (w_pos + b_e[None, :]).astype(dtype),
    }
    q_factor = _tl_attn_scale(m)[1]
    for l in range(m["n_layers"]):
        a = f"blocks.{l}.attn"
        out[f"{a}.W_Q"] = tensors[f"{a}.W_Q"] * dtype.type(q_factor) if q_factor != 1.0 else tensors[f"{a}.W_Q"]
        for w in ("W_K", "W_V", "W_O"):
            out[f"{a}.{w}"] = tensors[f"{a}.{w}"]
        for b in ("b_Q", "b_K", "b_V"):
            out[f"{a}.{b}"] = np.zeros((h, k), dtype)
        out[f"{a}.b_O"] = np.zeros(d, dtype)
        if m["d_mlp"]:
            for w in ("W_in", "b_in", "W_out", "b_out"):
                out[f"blocks.{l}.mlp.{w}"] = tensors[f"blocks.{l}.mlp.{w}"]
    out["unembed.W_U"] = tensors["unembed.W_U"]
    out["unembed.b_U"] = tensors["unembed.b_U"]
    return {n: np.ascontiguousarray(v) for n, v in out.items()}, transformer_lens_config(m)


def _checkpoint(path: PathLike) -> Tuple[Dict[str, np.ndarray], Dict[str, str], Dict[str, Any]]:
    """A physlens checkpoint's tensors, metadata and ``model`` config."""
    p = Path(path)
    tensors, meta = _read(p)
    if meta.get("format") != CHECKPOINT_FORMAT:
        found = meta.get("format")
        raise ValueError(f"{p}: metadata `format` is {found!r}; a physlens checkpoint has {CHECKPOINT_FORMAT!r}")
    return tensors, meta, _json(p, meta, "model")


def export(checkpoint: PathLike, out: PathLike) -> Dict[str, Any]:
    """Writes the TransformerLens export of the physlens checkpoint at
    ``checkpoint`` to ``out`` (what ``physlens export --transformer-lens``
    writes, without the CLI) and returns the config kwargs."""
    from safetensors.numpy import save_file

    p = Path(checkpoint)
    tensors, meta, model = _checkpoint(p)
    try:
        state_dict, config = export_state_dict(tensors, model)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from e
    metadata = {
        "format": EXPORT_FORMAT,
        TL_CONFIG_KEY: json.dumps(config, sort_keys=True, separators=(",", ":")),
        "physlens_model": meta["model"],
        B_E_KEY: json.dumps([float(x) for x in tensors["embed.b_E"]]),
        "producer": "physlens.transformer_lens",
    }
    if "system" in meta:
        metadata["physlens_system"] = meta["system"]
    save_file(state_dict, str(out), metadata=metadata)
    return config


# ---------------------------------------------------------------- bridge


def _tl():
    """torch and the TransformerLens pieces, or an ImportError saying what to install."""
    try:
        import torch
        import transformer_lens.model_bridge.sources.native  # noqa: F401  (registers boot_native)
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge.bridge import TransformerBridge
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint
    except ImportError as e:
        raise ImportError(
            f"physlens.transformer_lens needs torch and TransformerLens 4.x ({e}); pip install transformer-lens"
        ) from e
    return torch, TransformerBridgeConfig, TransformerBridge, convert_tl_checkpoint


def bridge_from_state_dict(
    state_dict: Dict[str, Any],
    config: Dict[str, Any],
    *,
    device: Any = None,
    physlens_model: Optional[Dict[str, Any]] = None,
    b_e: Optional[Sequence[float]] = None,
):
    """A ``TransformerBridge`` holding ``state_dict`` (property format, numpy
    arrays or tensors) under ``config`` (the kwargs), in the state dict's dtype.

    The TransformerLens calls::

        cfg = TransformerBridgeConfig(**config)
        bridge = TransformerBridge.boot_native(cfg, dtype=dtype, device=device)
        bridge.load_state_dict(convert_tl_checkpoint(state_dict, cfg), strict=True)

    ``physlens_model`` and ``b_e`` (from the export's metadata) are kept on the
    bridge as ``bridge.physlens_model`` and ``bridge.physlens_b_E`` for
    :func:`physlens_cache`.
    """
    torch, TransformerBridgeConfig, TransformerBridge, convert_tl_checkpoint = _tl()
    tensors = {
        n: torch.as_tensor(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v for n, v in state_dict.items()
    }
    dtype = tensors["embed.W_E"].dtype
    cfg = TransformerBridgeConfig(**config)
    bridge = TransformerBridge.boot_native(cfg, dtype=dtype, device=device)
    try:
        converted = convert_tl_checkpoint(tensors, cfg)
    except ValueError as e:
        raise ValueError(f"the state dict does not fit the config: {e}") from e
    if device is not None:
        converted = {n: v.to(device) for n, v in converted.items()}
    bridge.load_state_dict(converted, strict=True)
    bridge.eval()
    bridge.physlens_model = _model(physlens_model) if physlens_model is not None else None
    bridge.physlens_b_E = None if b_e is None else np.asarray(b_e, dtype=np.float64)
    return bridge


def from_physlens(checkpoint: PathLike, *, device: Any = None):
    """A ready ``TransformerBridge`` from a physlens checkpoint (the mapping
    done here, in numpy; no CLI needed). Keeps the checkpoint's dtype."""
    p = Path(checkpoint)
    tensors, _, model = _checkpoint(p)
    try:
        state_dict, config = export_state_dict(tensors, model)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from e
    return bridge_from_state_dict(
        state_dict, config, device=device, physlens_model=model, b_e=tensors["embed.b_E"].astype(np.float64)
    )


def load(path: PathLike, *, device: Any = None):
    """A ready ``TransformerBridge`` from an export (``physlens export
    --transformer-lens``) or, through :func:`from_physlens`, a physlens checkpoint."""
    p = Path(path)
    tensors, meta = _read(p)
    if TL_CONFIG_KEY in meta:
        config = _json(p, meta, TL_CONFIG_KEY)
        model = _json(p, meta, "physlens_model") if "physlens_model" in meta else None
        b_e = _json(p, meta, B_E_KEY) if B_E_KEY in meta else None
        try:
            return bridge_from_state_dict(tensors, config, device=device, physlens_model=model, b_e=b_e)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise ValueError(f"{p}: {e}") from e
    if meta.get("format") == CHECKPOINT_FORMAT:
        return from_physlens(p, device=device)
    raise ValueError(
        f"{p}: neither a TransformerLens export (metadata `{TL_CONFIG_KEY}`) nor a physlens checkpoint "
        f"(metadata `format` = {CHECKPOINT_FORMAT!r}); found metadata keys {sorted(meta)}"
    )


# ---------------------------------------------------------------- running


def _states(bridge, states):
    """``states`` as a tensor ``[B, T, 2]`` in the bridge's dtype and device."""
    torch = _tl()[0]
    w_e = bridge.W_E
    s = torch.as_tensor(states)
    if s.ndim != 3 or s.shape[-1] != 2 or not 1 <= s.shape[1] <= bridge.cfg.n_ctx:
        raise ValueError(
            f"states: shape {tuple(s.shape)}; expected [B, T, 2] with 1 ≤ T ≤ n_ctx = {bridge.cfg.n_ctx}"
        )
    return s.to(dtype=w_e.dtype, device=w_e.device)


def embed(bridge, states):
    """``inputs_embeds = states @ W_E`` ``[B, T, D]``: what the bridge takes
    in place of token ids (it adds ``W_pos + b_E`` itself)."""
    return _states(bridge, states) @ bridge.W_E


def forward(bridge, states):
    """The predictions ``[B, T, 2]`` (a torch tensor) for ``states [B, T, 2]``:
    position t predicts the state at t + 1."""
    return bridge(embed(bridge, states))


def run_with_cache(bridge, states, names_filter: Union[None, str, List[str], Callable[[str], bool]] = None):
    """``(pred [B, T, 2], cache)``: ``bridge.run_with_cache`` on ``states``,
    the cache a TransformerLens ``ActivationCache`` under its hook names
    (``names_filter`` as in TransformerLens)."""
    return bridge.run_with_cache(embed(bridge, states), names_filter=names_filter)


_HOOKS = {
    "resid_pre": "hook_resid_pre",
    "attn.q": "attn.hook_q",
    "attn.k": "attn.hook_k",
    "attn.v": "attn.hook_v",
    "attn.pattern": "attn.hook_pattern",
    "attn.z": "attn.hook_z",
    "resid_mid": "hook_resid_mid",
    "mlp.pre": "mlp.hook_pre",
    "mlp.post": "mlp.hook_post",
    "mlp_out": "hook_mlp_out",
    "resid_post": "hook_resid_post",
}


def hook_name(name: str) -> Optional[str]:
    """The TransformerBridge hook that carries physlens's activation ``name``
    (e.g. ``blocks.0.attn.q`` -> ``blocks.0.attn.hook_q``), or None when no
    hook does (``input``, ``embed``, ``attn.scores``, ``attn.result``: see the
    module table; ``pred`` is the output)."""
    if name.startswith("blocks."):
        _, l, what = name.split(".", 2)
        hook = _HOOKS.get(what)
        return f"blocks.{l}.{hook}" if hook else None
    return None


def physlens_cache(bridge, states, names: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """``(pred, {name: array})`` under physlens's dump names (numpy, the
    bridge's dtype), read from one ``run_with_cache`` of the bridge: the
    arrays ``physlens interpret --dump`` writes, for comparison or for code
    written against physlens. ``scores`` (masked entries 0, as physlens) and
    ``result`` are derived from the hooks (see the module table); ``embed``
    needs ``bridge.physlens_b_E`` (set by :func:`load` and :func:`from_physlens`).
    ``names`` filters (default: all)."""
    torch = _tl()[0]
    cfg = bridge.cfg
    model = getattr(bridge, "physlens_model", None)
    q_factor = _tl_attn_scale(model)[1] if model else 1.0
    s = _states(bridge, states)
    with torch.no_grad():
        pred, cache = bridge.run_with_cache(s @ bridge.W_E)
        t = s.shape[1]
        out: Dict[str, Any] = {"input": s}
        b_e = getattr(bridge, "physlens_b_E", None)
        if b_e is not None:
            out["embed"] = s @ bridge.W_E + torch.as_tensor(b_e, dtype=s.dtype, device=s.device)
        for l in range(cfg.n_layers):
            blk = f"blocks.{l}"
            out[f"{blk}.resid_pre"] = cache[f"{blk}.hook_resid_pre"]
            q, k = cache[f"{blk}.attn.hook_q"], cache[f"{blk}.attn.hook_k"]
            out[f"{blk}.attn.q"] = q / q_factor if q_factor != 1.0 else q
            out[f"{blk}.attn.k"] = k
            out[f"{blk}.attn.v"] = cache[f"{blk}.attn.hook_v"]
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / cfg.attn_scale
            if cfg.attention_dir == "causal":
                mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=s.device), diagonal=1)
                scores = scores.masked_fill(mask, 0.0)
            out[f"{blk}.attn.scores"] = scores
            out[f"{blk}.attn.pattern"] = cache[f"{blk}.attn.hook_pattern"]
            z = cache[f"{blk}.attn.hook_z"]
            out[f"{blk}.attn.z"] = z
            out[f"{blk}.attn.result"] = torch.einsum("bthk,hkd->bthd", z, bridge.W_O[l])
            if not cfg.attn_only:
                out[f"{blk}.resid_mid"] = cache[f"{blk}.hook_resid_mid"]
                out[f"{blk}.mlp.pre"] = cache[f"{blk}.mlp.hook_pre"]
                out[f"{blk}.mlp.post"] = cache[f"{blk}.mlp.hook_post"]
                out[f"{blk}.mlp_out"] = cache[f"{blk}.hook_mlp_out"]
            out[f"{blk}.resid_post"] = cache[f"{blk}.hook_resid_post"]
        out["pred"] = pred
    if names is not None:
        unknown = [n for n in names if n not in out]
        if unknown:
            raise ValueError(f"names: {', '.join(unknown)} not available; available: {', '.join(out)}")
        out = {n: out[n] for n in names}
    return pred.detach().cpu().numpy(), {n: v.detach().cpu().numpy() for n, v in out.items()}

"""physlens models in TransformerLens (docs/transformer-lens.md): the export
of the CLI and the Python mapping load into a TransformerBridge whose
predictions and every cached activation agree with physlens's own dumps.

Models are trained with the CLI (a few steps; the weights only need to be
generic): the seed model (f32), 2 layers x 2 heads at context 8 with positional
embeddings (f64), a non-causal context-6 model (f64), MLP models (gelu f64,
relu f32), and a hand-written d_model = 1 model (the attn_scale corner).

    cargo build --release
    pytest python/tests/test_transformer_lens.py

The CLI is $PHYSLENS_BIN, else target/release/physlens (built with cargo if
missing).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (TransformerLens needs it)")
pytest.importorskip("transformer_lens", reason="TransformerLens is not installed (pip install transformer-lens)")

from safetensors.numpy import load_file, save_file  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# Agreement with physlens's dumps, relative to max(1, |value|).
TOL = {np.dtype("float64"): 1e-10, np.dtype("float32"): 1e-5}


def _module():
    """physlens/transformer_lens.py of this source tree (an installed physlens
    may hold an older copy, or none when the package was built before it)."""
    path = REPO / "python" / "physlens" / "transformer_lens.py"
    spec = importlib.util.spec_from_file_location("physlens_transformer_lens", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ptl = _module()


@pytest.fixture(scope="session")
def physlens_bin() -> Path:
    path = Path(os.environ.get("PHYSLENS_BIN", REPO / "target" / "release" / "physlens"))
    if not path.exists():
        if shutil.which("cargo") is None:
            pytest.skip(f"no physlens CLI at {path} and no cargo to build it")
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    probe = subprocess.run([str(path), "export", "--help"], capture_output=True, text=True)
    assert probe.returncode == 0, f"{path} has no `export` command: rebuild it (cargo build --release)"
    return path


def _run(bin_: Path, *args) -> subprocess.CompletedProcess:
    out = subprocess.run([str(bin_), *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, f"physlens {' '.join(map(str, args))}: {out.stderr}"
    return out


# name -> config TOML (few steps: the weights only need to be generic)
CONFIGS = {
    "seed": "",
    "deep": """
[data]
context = 8
[model]
d_model = 8
n_heads = 2
d_head = 4
n_layers = 2
positional = true
[train]
dtype = "f64"
""",
    "non_causal": """
[data]
context = 6
[model]
d_model = 6
n_heads = 2
d_head = 3
causal = false
positional = true
attn_scale = "d_head"
[train]
dtype = "f64"
loss_positions = "last"
""",
    "mlp_gelu": """
[data]
context = 4
[model]
d_model = 6
n_heads = 2
d_head = 3
n_layers = 2
d_mlp = 12
act = "gelu"
[train]
dtype = "f64"
""",
    "mlp_relu": """
[data]
context = 3
[model]
d_model = 4
n_heads = 1
d_head = 4
d_mlp = 8
act = "relu"
positional = true
""",
}

COMMON = """
[data]
n_train = 512
n_valid = 64
[train]
steps = 60
batch_size = 64
log_every = 30
"""


def _merge(extra: str) -> str:
    """COMMON with the sections of ``extra`` merged in (TOML forbids repeating a table)."""
    sections: dict = {}
    for text in (COMMON, extra):
        current = None
        for line in text.strip().splitlines():
            if line.startswith("["):
                current = line
                sections.setdefault(current, [])
            elif line.strip():
                sections[current].append(line)
    return "\n".join(f"{head}\n" + "\n".join(lines) for head, lines in sections.items()) + "\n"


def _handmade_d_model_1(path: Path) -> None:
    """A d_model = 1, d_head = 4 model with attn_scale "d_model" (scale 1):
    TransformerLens refuses attn_scale = 1 with d_head > 1, so the export moves
    the scale into W_Q."""
    rng = np.random.default_rng(1)
    d, h, k, t = 1, 2, 4, 3
    tensors = {
        "embed.W_E": rng.normal(size=(2, d)),
        "embed.b_E": rng.normal(size=(d,)),
        "blocks.0.attn.W_Q": rng.normal(size=(h, d, k)),
        "blocks.0.attn.W_K": rng.normal(size=(h, d, k)),
        "blocks.0.attn.W_V": rng.normal(size=(h, d, k)),
        "blocks.0.attn.W_O": rng.normal(size=(h, k, d)) * 0.3,
        "unembed.W_U": rng.normal(size=(d, 2)),
        "unembed.b_U": rng.normal(size=(2,)),
    }
    model = {"d_model": d, "n_heads": h, "d_head": k, "n_layers": 1, "n_ctx": t, "attn_scale": "d_model",
             "causal": True, "positional": False}
    system = {"kind": "damped_oscillator", "omega0": 2.0, "gamma": 0.1, "dt": 0.1}
    save_file({n: np.ascontiguousarray(v, dtype=np.float64) for n, v in tensors.items()}, str(path),
              metadata={"format": "physlens/1", "model": json.dumps(model), "system": json.dumps(system)})


MODELS = [*CONFIGS, "d_model_1"]


@pytest.fixture(scope="session")
def models(physlens_bin, tmp_path_factory) -> dict:
    """name -> (checkpoint, export, dump folder)."""
    root = tmp_path_factory.mktemp("tl")
    out = {}
    for name in MODELS:
        ckpt = root / name / "model.safetensors"
        if name == "d_model_1":
            ckpt.parent.mkdir()
            _handmade_d_model_1(ckpt)
        else:
            config = root / f"{name}.toml"
            config.write_text(_merge(CONFIGS[name]))
            _run(physlens_bin, "train", "--config", config, "--out", root / name, "--quiet")
        dump = root / f"{name}_dump"
        _run(physlens_bin, "interpret", "--model", ckpt, "--dump", "all", "--out", dump, "--dump-format", "npy",
             "--n-valid", 64)
        export = root / f"{name}_tl.safetensors"
        _run(physlens_bin, "export", "--transformer-lens", "--model", ckpt, "--out", export)
        out[name] = (ckpt, export, dump)
    return out


def _dumps(folder: Path) -> dict:
    return {p.stem: np.load(p) for p in folder.glob("*.npy")}


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))) if a.size else 0.0


@pytest.mark.parametrize("name", MODELS)
def test_the_export_reproduces_every_physlens_activation(models, name):
    ckpt, export, dump = models[name]
    bridge = ptl.load(export)
    ref = _dumps(dump)
    pred, acts = ptl.physlens_cache(bridge, ref["input"])
    assert set(acts) == set(ref), "the physlens-named cache has exactly the dumped names"
    tol = TOL[ref["pred"].dtype]
    worst = {}
    for n, r in ref.items():
        assert acts[n].shape == r.shape, n
        assert acts[n].dtype == r.dtype, f"{n}: the checkpoint's dtype is kept"
        worst[n] = _max_rel(acts[n], r)
    print(f"\n{name} ({ref['pred'].dtype}): max rel. difference {max(worst.values()):.2e} "
          f"({max(worst, key=worst.get)}); pred {worst['pred']:.2e}")
    bad = {n: d for n, d in worst.items() if d > tol}
    assert not bad, f"beyond {tol}: {bad}"
    assert np.array_equal(ptl.forward(bridge, ref["input"]).detach().numpy(), pred)


@pytest.mark.parametrize("name", MODELS)
def test_the_hooks_of_the_table_carry_physlens_arrays(models, name):
    ckpt, export, dump = models[name]
    bridge = ptl.load(export)
    ref = _dumps(dump)
    pred, cache = ptl.run_with_cache(bridge, ref["input"])
    tol = TOL[ref["pred"].dtype]
    assert _max_rel(pred.detach().numpy(), ref["pred"]) <= tol
    checked = 0
    for n, r in ref.items():
        hook = ptl.hook_name(n)
        if hook is None:
            continue  # no hook carries it (see the table)
        got = cache[hook].detach().numpy()
        if name == "d_model_1" and n.endswith("attn.q"):
            got = got / 2.0  # the scale moved into W_Q: hook_q is √d_head·q (d_head = 4)
        assert _max_rel(got, r) <= tol, f"{n} <-> {hook}"
        checked += 1
    assert checked >= 7
    # The residual entering layer 0: inputs_embeds + hook_pos_embed (W_pos + b_E).
    bridge_embed = ptl.embed(bridge, ref["input"]) + cache["hook_pos_embed"]
    assert _max_rel(bridge_embed.detach().numpy(), ref["blocks.0.resid_pre"]) <= tol
    # attn.result summed over heads is hook_attn_out.
    assert _max_rel(cache["blocks.0.hook_attn_out"].detach().numpy(), ref["blocks.0.attn.result"].sum(axis=2)) <= tol


def test_masked_attention_entries_differ_only_as_documented(models):
    """Causal masks: physlens stores 0 at masked scores, TransformerLens
    masks with -inf; both patterns are 0 there, and the unmasked scores agree."""
    _, export, dump = models["deep"]
    bridge = ptl.load(export)
    ref = _dumps(dump)
    _, cache = ptl.run_with_cache(bridge, ref["input"])
    t = ref["input"].shape[1]
    masked = np.triu(np.ones((t, t), bool), 1)
    pattern = cache["blocks.0.attn.hook_pattern"].detach().numpy()
    assert np.all(pattern[..., masked] == 0) and np.all(ref["blocks.0.attn.pattern"][..., masked] == 0)
    assert np.all(ref["blocks.0.attn.scores"][..., masked] == 0)
    q, k = cache["blocks.0.attn.hook_q"], cache["blocks.0.attn.hook_k"]
    tl_scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / bridge.cfg.attn_scale
    tl_scores = tl_scores.masked_fill(torch.as_tensor(masked), float("-inf")).detach().numpy()
    assert np.all(np.isneginf(tl_scores[..., masked]))
    assert _max_rel(tl_scores[..., ~masked], ref["blocks.0.attn.scores"][..., ~masked]) <= 1e-10
    # TransformerLens 4.3's native bridge fires hook_attn_scores with the
    # pattern (post-softmax), which is why no hook is listed for `scores`.
    # If this fails, TransformerLens changed: update docs/transformer-lens.md.
    assert torch.equal(cache["blocks.0.attn.hook_attn_scores"], cache["blocks.0.attn.hook_pattern"])


def test_a_non_causal_model_attends_to_later_positions(models):
    _, export, dump = models["non_causal"]
    bridge = ptl.load(export)
    assert bridge.cfg.attention_dir == "bidirectional"
    _, acts = ptl.physlens_cache(bridge, _dumps(dump)["input"])
    t = acts["input"].shape[1]
    assert np.all(acts["blocks.0.attn.pattern"][..., np.triu(np.ones((t, t), bool), 1)] > 0)


@pytest.mark.parametrize("name", MODELS)
def test_the_python_mapping_equals_the_cli_export(models, name, tmp_path):
    ckpt, export, _ = models[name]
    cli = load_file(str(export))
    python_file = tmp_path / "py.safetensors"
    config = ptl.export(ckpt, python_file)
    py = load_file(str(python_file))
    assert sorted(py) == sorted(cli)
    for n in cli:
        assert py[n].dtype == cli[n].dtype and np.array_equal(py[n], cli[n]), n
    from safetensors import safe_open

    with safe_open(str(export), framework="np") as f:
        meta = f.metadata()
    assert json.loads(meta[ptl.TL_CONFIG_KEY]) == config
    # A physlens checkpoint loads directly too, to the same weights.
    a, b = ptl.load(ckpt).state_dict(), ptl.load(export).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_errors_name_the_culprit(models, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        ptl.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors"):
        ptl.load(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"x": np.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="neither a TransformerLens export"):
        ptl.load(plain)
    ckpt, export, _ = models["seed"]
    tensors = load_file(str(ckpt))
    tensors["unembed.W_U"] = np.zeros((3, 2), tensors["unembed.W_U"].dtype)
    with pytest.raises(ValueError, match="unembed.W_U"):
        ptl.export_state_dict(tensors, {"d_model": 2, "n_heads": 1, "d_head": 2, "n_layers": 1, "n_ctx": 1,
                                        "attn_scale": "d_model", "causal": True, "positional": False})
    bridge = ptl.load(export)
    with pytest.raises(ValueError, match="states"):
        ptl.forward(bridge, np.zeros((4, 2, 2)))  # T = 2 > n_ctx = 1
    with pytest.raises(ValueError, match="states"):
        ptl.forward(bridge, np.zeros((4, 1, 3)))


def test_import_physlens_leaves_transformer_lens_alone():
    try:
        import physlens  # noqa: F401
    except ImportError:
        pytest.skip("the compiled physlens package is not installed")
    code = "import sys, physlens; assert 'transformer_lens' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

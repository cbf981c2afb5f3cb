"""The Python bindings against the command line (docs/python.md).

Every array the bindings return must equal, bit for bit, what `physlens
interpret --dump` writes for the same model; bad input must raise a Python
exception, never abort; Ctrl-C must leave a resumable run.

Run: `pip install ./python pytest && pytest python/tests/test_bindings.py`
(the CLI binary is `$PHYSLENS_BIN`, else target/release/physlens, built
with `cargo build --release` when missing).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import physlens

REPO = Path(__file__).resolve().parents[2]

# Tiny runs: a few hundred steps, small data and evaluation.
SMALL = {"data": {"n_train": 1024, "n_valid": 256}, "eval": {"n_rollouts": 4, "rollout_steps": 10}}
SEED_CONFIG = {**SMALL, "train": {"steps": 300, "dtype": "f64"}}
CONTEXT_CONFIG = {
    "data": {**SMALL["data"], "context": 4},
    "eval": SMALL["eval"],
    "model": {"d_model": 4, "n_heads": 2, "d_head": 2, "positional": True},
    "train": {"steps": 200},
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cli():
    """The `physlens` binary: $PHYSLENS_BIN, else the repository's release build (built if missing)."""
    env = os.environ.get("PHYSLENS_BIN")
    if env:
        return Path(env)
    binary = REPO / "target" / "release" / "physlens"
    if not binary.is_file():
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    return binary


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    """The seed model (context 1, float64), trained once."""
    return physlens.train(SEED_CONFIG, tmp_path_factory.mktemp("seed") / "run")


@pytest.fixture(scope="module")
def context_run(tmp_path_factory):
    """A model with context 4, two heads and positional embeddings (float32)."""
    return physlens.train(CONTEXT_CONFIG, tmp_path_factory.mktemp("context") / "run")


def dump(cli, model, names, out):
    """`physlens interpret --dump NAMES` into `out`; returns {name: array} of every .npy written."""
    subprocess.run(
        [str(cli), "interpret", "--model", str(model), "--dump", names, "--out", str(out), "--dump-format", "npy"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return {p.stem: np.load(p) for p in sorted(out.glob("*.npy"))}


# ---------------------------------------------------------------- 1. forward = the CLI's predictions


@pytest.mark.parametrize("which", ["seed_run", "context_run"])
def test_forward_equals_cli_predictions_bit_for_bit(which, request, cli, tmp_path):
    run = request.getfixturevalue(which)
    model = physlens.load(Path(run.dir) / "model.safetensors")
    # `input.npy` is always written beside the dumped names.
    dumped = dump(cli, model.path, "pred", tmp_path)
    assert set(dumped) == {"input", "pred"}
    states, expected = dumped["input"], dumped["pred"]
    assert states.shape == (states.shape[0], model.n_ctx, 2)

    pred = model.forward(states)

    assert pred.dtype == expected.dtype == np.dtype(model.dtype)
    assert pred.shape == expected.shape
    assert np.array_equal(pred, expected)


def test_forward_converts_other_float_dtypes_and_lists(seed_run):
    model = seed_run.model
    states = np.random.default_rng(0).normal(size=(5, 1, 2))
    pred64 = model.forward(states)
    assert model.dtype == "float64" and pred64.dtype == np.float64
    assert np.array_equal(model.forward(states.tolist()), pred64)
    assert model.forward(states.astype(np.float32)).dtype == np.float64
    assert model.forward(np.zeros((0, 1, 2))).shape == (0, 1, 2)


# ---------------------------------------------------------------- 2. run_with_cache = the dumps


@pytest.mark.parametrize("which", ["seed_run", "context_run"])
def test_run_with_cache_equals_the_dumps(which, request, cli, tmp_path):
    run = request.getfixturevalue(which)
    model = run.model
    dumped = dump(cli, model.path, "all", tmp_path)

    pred, cache = model.run_with_cache(dumped["input"])

    assert list(cache) == model.names
    assert set(cache) == set(dumped)
    assert model.names[0] == "input" and model.names[-1] == "pred"
    for name, expected in dumped.items():
        assert cache[name].dtype == expected.dtype, name
        assert cache[name].shape == expected.shape, name
        assert np.array_equal(cache[name], expected), name
    assert np.array_equal(pred, dumped["pred"])


def test_run_with_cache_filters_by_name(context_run):
    model = context_run.model
    states = np.random.default_rng(1).normal(size=(3, 4, 2))
    pred, cache = model.run_with_cache(states, names=["blocks.0.attn.pattern", "input"])
    assert list(cache) == ["blocks.0.attn.pattern", "input"]
    assert cache["blocks.0.attn.pattern"].shape == (3, 2, 4, 4)  # [B, H, T, T]
    assert np.array_equal(cache["input"], states.astype(np.float32))
    assert np.array_equal(pred, model.forward(states))
    assert list(model.run_with_cache(states, names="pred")[1]) == ["pred"]
    by_callable = model.run_with_cache(states, names=lambda n: n.endswith("attn.z"))[1]
    assert list(by_callable) == ["blocks.0.attn.z"]
    assert list(model.run_with_cache(states, names=["all"])[1]) == model.names


def test_unknown_cache_name_lists_the_valid_ones(context_run):
    with pytest.raises(ValueError, match=r"`blocks\.0\.attn\.nope`.*blocks\.0\.attn\.pattern"):
        context_run.model.run_with_cache(np.zeros((1, 4, 2)), names=["blocks.0.attn.nope"])


def test_model_properties(seed_run, context_run):
    seed, ctx = seed_run.model, context_run.model
    assert seed.config["n_ctx"] == 1 and seed.config["d_model"] == 2
    assert ctx.config["n_ctx"] == 4 and ctx.config["positional"] is True
    assert seed.system["kind"] == "damped_oscillator" and seed.system["dt"] == 0.1
    assert (seed.dtype, ctx.dtype) == ("float64", "float32")
    params = ctx.params
    assert params["embed.W_E"].shape == (2, 4)
    assert params["pos_embed.W_pos"].shape == (4, 4)
    assert params["blocks.0.attn.W_O"].shape == (2, 2, 4)  # [H, K, D]
    assert all(a.dtype == np.float32 for a in params.values())
    assert seed_run.config["train"]["steps"] == 300
    assert seed_run.summary["train_steps"] == 300
    assert np.isfinite(seed_run.summary["valid_mse"])
    assert os.fspath(seed_run) == seed_run.dir
    assert physlens.load(seed_run.dir).path == seed.path  # a run folder loads its model


# ---------------------------------------------------------------- 3. bad input raises, never aborts


def test_truncated_checkpoint_is_a_value_error(seed_run, tmp_path):
    data = (Path(seed_run.dir) / "model.safetensors").read_bytes()
    broken = tmp_path / "truncated.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        physlens.load(broken)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.safetensors"):
        physlens.load(garbage)


def test_missing_files_are_file_not_found(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(FileNotFoundError):
        physlens.load(missing)
    with pytest.raises(FileNotFoundError):
        physlens.interpret(missing)
    with pytest.raises(FileNotFoundError):
        physlens.train(tmp_path / "nowhere.toml", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        physlens.resume(tmp_path / "no-such-run")


@pytest.mark.parametrize("shape", [(2, 1, 3), (2, 2), (2, 2, 1, 2), (2,)])
def test_wrong_shape_is_a_value_error_naming_the_shape(seed_run, shape):
    with pytest.raises(ValueError, match=r"\[B, T, 2\]"):
        seed_run.model.forward(np.zeros(shape))


def test_wrong_context_length_names_n_ctx(context_run):
    with pytest.raises(ValueError, match="n_ctx = 4"):
        context_run.model.forward(np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="dtype"):
        context_run.model.forward(np.full((2, 4, 2), "x"))


def test_bad_config_key_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"train\.stepz"):
        physlens.train({"train": {"stepz": 5}}, tmp_path / "a")
    with pytest.raises(ValueError, match=r"train\.lr"):
        physlens.train({"train": {"lr": "fast"}}, tmp_path / "b")
    with pytest.raises(ValueError, match=r"train\.steps"):
        physlens.train({"train": {"steps": None}}, tmp_path / "c")
    with pytest.raises(TypeError):
        physlens.train(42, tmp_path / "d")
    assert not (tmp_path / "a").exists()


def test_folder_with_an_earlier_run_is_refused_without_force(tmp_path):
    out = tmp_path / "run"
    physlens.train(SEED_CONFIG, out)
    with pytest.raises(ValueError, match="earlier run"):
        physlens.train(SEED_CONFIG, out)
    again = physlens.train(SEED_CONFIG, out, force=True)
    assert again.summary["train_steps"] == 300


def test_config_from_a_toml_file(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[train]\nsteps = 100\n[data]\nn_train = 512\nn_valid = 128\n[eval]\nn_rollouts = 2\nrollout_steps = 5\n"
    )
    run = physlens.train(str(config), tmp_path / "run")
    assert run.config["train"]["steps"] == 100
    assert (tmp_path / "run" / "eval.json").is_file()


def test_divergence_raises_diverged_error(tmp_path):
    with pytest.raises(physlens.DivergedError, match="diverged") as info:
        physlens.train({**SMALL, "train": {"steps": 300, "lr": 1e4}}, tmp_path / "run")
    assert isinstance(info.value, RuntimeError)


# ---------------------------------------------------------------- 4. interpret


def test_interpret_has_the_spec_keys_and_equals_the_cli(seed_run, cli):
    path = str(Path(seed_run.dir) / "model.safetensors")
    report = physlens.interpret(path)
    for key in [
        "effective_map",
        "offset",
        "eigenvalues",
        "learned",
        "best_fit",
        "truth",
        "methods",
        "nearest_method",
        "margin",
        "identifiable",
        "error_vs_exact",
    ]:
        assert key in report, key
    assert np.asarray(report["effective_map"]).shape == (2, 2)
    assert {"omega0", "gamma"} <= set(report["learned"])
    assert report["methods"][0]["name"] == report["nearest_method"]
    printed = subprocess.run(
        [str(cli), "interpret", "--json", "--model", path], check=True, capture_output=True, text=True
    ).stdout
    assert report == json.loads(printed)


def test_interpret_options_are_checked(seed_run):
    with pytest.raises(ValueError, match="n_valid"):
        physlens.interpret(seed_run.dir, n_valid=0)
    with pytest.raises(ValueError, match="e_max"):
        physlens.interpret(seed_run.dir, e_max=-1.0)


def test_progress_lines_go_to_sys_stderr(tmp_path, capsys):
    physlens.train(SEED_CONFIG, tmp_path / "run", quiet=False)
    err = capsys.readouterr().err
    assert "physlens: step 300/300" in err and "physlens: done" in err, err
    physlens.train(SEED_CONFIG, tmp_path / "quiet")
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- 5. Ctrl-C


CHILD = """
import json, sys, physlens
try:
    physlens.train(json.loads(sys.argv[1]), sys.argv[2])
except KeyboardInterrupt as e:
    print("KeyboardInterrupt:", e, flush=True)
    sys.exit(42)
print("finished without interruption", flush=True)
"""


def test_ctrl_c_saves_a_resumable_state(tmp_path):
    out = tmp_path / "long"
    steps = 400_000  # a few seconds: long enough to interrupt, short enough to resume
    config = {**SMALL, "train": {"steps": steps, "log_every": 100, "stop_at_floor": False}}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(config), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "metrics.csv").exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "training never wrote metrics.csv"
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 42, (stdout, stderr)
    assert "KeyboardInterrupt" in stdout and "physlens.resume(" in stdout and str(out) in stdout, stdout
    assert (out / "train_state.safetensors").is_file()
    assert not (out / "eval.json").exists()

    run = physlens.resume(out)

    assert run.summary["train_steps"] == steps
    assert (out / "eval.json").is_file()
    assert run.model.forward(np.zeros((1, 1, 2))).shape == (1, 1, 2)


def test_resume_of_a_folder_that_is_no_run_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="config.toml"):
        physlens.resume(tmp_path)


def test_import_does_not_load_transformer_lens():
    code = "import sys, physlens; print('physlens.transformer_lens' in sys.modules, 'torch' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert shown.split() == ["False", "False"]



def test_training_releases_the_gil(tmp_path):
    """A Python thread keeps running while physlens.train works: the GIL is
    released during training (held, the thread would make no progress)."""
    import threading

    ticks, stop = [0], threading.Event()

    def count():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    thread = threading.Thread(target=count)
    thread.start()
    start = time.perf_counter()
    physlens.train({**SMALL, "train": {"steps": 100000, "dtype": "f64"}}, tmp_path / "gil")
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    # At most one tick per millisecond; ask for 2 % of that (a loaded machine
    # slows the thread down; with the GIL held it would make none).
    assert ticks[0] > 20 * elapsed, (ticks[0], elapsed)


# ---------------------------------------------------------------- patching


@pytest.fixture(scope="module")
def ranged_run(tmp_path_factory):
    """An in-context model (ω0 drawn per sequence on [1, 4]), context 6, trained briefly."""
    config = {
        "system": {"omega0": [1.0, 4.0], "gamma": 0.1},
        "data": {**SMALL["data"], "context": 6},
        "eval": SMALL["eval"],
        "model": {"d_model": 4, "n_heads": 2, "d_head": 2, "positional": True},
        "train": {"steps": 100},
    }
    return physlens.train(config, tmp_path_factory.mktemp("ranged") / "run")


def test_patch_equals_the_cli(ranged_run, cli):
    path = str(Path(ranged_run.dir) / "model.safetensors")
    report = physlens.patch(path, pairs=8, n_valid=32)
    out = subprocess.run(
        [str(cli), "patch", "--model", path, "--json", "--pairs", "8", "--n-valid", "32"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert report == json.loads(out.stdout)
    first = report["effects"][0]
    assert first["activation"] == "blocks.0.resid_pre" and first["positions"] == list(range(6))
    for key in ["prediction_shift", "delta_norm", "omega0_shift", "omega0_pairs"]:
        assert len(first[key]) == 6, key
    fixed = physlens.patch(path, a={"omega0": 1.5}, b={"omega0": 3.5}, n_valid=0)
    assert fixed["pairs"]["source"] == "fixed" and fixed["ablation"] is None


def test_patch_arguments_are_checked(ranged_run, seed_run):
    path = Path(ranged_run.dir) / "model.safetensors"
    with pytest.raises(ValueError, match="omegaz"):
        physlens.patch(path, a={"omegaz": 1.0}, b={"omega0": 2.0})
    with pytest.raises(ValueError, match="b"):
        physlens.patch(path, a={"omega0": 1.0})
    with pytest.raises(ValueError, match="pairs"):
        physlens.patch(path, pairs=0)
    with pytest.raises(ValueError, match="not an activation"):
        physlens.patch(path, activations=["blocks.7.resid_pre"])
    with pytest.raises(ValueError, match="pairs"):  # one system, context 1: nothing to draw pairs from
        physlens.patch(seed_run.dir)
    with pytest.raises(FileNotFoundError):
        physlens.patch(path.parent / "missing.safetensors")

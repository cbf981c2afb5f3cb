"""examples/notebook.py runs from start to end as a script (matplotlib on the
Agg backend) and writes its two figures; its TransformerLens cell runs when
torch and transformer_lens are installed and is skipped otherwise."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.py"


def test_the_example_notebook_runs_as_a_script(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: the notebook plots with it")
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run(
        [sys.executable, str(NOTEBOOK)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "runs/notebook/eigenvalues.png").stat().st_size > 0
    assert (tmp_path / "runs/notebook-context/attention.png").stat().st_size > 0
    assert "nearest rule:" in done.stdout
    if "skipped:" not in done.stdout:
        line = next(l for l in done.stdout.splitlines() if l.startswith("max |TransformerLens − physlens| prediction:"))
        assert float(line.rsplit(":", 1)[1]) < 1e-5, line

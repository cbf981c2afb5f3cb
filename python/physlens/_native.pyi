"""Type stubs of the compiled core, ``physlens._native`` (re-exported by ``physlens``)."""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, "os.PathLike[str]"]
_Array = npt.NDArray[np.floating[Any]]
_Names = Union[None, str, Sequence[str], Callable[[str], bool]]

class DivergedError(RuntimeError):
    """Training diverged (a non-finite or exploding loss); the last finite checkpoint was kept."""

class Model:
    """A trained model loaded from a ``.safetensors`` checkpoint, in the dtype it was stored in.

    Shapes: B batch, T = ``n_ctx`` tokens, 2 the state ``(x, p)`` of a token.
    """

    def forward(self, states: npt.ArrayLike) -> _Array:
        """Predictions ``[B, T, 2]`` (the next state after each token) for ``states`` ``[B, T, 2]``.

        T must equal ``n_ctx``. Any real dtype is accepted and converted to ``dtype``;
        the result has ``dtype``. Raises ValueError naming the expected shape for a wrong one.
        """

    def run_with_cache(self, states: npt.ArrayLike, names: _Names = None) -> Tuple[_Array, Dict[str, _Array]]:
        """``(pred, cache)``: the predictions and the named activations of the same forward pass.

        Names are those of ``physlens interpret --dump``: ``input`` ``[B, T, 2]``, ``embed`` ``[B, T, D]``,
        ``blocks.{l}.resid_pre``, ``blocks.{l}.attn.q|k|v|z`` ``[B, T, H, K]``,
        ``blocks.{l}.attn.scores|pattern`` ``[B, H, T, T]``, ``blocks.{l}.attn.result`` ``[B, T, H, D]``,
        (with MLP blocks) ``blocks.{l}.resid_mid``, ``blocks.{l}.mlp.pre|post`` ``[B, T, M]``,
        ``blocks.{l}.mlp_out``, then ``blocks.{l}.resid_post`` and ``pred`` ``[B, T, 2]``.
        ``names`` filters: None for all, a name, a list of names (``"all"`` allowed) or a callable
        name -> bool. An unknown name raises ValueError listing the valid ones.
        """

    @property
    def names(self) -> List[str]:
        """Every cache name of this model, in forward order (``input`` first, ``pred`` last)."""
    @property
    def config(self) -> Dict[str, Any]:
        """The checkpoint's ``model`` metadata: d_model, n_heads, d_head, n_layers, n_ctx, attn_scale, causal, positional, ..."""
    @property
    def system(self) -> Dict[str, Any]:
        """The checkpoint's ``system`` metadata: kind, omega0, gamma, dt (each a number or a [lo, hi] range)."""
    @property
    def metadata(self) -> Dict[str, str]:
        """The checkpoint's whole ``__metadata__``."""
    @property
    def dtype(self) -> str:
        """``"float32"`` or ``"float64"``."""
    @property
    def n_ctx(self) -> int:
        """The context length T every input must have."""
    @property
    def params(self) -> Dict[str, _Array]:
        """The weights by checkpoint name (``embed.W_E`` ``[2, D]``, ``blocks.0.attn.W_Q`` ``[H, D, K]``, ...)."""
    @property
    def path(self) -> str:
        """The checkpoint file."""

class Run:
    """A trained and evaluated run folder (``os.fspath(run)`` is its folder)."""

    @property
    def dir(self) -> str:
        """The run folder."""
    @property
    def model(self) -> Model:
        """The trained model (``dir/model.safetensors``)."""
    @property
    def summary(self) -> Dict[str, Any]:
        """The case summary: train_mse, valid_mse, rollout, learned, nearest_method, margin, ..."""
    @property
    def config(self) -> Dict[str, Any]:
        """The resolved config, every key (``dir/config.toml``)."""
    def __fspath__(self) -> str: ...

def load(path: _Path) -> Model:
    """Loads a checkpoint (or the ``model.safetensors`` of a run folder).

    Raises FileNotFoundError for a missing file, ValueError for a malformed one.
    """

def train(
    config: Union[Mapping[str, Any], _Path],
    out: _Path,
    *,
    force: bool = False,
    quiet: bool = True,
) -> Run:
    """Trains one model on ``config`` and evaluates it into ``out`` (``physlens train`` then ``physlens eval``).

    ``config``: a dict of sections (``{"model": {"d_model": 4}, "train": {"steps": 500}}``) or a TOML path.
    A folder holding an earlier run is refused unless ``force``. Ctrl-C stops training after saving its
    state and raises KeyboardInterrupt; ``resume(out)`` continues it. Raises ValueError for a bad config
    key or value, FileNotFoundError for a missing config file, DivergedError when training diverges.
    """

def resume(out: _Path, *, quiet: bool = True) -> Run:
    """Continues the interrupted run in ``out`` from its saved state, then evaluates it."""

def interpret(path: _Path, *, n_valid: int = 4096, e_max: Optional[float] = None, seed: int = 0) -> Dict[str, Any]:
    """The object ``physlens interpret --json --model PATH`` prints (PATH a checkpoint or a run folder):
    effective_map, offset, eigenvalues,
    learned, best_fit, truth, methods, nearest_method, margin, identifiable, error_vs_exact, ...
    """

def patch(
    path: _Path,
    *,
    pairs: Optional[int] = None,
    a: Optional[Mapping[str, float]] = None,
    b: Optional[Mapping[str, float]] = None,
    activations: Optional[Sequence[str]] = None,
    n_valid: int = 1024,
    e_max: Optional[float] = None,
    seed: int = 0,
) -> Dict[str, Any]:
    """The object ``physlens patch --json --model PATH`` prints: ``effects`` (per activation: ``positions``,
    ``prediction_shift``, ``delta_norm``, ``omega0_shift``, ``omega0_pairs``), ``heatmaps``, ``pairs``,
    ``ablation``, ``model``. ``a``/``b``: fixed parameter sets such as ``{"omega0": 2.0, "gamma": 0.1}``;
    without them ``pairs`` (default 64) are drawn from the checkpoint's training ranges.
    """

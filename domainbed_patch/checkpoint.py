"""Reading DomainBed's ``model.pkl`` without running code from it.

DomainBed's train saves (``save_checkpoint`` in ``domainbed/scripts/train.py``) a
dict of

====================== ===================================================
``args``               ``vars()`` of its arguments: str, int, float, list, None
``model_input_shape``  a tuple of ints
``model_num_classes``  an int
``model_num_domains``  an int
``model_hparams``      the hparams; random draws are numpy scalars (float64, ...)
``model_dict``         the algorithm's state dict: tensors
====================== ===================================================

A pickle can name any callable to be called while it loads, so a ``model.pkl``
from a downloaded or shared sweep folder could run code. It is loaded with
``torch.load(..., weights_only=True)``, whose unpickler builds only tensors,
containers and primitive values, plus the few globals in :func:`allowed_globals`
(numpy's scalar constructor and dtypes, which build values and call nothing
else). Anything else, a corrupt file or one that is not such a dict, raises
:class:`CheckpointError` with one line.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from domainbed_patch import job_folder

KEYS = ("args", "model_input_shape", "model_num_classes", "model_num_domains",
        "model_hparams", "model_dict")
#: The train arguments diagnose reads from ``args``.
ARGS = ("algorithm", "dataset", "test_envs", "seed", "trial_seed", "holdout_fraction")
_NUMPY_TYPES = (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
                np.uint8, np.bool_, np.str_)


class CheckpointError(ValueError):
    """A ``model.pkl`` that is not a DomainBed checkpoint this loader accepts."""


def allowed_globals() -> list:
    """What DomainBed's checkpoints need beyond torch's default allow-list: numpy's
    scalar constructor (also under its numpy 1 name) and dtypes."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in _NUMPY_TYPES]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"),
            (scalar, "numpy._core.multiarray.scalar"), np.dtype, *dtypes]


def _reason(error: Exception) -> str:
    """The informative line of a loading error (torch's are paragraphs)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Trying to load", "Unsupported")):
            return line
    return f"{type(error).__name__}: {lines[0] if lines else error}"


def load_checkpoint(path, map_location="cpu") -> dict:
    """DomainBed's checkpoint at ``path``, loaded without running code from it."""
    path = Path(path)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(allowed_globals()):
            warnings.simplefilter("ignore")  # the unpickler's protocol notes
            saved = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever a file makes torch.load raise: one line
        raise CheckpointError(
            f"{path}: not loaded ({_reason(error)}); it is not a PyTorch checkpoint of "
            "tensors, numbers and strings, which is all DomainBed saves (hessian-dg "
            f"never runs code from a {job_folder.MODEL})") from None
    if not isinstance(saved, dict) or any(key not in saved for key in KEYS):
        found = sorted(map(str, saved)) if isinstance(saved, dict) else type(saved).__name__
        raise CheckpointError(f"{path}: not a DomainBed checkpoint: expected a dict with "
                              f"{', '.join(KEYS)}; found {found}")
    args = saved["args"]
    missing = [key for key in ARGS if not isinstance(args, dict) or key not in args]
    if missing:
        raise CheckpointError(f"{path}: not a DomainBed checkpoint: its args lack "
                              f"{', '.join(missing)}")
    return saved

r"""The Colored MNIST environments, built in the authors' order of random draws.

From the official training split (:mod:`colored_mnist.sources`): the first
``50,000`` images are the training pool and the last ``val_size`` (10,000) the
test pool. The training pool is shuffled by a numpy ``RandomState`` (the same
permutation as the scripts' in-place ``np.random.shuffle`` from the same state);
the test pool keeps its order.

One environment (``make_environment``), for images ``x`` (N, H, W), classes
``d`` and colour-flip probability ``e``, in the scripts' order:

1. ``x <- x[:, ::2, ::2]`` (strided 2x subsampling: 28x28 -> 14x14, no pooling);
2. ``y = 1[d < 5]``, then label noise ``y <- |y - b|``, ``b ~ Bernoulli(0.25)``
   (N uniforms from the torch RNG);
3. colour ``c = |y - b'|``, ``b' ~ Bernoulli(e)`` (N more uniforms, drawn even for
   a grayscale environment);
4. two channels ``[x, x]``; unless grayscale, the channel ``1 - c`` is zeroed, so
   the lit channel's index is ``c``;
5. images ``float32 / 255`` in [0, 1], shape (N, 2, H/2, W/2); labels (N, 1).

Settings (environments in draw order: train 0, train 1, test, gray test):

- ``correlation_shift`` (IRM/Fishr): train 0 = even positions of the shuffled
  pool, e = 0.2; train 1 = odd positions, e = 0.1; test = the test pool, e = 0.9;
  gray = the test pool again through a *second* call (its own label noise).
- ``label_shift`` (the scripts' imbalanced split, as they ran it): with masks
  ``m0 = d < 5`` and ``m1 = d >= 5`` over the pool of length L and P = 0.97,
  train 0 = the first ``round(P L)`` pool items with ``m0`` followed by the first
  ``round((1 - P) L)`` with ``m1``; train 1 = the rest of each. The scripts take L,
  the *mask length*, where the class counts were presumably meant: as
  ``round(0.97 L) > #(d < 5)``, train 0 gets every class < 5 plus the first 3% of L
  of classes >= 5, and **train 1 holds no class < 5** (clean label 0 throughout,
  25% label 1 after noise). Colours e = 0.2 / 0.1 as above.

``train_size`` (``--train_size N``) keeps the first N images of the shuffled pool
before either split: correlation shift then halves them; label shift applies its
rule with L = N (train 0: all classes < 5 among the N plus ``round(0.03 N)``
classes >= 5; train 1: the other classes >= 5).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

TRAIN_POOL = 50_000
VAL_SIZE = 10_000
SETTINGS = ("correlation_shift", "label_shift")
#: Colour-flip probabilities e of (train 0, train 1, test); gray test uses the test's.
COLOUR_FLIPS = (0.2, 0.1, 0.9)
LABEL_SHIFT_P = 0.97


@dataclass
class Environment:
    """One environment: images (N, 2, h, w) float32 in [0, 1], labels (N, 1) float32,
    and the clean classes (N,) it was built from (for checks and reports)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: torch.Tensor
    colour_flip: float
    grayscale: bool = False


def split_pools(images: np.ndarray, classes: np.ndarray, rng: np.random.RandomState,
                val_size: int = VAL_SIZE, train_size: Optional[int] = None):
    """``(train images, train classes, test images, test classes)`` as torch tensors.

    Train pool: the first ``min(50000, N - val_size)`` images, shuffled by ``rng``,
    then cut to ``train_size``; test pool: the last ``val_size``, in file order.
    """
    n = len(images)
    if not 0 < val_size < n:
        raise ValueError(f"val_size {val_size} must be in 1..{n - 1} for {n} images")
    pool = min(TRAIN_POOL, n - val_size)
    order = rng.permutation(pool)
    if train_size is not None:
        if not 2 <= train_size <= pool:
            raise ValueError(f"train_size {train_size} must be in 2..{pool}")
        order = order[:train_size]
    train_x = torch.from_numpy(np.ascontiguousarray(images[:pool][order]))
    train_d = torch.from_numpy(np.ascontiguousarray(classes[:pool][order]))
    test_x = torch.from_numpy(np.ascontiguousarray(images[n - val_size:]))
    test_d = torch.from_numpy(np.ascontiguousarray(classes[n - val_size:]))
    return train_x, train_d, test_x, test_d


def make_environment(name: str, images: torch.Tensor, classes: torch.Tensor,
                     colour_flip: float, label_flip: float = 0.25, grayscale: bool = False,
                     generator: Optional[torch.Generator] = None) -> Environment:
    """One environment, steps 1-5 of the module docstring (two draws of N uniforms
    from ``generator``, or from torch's global RNG when None)."""
    x = images.reshape(-1, *images.shape[-2:])[:, ::2, ::2]
    n = x.shape[0]
    y = (classes < 5).float()
    y = (y - (torch.rand(n, generator=generator) < label_flip).float()).abs()
    colours = (y - (torch.rand(n, generator=generator) < colour_flip).float()).abs()
    x = torch.stack([x, x], dim=1)
    if not grayscale:
        x[torch.arange(n), (1 - colours).long()] *= 0
    return Environment(name, x.float() / 255.0, y[:, None], classes.clone(), colour_flip,
                       grayscale)


def label_shift_indices(classes: torch.Tensor, p: float = LABEL_SHIFT_P
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pool positions of train 0 and train 1 in the label-shift split.

    ``round`` is Python's, on the mask length L as the scripts have it:
    ``round(0.97 * 50000) = 48500`` and ``round(0.03 * 50000) = 1500``.
    """
    low = torch.nonzero(classes < 5).flatten()
    high = torch.nonzero(classes >= 5).flatten()
    length = classes.shape[0]
    cut_low, cut_high = round(p * length), round((1 - p) * length)
    first = torch.cat([low[:cut_low], high[:cut_high]])
    second = torch.cat([low[cut_low:], high[cut_high:]])
    return first, second


def training_sizes(classes: np.ndarray, setting: str, seed: int,
                   val_size: int = VAL_SIZE) -> np.ndarray:
    """Images of (train 0, train 1) for every ``train_size`` L: row L of the
    ``(pool + 1, 2)`` result, read from the classes alone (the same shuffle and
    splits as :func:`build_environments`, no image touched). Label shift can leave
    an environment empty at any L (train 1 at L = 2 when both images are of classes
    < 5, or wherever ``round(0.97 L) + round(0.03 L) = L`` takes every image)."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; valid settings: {', '.join(SETTINGS)}")
    pool = min(TRAIN_POOL, len(classes) - val_size)
    order = np.random.RandomState(seed).permutation(pool)
    lengths = np.arange(pool + 1)
    if setting == "correlation_shift":
        first = (lengths + 1) // 2
    else:
        low = np.concatenate([[0], np.cumsum(classes[:pool][order] < 5)])
        cut_low = np.round(LABEL_SHIFT_P * lengths)
        cut_high = np.round((1 - LABEL_SHIFT_P) * lengths)
        first = np.minimum(low, cut_low) + np.minimum(lengths - low, cut_high)
    first = first.astype(np.int64)
    return np.stack([first, lengths - first], axis=1)


def build_environments(images: np.ndarray, classes: np.ndarray, setting: str, seed: int,
                       label_flip: float = 0.25, val_size: int = VAL_SIZE,
                       train_size: Optional[int] = None,
                       generator: Optional[torch.Generator] = None) -> List[Environment]:
    """``[train 0, train 1, test, gray test]`` for ``setting``.

    The shuffle uses ``np.random.RandomState(seed)``; the label and colour draws
    use ``generator`` (torch's global RNG when None, as in the scripts, whose model
    initialisation then continues the same stream).
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; valid settings: {', '.join(SETTINGS)}")
    train_x, train_d, test_x, test_d = split_pools(
        images, classes, np.random.RandomState(seed), val_size, train_size)
    if setting == "correlation_shift":
        parts = [(train_x[::2], train_d[::2]), (train_x[1::2], train_d[1::2])]
    else:
        first, second = label_shift_indices(train_d)
        parts = [(train_x[first], train_d[first]), (train_x[second], train_d[second])]
    e0, e1, e_test = COLOUR_FLIPS
    envs = [make_environment("train0", *parts[0], e0, label_flip, generator=generator),
            make_environment("train1", *parts[1], e1, label_flip, generator=generator),
            make_environment("test", test_x, test_d, e_test, label_flip,
                             generator=generator),
            make_environment("gray_test", test_x, test_d, e_test, label_flip,
                             grayscale=True, generator=generator)]
    return envs

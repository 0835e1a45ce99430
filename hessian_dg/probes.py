"""Random probes for matrix-free estimators, and the memory-bounded probe mean.

Randomness lives here and nowhere else: estimators take an explicit
``torch.Generator`` and never touch the global RNG, so a training step's draws do
not depend on what else ran before it.

The probe mean is the workhorse of Hutchinson's estimator,

    mean_s  f(z_s),   z_s ~ Rademacher,   s = 1..S,

evaluated in chunks of probes. Each chunk draws its probes from its own seed, taken
from the caller's generator up front, and when gradients are needed the chunk runs
under activation checkpointing: on the backward pass its probes are *regenerated*
from that seed instead of being kept alive. Peak memory is therefore one chunk of
probes, not S of them (S x C x (D+1) numbers per domain would be ~0.85 GB for
DomainNet's head at S = 300).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch.utils.checkpoint import checkpoint

#: Default number of probes evaluated at once. Large enough to keep matmuls
#: efficient, small enough that a chunk of DomainNet-head probes is ~0.1 GB.
DEFAULT_CHUNK_SIZE = 32

_SEED_BOUND = 2**62


def rademacher(shape: Sequence[int], generator: torch.Generator,
               dtype: torch.dtype = torch.float32,
               device: Optional[torch.device] = None) -> torch.Tensor:
    """Tensor of independent ±1 entries, each with probability 1/2.

    >>> g = torch.Generator().manual_seed(0)
    >>> z = rademacher((1000,), g)
    >>> bool(((z == 1) | (z == -1)).all()), abs(float(z.mean())) < 0.1
    (True, True)
    """
    numel = math.prod(shape)
    # 64 signs per random draw: full-range 64-bit words, read byte by byte through
    # a 256 x 8 table of signs (drawing one number per sign costs ~30x more).
    words = torch.empty((numel + 63) // 64, dtype=torch.int64, device=device)
    words.random_(-(2**63), None, generator=generator)
    table = _sign_table(dtype, words.device)
    signs = table[words.view(torch.uint8).long()].reshape(-1)
    return signs[:numel].reshape(tuple(shape))


def _sign_table(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Row b holds the 8 bits of byte b as signs: ``2 * bit - 1``."""
    bits = (torch.arange(256, device=device)[:, None] >> torch.arange(8, device=device)) & 1
    return (2 * bits - 1).to(dtype)


def chunk_sizes(num_probes: int, chunk_size: Optional[int]) -> list:
    """Split ``num_probes`` into consecutive chunks of at most ``chunk_size``.

    >>> chunk_sizes(70, 32)
    [32, 32, 6]
    """
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")
    size = num_probes if chunk_size is None else chunk_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    full, rest = divmod(num_probes, size)
    return [size] * full + ([rest] if rest else [])


def _generator_like(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def rademacher_probe_mean(
    fn: Callable[[torch.Tensor], torch.Tensor],
    shape: Sequence[int],
    num_probes: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
    chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
    recompute: bool = True,
) -> torch.Tensor:
    """``(1/S) sum_s fn(z_s)`` over S Rademacher probes z_s of shape ``shape``.

    ``fn`` maps a batch of probes, shape ``(k, *shape)``, to the *sum* over that
    batch of the per-probe quantity (any shape). It is called once per chunk.

    With ``recompute=True`` (the default) and gradients enabled, each chunk runs
    under non-reentrant activation checkpointing and regenerates its probes from
    its own seed during backward, so no probe or per-probe product outlives its
    chunk. ``fn`` must then be a deterministic function of its probes and of
    tensors it closes over (true of the closed forms; not of autograd-graph
    builders that call ``torch.autograd.grad``, which should pass
    ``recompute=False``).

    The result depends only on the generator's state, ``num_probes`` and
    ``chunk_size``: the same inputs give the same probes.
    """
    sizes = chunk_sizes(num_probes, chunk_size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    seeds = torch.randint(0, _SEED_BOUND, (len(sizes),), generator=generator,
                          device=generator.device).tolist()

    def one_chunk(seed: int, size: int) -> torch.Tensor:
        probes = rademacher((size, *shape), _generator_like(seed, device),
                            dtype=dtype, device=device)
        return fn(probes)

    total = None
    for seed, size in zip(seeds, sizes):
        if recompute and torch.is_grad_enabled():
            part = checkpoint(one_chunk, seed, size, use_reentrant=False,
                              preserve_rng_state=False)
        else:
            part = one_chunk(seed, size)
        total = part if total is None else total + part
    return total / num_probes

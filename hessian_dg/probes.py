"""Random probes for matrix-free estimators, drawn in chunks from per-chunk seeds.

Randomness lives here. Estimators draw only from the ``torch.Generator`` they are
given, so a training step's draws do not depend on what else ran before it. The
global RNG is read once, and only where no generator is given:
:func:`generator_from_global_rng` takes one draw of it to seed a new generator
(:func:`hessian_dg.penalty.curvature_quantity` for ``"hutchinson"`` without a
generator, hence :func:`hessian_dg.hessian_alignment_penalty` called so; any
caller that wants reproducible probes without managing a generator). Lanczos
without a generator starts from a fixed seed, not the global RNG.

Hutchinson's estimator is a probe mean,

    mean_s  f(z_s),   z_s ~ Rademacher,   s = 1..S,

evaluated in chunks of probes. Each chunk draws its probes from its own seed,
taken from the caller's generator up front (:func:`chunk_seeds`), so a backward
pass can *regenerate* a chunk (:func:`draw_chunk`) instead of keeping it alive:
S x C x (D+1) numbers per domain would be ~0.85 GB for DomainNet's head at S = 300.
:mod:`hessian_dg.linear_hutchinson` does so; :func:`rademacher_probe_mean` is the
generic version for heads whose products come from autograd.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

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
    return rademacher_(torch.empty(tuple(shape), dtype=dtype, device=device), generator)


#: For each float type, the integer type of the same width.
_FLOAT_BITS = {torch.float64: torch.int64, torch.float32: torch.int32,
               torch.float16: torch.int16, torch.bfloat16: torch.int16}


def rademacher_(out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill contiguous ``out`` with independent ±1 entries in place; return it.

    One random word of b bits gives b signs: bit j of the word is shifted into
    the sign bit of entry j, and ``copysign(1, entry)`` keeps that bit alone.
    Two passes, no per-entry random draw and no lookup; writing into a buffer
    the caller reuses also spares the page faults of a fresh allocation, which on
    CPU cost more than the signs themselves.
    """
    if out.dtype not in _FLOAT_BITS:
        raise TypeError(f"rademacher_ fills a floating tensor of type "
                        f"{sorted(map(str, _FLOAT_BITS))}, got {out.dtype}")
    if not out.is_contiguous():
        raise ValueError("rademacher_ needs a contiguous tensor")
    int_type = _FLOAT_BITS[out.dtype]
    width = torch.iinfo(int_type).bits
    flat = out.view(-1).view(int_type)
    full, rest = divmod(flat.numel(), width)
    words = torch.empty(full + bool(rest), dtype=int_type, device=out.device)
    words.random_(torch.iinfo(int_type).min, None, generator=generator)
    shifts = torch.arange(width, dtype=int_type, device=out.device)
    if full:
        body = flat[:full * width].view(full, width)
        torch.bitwise_left_shift(words[:full, None], shifts, out=body)
    if rest:
        flat[full * width:] = torch.bitwise_left_shift(words[full], shifts[:rest])
    as_float = flat.view(out.dtype)
    torch.copysign(as_float.new_ones(()), as_float, out=as_float)
    return out


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


def generator_from_global_rng() -> torch.Generator:
    """A CPU generator seeded with one draw of torch's global RNG.

    The one use of the global RNG in :mod:`hessian_dg`: a caller that passes no
    generator still gets probes reproducible under ``torch.manual_seed``, and from
    then on the probes draw from this generator alone.
    """
    seed = int(torch.randint(0, _SEED_BOUND, (1,)).item())
    return torch.Generator().manual_seed(seed)


def _generator_like(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def chunk_seeds(num_probes: int, chunk_size: Optional[int],
                generator: torch.Generator) -> list:
    """``[(seed, size), ...]``: one seed per chunk of probes, drawn up front.

    Taking every seed before any probe is drawn lets a chunk be regenerated later
    (in a backward pass) from its seed alone, whatever ran in between.
    """
    sizes = chunk_sizes(num_probes, chunk_size)
    seeds = torch.randint(0, _SEED_BOUND, (len(sizes),), generator=generator,
                          device=generator.device).tolist()
    return list(zip(seeds, sizes))


def draw_chunk(seed: int, size: int, shape: Sequence[int],
               dtype: torch.dtype = torch.float32,
               device: Optional[torch.device] = None,
               out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The ``size`` probes of one chunk, shape ``(size, *shape)``, from its seed.

    ``out``, if given, is a contiguous buffer of at least ``size * prod(shape)``
    entries to draw into (its leading part is returned), so chunks can reuse one
    buffer; its dtype and device then stand for ``dtype`` and ``device``.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    full_shape = (size, *shape)
    if out is None:
        out = torch.empty(full_shape, dtype=dtype, device=device)
    else:
        out = out.view(-1)[:math.prod(full_shape)].view(full_shape)
    return rademacher_(out, _generator_like(seed, out.device))


def rademacher_probe_mean(
    fn: Callable[[torch.Tensor], torch.Tensor],
    shape: Sequence[int],
    num_probes: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
    chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """``(1/S) sum_s fn(z_s)`` over S Rademacher probes z_s of shape ``shape``.

    ``fn`` maps a batch of probes, shape ``(k, *shape)``, to the *sum* over that
    batch of the per-probe quantity (any shape). It is called once per chunk, and
    whatever autograd graph it builds is kept until backward.

    The probes depend only on the generator's state, ``num_probes``,
    ``chunk_size``, ``dtype`` and ``device`` (a word of random bits gives as many
    signs as the float type has bits), chunk by chunk those of
    :func:`chunk_seeds` and :func:`draw_chunk`.
    """
    total = None
    for seed, size in chunk_seeds(num_probes, chunk_size, generator):
        part = fn(draw_chunk(seed, size, shape, dtype=dtype, device=device))
        total = part if total is None else total + part
    return total / num_probes

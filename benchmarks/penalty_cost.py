r"""Cost of the alignment penalty alone on a linear head, forward and backward.

The penalty of ``hessian_dg.alignment.stacked_domain_penalty`` (m domain heads
and the average-loss target, as ``domainbed_patch/algorithms.py`` builds them) on
random features of the given head shapes. Variants, timed round-robin in one run
and printed beside their ratio to the first one named (by default ``hutchinson``,
the shipped path):

- ``hutchinson``: closed-form Hutchinson with the written-out backward
  (:mod:`hessian_dg.linear_hutchinson`);
- ``hutchinson-autograd``: the same estimate (same probes) built from
  ``LinearSoftmaxHead.hvp`` and differentiated by autograd, each chunk of probes
  under activation checkpointing so that memory stays one chunk (the formulation
  this project used before ``linear_hutchinson.py``);
- ``hutchinson-double-backprop``, ``hgp-double-backprop``: the authors'
  formulation (:mod:`stepcost.double_backprop_penalty`): autograd
  Hessian-vector products, S probes in a Python loop, all kept in the graph;
- ``exact``: the exact diagonal; ``hgp``: H g in closed form.

Usage::

    python benchmarks/penalty_cost.py                    # ResNet-18/50 x DomainNet shapes
    python benchmarks/penalty_cost.py --shapes 32,345,2049 --probes 300 --repeats 5

Nothing here needs DomainBed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch.utils.checkpoint import checkpoint

from hessian_dg import alignment, probes
from hessian_dg.linear_softmax import LinearSoftmaxHead

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for ``stepcost``

from stepcost.double_backprop_penalty import double_backprop_penalty  # noqa: E402

#: (examples per domain, classes, head inputs incl. bias): ResNet-18 / ResNet-50
#: features with DomainNet's 345 classes, at 8 and 32 examples per domain.
DEFAULT_SHAPES = ((8, 345, 513), (32, 345, 513), (8, 345, 2049), (32, 345, 2049))


ALPHA, BETA = 1e-3, 5e-3  # Hutchinson's default penalty weights


class AutogradHutchinson:
    """Hutchinson through ``head.hvp`` and autograd, chunks checkpointed."""

    def __init__(self, num_probes: int, generator: torch.Generator, chunk_size: int):
        self.num_probes, self.generator, self.chunk_size = num_probes, generator, chunk_size

    def __call__(self, head) -> torch.Tensor:
        total = None
        for seed, size in probes.chunk_seeds(self.num_probes, self.chunk_size,
                                             self.generator):
            def chunk(seed=seed, size=size):
                z = probes.draw_chunk(seed, size, head.shape, dtype=head.design.dtype)
                return (z * head.hvp(z)).sum(dim=0)
            part = (checkpoint(chunk, use_reentrant=False, preserve_rng_state=False)
                    if torch.is_grad_enabled() else chunk())
            total = part if total is None else total + part
        return total / self.num_probes


def closed_form(make_curvature: Callable) -> Callable:
    """A penalty through ``alignment.stacked_domain_penalty`` and a curvature."""
    def penalty(features, weight, bias, labels, sizes, num_probes, chunk_size):
        curvature = make_curvature(num_probes, torch.Generator().manual_seed(1),
                                   chunk_size)
        return alignment.stacked_domain_penalty(
            LinearSoftmaxHead.from_logits, features, features @ weight.t() + bias,
            labels, sizes, curvature, ALPHA, BETA).total
    return penalty


def double_backprop(curvature: str) -> Callable:
    """The authors' formulation: autograd products, probes in a Python loop."""
    def penalty(features, weight, bias, labels, sizes, num_probes, chunk_size):
        return double_backprop_penalty(
            lambda f: f @ weight.t() + bias, [weight, bias], features,
            list(labels.split(sizes)), curvature, ALPHA, BETA, num_probes=num_probes,
            generator=torch.Generator().manual_seed(1))
    return penalty


VARIANTS: Dict[str, Callable] = {
    "hutchinson": closed_form(
        lambda s, g, c: alignment.HutchinsonDiagonal(s, g, chunk_size=c)),
    "hutchinson-autograd": closed_form(AutogradHutchinson),
    "hutchinson-double-backprop": double_backprop("hutchinson"),
    "exact": closed_form(lambda s, g, c: alignment.ExactHessianDiagonal()),
    "hgp": closed_form(lambda s, g, c: alignment.HessianGradientProduct()),
    "hgp-double-backprop": double_backprop("hgp"),
}


def make_step(shape: Tuple[int, int, int], num_domains: int, penalty: Callable,
              num_probes: int, chunk_size: int) -> Callable:
    """One forward and backward of ``penalty``, on fixed random inputs."""
    n, c, k = shape
    g = torch.Generator().manual_seed(0)
    features = torch.randn(num_domains * n, k - 1, generator=g, requires_grad=True)
    weight = (torch.randn(c, k - 1, generator=g) * 0.01).requires_grad_()
    bias = torch.zeros(c, requires_grad=True)
    labels = torch.randint(0, c, (num_domains * n,), generator=g)
    sizes = [n] * num_domains

    def step() -> float:
        for leaf in (features, weight, bias):
            leaf.grad = None
        total = penalty(features, weight, bias, labels, sizes, num_probes, chunk_size)
        total.backward()
        return float(total.detach())

    return step


def measure(shapes: Sequence[Tuple[int, int, int]], variants: Sequence[str],
            num_probes: int, chunk_size: int, num_domains: int, repeats: int) -> List[dict]:
    rows = []
    for shape in shapes:
        steps = {}
        for name in variants:
            steps[name] = make_step(shape, num_domains, VARIANTS[name], num_probes,
                                    chunk_size)
            steps[name]()  # warm-up
        seconds = {name: [] for name in variants}
        for _ in range(repeats):
            for name in variants:
                began = time.perf_counter()
                steps[name]()
                seconds[name].append(time.perf_counter() - began)
        reference = statistics.median(seconds[variants[0]])
        for name in variants:
            median = statistics.median(seconds[name])
            rows.append({"shape": shape, "variant": name, "seconds": median,
                         "ratio": median / reference})
    return rows


def format_rows(rows: Sequence[dict], reference: str) -> str:
    lines = [f"| N per domain, C, D+1 | variant | s (fwd+bwd) | / {reference} |",
             "|---|---|---|---|"]
    for row in rows:
        n, c, k = row["shape"]
        lines.append(f"| {n}, {c}, {k} | {row['variant']} | {row['seconds']:.3f} | "
                     f"{row['ratio']:.2f} |")
    return "\n".join(lines)


def parse_shapes(text: str) -> List[Tuple[int, int, int]]:
    shapes = []
    for part in text.split(";"):
        values = part.split(",")
        if len(values) != 3 or not all(v.strip().isdigit() and int(v) > 0 for v in values):
            raise argparse.ArgumentTypeError(
                f"bad shape {part!r}: expected N,C,K with positive integers, "
                f"several separated by ';' (e.g. 32,345,2049;8,7,513)")
        shapes.append(tuple(int(v) for v in values))
    return shapes


def main(argv=None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=parse_shapes,
                        default=list(DEFAULT_SHAPES),
                        help="N,C,K[;N,C,K...] (default: "
                             + ";".join(",".join(map(str, s)) for s in DEFAULT_SHAPES) + ")")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated from {', '.join(VARIANTS)}; the first is "
                             f"the reference of the ratio column (default: all)")
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--chunk_size", type=int, default=probes.DEFAULT_CHUNK_SIZE)
    parser.add_argument("--num_domains", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, as step_cost.py on CPU)")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if len(set(variants)) != len(variants):
        parser.error(f"--variants names one twice: {args.variants!r}")
    if unknown or not variants:
        parser.error(f"unknown variants {unknown or args.variants!r}; "
                     f"choose from {', '.join(VARIANTS)}")
    for name in ("probes", "chunk_size", "num_domains", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rows = measure(args.shapes, variants, args.probes, args.chunk_size,
                   args.num_domains, args.repeats)
    print(f"# penalty cost: {args.num_domains} domains + the average-loss target, "
          f"S={args.probes}, chunks of {args.chunk_size}; torch {torch.__version__}, "
          f"{args.threads} thread(s); median of {args.repeats}; "
          f"{time.perf_counter() - began:.0f} s")
    print(format_rows(rows, variants[0]))
    return rows


if __name__ == "__main__":
    main()

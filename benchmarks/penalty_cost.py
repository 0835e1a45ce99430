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
    python benchmarks/penalty_cost.py --device cuda --output penalty_cost.json

On CUDA every timed step is bracketed by ``torch.cuda.synchronize()`` and its
peak memory (``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, less what was allocated before the step) is
reported too. Nothing here needs DomainBed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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
                z = probes.draw_chunk(seed, size, head.shape, dtype=head.design.dtype,
                                      device=head.design.device)
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
            generator=torch.Generator(device=features.device).manual_seed(1))
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
              num_probes: int, chunk_size: int, device="cpu") -> Callable:
    """One forward and backward of ``penalty``, on fixed random inputs (drawn on the
    CPU, then moved to ``device``)."""
    n, c, k = shape
    g = torch.Generator().manual_seed(0)
    features = torch.randn(num_domains * n, k - 1, generator=g).to(device).requires_grad_()
    weight = (torch.randn(c, k - 1, generator=g) * 0.01).to(device).requires_grad_()
    bias = torch.zeros(c, device=device, requires_grad=True)
    labels = torch.randint(0, c, (num_domains * n,), generator=g).to(device)
    sizes = [n] * num_domains

    def step() -> float:
        for leaf in (features, weight, bias):
            leaf.grad = None
        total = penalty(features, weight, bias, labels, sizes, num_probes, chunk_size)
        total.backward()
        return float(total.detach())

    return step


def _timed(step: Callable, device: torch.device) -> Tuple[float, Optional[int]]:
    """(wall seconds, peak CUDA bytes above those allocated before; None on CPU)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    peak = torch.cuda.max_memory_allocated(device) - before if cuda else None
    return seconds, peak


def measure(shapes: Sequence[Tuple[int, int, int]], variants: Sequence[str],
            num_probes: int, chunk_size: int, num_domains: int, repeats: int,
            device="cpu") -> List[dict]:
    device = torch.device(device)
    rows = []
    for shape in shapes:
        steps = {}
        for name in variants:
            steps[name] = make_step(shape, num_domains, VARIANTS[name], num_probes,
                                    chunk_size, device)
            _timed(steps[name], device)  # warm-up
        seconds = {name: [] for name in variants}
        peaks = {name: [] for name in variants}
        for _ in range(repeats):
            for name in variants:
                elapsed, peak = _timed(steps[name], device)
                seconds[name].append(elapsed)
                peaks[name].append(peak)
        reference = statistics.median(seconds[variants[0]])
        for name in variants:
            median = statistics.median(seconds[name])
            peak = None if peaks[name][0] is None else max(peaks[name]) / 2**20
            rows.append({"shape": shape, "variant": name, "seconds": median,
                         "ratio": median / reference, "peak_mib": peak})
        del steps
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def format_rows(rows: Sequence[dict], reference: str) -> str:
    memory = any(row.get("peak_mib") is not None for row in rows)
    lines = [f"| N per domain, C, D+1 | variant | s (fwd+bwd) | / {reference} |"
             + (" peak MiB |" if memory else ""),
             "|---|---|---|---|" + ("---|" if memory else "")]
    for row in rows:
        n, c, k = row["shape"]
        lines.append(f"| {n}, {c}, {k} | {row['variant']} | {row['seconds']:.3f} | "
                     f"{row['ratio']:.2f} |"
                     + (f" {row['peak_mib']:.1f} |" if memory else ""))
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
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.add_argument("--output", help="also write the rows to this .json file")
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
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        parser.error(f"unknown --device {args.device!r}; valid devices: cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here; valid devices: cpu")
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rows = measure(args.shapes, variants, args.probes, args.chunk_size,
                   args.num_domains, args.repeats, device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{args.threads} thread(s)")
    header = (f"# penalty cost: {args.num_domains} domains + the average-loss target, "
              f"S={args.probes}, chunks of {args.chunk_size}; torch {torch.__version__}, "
              f"{device} ({where}); median of {args.repeats}; "
              f"{time.perf_counter() - began:.0f} s")
    print(header)
    print(format_rows(rows, variants[0]))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"header": header, "arguments": {k: v for k, v in vars(args).items()},
                       "rows": rows}, handle, indent=1, default=str)
            handle.write("\n")
    return rows


if __name__ == "__main__":
    main()

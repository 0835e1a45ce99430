r"""Cost of one training step of HGP and Hutchinson, as a multiple of ERM's.

For each featurizer x head, every variant is built from DomainBed's default
hparams with the same seed and trained on the same synthetic batch (m domains x
``--batch_size`` images, random labels). Each variant runs ``--warmup`` untimed
calls of ``update()``; then ``--steps`` timed calls go round-robin over the
variants (one call of each per round), so that load from other processes, if it
drifts, weighs on all variants alike. The median is reported, beside its ratio
to ERM's in the same run.

Variants (``--variants``, comma-separated):

- ``erm``: DomainBed's own ``ERM``;
- ``hgp``, ``hutchinson-s<S>``, ``hutchinson-exact``: this project's algorithms
  (closed-form head curvature), S Rademacher probes per domain and S for the
  average loss;
- ``dbp-hgp``, ``dbp-hutchinson-s<S>``: the same objective computed the way the
  authors do, by double backprop (:class:`DoubleBackpropAlignment`): per-domain
  head gradients with ``create_graph=True``, ``H g = ||g|| grad ||g||`` through one
  more ``autograd.grad``, Hutchinson as a Python loop of S autograd
  Hessian-vector products, every probe kept in the graph.

Memory is the peak of live tensor bytes during one ``update()`` (how it is
measured on CPU and CUDA: :mod:`stepcost.measure`). The ResNets have random
weights (:func:`stepcost.variants.random_init_resnets`).

The parts live in the package ``benchmarks/stepcost``: variants (what is
measured), double_backprop and double_backprop_penalty (the reference),
measure (how), report (tables).

Usage::

    python benchmarks/step_cost.py                     # defaults for the device
    python benchmarks/step_cost.py --device cuda --featurizers resnet50 \
        --heads pacs,domainnet --batch_size 32 --output results.json
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for ``stepcost``

from stepcost.measure import log, measure_group  # noqa: E402
from stepcost.report import (  # noqa: E402
    check_targets,
    format_table,
    format_targets,
    machine_description,
    with_ratios,
    write_output,
)
from stepcost.variants import (  # noqa: E402
    DEFAULT_VARIANTS,
    FEATURIZERS,
    HEADS,
    VARIANT_FORMS,
    parse_variant,
    synthetic_minibatches,
)

# --- command line ------------------------------------------------------------------

#: Defaults per device type. On CPU a default run must finish within 10 minutes
#: on 2 cores: ResNet-18 at 8 images per domain, double-backprop probes capped,
#: one thread (on a small shared machine, two OpenMP threads turn every one of
#: the hundreds of small ops of a penalty into a wait for the busier core, and
#: the ratios then measure that wait rather than the work).
DEVICE_DEFAULTS = {
    "cuda": {"featurizers": "mnist_cnn,resnet18,resnet50", "batch_size": "32",
             "steps": 10, "warmup": 3, "max_seconds": 120.0, "dbp_max_probes": 0,
             "threads": None},
    "cpu": {"featurizers": "mnist_cnn,resnet18", "batch_size": "mnist_cnn=32,resnet18=8",
            "steps": 2, "warmup": 2, "max_seconds": 25.0, "dbp_max_probes": 30,
            "threads": 1},
}


def _names(text: str, known: dict, what: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown {what} {unknown or text!r}; choose from "
                         f"{', '.join(known)} (comma-separated)")
    return names


def parse_batch_sizes(text: str, featurizers: Sequence[str]) -> Dict[str, int]:
    """``"32"`` for every featurizer, or ``"mnist_cnn=32,resnet18=8"`` per featurizer.

    >>> parse_batch_sizes("16,resnet18=8", ["mnist_cnn", "resnet18"])
    {'mnist_cnn': 16, 'resnet18': 8}
    """
    sizes, default = {}, None
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.rpartition("=")
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1 or (sep and name not in FEATURIZERS):
            raise ValueError(f"--batch_size: {part!r} is neither a positive integer nor "
                             f"FEATURIZER=INT with FEATURIZER in {', '.join(FEATURIZERS)}")
        if sep:
            sizes[name] = number
        else:
            default = number
    missing = [f for f in featurizers if f not in sizes and default is None]
    if missing:
        raise ValueError(f"--batch_size gives no size for {missing}; add e.g. "
                         f"{missing[0]}=32 or a plain number for all")
    return {f: sizes.get(f, default) for f in featurizers}


def build_parser() -> argparse.ArgumentParser:
    cpu, cuda = DEVICE_DEFAULTS["cpu"], DEVICE_DEFAULTS["cuda"]
    parser = argparse.ArgumentParser(
        description="Seconds per update() and peak memory of HGP and Hutchinson "
                    "against ERM and a double-backprop formulation, as ratios to ERM.")
    parser.add_argument("--featurizers", help=f"comma-separated, from "
                        f"{', '.join(FEATURIZERS)} (default: CPU {cpu['featurizers']}; "
                        f"CUDA {cuda['featurizers']})")
    parser.add_argument("--heads", default="pacs,domainnet",
                        help=f"comma-separated, from {', '.join(HEADS)} "
                             f"(7 and 345 classes; default: both)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, of the forms {', '.join(VARIANT_FORMS)} "
                             f"(default: {','.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--batch_size", help="images per domain: an integer for all "
                        "featurizers, or FEATURIZER=INT,... (default: CPU "
                        f"{cpu['batch_size']}; CUDA {cuda['batch_size']})")
    parser.add_argument("--num_domains", type=int, default=3,
                        help="training domains per step (default: 3)")
    parser.add_argument("--steps", type=int, help="timed steps per variant, median "
                        f"reported (default: CPU {cpu['steps']}; CUDA {cuda['steps']})")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: CPU "
                        f"{cpu['warmup']}; CUDA {cuda['warmup']}); at least 2 when "
                        "memory is measured on CPU")
    parser.add_argument("--max_seconds", type=float,
                        help="wall-clock budget per variant: once spent, no further "
                             "warm-up or timed step starts (one timed step always "
                             f"runs; default: CPU {cpu['max_seconds']:g}; "
                             f"CUDA {cuda['max_seconds']:g})")
    parser.add_argument("--dbp_max_probes", type=int,
                        help="cap on the probes of dbp-hutchinson variants, 0 for none; "
                             "a capped row is a lower bound and is marked "
                             f"(default: CPU {cpu['dbp_max_probes']}; CUDA none)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="default: cuda if available, else cpu")
    parser.add_argument("--no_memory", dest="memory", action="store_false",
                        help="skip the memory measurement")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads during the run, 0 for torch's default "
                             f"(now {torch.get_num_threads()}); default: CPU 1, CUDA 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the results to this .json or .csv")
    return parser


def resolve_arguments(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.device = torch.device(args.device)
        if args.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda, but CUDA is not available; use --device cpu")
        defaults = DEVICE_DEFAULTS["cuda" if args.device.type == "cuda" else "cpu"]
        for name, value in defaults.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        if args.threads == 0:
            args.threads = None  # torch's default
        args.featurizers = _names(args.featurizers, FEATURIZERS, "featurizer")
        args.heads = _names(args.heads, HEADS, "head")
        args.variants = [parse_variant(v) for v in args.variants.split(",") if v.strip()]
        if not args.variants:
            raise ValueError("--variants is empty")
        args.batch_sizes = parse_batch_sizes(args.batch_size, args.featurizers)
        for name in ("steps", "num_domains"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
        if args.threads is not None and args.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {args.threads}")
        if args.warmup < 0 or args.dbp_max_probes < 0 or args.max_seconds <= 0:
            raise ValueError("--warmup and --dbp_max_probes must be >= 0, "
                             "--max_seconds > 0")
    except ValueError as error:
        parser.error(str(error))
    return args


@contextlib.contextmanager
def torch_threads(threads: Optional[int]):
    """Use ``threads`` torch CPU threads inside the block (None: leave as is)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def main(argv=None) -> List[dict]:
    """Run the benchmark and print its table to stdout; return the table's rows."""
    args = resolve_arguments(argv)
    with torch_threads(args.threads):
        return run(args)


def run(args: argparse.Namespace) -> List[dict]:
    if "erm" not in [v.name for v in args.variants]:
        log("step_cost: no 'erm' variant requested; ratio columns will be nan")
    machine = machine_description(args.device)
    log(f"step_cost: {machine}")
    began = time.perf_counter()
    measurements = []
    for featurizer_name in args.featurizers:
        for head_name in args.heads:
            minibatches = synthetic_minibatches(
                FEATURIZERS[featurizer_name], HEADS[head_name], args.num_domains,
                args.batch_sizes[featurizer_name], args.device, args.seed)
            measurements += measure_group(args.variants, featurizer_name, head_name,
                                          minibatches, args, args.device)
    rows = with_ratios(measurements)
    checks = check_targets(rows)
    memory_kind = ("not measured (--no_memory)" if not args.memory else
                   "torch.cuda.max_memory_allocated per timed step, less the other "
                   "variants' bytes" if args.device.type == "cuda" else
                   "peak live tensor bytes of one step, from torch.profiler "
                   "allocation events")
    print(f"# step cost: {args.num_domains} domains; device {machine['device']} "
          f"({machine.get('gpu', machine['cpu'])}, {machine['nproc']} cpus, "
          f"{machine['torch_threads']} torch threads); torch {machine['torch']}; "
          f"{machine['date']}; {time.perf_counter() - began:.0f} s")
    print("# time: median wall seconds per update() after warm-up"
          + ("; cpu time: process CPU seconds" if args.device.type == "cpu" else "")
          + f"; memory: {memory_kind}")
    print(format_table(rows, args.device.type))
    if checks:
        print("\ntargets:")
        print(format_targets(checks))
    if args.output:
        arguments = {k: (str(v) if isinstance(v, torch.device) else v)
                     for k, v in vars(args).items() if k != "variants"}
        arguments["variants"] = [v.name for v in args.variants]
        write_output(args.output, machine, arguments, rows, checks)
        log(f"step_cost: wrote {args.output}")
    return rows


if __name__ == "__main__":
    main()

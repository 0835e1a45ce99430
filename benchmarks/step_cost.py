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

Memory is the peak of live tensor bytes during one ``update()``, parameters,
buffers, optimizer state, gradients and the input batch included. On CUDA:
``torch.cuda.max_memory_allocated`` over each timed step, less what the other
(idle) variants hold, maximised over the timed steps. On CPU the same quantity
rebuilt from the allocation events of ``torch.profiler`` (``profile_memory=True``)
over the first two warm-up steps, the peak taken within the second, plus the
bytes of the parameters, buffers and inputs that existed before. Allocations made
outside PyTorch's allocator (oneDNN scratch space, Python objects) are not
counted. Process RSS is not used: the C allocator keeps freed memory mapped, so
RSS lags and overstates a step's own peak.

The ResNets are built by DomainBed's ``networks.ResNet`` with ImageNet loading
switched off (torchvision constructors called with ``weights=None`` while the
algorithm is built; see :func:`random_init_resnets`): timings do not depend on
the weights' values.

Usage::

    python benchmarks/step_cost.py                     # defaults for the device
    python benchmarks/step_cost.py --device cuda --featurizers resnet50 \
        --heads pacs,domainnet --batch_size 32 --output results.json
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import gc
import itertools
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from domainbed_patch.locate import ensure_domainbed_importable

ensure_domainbed_importable()

from domainbed import algorithms as domainbed_algorithms  # noqa: E402
from domainbed import hparams_registry, networks  # noqa: E402


# --- what is measured ----------------------------------------------------------

@dataclass(frozen=True)
class FeaturizerSpec:
    """A DomainBed featurizer, chosen by DomainBed from the input shape and hparams."""

    input_shape: tuple
    hparams: dict


@dataclass(frozen=True)
class HeadSpec:
    """A classifier head: the dataset whose class count and hparams it takes."""

    dataset: str
    num_classes: int


FEATURIZERS: Dict[str, FeaturizerSpec] = {
    "mnist_cnn": FeaturizerSpec((3, 28, 28), {}),
    "resnet18": FeaturizerSpec((3, 224, 224), {"resnet18": True,
                                               "resnet50_augmix": False}),
    "resnet50": FeaturizerSpec((3, 224, 224), {"resnet18": False,
                                               "resnet50_augmix": False}),
}

HEADS: Dict[str, HeadSpec] = {
    "pacs": HeadSpec("PACS", 7),
    "domainnet": HeadSpec("DomainNet", 345),
}


@dataclass(frozen=True)
class Variant:
    """One algorithm configuration: its DomainBed name, hparam overrides, builder."""

    name: str
    algorithm: str  # name in DomainBed's hparams registry
    overrides: dict
    double_backprop: Optional[str] = None  # "hgp" or "hutchinson" for the reference

    def build(self, input_shape, num_classes, num_domains, hparams, max_probes=None):
        if self.double_backprop is not None:
            return DoubleBackpropAlignment(input_shape, num_classes, num_domains,
                                           hparams, self.double_backprop, max_probes)
        cls = domainbed_algorithms.get_algorithm_class(self.algorithm)
        return cls(input_shape, num_classes, num_domains, hparams)


_VARIANT_PATTERNS = (
    (re.compile(r"erm"), lambda m: Variant("erm", "ERM", {})),
    (re.compile(r"hgp"), lambda m: Variant("hgp", "HGP", {})),
    (re.compile(r"hutchinson-s([1-9][0-9]*)"),
     lambda m: Variant(m.group(0), "Hutchinson",
                       {"hutchinson_samples": int(m.group(1))})),
    (re.compile(r"hutchinson-exact"),
     lambda m: Variant("hutchinson-exact", "Hutchinson", {"hutchinson_exact": True})),
    (re.compile(r"dbp-hgp"), lambda m: Variant("dbp-hgp", "HGP", {}, "hgp")),
    (re.compile(r"dbp-hutchinson-s([1-9][0-9]*)"),
     lambda m: Variant(m.group(0), "Hutchinson",
                       {"hutchinson_samples": int(m.group(1))}, "hutchinson")),
)

VARIANT_FORMS = ("erm", "hgp", "hutchinson-s<S>", "hutchinson-exact", "dbp-hgp",
                 "dbp-hutchinson-s<S>")

DEFAULT_VARIANTS = ("erm", "hgp", "hutchinson-s300", "hutchinson-s100",
                    "hutchinson-exact", "dbp-hgp", "dbp-hutchinson-s300")


def parse_variant(name: str) -> Variant:
    for pattern, make in _VARIANT_PATTERNS:
        match = pattern.fullmatch(name.strip())
        if match:
            return make(match)
    raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANT_FORMS)} "
                     f"(S a positive integer, e.g. hutchinson-s300)")


# --- the double-backprop reference ---------------------------------------------

class DoubleBackpropAlignment(domainbed_algorithms.Algorithm):
    r"""HGP or Hutchinson computed by double backprop, as the authors do.

    Minimises the objective of :mod:`hessian_dg.algorithms`,

        Lbar + (1/m) sum_e [alpha ||A_e - sg(Abar)||^2 + beta ||g_e - sg(gbar)||^2],

    with every head quantity obtained from autograd:

    - ``g_e = grad_theta L_e`` with ``create_graph=True``;
    - HGP: ``H g = ||g|| grad_theta ||g||``, one more ``autograd.grad``;
    - Hutchinson: a Python loop over S Rademacher probes ``z``, each
      ``H z = grad_theta <g, z>`` with ``create_graph=True`` and accumulated into
      ``(1/S) sum z * H z``; every probe's product stays in the graph until the
      backward pass.

    Targets (``gbar``, ``Abar``) come from the average loss on detached features
    and are detached. ``max_probes`` caps S (the benchmark's ``--dbp_max_probes``),
    to bound the cost of a run; the estimate then uses that many probes. Network and optimizer are built as DomainBed's ERM builds them.
    Used only as a cost reference; it is not registered with DomainBed.
    """

    def __init__(self, input_shape, num_classes, num_domains, hparams, curvature,
                 max_probes=None):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        if curvature not in ("hgp", "hutchinson"):
            raise ValueError(f"curvature must be 'hgp' or 'hutchinson', got {curvature!r}")
        self.curvature = curvature
        self.num_probes = self.hparams.get("hutchinson_samples")
        if max_probes is not None and self.num_probes is not None:
            self.num_probes = min(self.num_probes, max_probes)
        self.featurizer = networks.Featurizer(input_shape, self.hparams)
        self.classifier = networks.Classifier(
            self.featurizer.n_outputs, num_classes, self.hparams["nonlinear_classifier"])
        self.network = nn.Sequential(self.featurizer, self.classifier)
        self.optimizer = torch.optim.Adam(
            self.network.parameters(), lr=self.hparams["lr"],
            weight_decay=self.hparams["weight_decay"])
        self.probe_generator = None  # made on first use, on the parameters' device

    def _head_params(self):
        return [p for p in self.classifier.parameters() if p.requires_grad]

    def _hessian_gradient_product(self, grads, params):
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        norm_grads = torch.autograd.grad(norm, params, create_graph=True)
        return [norm * d for d in norm_grads]

    def _rademacher_like(self, p):
        if self.probe_generator is None or self.probe_generator.device != p.device:
            seed = int(torch.randint(0, 2**62, (1,)).item())
            self.probe_generator = torch.Generator(device=p.device).manual_seed(seed)
        bits = torch.randint(0, 2, p.shape, generator=self.probe_generator,
                             device=p.device)
        return bits.to(p.dtype) * 2 - 1

    def _hutchinson_diagonal(self, grads, params):
        num_probes = self.num_probes
        estimate = [torch.zeros_like(p) for p in params]
        for _ in range(num_probes):
            probes = [self._rademacher_like(p) for p in params]
            products = torch.autograd.grad(grads, params, grad_outputs=probes,
                                           create_graph=True)
            estimate = [e + z * hz for e, z, hz in zip(estimate, probes, products)]
        return [e / num_probes for e in estimate]

    def _curvature(self, grads, params):
        if self.curvature == "hgp":
            return self._hessian_gradient_product(grads, params)
        return self._hutchinson_diagonal(grads, params)

    def update(self, minibatches, unlabeled=None):
        ys = [y for _, y in minibatches]
        sizes = [len(y) for y in ys]
        m = len(sizes)
        features = self.featurizer(torch.cat([x for x, _ in minibatches]))
        logits = self.classifier(features)
        losses = [F.cross_entropy(z, y) for z, y in zip(logits.split(sizes), ys)]
        nll = sum(losses) / m
        alpha, beta = self.hparams["penalty_alpha"], self.hparams["penalty_beta"]

        params = self._head_params()
        average_logits = self.classifier(features.detach())
        average_loss = sum(F.cross_entropy(z, y) for z, y in
                           zip(average_logits.split(sizes), ys)) / m
        target_grads = torch.autograd.grad(average_loss, params, create_graph=True)
        target_curvature = [a.detach() for a in self._curvature(target_grads, params)]
        target_grads = [g.detach() for g in target_grads]

        penalty = nll.new_zeros(())
        for loss in losses:
            grads = torch.autograd.grad(loss, params, create_graph=True)
            curvature = self._curvature(grads, params)
            penalty = penalty + alpha * sum(((a - t) ** 2).sum() for a, t in
                                            zip(curvature, target_curvature))
            penalty = penalty + beta * sum(((g - t) ** 2).sum() for g, t in
                                           zip(grads, target_grads))
        penalty = penalty / m

        self.optimizer.zero_grad()
        (nll + penalty).backward()
        self.optimizer.step()
        nll_value, penalty_value = nll.item(), penalty.item()
        return {"loss": nll_value + penalty_value, "nll": nll_value,
                "penalty": penalty_value}

    def predict(self, x):
        return self.network(x)


# --- building ------------------------------------------------------------------

@contextlib.contextmanager
def random_init_resnets():
    """Make torchvision's ResNet constructors ignore ``pretrained``/``weights``.

    DomainBed's ``networks.ResNet`` asks for ImageNet weights, which would be
    downloaded; timing needs only the architecture. Restored on exit.
    """
    import torchvision.models as models

    names = ("resnet18", "resnet50")
    originals = {name: getattr(models, name) for name in names}

    def without_weights(constructor):
        def build(*args, pretrained=None, weights=None, **kwargs):
            return constructor(*args, weights=None, **kwargs)
        return build

    try:
        for name, constructor in originals.items():
            setattr(models, name, without_weights(constructor))
        yield
    finally:
        for name, constructor in originals.items():
            setattr(models, name, constructor)


def variant_hparams(variant: Variant, featurizer: FeaturizerSpec, head: HeadSpec) -> dict:
    hparams = hparams_registry.default_hparams(variant.algorithm, head.dataset)
    hparams.update(featurizer.hparams)
    hparams.update(variant.overrides)
    return hparams


def build_algorithm(variant: Variant, featurizer: FeaturizerSpec, head: HeadSpec,
                    num_domains: int, device: torch.device, seed: int,
                    max_probes: Optional[int] = None):
    torch.manual_seed(seed)
    hparams = variant_hparams(variant, featurizer, head)
    with random_init_resnets():
        algorithm = variant.build(featurizer.input_shape, head.num_classes,
                                  num_domains, hparams, max_probes)
    algorithm.to(device)
    algorithm.train()
    return algorithm


def synthetic_minibatches(featurizer: FeaturizerSpec, head: HeadSpec, num_domains: int,
                          batch_size: int, device: torch.device, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn((batch_size, *featurizer.input_shape), generator=generator).to(device),
             torch.randint(0, head.num_classes, (batch_size,), generator=generator).to(device))
            for _ in range(num_domains)]


# --- measuring -----------------------------------------------------------------

def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (shared ones counted once)."""
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        storages[(t.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def _timed_update(algorithm, minibatches, device) -> tuple:
    """(wall seconds, process CPU seconds, update's result) of one ``update()``."""
    _synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = algorithm.update(minibatches)
    _synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu, result


class CpuPeakMemory:
    """Peak live tensor bytes during one CPU ``update()``, from profiler events.

    Profiles two consecutive steps from the algorithm's first one; the peak is
    taken within the second (when optimizer state exists and the first step's
    gradients are still alive until ``zero_grad``, as in steady state). Live bytes
    at time t = bytes that existed before profiling and are never freed
    (parameters, buffers, inputs) + allocations minus frees recorded since
    profiling began.
    """

    MARK = "step_cost.measured_step"

    def __init__(self, algorithm, minibatches):
        self.static_bytes = _storage_bytes(
            list(algorithm.state_dict().values())
            + [t for batch in minibatches for t in batch])
        self._profile = torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)

    def __enter__(self):
        self._profile.__enter__()
        return self

    def __exit__(self, *exc):
        return self._profile.__exit__(*exc)

    def mark(self):
        return torch.profiler.record_function(self.MARK)

    def peak_bytes(self) -> int:
        events = self._profile.profiler.kineto_results.events()
        marks = [e for e in events if e.name() == self.MARK]
        if len(marks) != 1:
            raise RuntimeError(f"expected one profiled step, found {len(marks)}")
        start, end = marks[0].start_ns(), marks[0].end_ns()
        allocations = sorted((e.start_ns(), e.nbytes()) for e in events
                             if e.name() == "[memory]"
                             and e.device_type() == torch.autograd.DeviceType.CPU)
        live, peak = 0, None
        for t, nbytes in allocations:
            if t > end:
                break
            if t >= start and peak is None:
                peak = live
            live += nbytes
            if t >= start:
                peak = max(peak, live)
        return self.static_bytes + (live if peak is None else peak)


@dataclass
class Measurement:
    featurizer: str
    head: str
    batch_size: int
    variant: str
    seconds: List[float] = field(default_factory=list)
    cpu_seconds: List[float] = field(default_factory=list)
    warmup_steps: int = 0
    peak_bytes: Optional[int] = None
    penalty: Optional[float] = None
    probes_capped: bool = False
    notes: List[str] = field(default_factory=list)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds) if self.seconds else math.nan

    @property
    def median_cpu_seconds(self) -> float:
        return statistics.median(self.cpu_seconds) if self.cpu_seconds else math.nan

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20 if self.peak_bytes is not None else math.nan


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Contender:
    """One variant of a group while it is being measured."""

    def __init__(self, variant: Variant, algorithm, out: Measurement, label: str):
        self.variant, self.algorithm, self.out, self.label = variant, algorithm, out, label
        self.spent = 0.0  # wall seconds of its steps so far, warm-up included


def _step(contender: _Contender, minibatches, device) -> tuple:
    seconds, cpu_seconds, result = _timed_update(contender.algorithm, minibatches, device)
    values = [float(v) for v in result.values()]
    if not all(math.isfinite(v) for v in values):
        raise FloatingPointError(f"{contender.label}: non-finite update result {result}")
    contender.out.penalty = float(result.get("penalty", 0.0))
    contender.spent += seconds
    return seconds, cpu_seconds


def _prepare(variant: Variant, featurizer_name: str, head_name: str, minibatches,
             args, device: torch.device) -> _Contender:
    """Build one variant and run its warm-up (profiled for memory on CPU)."""
    featurizer, head = FEATURIZERS[featurizer_name], HEADS[head_name]
    batch_size = len(minibatches[0][1])
    out = Measurement(featurizer_name, head_name, batch_size, variant.name)
    label = f"[{featurizer_name}/{head_name}/b{batch_size}] {variant.name}"
    algorithm = build_algorithm(variant, featurizer, head, len(minibatches), device,
                                args.seed, args.dbp_max_probes or None)
    contender = _Contender(variant, algorithm, out, label)
    requested = variant.overrides.get("hutchinson_samples")
    if variant.double_backprop == "hutchinson" and algorithm.num_probes < requested:
        out.probes_capped = True
        out.notes.append(f"double-backprop probes capped at {algorithm.num_probes} of "
                         f"{requested} by --dbp_max_probes: time and memory are lower "
                         f"bounds for S={requested}")
    profiled = 2 if (args.memory and device.type == "cpu") else 0
    warmup = max(args.warmup, profiled)
    if warmup > args.warmup:
        out.notes.append(f"warm-up raised to {warmup} for the CPU memory measurement")
    if profiled:
        profiler = CpuPeakMemory(algorithm, minibatches)
        with profiler:
            for index in range(profiled):
                with profiler.mark() if index == 1 else contextlib.nullcontext():
                    seconds, _ = _step(contender, minibatches, device)
                out.warmup_steps += 1
                _log(f"{label}: warm-up {out.warmup_steps}/{warmup} {seconds:.3f} s "
                     f"(profiled for memory)")
        out.peak_bytes = profiler.peak_bytes()
    while out.warmup_steps < warmup:
        if out.warmup_steps >= max(profiled, 1) and contender.spent > args.max_seconds:
            out.notes.append(f"warm-up cut to {out.warmup_steps} by --max_seconds")
            break
        seconds, _ = _step(contender, minibatches, device)
        out.warmup_steps += 1
        _log(f"{label}: warm-up {out.warmup_steps}/{warmup} {seconds:.3f} s")
    return contender


def _own_bytes(algorithm, device: torch.device) -> int:
    """Bytes on ``device`` of an algorithm's parameters, buffers, gradients and
    optimizer state."""
    tensors = list(algorithm.state_dict().values())
    tensors += [p.grad for p in algorithm.parameters() if p.grad is not None]
    optimizer = getattr(algorithm, "optimizer", None)
    if optimizer is not None:
        tensors += [v for state in optimizer.state.values() for v in state.values()
                    if torch.is_tensor(v)]
    return _storage_bytes(t for t in tensors if t.device.type == device.type)


def measure_group(variants: Sequence[Variant], featurizer_name: str, head_name: str,
                  minibatches, args, device: torch.device) -> List[Measurement]:
    """Measure every variant on one featurizer x head x batch.

    All variants are built and warmed up first; timed steps then go round-robin
    (one step of each variant per round), so that load from other processes
    drifting over the run weighs on every variant alike. On CUDA, a step's peak
    is ``max_memory_allocated`` minus what the other, idle variants hold.
    """
    contenders = [_prepare(v, featurizer_name, head_name, minibatches, args, device)
                  for v in variants]
    cuda_memory = args.memory and device.type == "cuda"
    input_bytes = _storage_bytes(t for batch in minibatches for t in batch)
    for _ in range(args.steps):
        for c in contenders:
            if c.out.seconds and c.spent > args.max_seconds:
                continue
            if cuda_memory:
                _synchronize(device)
                others = (torch.cuda.memory_allocated(device)
                          - _own_bytes(c.algorithm, device))
                torch.cuda.reset_peak_memory_stats(device)
            seconds, cpu_seconds = _step(c, minibatches, device)
            if cuda_memory:
                peak = torch.cuda.max_memory_allocated(device) - others + input_bytes
                c.out.peak_bytes = max(c.out.peak_bytes or 0, peak)
            c.out.seconds.append(seconds)
            c.out.cpu_seconds.append(cpu_seconds)
            _log(f"{c.label}: step {len(c.out.seconds)}/{args.steps} {seconds:.3f} s")
    for c in contenders:
        if len(c.out.seconds) < args.steps:
            c.out.notes.append(f"timed steps cut to {len(c.out.seconds)} of {args.steps} "
                               f"by --max_seconds {args.max_seconds:g}")
    measurements = [c.out for c in contenders]
    del contenders
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return measurements


# --- reporting -------------------------------------------------------------------

def _ratio(value: float, reference: float) -> float:
    if not (math.isfinite(value) and math.isfinite(reference)) or reference <= 0:
        return math.nan
    return value / reference


def with_ratios(measurements: Sequence[Measurement]) -> List[dict]:
    """One row per measurement, with time and memory as ratios to ERM of its group."""
    erm = {(m.featurizer, m.head): m for m in measurements if m.variant == "erm"}
    rows = []
    for m in measurements:
        reference = erm.get((m.featurizer, m.head))
        row = asdict(m)
        row["timed_steps"] = len(m.seconds)
        row["seconds_per_step"] = m.median_seconds
        row["cpu_seconds_per_step"] = m.median_cpu_seconds
        row["peak_mib"] = m.peak_mib
        row["time_vs_erm"] = (_ratio(m.median_seconds, reference.median_seconds)
                              if reference else math.nan)
        row["cpu_time_vs_erm"] = (_ratio(m.median_cpu_seconds, reference.median_cpu_seconds)
                                  if reference else math.nan)
        row["memory_vs_erm"] = (_ratio(m.peak_mib, reference.peak_mib)
                                if reference else math.nan)
        row["notes"] = "; ".join(m.notes)
        rows.append(row)
    return rows


TABLE_COLUMNS = (
    ("featurizer", "featurizer", "{}"),
    ("head", "head", "{}"),
    ("batch_size", "batch/dom", "{}"),
    ("variant", "variant", "{}"),
    ("timed_steps", "steps", "{}"),
    ("seconds_per_step", "s/step", "{:.4f}"),
    ("time_vs_erm", "time/ERM", "{:.3f}"),
    ("cpu_time_vs_erm", "cpu time/ERM", "{:.3f}"),
    ("peak_mib", "peak MiB", "{:.1f}"),
    ("memory_vs_erm", "mem/ERM", "{:.3f}"),
)

#: Columns shown only for some devices: process CPU time means little on CUDA.
CPU_ONLY_COLUMNS = ("cpu_time_vs_erm",)


def format_table(rows: Sequence[dict], device_type: str = "cpu") -> str:
    """A Markdown table of the rows, notes as numbered footnotes."""
    columns = [c for c in TABLE_COLUMNS
               if device_type == "cpu" or c[0] not in CPU_ONLY_COLUMNS]
    header = [title for _, title, _ in columns] + ["note"]
    body, notes = [], []
    for row in rows:
        cells = [fmt.format(row[key]) for key, _, fmt in columns]
        if row["notes"]:
            if row["notes"] not in notes:
                notes.append(row["notes"])
            cells.append(f"[{notes.index(row['notes']) + 1}]")
        else:
            cells.append("")
        body.append(cells)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
             for cells in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """``variant``'s time or memory against ``reference``'s, with a bound."""

    text: str
    variant: str
    reference: str
    quantity: str  # "time" or "memory"
    bound: float
    at_most: bool  # True: ratio <= bound; False: ratio >= bound


TARGETS = (
    Target("HGP time <= 1.10 x ERM", "hgp", "erm", "time", 1.10, True),
    Target("Hutchinson S=300 time <= 1.25 x ERM", "hutchinson-s300", "erm", "time",
           1.25, True),
    Target("double backprop S=300 time >= 10 x closed-form S=300", "dbp-hutchinson-s300",
           "hutchinson-s300", "time", 10.0, False),
    Target("HGP memory <= 1.10 x ERM", "hgp", "erm", "memory", 1.10, True),
    Target("Hutchinson S=300 memory <= 1.10 x ERM", "hutchinson-s300", "erm", "memory",
           1.10, True),
)


def check_targets(rows: Sequence[dict]) -> List[dict]:
    """The project's cost targets, evaluated on each ResNet featurizer x head.

    A capped double-backprop row is a lower bound: a ">=" target it meets is met,
    one it misses is undecided (``met`` None).
    """
    by_key = {(r["featurizer"], r["head"], r["variant"]): r for r in rows}
    groups = sorted({(r["featurizer"], r["head"]) for r in rows
                     if r["featurizer"].startswith("resnet")})
    checks = []
    for (featurizer, head), target in itertools.product(groups, TARGETS):
        a = by_key.get((featurizer, head, target.variant))
        b = by_key.get((featurizer, head, target.reference))
        if a is None or b is None:
            continue
        column = "seconds_per_step" if target.quantity == "time" else "peak_mib"
        ratio = _ratio(a[column], b[column])
        met = None
        if math.isfinite(ratio):
            met = ratio <= target.bound if target.at_most else ratio >= target.bound
            if a["probes_capped"] and not met:
                met = None
        check = {"featurizer": featurizer, "head": head, "target": target.text,
                 "ratio": ratio, "met": met, "lower_bound": a["probes_capped"]}
        erm = by_key.get((featurizer, head, "erm"))
        if target.quantity == "time" and target.reference != "erm" and erm is not None:
            # A whole-step ratio cannot exceed (ERM + penalty) / ERM: also report
            # the ratio of the two penalties' own costs (time over ERM's).
            check["over_erm_ratio"] = _ratio(a[column] - erm[column],
                                             b[column] - erm[column])
        checks.append(check)
    return checks


def format_targets(checks: Sequence[dict]) -> str:
    def status(check):
        if check["met"] is None:
            return "undecided: ratio from a probe-capped lower bound" \
                if check["lower_bound"] else "n/a"
        return ("met" if check["met"] else "MISSED") + \
            (" (from a probe-capped lower bound)" if check["lower_bound"] else "")

    def extra(check):
        if "over_erm_ratio" not in check:
            return ""
        if not math.isfinite(check["over_erm_ratio"]):
            return "; time over ERM's: not positive for the reference, no ratio"
        return f"; time over ERM's, ratio of the two: {check['over_erm_ratio']:.3f}"

    return "\n".join(f"- {c['featurizer']}/{c['head']}: {c['target']}: "
                     f"{c['ratio']:.3f} ({status(c)}){extra(c)}" for c in checks)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_description(device: torch.device) -> dict:
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "torch": torch.__version__, "device": str(device),
            "cpu": cpu_model(), "nproc": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_output(path: str, machine: dict, arguments: dict, rows: Sequence[dict],
                 checks: Sequence[dict]) -> None:
    """Rows as CSV (``.csv``), else everything as JSON."""
    if path.endswith(".csv"):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        with open(path, "w") as f:
            json.dump({"machine": machine, "arguments": arguments, "results": rows,
                       "targets": checks}, f, indent=2, default=str)
            f.write("\n")


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
        _log("step_cost: no 'erm' variant requested; ratio columns will be nan")
    machine = machine_description(args.device)
    _log(f"step_cost: {machine}")
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
    print(f"# time: median wall seconds per update() after warm-up"
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
        _log(f"step_cost: wrote {args.output}")
    return rows


if __name__ == "__main__":
    main()

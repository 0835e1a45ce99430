"""How it is measured: timed ``update()`` calls, round-robin, and peak memory.

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
"""
from __future__ import annotations

import contextlib
import gc
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch

from stepcost.variants import FEATURIZERS, HEADS, Variant, build_algorithm


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


def log(message: str) -> None:
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
                log(f"{label}: warm-up {out.warmup_steps}/{warmup} {seconds:.3f} s "
                     f"(profiled for memory)")
        out.peak_bytes = profiler.peak_bytes()
    while out.warmup_steps < warmup:
        if out.warmup_steps >= max(profiled, 1) and contender.spent > args.max_seconds:
            out.notes.append(f"warm-up cut to {out.warmup_steps} by --max_seconds")
            break
        seconds, _ = _step(contender, minibatches, device)
        out.warmup_steps += 1
        log(f"{label}: warm-up {out.warmup_steps}/{warmup} {seconds:.3f} s")
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
            log(f"{c.label}: step {len(c.out.seconds)}/{args.steps} {seconds:.3f} s")
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

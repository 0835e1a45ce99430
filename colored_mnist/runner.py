"""Algorithms x restarts, in parallel processes, each restart saved as it finishes.

A job is one (algorithm, restart). Its result is written at once, atomically, to

    <output_dir>/<setting>/<algorithm>/restart_<r>.json

together with its identity (:func:`job_identity`: the settings, the seeds and
seeding scheme, and the fingerprint of the data it trained on) and its
provenance (software versions, device). A later run over the same ``output_dir``,
on this machine or another, skips every job whose file holds the same identity,
so a killed run resumes with the missing restarts only; a file of *another*
identity stops the run with one line rather than mixing results; a file that is
not a saved restart (corrupt, tampered with) is named in a warning and run again. Planning reads
no data: the data's fingerprint is checked once data is loaded for the jobs still
to run (a run with nothing left to train needs no data at all). A job that
raises is reported (its traceback goes to ``restart_<r>.error.txt`` beside) and
the others go on; jobs caught in a worker process that died are tried once more
in a fresh pool.

Workers are spawned processes (``--workers``, default ``min(cores, jobs)``), each
with ``--threads`` torch threads (default ``max(1, cores // workers)``); with one
worker the jobs run in this process.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing import get_context
from typing import Dict, List, Optional, Tuple

import torch

from colored_mnist import sources
from colored_mnist.errors import UsageError
from colored_mnist.penalties import ALGORITHMS
from colored_mnist.report import read_result
from colored_mnist.train import SEEDING, RestartSeeds, TrainConfig, train_restart


@dataclass
class RunSpec:
    """Everything a job needs, picklable for the worker processes."""

    dataset: str
    data_dir: Optional[str]
    output_dir: str
    config: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    train_size: Optional[int] = None
    val_size: int = 10_000
    device: str = "cpu"
    #: :func:`colored_mnist.sources.fingerprint` of the data, once it is loaded.
    data_fingerprint: Optional[str] = None
    #: :func:`code_commit` when the run started: the code its restarts ran, however
    #: long they take (HEAD may move while they train).
    code_commit: Optional[str] = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def result_path(output_dir: str, setting: str, algorithm: str, restart: int) -> str:
    return os.path.join(output_dir, setting, algorithm, f"restart_{restart}.json")


def job_identity(spec: RunSpec, algorithm: str, restart: int) -> dict:
    """What a job's result depends on; a saved one is reused only if equal.

    The settings, the data and probe seeds with the seeding scheme's name
    (:data:`colored_mnist.train.SEEDING`), and, once known, the data's fingerprint
    (key ``data``). Software versions and the device are provenance, not identity:
    a restart made on another machine is reused.
    """
    config = spec.config.to_dict()
    seeds = RestartSeeds.of(spec.seed, restart)
    identity = {"algorithm": algorithm, "restart": restart, "base_seed": spec.seed,
                "seeding": SEEDING, "seed": seeds.data, "dataset": spec.dataset,
                "train_size": spec.train_size, "val_size": spec.val_size}
    if ALGORITHMS[algorithm].uses_probes:
        config["hutchinson_samples"] = spec.config.probes()
        identity["probe_seed"] = seeds.probes
    else:
        config.pop("hutchinson_samples")
    identity["config"] = config
    if spec.data_fingerprint is not None:
        identity["data"] = spec.data_fingerprint
    return identity


def provenance(device: str, commit: Optional[str] = None) -> dict:
    """What made a result: versions of the software, the device's name, and
    ``commit`` (:func:`code_commit` at the run's start; now, if not given)."""
    import platform

    import numpy

    from hessian_dg import __version__

    name = platform.processor() or platform.machine()
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "hessian_dg": __version__,
            "hessian_dg_commit": commit or code_commit(), "device": device,
            "device_name": name,
            "cuda": torch.version.cuda if device.startswith("cuda") else None}


def code_commit(root: Optional[str] = None) -> Optional[str]:
    """The project's git commit, when it runs from its own checkout (else None), with
    ``+dirty`` where tracked files of the code that trains (``colored_mnist/``,
    ``hessian_dg/``) differ from it, ``+unverified`` where git cannot say. (The
    bridge's :func:`domainbed_patch.provenance.project_commit` does the same for its
    jobs; neither package may import the other.)"""
    import subprocess

    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")):  # an installed copy
        return None
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        changed = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                  "--untracked-files=no", "--", "colored_mnist", "hessian_dg"],
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    if changed.returncode != 0:
        return head.stdout.strip() + "+unverified"
    return head.stdout.strip() + ("+dirty" if changed.stdout.strip() else "")


def write_json_atomic(path: str, payload: dict) -> None:
    """Write to a temporary file, then rename: a killed writer leaves no half file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=1)
    os.replace(temporary, path)


def plan(spec: RunSpec, algorithms: List[str], restarts: int
         ) -> Tuple[List[Tuple[str, int]], List[Tuple[str, int]]]:
    """``(done, pending)`` jobs; UsageError on a saved result of another identity.

    Without ``spec.data_fingerprint`` the saved data fingerprints are not compared.
    """
    done, pending = [], []
    for restart in range(restarts):  # restart-major: partial runs cover every algorithm
        for algorithm in algorithms:
            path = result_path(spec.output_dir, spec.config.setting, algorithm, restart)
            saved = _read_saved(path)[0] if os.path.exists(path) else None
            if saved is None:  # missing or not a saved restart: it runs again
                pending.append((algorithm, restart))
                continue
            wanted = job_identity(spec, algorithm, restart)
            found = dict(saved["identity"])
            if "data" not in wanted:
                found.pop("data", None)
            if found != wanted:
                differ = _differences(found, wanted)
                raise UsageError(f"{path} was made with other settings ({differ}); use "
                                 "another --output_dir or delete the old results")
            done.append((algorithm, restart))
    return done, pending


def _read_saved(path: str):
    """``(result, None)`` for a saved restart with an identity, else ``(None, why)``."""
    result, problem = read_result(path)
    if problem is None:
        identity = result.get("identity")
        if not isinstance(identity, dict) or not isinstance(identity.get("config"), dict):
            return None, "no 'identity' object with a 'config' object"
    return result, problem


def unreadable_results(spec: RunSpec, jobs: List[Tuple[str, int]]) -> List[Tuple[str, str]]:
    """``(path, why)`` for each of ``jobs`` whose file exists but is not a saved
    restart (corrupt, tampered with): :func:`plan` runs those again."""
    found = []
    for algorithm, restart in jobs:
        path = result_path(spec.output_dir, spec.config.setting, algorithm, restart)
        if os.path.exists(path):
            problem = _read_saved(path)[1]
            if problem is not None:
                found.append((path, problem))
    return found


def _differences(old: dict, new: dict) -> str:
    flat_old = {**old.get("config", {}), **{k: v for k, v in old.items() if k != "config"}}
    flat_new = {**new["config"], **{k: v for k, v in new.items() if k != "config"}}
    keys = sorted(set(flat_old) | set(flat_new))
    return ", ".join(f"{k}: {flat_old.get(k)!r} there, {flat_new.get(k)!r} now"
                     for k in keys if flat_old.get(k) != flat_new.get(k))


@lru_cache(maxsize=2)
def load_data(dataset: str, data_dir: Optional[str]):
    """The dataset's training split, read once per process."""
    return sources.load(dataset, data_dir)


def run_job(spec: RunSpec, algorithm: str, restart: int, threads: int) -> dict:
    """Train one restart and save it; returns its result, or the failure as a dict."""
    path = result_path(spec.output_dir, spec.config.setting, algorithm, restart)
    error_path = path[:-len(".json")] + ".error.txt"
    try:
        torch.set_num_threads(threads)
        images, classes = load_data(spec.dataset, spec.data_dir)
        if spec.data_fingerprint is None:
            spec.data_fingerprint = sources.fingerprint(images, classes)
        identity = job_identity(spec, algorithm, restart)
        result = train_restart(images, classes, algorithm, spec.config,
                               RestartSeeds.of(spec.seed, restart), spec.val_size,
                               spec.train_size, spec.device)
        result.update({"restart": restart, "setting": spec.config.setting,
                       "identity": identity,
                       "provenance": provenance(spec.device, spec.code_commit)})
        write_json_atomic(path, result)
        if os.path.exists(error_path):
            os.remove(error_path)
        return result
    except Exception as error:  # noqa: BLE001 - one failed restart must not stop the others
        text = traceback.format_exc()
        try:
            os.makedirs(os.path.dirname(error_path), exist_ok=True)
            with open(error_path, "w") as handle:
                handle.write(text)
        except OSError:
            pass
        return {"algorithm": algorithm, "restart": restart,
                "error": f"{type(error).__name__}: {error}", "error_file": error_path}


def describe(result: dict) -> str:
    """One line for a finished job."""
    head = f"{result['algorithm']} restart {result['restart']}"
    if "error" in result:
        return f"{head}: FAILED ({result['error']}; see {result['error_file']})"
    final = result["final"]
    return (f"{head}: train {100 * final['train_acc']:.1f}  test "
            f"{100 * final['test_acc']:.1f}  gray {100 * final['gray_test_acc']:.1f}  "
            f"({result['seconds']:.0f} s, {result['threads']} threads)")


class Progress:
    """A tqdm bar on a terminal; otherwise one plain line per finished job."""

    def __init__(self, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="restart", file=self.stream)
            except ImportError:
                pass
        self.count, self.total = 0, total

    def finished(self, line: str) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
            self.bar.update(1)
        else:
            print(f"[{self.count}/{self.total}] {line}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Interrupted(Exception):
    """Ctrl-C stopped :func:`run_jobs`; ``results`` holds the jobs that had ended."""

    def __init__(self, results: Dict[tuple, dict]):
        super().__init__("interrupted")
        self.results = results


@contextlib.contextmanager
def _sigint_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _stopped_on_interrupt(pool: ProcessPoolExecutor, results: Dict[tuple, dict]):
    """On Ctrl-C: no queued job starts, the workers end (their restarts in progress
    are lost: nothing partial is saved), :class:`Interrupted` is raised."""
    try:
        yield
    except KeyboardInterrupt:
        workers = list((getattr(pool, "_processes", None) or {}).values())  # private
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        raise Interrupted(results) from None


def run_jobs(spec: RunSpec, jobs: List[Tuple[str, int]], workers: int,
             threads: int, progress: Optional[Progress] = None) -> Dict[tuple, dict]:
    """Run ``jobs``; every result (or failure) by job."""
    progress = progress or Progress(len(jobs))
    results: Dict[tuple, dict] = {}

    def record(job, result):
        results[job] = result
        progress.finished(describe(result))

    try:
        if workers <= 1:
            try:
                for job in jobs:
                    record(job, run_job(spec, *job, threads))
            except KeyboardInterrupt:
                raise Interrupted(results) from None
            return results
        remaining = list(jobs)
        for attempt in range(2):
            if not remaining:
                break
            with ProcessPoolExecutor(max_workers=min(workers, len(remaining)),
                                     mp_context=get_context("spawn")) as pool, \
                    _stopped_on_interrupt(pool, results):
                with _sigint_ignored():  # workers inherit it: Ctrl-C reaches this process
                    futures = {pool.submit(run_job, spec, *job, threads): job
                               for job in remaining}
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        record(job, future.result())
                    except BrokenProcessPool:
                        if attempt == 1:
                            record(job, {"algorithm": job[0], "restart": job[1],
                                         "error": "its worker process died (killed, or "
                                         "out of memory?)", "error_file": "-"})
            remaining = [job for job in remaining if job not in results]
        return results
    finally:
        progress.close()

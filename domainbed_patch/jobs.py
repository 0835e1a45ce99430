"""The jobs of a sweep: DomainBed's expansion and folder hashing, plus a failed state.

Jobs are expanded by DomainBed's own ``sweep.make_args_list`` and named by its
``sweep.Job`` (a hash of the arguments). Per job, the protocol's fixed hparams
(:mod:`domainbed_patch.protocol`) and the preset's ``[hparams]`` are merged into
``--hparams``, which enters the hash. So a sweep's folders are those of
``python -m domainbed.scripts.sweep`` with the same arguments only under
``protocol = "upstream"`` with no ``[hparams]`` (nothing is fixed). Under the
default ``"paper"`` protocol every job fixes hparams (``freeze_bn``,
``resnet50_augmix`` and, for drawn hparams, its own batch size), which no single
``--hparams`` of DomainBed's sweep gives: no folder is shared.

A job's folder, its files and its states (done, failed, incomplete, not launched,
done without results) and what an incomplete job's attempt is (running, on another
host, interrupted or killed) are :mod:`domainbed_patch.job_folder`'s.
"""
from __future__ import annotations

import collections
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from domainbed_patch import protocol as protocols
from domainbed_patch.job_folder import (  # noqa: F401 - the states, for users of jobs
    ATTEMPTS,
    DONE,
    DONE_NO_RESULTS,
    FAILED,
    INCOMPLETE,
    NOT_LAUNCHED,
    OTHER_HOST,
    RUNNING,
    STATES,
    STOPPED,
    JobFolder,
)


@dataclass
class SweepJob:
    """One training run: DomainBed's train arguments and where it writes."""

    train_args: dict
    output_dir: Path
    runner_flags: tuple = ()  #: for the job runner only: never part of the folder hash

    @property
    def folder(self) -> JobFolder:
        return JobFolder(self.output_dir)

    @property
    def state(self) -> str:
        return self.folder.state

    @property
    def attempt(self) -> str:
        """For an incomplete job: running, on another host, or interrupted or killed."""
        return self.folder.attempt

    def command(self) -> List[str]:
        """The job as an argv: DomainBed's train behind the failure-recording runner,
        its ``--key value`` flags in sorted key order."""
        argv = [sys.executable, "-m", "domainbed_patch.job_runner", *self.runner_flags]
        for key, value in sorted(self.train_args.items()):
            argv += [f"--{key}", *map(str, value if isinstance(value, list) else [value])]
        return argv

    def last_error_line(self) -> str:
        """Last non-empty line of the job's error log ('' if none)."""
        return self.folder.last_error_line()

    def describe(self) -> str:
        a = self.train_args
        return (f"{a['dataset']} {a['algorithm']} test_envs={a['test_envs']} "
                f"hparams_seed={a['hparams_seed']} trial_seed={a['trial_seed']}")


def make_jobs(preset, runner_flags: tuple = ()) -> List[SweepJob]:
    """Expand a :class:`~domainbed_patch.presets.SweepPreset` into jobs; each job
    runner also gets ``runner_flags`` (``--provenance JSON``), after the in-job
    diagnostics' flag and outside the folder hash."""
    from domainbed.scripts import sweep as domainbed_sweep
    data_dir = os.path.abspath(preset.data_dir) if preset.data_dir else ""
    output_dir = os.path.abspath(preset.output_dir)
    args_list = domainbed_sweep.make_args_list(
        n_trials=preset.n_trials, dataset_names=list(preset.datasets),
        algorithms=list(preset.algorithms), n_hparams_from=preset.n_hparams_from,
        n_hparams=preset.n_hparams, steps=preset.steps, data_dir=data_dir,
        task=preset.task, holdout_fraction=preset.holdout_fraction,
        single_test_envs=preset.single_test_envs, hparams=None)
    if preset.test_envs:
        wanted = {tuple(e) for e in preset.test_envs}
        args_list = [a for a in args_list if tuple(a["test_envs"]) in wanted]
    for a in args_list:
        fixed = protocols.fixed_hparams(preset.protocol, a["dataset"], a["algorithm"],
                                        a["hparams_seed"], a["trial_seed"], preset.hparams)
        if fixed:
            a["hparams"] = json.dumps(fixed, sort_keys=True)
    jobs = [domainbed_sweep.Job(a, output_dir) for a in args_list]
    flags = (("--diagnose_max_examples", str(preset.diagnose_max_examples))
             if preset.diagnose else ()) + tuple(runner_flags)
    return [SweepJob(job.train_args, Path(job.output_dir), flags) for job in jobs]


def job_hparams(job: SweepJob) -> dict:
    """The hparams DomainBed's train will use for this job (registry, then the job's
    ``--hparams``, which already hold what the protocol fixes)."""
    a = job.train_args
    overrides = json.loads(a.get("hparams") or "{}")
    return protocols.resolve_hparams(a["algorithm"], a["dataset"], a["hparams_seed"],
                                     a["trial_seed"], overrides=overrides)


def summary_line(jobs) -> str:
    """``N jobs: a done, b failed, c incomplete (...), d not launched[, e done without
    results]``: the incomplete ones split by attempt, the last state only if any."""
    states = [job.state for job in jobs]
    counts = collections.Counter(states)
    parts = [f"{counts.get(s, 0)} {s}" for s in STATES if s != DONE_NO_RESULTS]
    if counts[INCOMPLETE]:
        attempts = collections.Counter(job.attempt for job, state in zip(jobs, states)
                                       if state == INCOMPLETE)
        parts[STATES.index(INCOMPLETE)] += " (" + ", ".join(
            f"{attempts[a]} {a}" for a in ATTEMPTS if attempts[a]) + ")"
    if counts[DONE_NO_RESULTS]:
        parts.append(f"{counts[DONE_NO_RESULTS]} {DONE_NO_RESULTS}")
    return f"{len(jobs)} jobs: " + ", ".join(parts)


def find_jobs(jobs, state: str) -> List[SweepJob]:
    return [job for job in jobs if job.state == state]


def default_steps(dataset: str, steps: Optional[int]) -> int:
    """Steps a job of ``dataset`` runs: the preset's, else DomainBed's N_STEPS."""
    if steps is not None:
        return steps
    from domainbed import datasets
    return datasets.get_dataset_class(dataset).N_STEPS

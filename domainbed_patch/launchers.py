"""Launchers: how a list of jobs gets run.

- DomainBed's own (``local``, ``dummy``, ``multi_gpu``), called with command strings
  exactly as DomainBed's sweep calls them;
- ``local_parallel``: this machine, ``max_parallel`` jobs at a time, job output in
  each job's folder, a progress bar here; threads per job split the CPU cores;
- ``slurm``: Slurm through submitit, as one job array (``max_concurrent`` at a time),
  requeued on preemption or timeout (a requeued job restarts cleanly, see
  :mod:`domainbed_patch.job_runner`);
- ``submitit_local``: submitit's local executor (same code path as ``slurm``, for
  testing a cluster set-up on one machine); waits for its jobs.

A job that fails never stops the others: each job is its own process.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Dict, List

from domainbed_patch.job_folder import DONE, FAILED
from domainbed_patch.validation import UsageError


def _domainbed_registry() -> dict:
    from domainbed import command_launchers
    return command_launchers.REGISTRY


def _run_with_domainbed(name: str, jobs, settings, log_dir) -> None:
    """DomainBed's launcher ``name``, given command strings as DomainBed's sweep gives them."""
    _domainbed_registry()[name]([shlex.join(job.command()) for job in jobs])


def local_parallel(jobs, settings, log_dir) -> None:
    """Run on this machine, ``max_parallel`` at a time, with a progress bar."""
    import tqdm
    parallel = int(settings.get("max_parallel", 1))
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel)), **os.environ}
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])

    counts = collections.Counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool, \
            tqdm.tqdm(total=len(jobs), unit="job", desc="sweep") as bar:
        running = {pool.submit(subprocess.run, job.command(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env, check=False): job
                   for job in jobs}
        for future in as_completed(running):
            future.result()  # raises what the job's thread raised
            counts[running[future].state] += 1
            bar.set_postfix(done=counts[DONE], failed=counts[FAILED])
            bar.update(1)


class TrainCommand:
    """A picklable job body for submitit: runs one job's command; ``checkpoint``
    requeues it on preemption or timeout (the job runner clears the partial attempt)."""

    def __call__(self, command: List[str]) -> int:
        return subprocess.run(command, check=False).returncode

    def checkpoint(self, command: List[str]):
        import submitit
        return submitit.helpers.DelayedSubmission(TrainCommand(), command)


#: [launcher] field -> submitit parameter.
SUBMITIT_PARAMETERS = {
    "time_limit_minutes": "timeout_min", "gpus_per_job": "gpus_per_node",
    "cpus_per_job": "cpus_per_task", "mem_gb": "mem_gb", "partition": "slurm_partition",
    "max_concurrent": "slurm_array_parallelism", "account": "slurm_account"}


def submitit_parameters(settings: dict, cluster: str) -> dict:
    """submitit's ``update_parameters`` keywords for a ``[launcher]`` table."""
    names = {field: parameter for field, parameter in SUBMITIT_PARAMETERS.items()
             if cluster == "slurm" or not parameter.startswith("slurm_")}
    return {"name": "hessian-dg", **{names[k]: v for k, v in settings.items() if k in names}}


def submitit_executor(settings: dict, log_dir: Path, cluster: str):
    import submitit
    executor = submitit.AutoExecutor(folder=str(log_dir), cluster=cluster)
    executor.update_parameters(**submitit_parameters(settings, cluster))
    return executor


def _submit(jobs, settings, log_dir, cluster):
    return submitit_executor(settings, log_dir, cluster).map_array(
        TrainCommand(), [job.command() for job in jobs])


def slurm(jobs, settings, log_dir) -> None:
    """Submit one Slurm job array through submitit; returns once submitted."""
    submitted = _submit(jobs, settings, log_dir, "slurm")
    if submitted:
        print(f"Submitted {len(submitted)} Slurm jobs (array {submitted[0].job_id.split('_')[0]}); "
              f"logs in {log_dir}. Follow with `hessian-dg sweep status`.")


def submitit_local(jobs, settings, log_dir) -> None:
    """submitit's local executor; waits for every job, with a progress bar."""
    import tqdm
    submitted = _submit(jobs, settings, log_dir, "local")
    with tqdm.tqdm(total=len(submitted), unit="job", desc="sweep") as bar:
        for job in submitted:
            with contextlib.suppress(Exception):  # the job's log says why; status reports it
                job.result()
            bar.update(1)


OUR_LAUNCHERS: Dict[str, Callable] = {
    "local_parallel": local_parallel, "slurm": slurm, "submitit_local": submitit_local}
#: launchers that return only when their jobs have ended.
BLOCKING = ("local", "local_parallel", "submitit_local", "multi_gpu")


def launcher_names() -> List[str]:
    return sorted(set(OUR_LAUNCHERS) | set(_domainbed_registry()))


def get_launcher(name: str) -> Callable:
    if name in OUR_LAUNCHERS:
        return OUR_LAUNCHERS[name]
    if name in _domainbed_registry():
        return functools.partial(_run_with_domainbed, name)
    raise UsageError(f"unknown launcher {name!r}; valid launchers: "
                     f"{', '.join(launcher_names())}")

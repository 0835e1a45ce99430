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

Ctrl-C (SIGINT; the terminal sends it to the launcher and its jobs alike) stops
launching: no queued job starts. A blocking launcher then stops its running jobs
with SIGINT (``local_parallel``: each job; ``submitit_local``: each job's
controller, which passes it on), waits up to :data:`STOP_GRACE_S` seconds for them
to write down that they were interrupted (a second Ctrl-C or the end of the wait
kills them) and raises ``KeyboardInterrupt`` for the sweep command to report.
DomainBed's ``local`` runs one job at a time with ``subprocess.call``, which kills
that job when the launcher is interrupted; DomainBed's ``multi_gpu`` leaves its
jobs to the terminal's signal. An interrupted or killed job runs again on the
next launch (:mod:`domainbed_patch.job_runner`).
"""
from __future__ import annotations

import collections
import contextlib
import functools
import os
import shlex
import signal
import subprocess
import sys
import time
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


#: Seconds an interrupted launcher waits for its running jobs to stop.
STOP_GRACE_S = 30.0
POLL_S = 0.2


def stop_processes(processes, grace: float = STOP_GRACE_S) -> None:
    """SIGINT to each live process, then wait up to ``grace`` seconds; kill what is
    left (or everything, on another Ctrl-C)."""
    live = [p for p in processes if p.poll() is None]
    for process in live:
        with contextlib.suppress(OSError):
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    try:
        for process in live:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        for process in live:
            with contextlib.suppress(OSError):
                process.kill()
            process.wait()


def local_parallel(jobs, settings, log_dir) -> None:
    """Run on this machine, ``max_parallel`` at a time, with a progress bar; on Ctrl-C
    start no more and stop the running ones (see the module)."""
    import tqdm
    parallel = int(settings.get("max_parallel", 1))
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel)), **os.environ}
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])

    counts, queue, running = collections.Counter(), list(jobs), {}
    with tqdm.tqdm(total=len(jobs), unit="job", desc="sweep") as bar:
        try:
            while queue or running:
                while queue and len(running) < parallel:
                    job = queue.pop(0)
                    process = subprocess.Popen(job.command(), stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, env=env)
                    running[process] = job
                for process in [p for p in running if p.poll() is not None]:
                    counts[running.pop(process).state] += 1
                    bar.set_postfix(done=counts[DONE], failed=counts[FAILED])
                    bar.update(1)
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            stop_processes(running)
            raise


class TrainCommand:
    """A picklable job body for submitit: runs one job's command; ``checkpoint``
    requeues it on preemption or timeout (the job runner clears the partial attempt).
    An interrupt here is passed on to the job, which records it."""

    def __call__(self, command: List[str]) -> int:
        process = subprocess.Popen(command)
        try:
            return process.wait()
        except BaseException:  # Ctrl-C, or submitit's requeue (SystemExit on timeout):
            stop_processes([process])  # the job ends here, before any next attempt
            raise

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
    """submitit's local executor; waits for every job, with a progress bar; on Ctrl-C
    cancels them all (submitit passes SIGINT on to each) and waits for them to end."""
    import tqdm
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    # submitit's local executor times a job out after 2 minutes unless told otherwise
    # (and restarts it from scratch): a job here runs until it ends, unless the
    # preset says how long it may.
    settings = {"time_limit_minutes": LOCAL_TIME_LIMIT_MINUTES, **settings}
    with _stderr_to(Path(log_dir) / CONTROLLER_LOG):
        submitted = _submit(jobs, settings, log_dir, "local")
    with tqdm.tqdm(total=len(submitted), unit="job", desc="sweep") as bar:
        try:
            for job in submitted:
                with contextlib.suppress(Exception):  # the job's log says why; status tells
                    job.result()
                bar.update(1)
        except KeyboardInterrupt:
            _cancel(submitted)
            raise


#: submitit_local's time limit per job when ``[launcher] time_limit_minutes`` is unset.
LOCAL_TIME_LIMIT_MINUTES = 7 * 24 * 60
#: Where submitit's local job controllers write (a Ctrl-C ends each with a traceback).
CONTROLLER_LOG = "controllers.err"


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Processes started inside inherit ``path`` as their stderr; this one keeps its own."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cancel(submitted, grace: float = STOP_GRACE_S) -> None:
    for job in submitted:
        with contextlib.suppress(Exception):
            job.cancel(check=False)
    deadline = time.monotonic() + grace
    with contextlib.suppress(KeyboardInterrupt):
        while time.monotonic() < deadline and not all(_ended(job) for job in submitted):
            time.sleep(POLL_S)


def _ended(job) -> bool:
    try:
        return job.done()
    except Exception:  # noqa: BLE001 - a job submitit cannot read any more has ended
        return True


OUR_LAUNCHERS: Dict[str, Callable] = {
    "local_parallel": local_parallel, "slurm": slurm, "submitit_local": submitit_local}
#: launchers that return only when their jobs have ended.
BLOCKING = ("local", "local_parallel", "submitit_local", "multi_gpu")
#: launchers that return once their jobs are queued elsewhere: each job's folder is
#: made at submission, marked as queued, so a relaunch leaves it alone.
QUEUES = ("slurm",)


def launcher_names() -> List[str]:
    return sorted(set(OUR_LAUNCHERS) | set(_domainbed_registry()))


def get_launcher(name: str) -> Callable:
    if name in OUR_LAUNCHERS:
        return OUR_LAUNCHERS[name]
    if name in _domainbed_registry():
        return functools.partial(_run_with_domainbed, name)
    raise UsageError(f"unknown launcher {name!r}; valid launchers: "
                     f"{', '.join(launcher_names())}")

"""``hessian-dg sweep plan|launch|status|delete_incomplete`` on a preset."""
from __future__ import annotations

import collections
import contextlib
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional

from domainbed_patch import (
    job_folder,
    launchers,
    locate,
    presets,
    protocol,
    provenance,
    validation,
)
from domainbed_patch import jobs as sweep_jobs
from domainbed_patch.hparams import SEEDS_EXPLAINED

#: DomainBed sweep flags -> preset fields (flags keep DomainBed's names).
FLAG_FIELDS = ("datasets", "algorithms", "n_hparams_from", "n_hparams", "n_trials",
               "steps", "output_dir", "data_dir", "holdout_fraction")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="plan, launch, follow or clean a sweep preset",
        description="plan | launch | status | delete_incomplete a preset from sweeps/ "
        "(or a .toml path); every preset field can be overridden")
    parser.add_argument("action", choices=["plan", "launch", "status", "delete_incomplete"])
    parser.add_argument("preset", nargs="?", default=presets.DEFAULT_PRESET,
                        help="a preset name from sweeps/ or a .toml path (default: smoke)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override any preset field (TOML value)")
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--algorithms", nargs="+")
    for name in ("n_hparams_from", "n_hparams", "n_trials", "steps"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--holdout_fraction", type=float)
    parser.add_argument("--test_envs", type=int, nargs="+",
                        help="only jobs with exactly these test environments")
    parser.add_argument("--output_dir")
    parser.add_argument("--data_dir")
    parser.add_argument("--hparams", help="JSON object merged into the preset's [hparams]")
    parser.add_argument("--command_launcher", help="launcher name (overrides [launcher] name)")
    parser.add_argument("--seconds_per_step", type=float,
                        help="plan: seconds per training step, for the compute estimate")
    parser.add_argument("--skip_confirmation", action="store_true")
    parser.add_argument("--retry_failed", action="store_true",
                        help="launch: run failed jobs again too")
    parser.add_argument("--retry_incomplete", action="store_true",
                        help="launch: also rerun incomplete jobs started on another host "
                        "(a Slurm node: only once they no longer run there); interrupted "
                        "or killed jobs of this host are always rerun")
    parser.add_argument("--no_collect", action="store_true",
                        help="launch: do not print DomainBed's results table at the end")
    parser.set_defaults(func=run_command)


def overrides_from_args(args) -> dict:
    """The ``{dotted.key: value}`` overrides of ``--set`` and DomainBed's flag names."""
    overrides = presets.parse_overrides(args.overrides)
    for name in FLAG_FIELDS:
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    for key, value in validation.parse_hparams_json(args.hparams).items():
        overrides[f"hparams.{key}"] = value
    if args.test_envs is not None:
        overrides["test_envs"] = [args.test_envs]
    if args.command_launcher:
        overrides["launcher.name"] = args.command_launcher
    return overrides


def load(args):
    """The preset with overrides: its fields first (no DomainBed needed), then its
    names against DomainBed's."""
    overrides = overrides_from_args(args)
    fields = presets.load_preset(args.preset, overrides)
    locate.ensure_domainbed_importable()
    from domainbed import algorithms, datasets

    from domainbed_patch import own_datasets
    for name, folder in fields.own_datasets.items():  # before DomainBed's names are read
        own_datasets.ensure(name, folder)
    preset = presets.load_preset(args.preset, overrides,
                                 known_datasets=datasets.DATASETS,
                                 known_algorithms=algorithms.ALGORITHMS)
    launchers.get_launcher(preset.launcher.get("name", "local"))
    for dataset in preset.datasets:
        for test_envs in preset.test_envs:
            validation.check_test_envs(dataset, test_envs, "test_envs")
    validation.check_output_dir(preset.output_dir, "output_dir",
                                writable=getattr(args, "action", "launch") == "launch")
    return preset


def check_some_jobs(preset, jobs) -> None:
    """A sweep of no job is a mistake (a --test_envs filter no job matches, say)."""
    if not jobs:
        raise validation.UsageError(
            f"preset {preset.name} with these overrides makes no job (datasets "
            f"{list(preset.datasets)}, test_envs {[list(e) for e in preset.test_envs]}, "
            f"single_test_envs {preset.single_test_envs}); nothing to run")


def check_preset_hparams(preset) -> None:
    """The preset's ``[hparams]`` for every (algorithm, dataset): no unknown key, no
    wrong type, no value out of its domain, no broken rule across hparams. A key
    that only some of the sweep's algorithms know is fine (see :func:`plan`)."""
    for dataset in preset.datasets:
        for algorithm in preset.algorithms:
            validation.check_hparams(algorithm, dataset, dict(preset.hparams),
                                     also_valid=protocol.KEYS_SET)


def ignored_hparams_lines(preset) -> List[str]:
    """One line per ``[hparams]`` key that some algorithms of the sweep ignore."""
    lines = []
    for key in sorted(preset.hparams):
        ignoring = validation.ignoring_algorithms(key, preset.algorithms, preset.datasets)
        if ignoring:
            lines.append(f"hparams.{key} = {preset.hparams[key]!r}: ignored by "
                         f"{', '.join(ignoring)} (not one of their hparams)")
    return lines


def check_jobs(preset, jobs) -> None:
    """Everything that can be wrong before a job starts, per (algorithm, dataset)."""
    check_preset_hparams(preset)
    for dataset in preset.datasets:
        validation.check_data_dir(dataset, preset.data_dir)
    checked = set()
    for job in jobs:
        a = job.train_args
        if not validation.split_sizes_known(a["dataset"]):
            continue  # split sizes unknown without the data; DomainBed's are large
        key = (a["dataset"], a["algorithm"], tuple(a["test_envs"]), a["hparams_seed"],
               a["trial_seed"])
        if key not in checked:
            checked.add(key)
            validation.check_batch_size(a["dataset"], a["test_envs"],
                                        a["holdout_fraction"], sweep_jobs.job_hparams(job))


def plan(preset, jobs, seconds_per_step: Optional[float]) -> None:
    if seconds_per_step is not None and not (math.isfinite(seconds_per_step)
                                             and seconds_per_step > 0):
        raise validation.UsageError(f"--seconds_per_step {seconds_per_step}: must be a "
                                    "finite number of seconds > 0")
    check_preset_hparams(preset)
    print(f"Preset {preset.name} ({preset.source}): {preset.description}")
    print(protocol.describe(preset.protocol))
    for line in ignored_hparams_lines(preset):
        print(line)
    counts = collections.Counter((j.train_args["dataset"], j.train_args["algorithm"])
                                 for j in jobs)
    width = max(len(a) for a in preset.algorithms)
    print(f"\n{'dataset':<16}" + "".join(f"{a:>{width + 2}}" for a in preset.algorithms)
          + f"{'jobs':>8}{'steps/job':>11}")
    total_steps = 0
    for dataset in preset.datasets:
        row = [counts[(dataset, a)] for a in preset.algorithms]
        steps = sweep_jobs.default_steps(dataset, preset.steps)
        total_steps += sum(row) * steps
        print(f"{dataset:<16}" + "".join(f"{n:>{width + 2}}" for n in row)
              + f"{sum(row):>8}{steps:>11}")
    print(f"\n{len(jobs)} jobs, {total_steps:,} training steps "
          f"({preset.n_hparams - preset.n_hparams_from} hparams x {preset.n_trials} trials "
          f"x test environments x algorithms)")
    print("\n".join(SEEDS_EXPLAINED))
    if seconds_per_step is not None:
        hours = total_steps * seconds_per_step / 3600
        print(f"compute: {hours:,.0f} GPU-hours at {seconds_per_step} s/step "
              f"(evaluation adds DomainBed's checkpoint passes on top)")
    print(sweep_jobs.summary_line(jobs))


def status(jobs) -> None:
    """One line per job that is not done or not launched, then the counts."""
    for job in jobs:
        state = job.state
        if state == sweep_jobs.FAILED:
            print(f"failed: {job.output_dir} ({job.describe()})\n"
                  f"    last error line: {job.last_error_line()}")
        elif state == sweep_jobs.INCOMPLETE:
            print(f"incomplete ({job.folder.attempt_note()}; {_incomplete_fate(job)}): "
                  f"{job.output_dir} ({job.describe()})")
        elif state == sweep_jobs.DONE_NO_RESULTS:
            print(f"{state}: {job.output_dir} ({job.describe()}): a done marker but no "
                  f"{job_folder.RESULTS}, so collect leaves the job out; launch reruns it, "
                  "delete_incomplete clears it")
    print(sweep_jobs.summary_line(jobs))


def _incomplete_fate(job) -> str:
    return {sweep_jobs.RUNNING: "left to it",
            sweep_jobs.OTHER_HOST: "launch leaves it, --retry_incomplete reruns it",
            sweep_jobs.STOPPED: "launch reruns it"}[job.attempt]


def to_relaunch(job, retry_failed: bool, retry_incomplete: bool) -> bool:
    """Whether ``launch`` runs ``job``: not launched, interrupted or killed here, done
    without results; failed with ``--retry_failed``; started on another host with
    ``--retry_incomplete``; never a job a live process of this host runs."""
    state = job.state
    if state == sweep_jobs.INCOMPLETE:
        return job.attempt == sweep_jobs.STOPPED or (
            retry_incomplete and job.attempt == sweep_jobs.OTHER_HOST)
    return state in (sweep_jobs.NOT_LAUNCHED, sweep_jobs.DONE_NO_RESULTS) or (
        retry_failed and state == sweep_jobs.FAILED)


def _confirm(message: str, skip: bool) -> bool:
    if skip or not sys.stdin.isatty():
        return True
    return input(f"{message} (y/n) ").strip().lower().startswith("y")


def collect(output_dir) -> None:
    from domainbed_patch.domainbed_scripts import run_domainbed_script, tolerant_records
    with tolerant_records(output_dir):
        run_domainbed_script("collect_results", ["--input_dir", str(output_dir)])


def launch(preset, jobs, args) -> int:
    """Run the jobs :func:`to_relaunch` picks; each job's folder is made when it starts.
    Ctrl-C: no more jobs start, running ones stop as interrupted, exit 130."""
    to_launch = [job for job in jobs if to_relaunch(job, args.retry_failed,
                                                    getattr(args, "retry_incomplete", False))]
    print(f"{sweep_jobs.summary_line(jobs)}; launching {len(to_launch)}.")
    chosen = {id(job) for job in to_launch}
    left = [job for job in jobs
            if id(job) not in chosen and job.state == sweep_jobs.INCOMPLETE]
    if left:
        print(f"{len(left)} incomplete jobs left alone: running here, or started on another "
              "host (`hessian-dg sweep status` says which; --retry_incomplete reruns those "
              "once they no longer run there, delete_incomplete clears them).")
    if to_launch and preset.diagnose:
        from domainbed_patch.job_runner import train_namespace_problem
        problem = train_namespace_problem()
        if problem:  # the training is still worth running; say so before it starts
            print(f"hessian-dg: warning: {problem}", file=sys.stderr)
    if to_launch:
        if len(to_launch) > 50 and not _confirm(f"Launch {len(to_launch)} jobs?",
                                               args.skip_confirmation):
            print("Nothing launched.")
            return 1
        name = preset.launcher.get("name", "local")
        log_dir = Path(preset.launcher.get("log_dir") or
                       Path(preset.output_dir) / job_folder.SUBMITIT_LOGS)
        job_folder.record_log_folder(preset.output_dir, log_dir)
        if name in launchers.QUEUES:  # a relaunch must not submit a queued job again
            for job in to_launch:
                job.folder.mark_queued(name)
        try:
            launchers.get_launcher(name)(to_launch, preset.launcher, log_dir)
        except KeyboardInterrupt:
            return interrupted(jobs, args)
        if name not in launchers.BLOCKING:
            return 0
    status(jobs)
    if not args.no_collect and any(j.state == sweep_jobs.DONE for j in jobs):
        collect(preset.output_dir)
    return 1 if sweep_jobs.find_jobs(jobs, sweep_jobs.FAILED) else 0


#: Exit status after Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED_STATUS = 130


def interrupted(jobs, args, grace: float = launchers.STOP_GRACE_S) -> int:
    """After Ctrl-C: wait (up to ``grace`` s) for this host's jobs to stop, then say
    where each job stands and how to resume."""
    print("\nInterrupted: no more jobs are launched; stopping the running ones.",
          flush=True)
    deadline = time.monotonic() + grace
    with contextlib.suppress(KeyboardInterrupt):
        while time.monotonic() < deadline and any(
                j.state == sweep_jobs.INCOMPLETE and j.attempt == sweep_jobs.RUNNING
                for j in jobs):
            time.sleep(launchers.POLL_S)
    status(jobs)
    print(f"To resume: {resume_command(args)}\n(done jobs are kept; interrupted, killed "
          "and not launched jobs run)")
    return INTERRUPTED_STATUS


def resume_command(args) -> str:
    argv = getattr(args, "command_argv", None)
    if argv and argv[0] == "launch":
        return shlex.join(["hessian-dg", "sweep", *argv])
    return "the same `hessian-dg sweep launch` command"


def delete_incomplete(jobs, args) -> int:
    """Delete failed, done-without-results and incomplete jobs, except those a live
    process of this host runs."""
    running = [j for j in jobs if j.state == sweep_jobs.INCOMPLETE
               and j.attempt == sweep_jobs.RUNNING]
    stale = [j for j in jobs if j.state in (sweep_jobs.INCOMPLETE, sweep_jobs.FAILED,
                                            sweep_jobs.DONE_NO_RESULTS) and j not in running]
    if running:
        print(f"{len(running)} jobs are running on this host: left alone (stop them first).")
    print(f"About to delete {len(stale)} incomplete, failed or done-without-results jobs.")
    if stale and not _confirm("Delete them?", args.skip_confirmation):
        return 1
    for job in stale:
        shutil.rmtree(job.output_dir)
    print(f"Deleted {len(stale)} jobs.")
    return 0


def run(args) -> int:
    preset = load(args)
    jobs = sweep_jobs.make_jobs(preset, provenance.runner_flags(preset, overrides_from_args(args)))
    check_some_jobs(preset, jobs)
    if args.action == "plan":
        plan(preset, jobs, args.seconds_per_step)
        return 0
    if args.action == "status":
        status(jobs)
        from domainbed_patch.unknown_folders import unknown_folder_lines
        for line in unknown_folder_lines(preset.output_dir, jobs):
            print(line)
        return 0
    if args.action == "delete_incomplete":
        return delete_incomplete(jobs, args)
    check_jobs(preset, jobs)
    os.makedirs(preset.output_dir, exist_ok=True)
    return launch(preset, jobs, args)


def run_command(args) -> int:
    """:func:`run`; Ctrl-C outside the launcher (while checking, say): one line, 130."""
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\nInterrupted; `hessian-dg sweep status` says where each job stands.",
              file=sys.stderr)
        return INTERRUPTED_STATUS

"""DomainBed's own scripts (``domainbed.scripts.*``): the one runner, and the
``train`` and ``collect`` commands that check their input and then call them.

DomainBed's scripts keep all their logic under ``if __name__ == "__main__"``, so
they run through ``runpy`` with ``sys.argv`` set, exactly as ``python -m
domainbed.scripts.NAME`` would run them; ``sys.argv``, ``sys.stdout`` and
``sys.stderr`` (which they replace with their log tees) are restored afterwards.
DomainBed's train leaves its data-loader workers running, which is harmless only
when the process ends with it: ``new_process=True`` runs a script in its own.
"""
from __future__ import annotations

import contextlib
import os
import runpy
import subprocess
import sys
from typing import Optional

from domainbed_patch import locate
from domainbed_patch.validation import UsageError


def exit_status(code) -> int:
    """A ``SystemExit`` code as a process exit status."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def run_domainbed_script(name: str, argv, new_process: bool = False,
                         namespace: Optional[dict] = None) -> int:
    """``python -m domainbed.scripts.<name> <argv>``; its exit status.

    In this process by default (exceptions other than ``SystemExit`` propagate, so
    a caller can record them), or in a new one. ``namespace``, if given, receives
    the script's globals when it ends normally (the trained ``algorithm``, say).
    """
    module = f"domainbed.scripts.{name}"
    if new_process:
        return subprocess.run([sys.executable, "-m", module, *argv]).returncode
    saved = sys.argv, sys.stdout, sys.stderr
    sys.argv = [module, *argv]
    try:
        script_globals = runpy.run_module(module, run_name="__main__", alter_sys=True)
        if namespace is not None:
            namespace.update(script_globals)
    except SystemExit as exit_:
        return exit_status(exit_.code)
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream not in saved:
                stream.flush()
        sys.argv, sys.stdout, sys.stderr = saved
    return 0


def _add_train_flags(parser) -> None:
    """The DomainBed train flags that are checked here; all are passed on unchanged."""
    parser.add_argument("--dataset", default="RotatedMNIST")
    parser.add_argument("--dataset_folder", help="an image folder laid out as DomainBed's "
                        "(FOLDER/<domain>/<class>/<image>) to serve as --dataset: "
                        "registered as hessian-dg dataset add does (not passed to train)")
    parser.add_argument("--algorithm", default="ERM")
    parser.add_argument("--data_dir")
    parser.add_argument("--hparams")
    parser.add_argument("--hparams_seed", type=int, default=0)
    parser.add_argument("--trial_seed", type=int, default=0)
    parser.add_argument("--test_envs", type=int, nargs="+", default=[0])
    parser.add_argument("--holdout_fraction", type=float, default=0.2)
    parser.add_argument("--output_dir", default="train_output")


def train(args) -> int:
    """Check ``args``, then DomainBed's train on the command's own arguments."""
    locate.ensure_domainbed_importable()
    from domainbed import algorithms, datasets

    from domainbed_patch import protocol, validation

    validation.check_names("algorithm", [args.algorithm], algorithms.ALGORITHMS)
    if args.dataset_folder:
        from domainbed_patch import own_datasets
        own_datasets.ensure(args.dataset, args.dataset_folder)
    validation.check_names("dataset", [args.dataset], datasets.DATASETS)
    validation.check_test_envs(args.dataset, args.test_envs)
    validation.check_holdout_fraction(args.holdout_fraction)
    validation.check_output_dir(args.output_dir)
    overrides = validation.parse_hparams_json(args.hparams)
    validation.check_hparams(args.algorithm, args.dataset, overrides)
    validation.check_data_dir(args.dataset, args.data_dir)
    hparams = protocol.resolve_hparams(args.algorithm, args.dataset, args.hparams_seed,
                                       args.trial_seed, overrides=overrides)
    validation.check_batch_size(args.dataset, args.test_envs, args.holdout_fraction, hparams)
    return run_domainbed_script("train", without_flag(args.command_argv, "--dataset_folder"),
                                new_process=True)


def without_flag(argv, flag: str) -> list:
    """``argv`` less ``flag`` and its value (``flag V`` or ``flag=V``): a flag of
    hessian-dg's that DomainBed's train does not know.

    >>> without_flag(["--dataset", "W", "--dataset_folder", "/d", "--steps", "2"],
    ...              "--dataset_folder")
    ['--dataset', 'W', '--steps', '2']
    """
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


@contextlib.contextmanager
def tolerant_records(input_dir):
    """While DomainBed's collect_results runs: its ``reporting.load_records`` reads
    every job folder's ``results.jsonl`` as the report does (a corrupt or foreign
    line is skipped with a warning on stderr, where DomainBed's stops with a
    traceback); UsageError when no record is left."""
    import warnings

    from domainbed.lib import query, reporting

    from domainbed_patch.job_folder import DONE_NO_RESULTS, RESULTS, JobFolder, job_folders
    from domainbed_patch.report.records import read_records

    def load_records(path):
        found, lost = [], []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for folder in map(JobFolder, job_folders(path)):
                if folder.state == DONE_NO_RESULTS:  # its rows are gone: say so, not drop it
                    lost.append(folder.path.name)
                elif folder.results.is_file():
                    found += read_records(folder.results)[0]
        for warning in caught:
            print(f"hessian-dg collect: warning: {warning.message}", file=sys.stderr)
        if lost:
            print(f"hessian-dg collect: warning: {len(lost)} job(s) marked done have no "
                  f"{RESULTS} rows, left out: {', '.join(sorted(lost))} "
                  "(hessian-dg sweep launch runs them again; delete_incomplete clears "
                  "them)", file=sys.stderr)
        return query.Q(found)

    records = load_records(input_dir)
    if not records:
        raise UsageError(f"--input_dir {str(input_dir)!r} holds no DomainBed record (no job "
                         f"folder with a readable {RESULTS}): nothing "
                         "to collect")
    original = reporting.load_records
    reporting.load_records = lambda path: records
    try:
        yield
    finally:
        reporting.load_records = original


def collect(args) -> int:
    if not os.path.isdir(args.input_dir):
        raise UsageError(f"--input_dir {args.input_dir!r} is not a folder")
    locate.ensure_domainbed_importable()
    with tolerant_records(args.input_dir):
        return run_domainbed_script("collect_results", args.command_argv)


def add_parser(subparsers) -> None:
    """``train`` (takes every other flag of DomainBed's train too) and ``collect``."""
    parser = subparsers.add_parser(
        "train", allow_abbrev=False,  # what is not spelled out goes to DomainBed as it is
        help="DomainBed's train, with checked input",
        description="DomainBed's train, after checking its input; every other flag of "
        "DomainBed's train is accepted and passed on")
    _add_train_flags(parser)
    parser.set_defaults(func=train, passes_unknown_flags=True)
    parser = subparsers.add_parser("collect", help="DomainBed's collect_results",
                                   description="DomainBed's collect_results")
    parser.add_argument("--input_dir", required=True)
    parser.add_argument("--latex", action="store_true")
    parser.add_argument("--auto_lr", action="store_true")
    parser.set_defaults(func=collect)

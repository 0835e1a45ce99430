"""The ``hessian-dg`` command: thin ``main(argv)`` functions over the modules.

    hessian-dg setup      get DomainBed at the pinned commit into the cache location
    hessian-dg doctor     versions, DomainBed, plugin, datasets present
    hessian-dg train      DomainBed's train, after checking its arguments
    hessian-dg sweep      plan | launch | status | delete_incomplete a preset
    hessian-dg collect    DomainBed's collect_results
    hessian-dg report     tables against reference results, figures

Flags keep DomainBed's names (``--data_dir``, ``--output_dir``, ``--test_envs``,
``--hparams``, ``--hparams_seed``, ...). Bad input fails before any job starts, with
one line naming what was wrong and the valid choices.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from domainbed_patch import locate
from domainbed_patch.presets import PresetError
from domainbed_patch.validation import UsageError

PROG = "hessian-dg"


def _train_parser() -> argparse.ArgumentParser:
    """The DomainBed train flags that are checked here; all are passed on unchanged."""
    parser = argparse.ArgumentParser(prog=f"{PROG} train", add_help=True,
                                     description="DomainBed's train, with checked input; "
                                     "every other flag of DomainBed's train is accepted")
    parser.add_argument("--dataset", default="RotatedMNIST")
    parser.add_argument("--algorithm", default="ERM")
    parser.add_argument("--data_dir")
    parser.add_argument("--hparams")
    parser.add_argument("--hparams_seed", type=int, default=0)
    parser.add_argument("--trial_seed", type=int, default=0)
    parser.add_argument("--test_envs", type=int, nargs="+", default=[0])
    parser.add_argument("--holdout_fraction", type=float, default=0.2)
    return parser


def train(argv: List[str]) -> int:
    args, _ = _train_parser().parse_known_args(argv)
    from domainbed import algorithms, datasets, hparams_registry
    from domainbed_patch import validation
    from domainbed_patch.hparams import seed_hash

    validation.check_names("algorithm", [args.algorithm], algorithms.ALGORITHMS)
    validation.check_names("dataset", [args.dataset], datasets.DATASETS)
    n_envs = datasets.num_environments(args.dataset)
    bad_envs = [e for e in args.test_envs if not 0 <= e < n_envs]
    if bad_envs:
        raise UsageError(f"--test_envs {bad_envs} out of range: {args.dataset} has "
                         f"environments 0..{n_envs - 1}")
    overrides = validation.parse_hparams_json(args.hparams)
    validation.check_hparams(args.algorithm, args.dataset, overrides)
    validation.check_data_dir(args.dataset, args.data_dir)
    if args.hparams_seed == 0:
        hparams = hparams_registry.default_hparams(args.algorithm, args.dataset)
    else:
        hparams = hparams_registry.random_hparams(
            args.algorithm, args.dataset, seed_hash(args.hparams_seed, args.trial_seed))
    hparams.update(overrides)
    validation.check_batch_size(args.dataset, args.test_envs, args.holdout_fraction, hparams)
    # A process of its own: DomainBed's train leaves its data-loader workers running,
    # which is harmless only when the process ends with it.
    import subprocess
    return subprocess.run([sys.executable, "-m", "domainbed.scripts.train", *argv]).returncode


def collect(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} collect",
                                     description="DomainBed's collect_results")
    parser.add_argument("--input_dir", required=True)
    parser.add_argument("--latex", action="store_true")
    parser.add_argument("--auto_lr", action="store_true")
    args = parser.parse_args(argv)
    import os
    if not os.path.isdir(args.input_dir):
        raise UsageError(f"--input_dir {args.input_dir!r} is not a folder")
    from domainbed_patch.domainbed_scripts import run_domainbed_script
    return run_domainbed_script("collect_results", argv)


def _subcommand_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    setup = sub.add_parser("setup", help="get DomainBed at the pinned commit")
    setup.add_argument("--dest", help=f"default: {locate.cache_location()}")
    setup.add_argument("--source", help="a git URL, or a local clone / bare mirror "
                       "(for machines without a network)")
    setup.add_argument("--commit", default=locate.PINNED_COMMIT)
    setup.add_argument("--force", action="store_true", help="replace another commit")
    doctor = sub.add_parser("doctor", help="check the environment")
    doctor.add_argument("--data_dir", default="")
    sweep = sub.add_parser("sweep", help="plan, launch, follow or clean a sweep preset")
    from domainbed_patch import sweep_commands
    sweep_commands.add_arguments(sweep)
    for name, text in (("train", "DomainBed's train, with checked input"),
                       ("collect", "DomainBed's collect_results"),
                       ("report", "tables against reference results, and figures")):
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _dispatch(argv: List[str]) -> int:
    passthrough = {"train": train, "collect": collect}
    if argv and argv[0] in passthrough:
        locate.ensure_domainbed_importable()
        return passthrough[argv[0]](argv[1:])
    if argv and argv[0] == "report":
        locate.ensure_domainbed_importable()
        from domainbed_patch import report
        return report.main(argv[1:])
    args = _subcommand_parser().parse_args(argv)
    if args.subcommand == "setup":
        from domainbed_patch import setup_domainbed
        return setup_domainbed.main(args)
    if args.subcommand == "doctor":
        from domainbed_patch import doctor
        return doctor.main(args)
    locate.ensure_domainbed_importable()
    from domainbed_patch import sweep_commands
    return sweep_commands.run(args)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except (UsageError, PresetError, locate.DomainBedNotFoundError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

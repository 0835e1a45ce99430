"""The ``hessian-dg`` command: one parser, one sub-command per module.

    hessian-dg setup      get DomainBed at the pinned commit into the cache location
    hessian-dg doctor     versions, DomainBed, plugin, datasets present
    hessian-dg train      DomainBed's train, after checking its arguments
    hessian-dg sweep      plan | launch | status | delete_incomplete a preset
    hessian-dg collect    DomainBed's collect_results
    hessian-dg report     tables against reference results, figures
    hessian-dg diagnose   the paper's transfer quantities for a sweep's trained models
    hessian-dg cmnist     the paper's Colored MNIST experiments (no DomainBed needed)

Each command module has ``add_parser(subparsers)``, which declares its flags and
``set_defaults(func=...)``; ``func(args)`` runs it. ``args.command_argv`` holds the
command's own arguments as given (``train`` passes them on to DomainBed, which
takes flags that are not checked here).
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


def build_parser() -> argparse.ArgumentParser:
    from colored_mnist import cli as cmnist
    from domainbed_patch import (
        diagnose_sweep,
        doctor,
        domainbed_scripts,
        report,
        setup_domainbed,
        sweep_commands,
    )
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (setup_domainbed, doctor, domainbed_scripts, sweep_commands, report,
                   diagnose_sweep, cmnist):
        module.add_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "passes_unknown_flags", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.command_argv = argv[1:]
    try:
        return args.func(args)
    except (UsageError, PresetError, locate.DomainBedNotFoundError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``hessian-dg`` command: a table of sub-commands, and the one place that turns
a user error into an exit status.

Each sub-command lives in a module of its own with ``add_parser(subparsers)``,
which declares its flags and ``set_defaults(func=...)``; ``func(args)`` runs it.
:data:`COMMANDS` names each one's module and one-line help, so listing them costs
nothing and only the chosen command's module is imported: ``hessian-dg --help``
and ``hessian-dg setup`` need neither torch nor pandas, and ``hessian-dg cmnist``
no DomainBed. ``args.command_argv`` holds the command's own arguments as given
(``train`` passes the flags it does not know on to DomainBed).

Dependencies run this package -> {:mod:`domainbed_patch`, :mod:`colored_mnist`} ->
:mod:`hessian_dg` -> torch; neither of the first two imports this one.

A user error is shown as one line ``hessian-dg: error: <what was wrong>`` on stderr,
hint lines after it, exit status 2: the bridge's errors derive from
:class:`domainbed_patch.errors.UserError`, Colored MNIST's from
:class:`colored_mnist.errors.CmnistError` (:data:`USER_ERRORS`); a command's body
raises them and never prints them itself. Flags argparse refuses take the same form
(:class:`EntryParser`), with a hint naming the command's ``--help``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, NamedTuple, Optional

PROG = "hessian-dg"
DESCRIPTION = ("Hessian and gradient alignment (HGP and Hutchinson, Hemati et al., "
               "ICCV 2023) for domain generalization: train and compare them in "
               "DomainBed, or on Colored MNIST without it.")
EPILOG = f"Run '{PROG} COMMAND --help' for the options of a command."


class Command(NamedTuple):
    """A sub-command: the module whose ``add_parser`` declares it, its one-line help."""

    module: str
    help: str


#: name -> sub-command, in the order ``--help`` lists them.
COMMANDS = {
    "setup": Command("domainbed_patch.setup_domainbed",
                     "get DomainBed at the pinned commit into the cache location"),
    "doctor": Command("domainbed_patch.doctor", "check the environment"),
    "dataset": Command("domainbed_patch.dataset_commands",
                       "your own image-folder datasets for DomainBed: add | list | remove"),
    "train": Command("domainbed_patch.domainbed_scripts",
                     "DomainBed's train, with checked input"),
    "sweep": Command("domainbed_patch.sweep_commands",
                     "plan, launch, follow or clean a sweep preset"),
    "collect": Command("domainbed_patch.domainbed_scripts", "DomainBed's collect_results"),
    "report": Command("domainbed_patch.report",
                      "tables against reference results, and figures"),
    "diagnose": Command("domainbed_patch.diagnose_sweep",
                        "the paper's transfer quantities for a sweep's trained models"),
    "cmnist": Command("colored_mnist.cli",
                      "Colored MNIST: ERM, IRM, VREx, Fishr, HGP, Hutchinson side by side"),
}

#: (module, class) of each family's user-error base. An error of a family can only
#: be raised once its module is imported, so none is imported to catch it.
USER_ERRORS = (("domainbed_patch.errors", "UserError"),
               ("colored_mnist.errors", "CmnistError"))


class EntryParser(argparse.ArgumentParser):
    """Every parser of the command (sub-commands too): a refused flag is one line
    ``hessian-dg: error: <message>``, then where the options are listed, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message}\nrun '{self.prog} --help' for its options\n")


def chosen_command(argv: List[str]) -> Optional[str]:
    """The sub-command ``argv`` names (its first argument that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def deepest_parser(parser: argparse.ArgumentParser, argv: List[str]) -> argparse.ArgumentParser:
    """The (sub-)sub-command's parser that ``argv`` reaches: ``sweep plan ...`` ends
    at ``hessian-dg sweep plan``, whose ``--help`` lists the flags it takes."""
    for word in argv:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    return parser


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser, with ``command``'s module imported and its flags declared; every
    other command is a placeholder that carries its name and help only."""
    parser = EntryParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=EntryParser)
    module = COMMANDS[command].module if command in COMMANDS else None
    for name, entry in COMMANDS.items():
        if name in subparsers.choices:  # declared with the chosen one (train, collect)
            continue
        if entry.module == module:
            importlib.import_module(module).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=entry.help, add_help=False)
    return parser


def user_error_types() -> tuple:
    """The user-error bases of :data:`USER_ERRORS` whose modules are imported."""
    return tuple(getattr(sys.modules[module], name) for module, name in USER_ERRORS
                 if module in sys.modules)


def show_user_error(error: BaseException, prog: str = PROG) -> int:
    """``<prog>: error: <first line>`` on stderr, then the message's other lines and
    the error's ``hint``; returns the exit status, 2."""
    lines = str(error).splitlines() or [type(error).__name__]
    hint = getattr(error, "hint", "")
    print("\n".join([f"{prog}: error: {lines[0]}", *lines[1:],
                     *(hint.splitlines() if hint else [])]), file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    """``hessian-dg ARGV``: parse, run the chosen command, show user errors."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = chosen_command(argv)
    parser = build_parser(command)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "passes_unknown_flags", False):
        deepest_parser(parser, argv).error(f"unrecognized arguments: {' '.join(unknown)}")
    args.command_argv = argv[argv.index(command) + 1:]
    try:
        return args.func(args)
    except Exception as error:  # noqa: BLE001 - only user errors are caught
        if isinstance(error, user_error_types()):
            return show_user_error(error)
        raise

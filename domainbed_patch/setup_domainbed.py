"""``hessian-dg setup``: put DomainBed at the pinned commit in the cache location.

Where a network exists: ``git clone`` + ``git checkout <pinned commit>``. Without
one, ``--source`` takes a local clone or bare mirror instead (``git archive`` of the
pinned commit is unpacked; a ``HESSIAN_DG_COMMIT`` file records the commit).

Nothing the project did not make is deleted. ``--dest`` is filled only when it is
missing or an empty folder; a DomainBed checkout there (:func:`is_domainbed_checkout`)
at another commit is replaced only with ``--force``; any other folder, and a file,
is refused with one line, ``--force`` or not. The new copy is built beside the
destination and checked (DomainBed's files are there, its commit is the one asked
for) before it takes the old one's place, so a failed setup leaves ``--dest`` as it
was.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from domainbed_patch import locate
from domainbed_patch.errors import UserError
from domainbed_patch.validation import UsageError

CLONE_TIMEOUT_SECONDS = 600
#: Files every DomainBed checkout holds (relative to its root).
DOMAINBED_FILES = ("domainbed/__init__.py", "domainbed/algorithms.py",
                   "domainbed/datasets.py", "domainbed/scripts/train.py")


class SetupError(UserError, RuntimeError):
    """DomainBed could not be put in place; the message says why, its hint what
    to do without a network."""


class DestinationError(UsageError):
    """``--dest`` is not a place setup may fill: the message names it and what to do."""


def is_domainbed_checkout(path) -> bool:
    """True for a folder that holds DomainBed's files (:data:`DOMAINBED_FILES`) and
    says its commit: a git checkout (``.git``) or a copy made by setup (its
    ``HESSIAN_DG_COMMIT`` file). The only kind of folder setup ever replaces."""
    path = Path(path)
    return (all((path / name).is_file() for name in DOMAINBED_FILES)
            and ((path / ".git").exists() or (path / locate.COMMIT_FILE).is_file()))


def _git(*args, cwd=None) -> str:
    """``git ARGS``; its stdout."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
                              check=True, capture_output=True, text=True,
                              timeout=CLONE_TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise SetupError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"git {args[0]} took over {CLONE_TIMEOUT_SECONDS} s") from None
    except subprocess.CalledProcessError as error:
        last = (error.stderr or error.stdout or "").strip().splitlines()
        raise SetupError(f"git {' '.join(args[:2])} failed: "
                         f"{last[-1] if last else error}") from None
    return done.stdout.strip()


def _from_git_dir(git_dir: Path, commit: str, target: Path) -> str:
    """Unpack ``commit`` of a local repository (clone or bare) into ``target``;
    the commit file names its full hash, which is returned."""
    try:
        full = _git(f"--git-dir={git_dir}", "rev-parse", "--verify", "--quiet",
                    f"{commit}^{{commit}}")
    except SetupError:
        raise SetupError(f"{git_dir} has no commit {commit}") from None
    target.mkdir(parents=True)
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", full],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SetupError(f"git archive of {commit} in {git_dir} failed: "
                         f"{archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    (target / locate.COMMIT_FILE).write_text(full + "\n")
    return full


def _clone(source: str, commit: str, target: Path) -> str:
    """``git clone`` + ``git checkout commit``; the full hash ``commit`` names."""
    _git("clone", "--quiet", source, str(target))
    try:
        full = _git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", cwd=target)
    except SetupError:
        raise SetupError(f"{source} has no commit {commit}") from None
    _git("checkout", "--quiet", full, cwd=target)
    return full


def _check_destination(destination: Path, commit: str, force: bool):
    """None when setup may fill ``destination``; else the message of an existing
    DomainBed at ``commit`` (nothing to do). Raises :class:`DestinationError`."""
    if destination.is_symlink() or (destination.exists() and not destination.is_dir()):
        raise DestinationError(f"--dest {destination} is a file, not a folder; give the "
                               "path of a new or empty folder")
    if not destination.exists() or not any(destination.iterdir()):
        return None
    if not is_domainbed_checkout(destination):
        raise DestinationError(
            f"--dest {destination} exists and is not a DomainBed checkout (no "
            f"{', '.join(DOMAINBED_FILES[1:3])} with a .git or {locate.COMMIT_FILE}); "
            "setup never replaces such a folder, --force or not: give a new or empty "
            "folder, or move its contents away")
    found = locate.read_commit(destination)
    if force:
        return None
    if found and (found == commit or (len(commit) >= 7 and found.startswith(commit))):
        return f"DomainBed {commit[:12]} is already at {destination}"
    raise DestinationError(f"--dest {destination} holds DomainBed at "
                           f"{found or 'an unknown commit'}, not {commit}; rerun with "
                           "--force to replace that checkout")


def _check_installed(target: Path, wanted: str, source: str) -> None:
    """SetupError unless the new copy at ``target`` is DomainBed at commit ``wanted``
    (a full hash), as its own record of its commit says."""
    missing = [name for name in DOMAINBED_FILES if not (target / name).is_file()]
    if missing:
        raise SetupError(f"{source} at {wanted} is not DomainBed: it has no "
                         f"{', '.join(missing)}")
    found = locate.read_commit(target)
    if found != wanted:
        raise SetupError(f"{source} gave commit {found or 'unknown'}, not the requested "
                         f"{wanted}")


def install_domainbed(destination: Path, source: str = locate.REPOSITORY_URL,
                      commit: str = locate.PINNED_COMMIT, force: bool = False) -> str:
    """Fill ``destination`` with DomainBed at ``commit``; a message saying what was done.

    Raises :class:`DestinationError` for a destination setup may not fill (see the
    module docstring) and :class:`SetupError` when DomainBed could not be got.
    """
    destination = Path(destination)
    already = _check_destination(destination, commit, force)
    if already is not None:
        return already
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging_dir = tempfile.TemporaryDirectory(prefix=".domainbed-",
                                                  dir=destination.parent)
    except OSError as error:
        raise DestinationError(f"--dest {destination}: cannot write beside it "
                               f"({error.strerror})") from None
    with staging_dir as staging:
        target = Path(staging) / "DomainBed"
        if Path(source).exists():  # a clone, or a bare mirror
            git_dir = Path(source) / ".git"
            installed = _from_git_dir(git_dir if git_dir.exists() else Path(source),
                                      commit, target)
        else:
            installed = _clone(source, commit, target)
        _check_installed(target, installed, source)
        replaced = destination.exists() and any(destination.iterdir())
        if destination.exists():  # an empty folder, or (with --force) a checkout
            destination.rename(Path(staging) / "replaced")
        target.rename(destination)
    note = "" if installed == locate.PINNED_COMMIT else \
        f" (not the pinned {locate.PINNED_COMMIT}, which hessian-dg is tested with)"
    return (f"DomainBed {installed[:12]} installed at {destination}"
            + (", replacing the checkout that was there" if replaced else "") + note)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "setup", help="get DomainBed at the pinned commit into the cache location",
        description="git clone DomainBed at the pinned commit into the cache location, "
        "or unpack it from a local clone or bare mirror (--source). Only a missing or "
        "empty --dest is filled; a DomainBed checkout there is replaced only with "
        "--force; any other folder is left alone.")
    parser.add_argument("--dest", help=f"default: {locate.cache_location()}")
    parser.add_argument("--source", help="a git URL, or a local clone / bare mirror "
                        "(for machines without a network)")
    parser.add_argument("--commit", default=locate.PINNED_COMMIT)
    parser.add_argument("--force", action="store_true",
                        help="replace a DomainBed checkout at another commit (never "
                        "anything else)")
    parser.set_defaults(func=run)


def run(args) -> int:
    """Install as ``args`` ask; a :class:`SetupError` leaves with the offline hint
    (the command shows it after the error line, exit status 2)."""
    destination = Path(args.dest) if args.dest else locate.cache_location()
    try:
        print(install_domainbed(destination, args.source or locate.REPOSITORY_URL,
                                args.commit, args.force))
    except SetupError as error:
        error.hint = (
            f"Could not get DomainBed. Without a network, bring a clone of "
            f"{locate.REPOSITORY_URL} here by other means, then either\n"
            f"  hessian-dg setup --source /path/to/DomainBed   (a clone or bare mirror "
            f"holding commit {locate.PINNED_COMMIT})\n"
            f"or check out that commit anywhere and export "
            f"{locate.ROOT_VARIABLE}=/path/to/DomainBed (cache location: {destination})")
        raise
    return 0

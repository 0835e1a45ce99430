"""``hessian-dg setup``: put DomainBed at the pinned commit in the cache location.

Where a network exists: ``git clone`` + ``git checkout <pinned commit>``. Without
one, ``--source`` takes a local clone or bare mirror instead (``git archive`` of the
pinned commit is unpacked; a ``HESSIAN_DG_COMMIT`` file records the commit).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from domainbed_patch import locate

CLONE_TIMEOUT_SECONDS = 600


class SetupError(RuntimeError):
    """DomainBed could not be put in place; the message says why."""


def _git(*args, cwd=None) -> None:
    try:
        subprocess.run(["git", *args], cwd=cwd, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
                       check=True, capture_output=True, text=True, timeout=CLONE_TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise SetupError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"git {args[0]} took over {CLONE_TIMEOUT_SECONDS} s") from None
    except subprocess.CalledProcessError as error:
        last = (error.stderr or error.stdout or "").strip().splitlines()
        raise SetupError(f"git {args[0]} failed: {last[-1] if last else error}") from None


def _from_git_dir(git_dir: Path, commit: str, target: Path) -> None:
    """Unpack ``commit`` of a local repository (clone or bare) into ``target``."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", commit],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SetupError(f"{git_dir} has no commit {commit}: "
                         f"{archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    (target / locate.COMMIT_FILE).write_text(commit + "\n")


def install_domainbed(destination: Path, source: str = locate.REPOSITORY_URL,
                      commit: str = locate.PINNED_COMMIT, force: bool = False) -> str:
    """Fill ``destination`` with DomainBed at ``commit``; a message saying what was done."""
    destination = Path(destination)
    if locate.is_domainbed_root(destination) and not force:
        found = locate.read_commit(destination)
        if found == commit:
            return f"DomainBed {commit[:12]} is already at {destination}"
        raise SetupError(f"{destination} holds DomainBed at {found or 'an unknown commit'}, "
                         f"not the pinned {commit}; rerun with --force to replace it")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".domainbed-", dir=destination.parent) as staging:
        target = Path(staging) / "DomainBed"
        if Path(source).exists():  # a clone, or a bare mirror
            git_dir = Path(source) / ".git"
            _from_git_dir(git_dir if git_dir.exists() else Path(source), commit, target)
        else:
            _git("clone", "--quiet", source, str(target))
            _git("checkout", "--quiet", commit, cwd=target)
        if destination.exists():
            shutil.rmtree(destination)
        target.rename(destination)
    return f"DomainBed {commit[:12]} installed at {destination}"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "setup", help="get DomainBed at the pinned commit into the cache location",
        description="git clone DomainBed at the pinned commit into the cache location, "
        "or unpack it from a local clone or bare mirror (--source)")
    parser.add_argument("--dest", help=f"default: {locate.cache_location()}")
    parser.add_argument("--source", help="a git URL, or a local clone / bare mirror "
                        "(for machines without a network)")
    parser.add_argument("--commit", default=locate.PINNED_COMMIT)
    parser.add_argument("--force", action="store_true", help="replace another commit")
    parser.set_defaults(func=run)


def run(args) -> int:
    destination = Path(args.dest) if args.dest else locate.cache_location()
    try:
        print(install_domainbed(destination, args.source or locate.REPOSITORY_URL,
                                args.commit, args.force))
    except SetupError as error:
        print(f"hessian-dg setup: error: {error}")
        print(f"Could not get DomainBed. Without a network, bring a clone of "
              f"{locate.REPOSITORY_URL} here by other means, then either\n"
              f"  hessian-dg setup --source /path/to/DomainBed   (a clone or bare mirror "
              f"holding commit {locate.PINNED_COMMIT})\n"
              f"or check out that commit anywhere and export "
              f"{locate.ROOT_VARIABLE}=/path/to/DomainBed (cache location: {destination})")
        return 1
    return 0

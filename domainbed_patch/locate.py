"""Finding DomainBed, which is cloned by users rather than installed.

Order of search:

1. an importable ``domainbed`` (on ``sys.path``, e.g. run from inside a clone or
   with ``PYTHONPATH`` set);
2. ``$DOMAINBED_ROOT``: a clone, the folder that holds ``domainbed/``;
3. the cache location, ``$XDG_CACHE_HOME/hessian-dg/DomainBed`` (default
   ``~/.cache/hessian-dg/DomainBed``), which ``hessian-dg setup`` fills.

For 2 and 3, a meta-path finder placed *last* on ``sys.meta_path`` serves the
``domainbed`` package from that folder, so an importable copy always wins. This
module imports nothing heavy: it runs at every interpreter start (see
:mod:`domainbed_patch.startup`).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from domainbed_patch.errors import UserError

PINNED_COMMIT = "b93c22a1cfc3b2428398272c1a116c8de1f4139e"
REPOSITORY_URL = "https://github.com/facebookresearch/DomainBed"
ROOT_VARIABLE = "DOMAINBED_ROOT"
#: File written beside ``domainbed/`` by ``hessian-dg setup``, naming the commit.
COMMIT_FILE = "HESSIAN_DG_COMMIT"


class DomainBedNotFoundError(UserError, ImportError):
    """DomainBed could be found by none of the three ways."""


def cache_location() -> Path:
    """Where ``hessian-dg setup`` puts DomainBed: ``<cache>/hessian-dg/DomainBed``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "hessian-dg" / "DomainBed"


def is_domainbed_root(path) -> bool:
    """True when ``path/domainbed/__init__.py`` exists."""
    return path is not None and (Path(path) / "domainbed" / "__init__.py").is_file()


def _root_from_environment() -> Optional[Path]:
    value = os.environ.get(ROOT_VARIABLE)
    return Path(value).expanduser() if value else None


def fallback() -> Optional[tuple]:
    """(root, how found) of the first that holds DomainBed: $DOMAINBED_ROOT, the cache."""
    for root, how in ((_root_from_environment(), f"${ROOT_VARIABLE}"),
                      (cache_location(), "cache location")):
        if is_domainbed_root(root):
            return root, how
    return None


def not_found_message() -> str:
    env = _root_from_environment()
    env_note = (f" (set to {env}, which holds no domainbed/__init__.py)"
                if env is not None else " (not set)")
    return (
        "DomainBed was not found. hessian-dg looks for it in three ways:\n"
        "  1. an importable `domainbed` package (run from inside a DomainBed clone, "
        "or put the clone on PYTHONPATH);\n"
        f"  2. ${ROOT_VARIABLE}, the folder of a clone{env_note};\n"
        f"  3. the cache location {cache_location()}, filled by `hessian-dg setup`.\n"
        f"Get DomainBed at the pinned commit {PINNED_COMMIT}:\n"
        "  hessian-dg setup            # git clone into the cache location\n"
        f"or by hand: git clone {REPOSITORY_URL} <dir> && "
        f"git -C <dir> checkout {PINNED_COMMIT}, then export {ROOT_VARIABLE}=<dir>")


class DomainBedFinder(importlib.abc.MetaPathFinder):
    """Serves the top-level ``domainbed`` package from :func:`fallback` (2 and 3)."""

    def find_spec(self, fullname, path=None, target=None):
        found = fallback() if fullname == "domainbed" else None
        if found is None:
            return None
        package = found[0] / "domainbed"
        return importlib.util.spec_from_file_location(
            "domainbed", package / "__init__.py", submodule_search_locations=[str(package)])


def install_finder() -> None:
    """Append :class:`DomainBedFinder` to ``sys.meta_path`` (once)."""
    if not any(isinstance(f, DomainBedFinder) for f in sys.meta_path):
        sys.meta_path.append(DomainBedFinder())


@dataclass(frozen=True)
class DomainBedLocation:
    """Where DomainBed was found, how, and at which commit (None if unknown)."""

    root: Path
    how: str
    commit: Optional[str]


def read_commit(root: Path) -> Optional[str]:
    """The commit of a DomainBed folder: its git HEAD, else the setup marker."""
    git_dir, marker = Path(root) / ".git", Path(root) / COMMIT_FILE
    if not (git_dir / "HEAD").is_file():
        return marker.read_text().strip() if marker.is_file() else None
    head = (git_dir / "HEAD").read_text().strip()
    if not head.startswith("ref: "):
        return head  # detached
    ref = head[len("ref: "):]
    if (git_dir / ref).is_file():
        return (git_dir / ref).read_text().strip()
    packed = git_dir / "packed-refs"
    lines = packed.read_text().splitlines() if packed.is_file() else []
    return next((line.split()[0] for line in lines if line.endswith(" " + ref)), None)


def locate() -> DomainBedLocation:
    """Find DomainBed without importing it; raise :class:`DomainBedNotFoundError`."""
    loaded = sys.modules.get("domainbed")
    if getattr(loaded, "__path__", None):
        root = Path(list(loaded.__path__)[0]).parent
        return DomainBedLocation(root, "imported", read_commit(root))
    for finder in sys.meta_path:
        if isinstance(finder, DomainBedFinder) or not hasattr(finder, "find_spec"):
            continue
        spec = finder.find_spec("domainbed", None)
        if spec is not None and spec.submodule_search_locations:
            root = Path(list(spec.submodule_search_locations)[0]).parent
            return DomainBedLocation(root, "importable", read_commit(root))
    found = fallback()
    if found is None:
        raise DomainBedNotFoundError(not_found_message())
    return DomainBedLocation(*found, read_commit(found[0]))


def ensure_domainbed_importable() -> DomainBedLocation:
    """Make ``import domainbed`` work, or raise :class:`DomainBedNotFoundError`."""
    location = locate()
    if location.how not in ("importable", "imported"):
        install_finder()
    return location


def import_domainbed(module: str):
    """``domainbed.<module>`` (e.g. ``"lib.query"``), after
    :func:`ensure_domainbed_importable`."""
    ensure_domainbed_importable()
    return importlib.import_module(f"domainbed.{module}")

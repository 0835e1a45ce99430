"""The user's own image-folder datasets, served to DomainBed as the plugin's algorithms are.

A registry file maps a name to a folder laid out as ``<folder>/<domain>/<class>/<image>``,
with its domains and classes as read when it was added (``hessian-dg dataset add NAME
FOLDER``). Its path: ``$HESSIAN_DG_DATASETS``, else
``$XDG_CONFIG_HOME/hessian-dg/datasets.json`` (default ``~/.config/...``). Every
process that imports ``domainbed.datasets`` reads it (DomainBed's train, sweep and
collect_results, their jobs, hessian-dg's commands: the start-up hook calls
:func:`register_datasets`), and finds in that module, per entry, a class ``NAME``:

- a subclass of DomainBed's ``MultipleEnvironmentImageFolder``, so its transforms
  are DomainBed's for 224x224 images (augmented in training domains when the hparam
  ``data_augmentation`` says so); no per-dataset rule of DomainBed's hparam registry
  names it, so its hparams are those of DomainBed's 224x224 datasets without special
  cases (VLCS's), and it checkpoints as often as PACS, VLCS and OfficeHome;
- ``ENVIRONMENTS`` at class level, the recorded domains (DomainBed's sweep and
  collect_results need them before any ``--data_dir``). The images are read from the
  registered folder; ``--data_dir`` is not used;
- its name appended to ``DATASETS`` (collect_results drops names absent from it),
  except in the process whose main script is DomainBed's sweep and in that script's
  module-level ``DATASETS``: the sweep's default ``--datasets`` (DATASETS without the
  Debug ones) stays DomainBed's, an own dataset runs when named.

A name DomainBed's module already has (``PACS``, ``Debug``, ``os``) is refused at
``add`` and, found in the registry, left to DomainBed with a warning.
:func:`unregister_datasets` undoes it; ``HESSIAN_DG_DISABLE`` switches it off with
the rest of the plugin. Hidden folders (``.name``) are neither domains nor classes:
DomainBed's class takes every folder, so it is given a view of the folder, a folder
``<cache>/hessian-dg/dataset_views/NAME-<hash>/<domain>/`` holding one symbolic link
per visible class, made once per layout.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Optional

from domainbed_patch.validation import UsageError

REGISTRY_VARIABLE = "HESSIAN_DG_DATASETS"
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
#: DomainBed's dataset whose CHECKPOINT_FREQ own datasets take (that of its 224x224 ones).
CHECKPOINT_FREQ_OF = "PACS"
#: DomainBed scripts whose default dataset list must not gain own datasets.
SWEEP_SCRIPT = ("scripts", "sweep.py")


class OwnDatasetError(UsageError):
    """An own dataset cannot be added, found or read; the message says why."""


class OwnDatasetWarning(UserWarning):
    """An entry of the registry is not served (bad file, or a name DomainBed has)."""


def registry_path() -> Path:
    """``$HESSIAN_DG_DATASETS``, else the user's config folder's hessian-dg/datasets.json."""
    if os.environ.get(REGISTRY_VARIABLE):
        return Path(os.environ[REGISTRY_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "hessian-dg" / "datasets.json"


def views_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "hessian-dg" / "dataset_views"


def load() -> Dict[str, dict]:
    """The registry: name -> {"folder", "domains", "classes"[, "n_workers"]}; {} when
    there is none."""
    path = registry_path()
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, dict) or not all(
                isinstance(e, dict) and {"folder", "domains", "classes"} <= set(e)
                for e in entries.values()):
            raise ValueError("expected {name: {folder, domains, classes}}")
    except ValueError as error:
        raise OwnDatasetError(f"{path} is not a dataset registry ({error}); fix it or "
                              f"remove it and add the datasets again") from None
    return entries


def save(entries: Dict[str, dict]) -> None:
    """Write the registry atomically (a reader never sees half a file)."""
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".datasets-",
                                     suffix=".json", delete=False) as file:
        json.dump(entries, file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(file.name, path)


def is_own(cls) -> bool:
    return isinstance(cls, type) and issubclass(cls, OwnImageFolder)


def _domainbed_has(module, name: str) -> bool:
    return hasattr(module, name) and not is_own(getattr(module, name))


def entry_for(folder) -> dict:
    """A registry entry for ``folder``, refused with one line per layout problem."""
    from domainbed_patch import dataset_layout
    folder = Path(folder).expanduser().resolve()
    problems = dataset_layout.layout_problems(folder)
    if problems:
        raise OwnDatasetError(f"{folder} is not a dataset DomainBed can read:\n  "
                              + "\n  ".join(problems))
    layout = dataset_layout.scan(folder)
    return {"folder": str(folder), "domains": list(layout),
            "classes": dataset_layout.classes_of(layout)}


def add(name: str, folder, force: bool = False, n_workers: Optional[int] = None) -> dict:
    """Record ``folder`` as dataset ``name`` (``force``: replace an entry of that name).
    ``n_workers``: data-loader workers per split for DomainBed's train (default
    DomainBed's, 8: many processes for a small folder on a small machine)."""
    from domainbed import datasets
    if not NAME_PATTERN.match(name):
        raise OwnDatasetError(f"dataset name {name!r} is not valid: use letters, digits "
                              "and _, starting with a letter")
    if _domainbed_has(datasets, name):
        theirs = [d for d in datasets.DATASETS if not is_own(getattr(datasets, d, None))]
        raise OwnDatasetError(f"DomainBed's datasets module already has {name!r}; choose "
                              f"another name (DomainBed's datasets: {', '.join(theirs)})")
    entries = load()
    if name in entries and not force:
        raise OwnDatasetError(f"dataset {name!r} is already registered "
                              f"({entries[name]['folder']}); pass --force to replace it")
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int)
                                  or n_workers < 0):
        raise OwnDatasetError(f"n_workers {n_workers!r} is not valid: an integer >= 0")
    entries[name] = entry_for(folder)
    if n_workers is not None:
        entries[name]["n_workers"] = n_workers
    save(entries)
    refresh()
    return entries[name]


def ensure(name: str, folder) -> dict:
    """``folder`` served as dataset ``name``, for a preset's ``[own_datasets]`` and
    ``hessian-dg train --dataset_folder``: added when ``name`` is not registered, left
    as it is (its layout checked again) when it is registered to that folder, refused
    when it names another folder."""
    wanted = Path(folder).expanduser().resolve()
    entries = load()
    if name not in entries:
        return add(name, wanted)
    if Path(entries[name]["folder"]) != wanted:
        raise OwnDatasetError(f"dataset {name!r} is registered to {entries[name]['folder']}, "
                              f"not {wanted}; to serve {wanted} under that name: hessian-dg "
                              f"dataset add {name} {wanted} --force")
    check_folder(name, entries[name])
    return entries[name]


def remove(name: str) -> None:
    entries = load()
    if name not in entries:
        raise OwnDatasetError(f"no own dataset {name!r}; registered: "
                              f"{', '.join(sorted(entries)) or 'none'}")
    del entries[name]
    save(entries)
    refresh()


def refresh() -> None:
    """Serve the registry as it is now to an already imported ``domainbed.datasets``."""
    module = sys.modules.get("domainbed.datasets")
    if module is not None:
        unregister_datasets(module)
        register_datasets(module)


def check_folder(name: str, entry: dict) -> dict:
    """The layout of ``entry``'s folder, which must still have the recorded domains,
    the same classes in each and no empty class."""
    from domainbed_patch import dataset_layout
    folder = Path(entry["folder"])
    redo = f"hessian-dg dataset add {name} {folder} --force"
    if not folder.is_dir():
        raise OwnDatasetError(f"dataset {name}: its folder {folder} is gone; move it "
                              f"back, or register where it is now with {redo}")
    layout = dataset_layout.scan(folder)
    if list(layout) != entry["domains"]:
        raise OwnDatasetError(f"dataset {name}: {folder} now has domains {list(layout)}, "
                              f"registered with {entry['domains']}; run {redo}")
    problems = dataset_layout.structure_problems(folder, layout)
    if problems:
        raise OwnDatasetError(f"dataset {name}: {problems[0]}")
    return layout


def view_of(name: str, entry: dict) -> Path:
    """The folder DomainBed's class reads for ``entry``: its visible domains and
    classes, as symbolic links to the registered folder's class folders (see
    :func:`check_folder`)."""
    layout = check_folder(name, entry)
    folder = Path(entry["folder"])
    key = json.dumps([str(folder), {d: list(c) for d, c in layout.items()}])
    target = views_folder() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    for domain, classes in layout.items():
        (staging / domain).mkdir()
        for cls in classes:
            os.symlink(folder / domain / cls, staging / domain / cls, target_is_directory=True)
    try:
        os.rename(staging, target)
    except OSError:  # another process made it first
        shutil.rmtree(staging)
        if not target.is_dir():
            raise
    return target


class OwnImageFolder:
    """Mixed before DomainBed's ``MultipleEnvironmentImageFolder`` by
    :func:`dataset_class`; ``root`` (DomainBed's ``--data_dir``) is not used."""

    NAME = ""
    ENTRY: dict = {}

    def __init__(self, root, test_envs, hparams):
        view = view_of(self.NAME, self.ENTRY)
        super().__init__(str(view), test_envs, hparams["data_augmentation"], hparams)


def dataset_class(module, name: str, entry: dict) -> type:
    """DomainBed's dataset class ``name`` for a registry entry, in ``module``
    (``domainbed.datasets``), picklable by its name there."""
    base = module.MultipleEnvironmentImageFolder
    attributes = {"NAME": name, "ENTRY": dict(entry),
                  "ENVIRONMENTS": list(entry["domains"]),
                  "__module__": module.__name__, "__qualname__": name,
                  "__doc__": f"Own image-folder dataset at {entry['folder']}."}
    if "n_workers" in entry:
        attributes["N_WORKERS"] = entry["n_workers"]
    reference = getattr(module, CHECKPOINT_FREQ_OF, None)
    if reference is not None:
        attributes["CHECKPOINT_FREQ"] = reference.CHECKPOINT_FREQ
    return type(name, (OwnImageFolder, base), attributes)


def _main_is_sweep(module) -> bool:
    """True when this process's main script is DomainBed's sweep (``python -m
    domainbed.scripts.sweep`` or its path), whose default ``--datasets`` is taken from
    ``DATASETS`` while it imports."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    sweep = os.path.join(os.path.dirname(module.__file__), *SWEEP_SCRIPT)
    return bool(main) and os.path.realpath(main) == os.path.realpath(sweep)


def register_datasets(module=None) -> None:
    """Serve every registry entry from ``module`` (``domainbed.datasets``); idempotent.
    A broken registry or a name DomainBed has is warned about, never raised: this
    runs while DomainBed imports."""
    import importlib
    module = module or importlib.import_module("domainbed.datasets")
    try:
        entries = load()
    except OwnDatasetError as error:
        warnings.warn(str(error), OwnDatasetWarning, stacklevel=2)
        return
    in_datasets = not _main_is_sweep(module)
    for name, entry in entries.items():
        if _domainbed_has(module, name) or not NAME_PATTERN.match(name):
            warnings.warn(f"own dataset {name!r} in {registry_path()} is not served: "
                          "DomainBed's datasets module has that name, or it is not a "
                          "valid name; rename it with hessian-dg dataset remove/add",
                          OwnDatasetWarning, stacklevel=2)
            continue
        setattr(module, name, dataset_class(module, name, entry))
        if in_datasets and name not in module.DATASETS:
            module.DATASETS.append(name)


def unregister_datasets(module=None) -> None:
    """Remove every own dataset from ``module`` (``domainbed.datasets``)."""
    module = module or sys.modules.get("domainbed.datasets")
    if module is None:
        return
    for name in [n for n, v in vars(module).items() if is_own(v)]:
        delattr(module, name)
        while name in module.DATASETS:
            module.DATASETS.remove(name)


def keep_out_of_sweep_defaults(module) -> None:
    """``domainbed.scripts.sweep`` imported as a module: its default list
    (``DATASETS``) loses the own datasets."""
    from domainbed import datasets
    module.DATASETS[:] = [d for d in module.DATASETS if not is_own(getattr(datasets, d, None))]

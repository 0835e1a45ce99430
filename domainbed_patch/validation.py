"""Checks run before any job starts, with one-line errors that name the valid choices.

Also the guard against a DomainBed trap: its train loops forever, silently, when
``batch_size`` exceeds a training split (its infinite sampler drops incomplete
batches and so never yields one). Debug datasets hold 16 examples per environment,
and their default batch size is 64.
"""
from __future__ import annotations

import difflib
import functools
import json
import math
import os
import tempfile
from typing import Dict, Iterable, List, Optional

from domainbed_patch import hparams as plugin_hparams
from domainbed_patch.errors import UserError


class UsageError(UserError, ValueError):
    """Bad input from the command line or a preset."""


#: dataset -> (folder under --data_dir, DomainBed download function), data as data.
DATASET_FOLDERS: Dict[str, tuple] = {
    "ColoredMNIST": ("MNIST", "download_mnist"),
    "RotatedMNIST": ("MNIST", "download_mnist"),
    "VLCS": ("VLCS", "download_vlcs"),
    "PACS": ("PACS", "download_pacs"),
    "OfficeHome": ("office_home", "download_office_home"),
    "TerraIncognita": ("terra_incognita", "download_terra_incognita"),
    "DomainNet": ("domain_net", "download_domain_net"),
    "SVIRO": ("sviro", "download_sviro"),
}
NO_DATA_NEEDED = ("Debug28", "Debug224")


#: WILDS datasets -> the wilds class DomainBed's download.py names for them.
WILDS_CLASSES = {"WILDSCamelyon": ("camelyon17_dataset", "Camelyon17Dataset"),
                 "WILDSFMoW": ("fmow_dataset", "FMoWDataset")}


def download_command(dataset: str, data_dir: str) -> str:
    """The command that fetches ``dataset`` into ``data_dir``, as DomainBed's
    ``download.py`` does it. Its command-line entry is no such command: at b93c22a
    ``python -m domainbed.scripts.download`` fetches TerraIncognita alone (the other
    calls are commented out), so each dataset is named by its function.

    >>> print(download_command("PACS", "data"))
    python -c "from domainbed.scripts.download import download_pacs; download_pacs('data')"
    """
    folder, function = DATASET_FOLDERS.get(dataset, (None, None))
    if dataset.startswith("Spawrious"):
        function = "download_spawrious"
    if dataset in WILDS_CLASSES:
        module, name = WILDS_CLASSES[dataset]
        return (f"python -c \"from wilds.datasets.{module} import {name}; "
                f"{name}(root_dir='{data_dir}', download=True)\"")
    if function is None:
        return ("the function of DomainBed's domainbed/scripts/download.py that fetches "
                "it (its command-line entry fetches TerraIncognita only)")
    return (f"python -c \"from domainbed.scripts.download import {function}; "
            f"{function}('{data_dir}')\"")


def check_names(kind: str, names: Iterable[str], valid: Iterable[str]) -> None:
    valid = list(valid)
    for name in names:
        if name not in valid:
            raise UsageError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")


def parse_hparams_json(text: Optional[str]) -> dict:
    """``--hparams`` as a dict; error on malformed JSON or a non-object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--hparams is not valid JSON ({error}): {text!r}; expected an "
                         "object such as '{\"lr\": 1e-4, \"batch_size\": 16}'") from None
    if not isinstance(value, dict):
        raise UsageError(f"--hparams must be a JSON object, got {type(value).__name__}: "
                         f"{text!r}")
    return value


def _compatible(default, value) -> bool:
    """JSON ``value`` fits where the registry has ``default`` (an int fits a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) == isinstance(value, bool)
    accepted = {int: int, float: (int, float), str: str}
    kind = next((k for k in accepted if isinstance(default, k)), None)
    return kind is None or isinstance(value, accepted[kind])


@functools.cache
def declared_hparams() -> frozenset:
    """Every hparam DomainBed's registry (with the plugin) declares for some
    algorithm and some dataset. Keys that DomainBed's networks read for some
    inputs (``mlp_width``, ``resnet18``, ...) are among them."""
    from domainbed import algorithms, datasets, hparams_registry
    return frozenset(key for algorithm in algorithms.ALGORITHMS
                     for dataset in datasets.DATASETS
                     for key in hparams_registry.default_hparams(algorithm, dataset))


def check_known_keys(algorithm: str, dataset: str, keys: Iterable[str],
                     also_valid: Iterable[str] = ()) -> None:
    """A key no algorithm or dataset declares (and not in ``also_valid``, e.g. what
    a sweep protocol sets) is a typo: DomainBed's train would merge it silently and
    train as if it were not there."""
    from domainbed import hparams_registry
    valid = declared_hparams() | set(also_valid)
    for key in keys:
        if key in valid:
            continue
        own = sorted(hparams_registry.default_hparams(algorithm, dataset))
        close = difflib.get_close_matches(key, sorted(valid), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(
            f"unknown hparam {key!r}{hint}: DomainBed declares it for no algorithm and "
            f"no dataset, so it would be ignored. {algorithm} on {dataset} takes: "
            f"{', '.join(own)}")


def ignoring_algorithms(key: str, algorithms: Iterable[str],
                        datasets: Iterable[str]) -> List[str]:
    """The ``algorithms`` that declare ``key`` for none of ``datasets``."""
    from domainbed import hparams_registry
    return [a for a in algorithms
            if not any(key in hparams_registry.default_hparams(a, d) for d in datasets)]


def check_hparams(algorithm: str, dataset: str, overrides: dict,
                  also_valid: Iterable[str] = ()) -> dict:
    """Keys, types and domains of ``overrides``, and the rules across hparams.

    A key must be declared by DomainBed's registry for some algorithm or dataset
    (:func:`check_known_keys`); its type must match the registry's default; the
    plugin's hparams must lie in their domains. Returns the merged default hparams.
    """
    from domainbed import hparams_registry
    check_known_keys(algorithm, dataset, overrides, also_valid)
    merged = hparams_registry.default_hparams(algorithm, dataset)
    for key, value in overrides.items():
        if key in merged and not _compatible(merged[key], value):
            raise UsageError(
                f"hparam {key}={value!r} is a {type(value).__name__}, but {algorithm} on "
                f"{dataset} expects a {type(merged[key]).__name__} (default {merged[key]!r})")
    check_hparam_ranges(algorithm, dataset, overrides)
    merged.update(overrides)
    if algorithm in plugin_hparams.HPARAMS:
        try:
            plugin_hparams.validate_hparams(algorithm, merged)
        except ValueError as error:
            raise UsageError(str(error)) from None
    return merged


def check_data_dir(dataset: str, data_dir: Optional[str]) -> None:
    if dataset in NO_DATA_NEEDED:
        return
    from domainbed_patch import own_datasets
    entry = own_datasets.load().get(dataset)
    if entry is not None:  # reads its registered folder, not --data_dir
        own_datasets.check_folder(dataset, entry)
        return
    folder = DATASET_FOLDERS.get(dataset, (None,))[0]
    target = os.path.join(data_dir, folder) if (data_dir and folder) else data_dir
    if not data_dir or not os.path.isdir(target):
        where = (f"--data_dir {data_dir!r} holds no {folder}/" if data_dir
                 else "--data_dir is missing")
        raise UsageError(f"dataset {dataset} needs its data: {where}. Get it with: "
                         f"{download_command(dataset, data_dir or 'DATA_DIR')}")


def split_sizes_known(dataset: str) -> bool:
    """True for datasets whose split sizes are known without a download: the Debug
    ones and the user's own (a folder listing)."""
    from domainbed_patch import own_datasets
    return dataset in NO_DATA_NEEDED or dataset in own_datasets.load()


def smallest_training_split(dataset: str, test_envs, holdout_fraction: float,
                            hparams: dict) -> Optional[int]:
    """Examples in the smallest training in-split, for datasets whose size is known
    without a download (:func:`split_sizes_known`); None otherwise."""
    if not split_sizes_known(dataset):
        return None
    from domainbed import datasets
    env_sizes = [len(env) for env in datasets.get_dataset_class(dataset)("", [], hparams)]
    sizes = [n - int(n * holdout_fraction) for i, n in enumerate(env_sizes)
             if i not in test_envs]
    return min(sizes) if sizes else None


def check_batch_size(dataset: str, test_envs, holdout_fraction: float, hparams: dict) -> None:
    check_holdout_examples(dataset, holdout_fraction, hparams)
    size = smallest_training_split(dataset, test_envs, holdout_fraction, hparams)
    batch = hparams.get("batch_size")
    if size is not None and batch is not None and batch > size:
        raise UsageError(
            f"batch_size {batch} exceeds the {size} examples of a training split of "
            f"{dataset} (holdout_fraction {holdout_fraction}): DomainBed's train would "
            f"wait forever for a full batch. Pass --hparams '{{\"batch_size\": {size}}}' "
            f"or smaller")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


#: hparam -> (check, what is valid): ranges DomainBed's train does not check, the same
#: for ``train --hparams`` and a sweep's ``[hparams]`` (both reach :func:`check_hparams`).
HPARAM_RANGES = {
    "batch_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                   "an integer >= 1"),
    "lr": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
}


def check_hparam_ranges(algorithm: str, dataset: str, hparams: dict) -> None:
    for key, (check, valid) in HPARAM_RANGES.items():
        if key in hparams and not check(hparams[key]):
            raise UsageError(f"hparam {key}={hparams[key]!r} is out of range for "
                             f"{algorithm} on {dataset}: expected {valid}")


def is_fraction(value) -> bool:
    """A holdout fraction: a number strictly between 0 and 1 (NaN is not)."""
    return _is_number(value) and 0 < value < 1


def check_holdout_fraction(value, flag: str = "--holdout_fraction") -> None:
    if not is_fraction(value):
        raise UsageError(f"{flag} {value}: must be a number in (0, 1), the fraction of "
                         "each environment DomainBed holds out for validation (default 0.2)")


def check_holdout_examples(dataset: str, holdout_fraction: float, hparams: dict) -> None:
    """Every environment's held-out split holds an example, where sizes are known:
    DomainBed's accuracy on an empty split divides by zero."""
    check_holdout_fraction(holdout_fraction, "holdout_fraction")
    if not split_sizes_known(dataset):
        return
    from domainbed import datasets
    smallest = min(len(env) for env in datasets.get_dataset_class(dataset)("", [], hparams))
    if int(smallest * holdout_fraction) < 1:
        raise UsageError(
            f"holdout_fraction {holdout_fraction} holds out no example of {dataset}'s "
            f"smallest environment ({smallest} examples): DomainBed's evaluation would "
            f"divide by zero. Use at least {1 / smallest:.4g}")


def check_test_envs(dataset: str, test_envs, flag: str = "--test_envs") -> None:
    """Test environments exist, and leave at least one environment to train on."""
    from domainbed import datasets
    count = datasets.num_environments(dataset)
    bad = [e for e in test_envs if not 0 <= e < count]
    if bad:
        raise UsageError(f"{flag} {bad} out of range: {dataset} has environments "
                         f"0..{count - 1}")
    if set(range(count)) <= set(test_envs):
        raise UsageError(f"{flag} {list(test_envs)}: every environment of {dataset} "
                         f"(0..{count - 1}) would be a test environment, none left to "
                         "train on; leave at least one out")


def check_output_dir(path, flag: str = "--output_dir", writable: bool = True) -> None:
    """``path`` is a folder, or can be made one, and (``writable``) can be written to;
    nothing is made."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a file, not a folder; give a folder (made if "
                         "missing)")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"{flag} {path} cannot be made: {existing} is a file; give a "
                         "folder (made if missing)")
    problem = writable and cannot_write_in(existing)
    if problem:
        raise UsageError(f"{flag} {path}: {existing} is not writable ({problem}); give a "
                         "folder you can write to")


def cannot_write_in(folder: str) -> str:
    """Why nothing can be made in ``folder`` ('' if something can): tried by making
    an empty folder there and removing it (permission bits alone miss what root
    cannot do: read-only mounts, /sys, /proc)."""
    try:
        probe = tempfile.mkdtemp(prefix=".hessian-dg-write-check-", dir=folder)
    except OSError as error:
        return error.strerror or type(error).__name__
    os.rmdir(probe)
    return ""

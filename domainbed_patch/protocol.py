"""Which DomainBed protocol a sweep runs: the paper's, or today's upstream defaults.

Upstream DomainBed changed two things after the paper (Hemati et al., ICCV 2023):

- since July 2024 the default 224x224 backbone is timm's AugMix ResNet-50
  (hparam ``resnet50_augmix=True``); the paper used torchvision's ImageNet ResNet-50;
- random batch sizes start at 8 instead of 16: ``2^U(3, 5.5)`` instead of
  ``2^U(4, 5.5)``; DomainNet ``2^U(3, 5)`` instead of ``2^U(4, 5)``; small images
  ``2^U(3, 9)`` instead of ``2^U(4, 9)``.

The "paper" protocol undoes both for every algorithm of a sweep, ERM included, by
fixing per job the hparams that DomainBed would otherwise draw: the batch size is
drawn from the older range with DomainBed's own per-name seed, so it is the value
the registry of the time gave for that (hparams_seed, trial_seed).
Default hparams (hparams_seed 0) keep their batch size: those did not change.

:func:`resolve_hparams` is the one place that says which hparams a job trains
with: the registry's defaults (hparams_seed 0) or its draw, then what the protocol
fixes, then the user's overrides, exactly as DomainBed's train merges them.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from domainbed_patch.hparams import seed_hash, train_random_seed

SMALL_IMAGES = ("Debug28", "RotatedMNIST", "ColoredMNIST")
#: algorithms whose batch size DomainBed fixes rather than draws (unchanged).
FIXED_BATCH_ALGORITHMS = ("ARM", "RDM")

#: hparams the "paper" protocol may fix per job.
KEYS_SET = ("resnet50_augmix", "batch_size")

#: (low, high) exponents of the paper-era random batch size, by dataset kind.
PAPER_BATCH_EXPONENTS = {"small_images": (4, 9), "DomainNet": (4, 5), "other": (4, 5.5)}
UPSTREAM_BATCH_EXPONENTS = {"small_images": (3, 9), "DomainNet": (3, 5), "other": (3, 5.5)}


def _dataset_kind(dataset: str) -> str:
    if dataset in SMALL_IMAGES:
        return "small_images"
    return "DomainNet" if dataset == "DomainNet" else "other"


def paper_batch_size(dataset: str, hparams_seed: int, trial_seed: int) -> int:
    """The random batch size of the paper-era registry for this job."""
    low, high = PAPER_BATCH_EXPONENTS[_dataset_kind(dataset)]
    random_seed = train_random_seed(hparams_seed, trial_seed)
    rng = np.random.RandomState(seed_hash(random_seed, "batch_size"))
    return int(2 ** rng.uniform(low, high))


def protocol_hparams(protocol: str, dataset: str, algorithm: str, hparams_seed: int,
                     trial_seed: int) -> dict:
    """Hparams a job must fix to follow ``protocol`` ({} for "upstream")."""
    if protocol == "upstream":
        return {}
    if protocol != "paper":
        raise ValueError(f"unknown protocol {protocol!r}; choose 'paper' or 'upstream'")
    fixed = {"resnet50_augmix": False}
    if hparams_seed != 0 and (dataset in SMALL_IMAGES
                              or algorithm not in FIXED_BATCH_ALGORITHMS):
        fixed["batch_size"] = paper_batch_size(dataset, hparams_seed, trial_seed)
    return fixed


def fixed_hparams(protocol: str, dataset: str, algorithm: str, hparams_seed: int,
                  trial_seed: int, overrides: Optional[Mapping] = None) -> dict:
    """What a job passes to DomainBed's train as ``--hparams``: the protocol's fixed
    values, then ``overrides``."""
    fixed = protocol_hparams(protocol, dataset, algorithm, hparams_seed, trial_seed)
    fixed.update(overrides or {})
    return fixed


def resolve_hparams(algorithm: str, dataset: str, hparams_seed: int = 0,
                    trial_seed: int = 0, protocol: str = "upstream",
                    overrides: Optional[Mapping] = None) -> dict:
    """The hparams DomainBed's train uses for a job: the registry's defaults when
    ``hparams_seed`` is 0, else its draw for ``train_random_seed(hparams_seed,
    trial_seed)``; then :func:`fixed_hparams`."""
    from domainbed import hparams_registry
    if hparams_seed == 0:
        hparams = hparams_registry.default_hparams(algorithm, dataset)
    else:
        hparams = hparams_registry.random_hparams(
            algorithm, dataset, train_random_seed(hparams_seed, trial_seed))
    hparams.update(fixed_hparams(protocol, dataset, algorithm, hparams_seed, trial_seed,
                                 overrides))
    return hparams


def describe(protocol: str) -> str:
    """One paragraph for ``sweep plan``: what the protocol changes."""
    if protocol == "upstream":
        return ("protocol: upstream (today's DomainBed defaults: timm AugMix ResNet-50, "
                "random batch sizes 2^U(3, .))")
    ranges = ", ".join(f"{kind} 2^U{PAPER_BATCH_EXPONENTS[kind]} instead of 2^U"
                       f"{UPSTREAM_BATCH_EXPONENTS[kind]}" for kind in PAPER_BATCH_EXPONENTS)
    return ("protocol: paper (DomainBed as Hemati et al. ran it, for every algorithm): "
            "resnet50_augmix=false (torchvision ImageNet ResNet-50); random batch sizes "
            f"{ranges}")

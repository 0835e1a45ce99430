"""Which DomainBed protocol a sweep runs: the paper's, or today's upstream defaults.

The paper (Hemati et al., ICCV 2023) ran the authors' DomainBed fork
(huawei-noah/Federated-Learning, ``HessianAlignment/``, commit a50b474). Against
upstream DomainBed at the pinned b93c22a its ResNet-50 differs in three ways:

- BatchNorm: the fork's ``networks.ResNet`` always freezes it (running statistics
  and affine mode of eval, also after ``train()``), as DomainBed did until July
  2024; upstream since then freezes it only when the hparam ``freeze_bn`` is true,
  and its default is false, so BatchNorm trains;
- backbone: upstream's default 224x224 backbone is timm's AugMix ResNet-50
  (hparam ``resnet50_augmix=True``, July 2024); the fork's is torchvision's
  ImageNet ResNet-50;
- random batch sizes: the fork draws ``2^U(4, 5.5)`` (DomainNet ``2^U(4, 5)``,
  small images ``2^U(4, 9)``). That range is the fork's own: upstream DomainBed has
  drawn ``2^U(3, .)`` since 2020, the registry of its published 2020 table
  included (commit 7df6f06).

The "paper" protocol undoes all three for every algorithm of a sweep, ERM
included, by fixing per job what DomainBed would otherwise default or draw:
``freeze_bn=True``, ``resnet50_augmix=False``, and the batch size drawn from the
fork's range with DomainBed's own per-name seed, so it is the value the fork's
registry gives for that (hparams_seed, trial_seed). Default hparams (hparams_seed
0) keep their batch size: the fork has the same defaults. ``freeze_bn`` and
``resnet50_augmix`` are fixed for the 28x28 datasets too, where DomainBed's
MNIST network reads neither: one rule for every job.

:func:`resolve_hparams` is the one place that says which hparams a job trains
with: the registry's defaults (hparams_seed 0) or its draw, then what the protocol
fixes, then the user's overrides, exactly as DomainBed's train merges them.
:data:`SETTINGS` says, per protocol, what it trains with in the terms the report
compares with its reference rows.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from domainbed_patch.hparams import seed_hash, train_random_seed

SMALL_IMAGES = ("Debug28", "RotatedMNIST", "ColoredMNIST")
#: algorithms whose batch size DomainBed fixes rather than draws (unchanged).
FIXED_BATCH_ALGORITHMS = ("ARM", "RDM")

#: hparams the "paper" protocol may fix per job.
KEYS_SET = ("freeze_bn", "resnet50_augmix", "batch_size")
#: what the "paper" protocol fixes for every job, whatever its seeds.
PAPER_FIXED = {"freeze_bn": True, "resnet50_augmix": False}

#: (low, high) exponents of the random batch size, by dataset kind: the fork's, upstream's.
PAPER_BATCH_EXPONENTS = {"small_images": (4, 9), "DomainNet": (4, 5), "other": (4, 5.5)}
UPSTREAM_BATCH_EXPONENTS = {"small_images": (3, 9), "DomainNet": (3, 5), "other": (3, 5.5)}


def _dataset_kind(dataset: str) -> str:
    if dataset in SMALL_IMAGES:
        return "small_images"
    return "DomainNet" if dataset == "DomainNet" else "other"


def drawn_batch_size(dataset: str, hparams_seed: int, trial_seed: int,
                     exponents: Mapping = UPSTREAM_BATCH_EXPONENTS) -> int:
    """The random batch size ``int(2^U(low, high))`` that a registry drawing from
    ``exponents`` (by dataset kind) gives this job, seeded as DomainBed seeds it."""
    low, high = exponents[_dataset_kind(dataset)]
    random_seed = train_random_seed(hparams_seed, trial_seed)
    rng = np.random.RandomState(seed_hash(random_seed, "batch_size"))
    return int(2 ** rng.uniform(low, high))


def paper_batch_size(dataset: str, hparams_seed: int, trial_seed: int) -> int:
    """The random batch size of the authors' fork's registry for this job."""
    return drawn_batch_size(dataset, hparams_seed, trial_seed, PAPER_BATCH_EXPONENTS)


def protocol_hparams(protocol: str, dataset: str, algorithm: str, hparams_seed: int,
                     trial_seed: int) -> dict:
    """Hparams a job must fix to follow ``protocol`` ({} for "upstream")."""
    if protocol == "upstream":
        return {}
    if protocol != "paper":
        raise ValueError(f"unknown protocol {protocol!r}; choose 'paper' or 'upstream'")
    fixed = dict(PAPER_FIXED)
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


#: What each protocol trains a 224x224 job with, in the report's terms
#: (:mod:`domainbed_patch.report.protocols` compares them with reference rows).
SETTINGS = {
    "paper": {"backbone": "torchvision ResNet-50", "BatchNorm": "frozen",
              "random batch sizes": "2^U(4, .)"},
    "upstream": {"backbone": "timm AugMix ResNet-50", "BatchNorm": "trained",
                 "random batch sizes": "2^U(3, .)"},
}


def describe(protocol: str) -> str:
    """One paragraph for ``sweep plan``: what the protocol changes."""
    if protocol == "upstream":
        return ("protocol: upstream (today's DomainBed defaults: BatchNorm trained "
                "(freeze_bn=false), timm AugMix ResNet-50, random batch sizes 2^U(3, .))")
    ranges = ", ".join(f"{kind} 2^U{PAPER_BATCH_EXPONENTS[kind]} instead of 2^U"
                       f"{UPSTREAM_BATCH_EXPONENTS[kind]}" for kind in PAPER_BATCH_EXPONENTS)
    return ("protocol: paper (DomainBed as the authors' fork ran it, for every "
            "algorithm): freeze_bn=true (BatchNorm frozen, as the fork's ResNet always "
            "does); resnet50_augmix=false (torchvision ImageNet ResNet-50); random batch "
            f"sizes {ranges}")

"""What is measured: featurizers, heads and variants, and how each is built.

The ResNets are built by DomainBed's ``networks.ResNet`` with ImageNet loading
switched off (torchvision constructors called with ``weights=None`` while the
algorithm is built; see :func:`random_init_resnets`): timings do not depend on
the weights' values.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from domainbed_patch.locate import ensure_domainbed_importable

ensure_domainbed_importable()

from domainbed import algorithms as domainbed_algorithms  # noqa: E402
from domainbed import hparams_registry  # noqa: E402

from stepcost.double_backprop import DoubleBackpropAlignment  # noqa: E402


@dataclass(frozen=True)
class FeaturizerSpec:
    """A DomainBed featurizer, chosen by DomainBed from the input shape and hparams."""

    input_shape: tuple
    hparams: dict


@dataclass(frozen=True)
class HeadSpec:
    """A classifier head: the dataset whose class count and hparams it takes."""

    dataset: str
    num_classes: int


FEATURIZERS: Dict[str, FeaturizerSpec] = {
    "mnist_cnn": FeaturizerSpec((3, 28, 28), {}),
    "resnet18": FeaturizerSpec((3, 224, 224), {"resnet18": True,
                                               "resnet50_augmix": False}),
    "resnet50": FeaturizerSpec((3, 224, 224), {"resnet18": False,
                                               "resnet50_augmix": False}),
}

HEADS: Dict[str, HeadSpec] = {
    "pacs": HeadSpec("PACS", 7),
    "domainnet": HeadSpec("DomainNet", 345),
}


@dataclass(frozen=True)
class Variant:
    """One algorithm configuration: its DomainBed name, hparam overrides, builder."""

    name: str
    algorithm: str  # name in DomainBed's hparams registry
    overrides: dict
    double_backprop: Optional[str] = None  # "hgp" or "hutchinson" for the reference

    def build(self, input_shape, num_classes, num_domains, hparams, max_probes=None):
        if self.double_backprop is not None:
            return DoubleBackpropAlignment(input_shape, num_classes, num_domains,
                                           hparams, self.double_backprop, max_probes)
        cls = domainbed_algorithms.get_algorithm_class(self.algorithm)
        return cls(input_shape, num_classes, num_domains, hparams)


_VARIANT_PATTERNS = (
    (re.compile(r"erm"), lambda m: Variant("erm", "ERM", {})),
    (re.compile(r"hgp"), lambda m: Variant("hgp", "HGP", {})),
    (re.compile(r"hutchinson-s([1-9][0-9]*)"),
     lambda m: Variant(m.group(0), "Hutchinson",
                       {"hutchinson_samples": int(m.group(1))})),
    (re.compile(r"hutchinson-exact"),
     lambda m: Variant("hutchinson-exact", "Hutchinson", {"hutchinson_exact": True})),
    (re.compile(r"dbp-hgp"), lambda m: Variant("dbp-hgp", "HGP", {}, "hgp")),
    (re.compile(r"dbp-hutchinson-s([1-9][0-9]*)"),
     lambda m: Variant(m.group(0), "Hutchinson",
                       {"hutchinson_samples": int(m.group(1))}, "hutchinson")),
)

VARIANT_FORMS = ("erm", "hgp", "hutchinson-s<S>", "hutchinson-exact", "dbp-hgp",
                 "dbp-hutchinson-s<S>")

DEFAULT_VARIANTS = ("erm", "hgp", "hutchinson-s300", "hutchinson-s100",
                    "hutchinson-exact", "dbp-hgp", "dbp-hutchinson-s300")


def parse_variant(name: str) -> Variant:
    for pattern, make in _VARIANT_PATTERNS:
        match = pattern.fullmatch(name.strip())
        if match:
            return make(match)
    raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANT_FORMS)} "
                     f"(S a positive integer, e.g. hutchinson-s300)")


@contextlib.contextmanager
def random_init_resnets():
    """Make torchvision's ResNet constructors ignore ``pretrained``/``weights``.

    DomainBed's ``networks.ResNet`` asks for ImageNet weights, which would be
    downloaded; timing needs only the architecture. Restored on exit.
    """
    import torchvision.models as models

    names = ("resnet18", "resnet50")
    originals = {name: getattr(models, name) for name in names}

    def without_weights(constructor):
        def build(*args, pretrained=None, weights=None, **kwargs):
            return constructor(*args, weights=None, **kwargs)
        return build

    try:
        for name, constructor in originals.items():
            setattr(models, name, without_weights(constructor))
        yield
    finally:
        for name, constructor in originals.items():
            setattr(models, name, constructor)


def variant_hparams(variant: Variant, featurizer: FeaturizerSpec, head: HeadSpec) -> dict:
    hparams = hparams_registry.default_hparams(variant.algorithm, head.dataset)
    hparams.update(featurizer.hparams)
    hparams.update(variant.overrides)
    return hparams


def build_algorithm(variant: Variant, featurizer: FeaturizerSpec, head: HeadSpec,
                    num_domains: int, device: torch.device, seed: int,
                    max_probes: Optional[int] = None):
    torch.manual_seed(seed)
    hparams = variant_hparams(variant, featurizer, head)
    with random_init_resnets():
        algorithm = variant.build(featurizer.input_shape, head.num_classes,
                                  num_domains, hparams, max_probes)
    algorithm.to(device)
    algorithm.train()
    return algorithm


def synthetic_minibatches(featurizer: FeaturizerSpec, head: HeadSpec, num_domains: int,
                          batch_size: int, device: torch.device, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn((batch_size, *featurizer.input_shape), generator=generator).to(device),
             torch.randint(0, head.num_classes, (batch_size,), generator=generator).to(device))
            for _ in range(num_domains)]

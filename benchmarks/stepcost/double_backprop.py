"""The double-backprop formulation of HGP and Hutchinson as a DomainBed algorithm."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from domainbed_patch.locate import ensure_domainbed_importable

ensure_domainbed_importable()

from domainbed import algorithms as domainbed_algorithms  # noqa: E402
from domainbed import networks  # noqa: E402

from stepcost.double_backprop_penalty import CURVATURES, double_backprop_penalty  # noqa: E402


class DoubleBackpropAlignment(domainbed_algorithms.Algorithm):
    r"""HGP or Hutchinson computed by double backprop, as the authors do.

    Minimises ``Lbar`` plus the penalty of
    :func:`stepcost.double_backprop_penalty.double_backprop_penalty` (every head
    quantity from autograd, probes in a Python loop). ``max_probes`` caps S (the
    benchmark's ``--dbp_max_probes``) to bound the cost of a run; the estimate
    then uses that many probes. Network and optimizer are built as DomainBed's ERM
    builds them. Used only as a cost reference; it is not registered with DomainBed.
    """

    def __init__(self, input_shape, num_classes, num_domains, hparams, curvature,
                 max_probes=None):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        if curvature not in CURVATURES:
            raise ValueError(f"curvature must be one of {CURVATURES}, got {curvature!r}")
        self.curvature = curvature
        self.num_probes = self.hparams.get("hutchinson_samples")
        if max_probes is not None and self.num_probes is not None:
            self.num_probes = min(self.num_probes, max_probes)
        self.featurizer = networks.Featurizer(input_shape, self.hparams)
        self.classifier = networks.Classifier(
            self.featurizer.n_outputs, num_classes, self.hparams["nonlinear_classifier"])
        self.network = nn.Sequential(self.featurizer, self.classifier)
        self.optimizer = torch.optim.Adam(
            self.network.parameters(), lr=self.hparams["lr"],
            weight_decay=self.hparams["weight_decay"])
        self.probe_generator = None  # made on first use, on the parameters' device

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.probe_generator is None or self.probe_generator.device != device:
            seed = int(torch.randint(0, 2**62, (1,)).item())
            self.probe_generator = torch.Generator(device=device).manual_seed(seed)
        return self.probe_generator

    def update(self, minibatches, unlabeled=None):
        ys = [y for _, y in minibatches]
        features = self.featurizer(torch.cat([x for x, _ in minibatches]))
        logits = self.classifier(features)
        nll = sum(F.cross_entropy(z, y) for z, y in
                  zip(logits.split([len(y) for y in ys]), ys)) / len(ys)
        params = [p for p in self.classifier.parameters() if p.requires_grad]
        penalty = double_backprop_penalty(
            self.classifier, params, features, ys, self.curvature,
            self.hparams["penalty_alpha"], self.hparams["penalty_beta"],
            num_probes=self.num_probes or 0,
            generator=(self._generator(features.device)
                       if self.curvature == "hutchinson" else None),
            logits=logits)

        self.optimizer.zero_grad()
        (nll + penalty).backward()
        self.optimizer.step()
        nll_value, penalty_value = nll.item(), penalty.item()
        return {"loss": nll_value + penalty_value, "nll": nll_value,
                "penalty": penalty_value}

    def predict(self, x):
        return self.network(x)

"""The double-backprop formulation of HGP and Hutchinson, the cost reference."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from domainbed import algorithms as domainbed_algorithms
from domainbed import networks


class DoubleBackpropAlignment(domainbed_algorithms.Algorithm):
    r"""HGP or Hutchinson computed by double backprop, as the authors do.

    Minimises the objective of :mod:`hessian_dg.algorithms`,

        Lbar + (1/m) sum_e [alpha ||A_e - sg(Abar)||^2 + beta ||g_e - sg(gbar)||^2],

    with every head quantity obtained from autograd:

    - ``g_e = grad_theta L_e`` with ``create_graph=True``;
    - HGP: ``H g = ||g|| grad_theta ||g||``, one more ``autograd.grad``;
    - Hutchinson: a Python loop over S Rademacher probes ``z``, each
      ``H z = grad_theta <g, z>`` with ``create_graph=True`` and accumulated into
      ``(1/S) sum z * H z``; every probe's product stays in the graph until the
      backward pass.

    Targets (``gbar``, ``Abar``) come from the average loss on detached features
    and are detached. ``max_probes`` caps S (the benchmark's ``--dbp_max_probes``),
    to bound the cost of a run; the estimate then uses that many probes. Network and optimizer are built as DomainBed's ERM builds them.
    Used only as a cost reference; it is not registered with DomainBed.
    """

    def __init__(self, input_shape, num_classes, num_domains, hparams, curvature,
                 max_probes=None):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        if curvature not in ("hgp", "hutchinson"):
            raise ValueError(f"curvature must be 'hgp' or 'hutchinson', got {curvature!r}")
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

    def _head_params(self):
        return [p for p in self.classifier.parameters() if p.requires_grad]

    def _hessian_gradient_product(self, grads, params):
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        norm_grads = torch.autograd.grad(norm, params, create_graph=True)
        return [norm * d for d in norm_grads]

    def _rademacher_like(self, p):
        if self.probe_generator is None or self.probe_generator.device != p.device:
            seed = int(torch.randint(0, 2**62, (1,)).item())
            self.probe_generator = torch.Generator(device=p.device).manual_seed(seed)
        bits = torch.randint(0, 2, p.shape, generator=self.probe_generator,
                             device=p.device)
        return bits.to(p.dtype) * 2 - 1

    def _hutchinson_diagonal(self, grads, params):
        num_probes = self.num_probes
        estimate = [torch.zeros_like(p) for p in params]
        for _ in range(num_probes):
            probes = [self._rademacher_like(p) for p in params]
            products = torch.autograd.grad(grads, params, grad_outputs=probes,
                                           create_graph=True)
            estimate = [e + z * hz for e, z, hz in zip(estimate, probes, products)]
        return [e / num_probes for e in estimate]

    def _curvature(self, grads, params):
        if self.curvature == "hgp":
            return self._hessian_gradient_product(grads, params)
        return self._hutchinson_diagonal(grads, params)

    def update(self, minibatches, unlabeled=None):
        ys = [y for _, y in minibatches]
        sizes = [len(y) for y in ys]
        m = len(sizes)
        features = self.featurizer(torch.cat([x for x, _ in minibatches]))
        logits = self.classifier(features)
        losses = [F.cross_entropy(z, y) for z, y in zip(logits.split(sizes), ys)]
        nll = sum(losses) / m
        alpha, beta = self.hparams["penalty_alpha"], self.hparams["penalty_beta"]

        params = self._head_params()
        average_logits = self.classifier(features.detach())
        average_loss = sum(F.cross_entropy(z, y) for z, y in
                           zip(average_logits.split(sizes), ys)) / m
        target_grads = torch.autograd.grad(average_loss, params, create_graph=True)
        target_curvature = [a.detach() for a in self._curvature(target_grads, params)]
        target_grads = [g.detach() for g in target_grads]

        penalty = nll.new_zeros(())
        for loss in losses:
            grads = torch.autograd.grad(loss, params, create_graph=True)
            curvature = self._curvature(grads, params)
            penalty = penalty + alpha * sum(((a - t) ** 2).sum() for a, t in
                                            zip(curvature, target_curvature))
            penalty = penalty + beta * sum(((g - t) ** 2).sum() for g, t in
                                           zip(grads, target_grads))
        penalty = penalty / m

        self.optimizer.zero_grad()
        (nll + penalty).backward()
        self.optimizer.step()
        nll_value, penalty_value = nll.item(), penalty.item()
        return {"loss": nll_value + penalty_value, "nll": nll_value,
                "penalty": penalty_value}

    def predict(self, x):
        return self.network(x)

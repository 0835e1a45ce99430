"""HGP and Hutchinson as DomainBed algorithms: the glue between DomainBed's
``Algorithm`` contract and the penalty of :mod:`hessian_dg.penalty`.

Both algorithms are
built the way DomainBed builds ERM (``networks.Featurizer``, ``networks.Classifier``,
one Adam over all parameters, no warm-up) and minimise

    loss = Lbar + (1/m) sum_e [ alpha ||A_e - sg(Abar)||^2 + beta ||g_e - sg(gbar)||^2 ]

over the training domains e = 1..m; they differ only by the curvature quantity
``A`` (see :mod:`hessian_dg.alignment`), built by name by
:func:`hessian_dg.penalty.curvature_quantity`, as for the public penalty. With a
linear head (DomainBed's default) gradients and curvature come from exact closed
forms; with ``nonlinear_classifier=True`` from autograd (both chosen by
:func:`hessian_dg.penalty.hessian_alignment_penalty`).

With a single training domain every alignment term is identically zero: the
penalty is reported as 0 and the step is exactly ERM's.

Importing this module first works like importing ``domainbed.algorithms`` first:
the start-up hook that fires on the import of DomainBed's module above waits for
this one's classes, and the last line here registers them
(:func:`domainbed_patch.registration.finish_waiting_registrations`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from domainbed_patch.locate import ensure_domainbed_importable

ensure_domainbed_importable()

from domainbed import algorithms as domainbed_algorithms  # noqa: E402
from domainbed import networks  # noqa: E402

from domainbed_patch import hparams as hparam_registry  # noqa: E402
from domainbed_patch import registration  # noqa: E402
from hessian_dg import penalty as public_penalty  # noqa: E402
from hessian_dg import probes  # noqa: E402


class NonFiniteLossError(FloatingPointError):
    """A training step produced a NaN or infinite loss; parameters were not updated."""


class HessianAlignment(domainbed_algorithms.Algorithm):
    """Shared update of the Hessian-alignment algorithms.

    Subclasses set :meth:`make_curvature`, returning the curvature quantity
    (a callable on a head, see :mod:`hessian_dg.alignment`) they align, made by
    :func:`hessian_dg.penalty.curvature_quantity`.
    """

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        hparam_registry.validate_hparams(type(self).__name__, hparams)
        self.featurizer = networks.Featurizer(input_shape, self.hparams)
        self.classifier = networks.Classifier(
            self.featurizer.n_outputs, num_classes,
            self.hparams["nonlinear_classifier"])
        self.network = nn.Sequential(self.featurizer, self.classifier)
        self.optimizer = torch.optim.Adam(
            self.network.parameters(), lr=self.hparams["lr"],
            weight_decay=self.hparams["weight_decay"])
        # Probes come from this generator, seeded from the global RNG that
        # DomainBed seeds with --seed: runs are reproducible, and estimator
        # draws do not shift the data-loading or dropout streams.
        self.probe_generator = probes.generator_from_global_rng()
        self.curvature = self.make_curvature()

    def make_curvature(self):
        raise NotImplementedError

    def _penalty(self, features, logits, labels, sizes):
        """The alignment penalty for domains of ``sizes`` stacked in the batch."""
        return public_penalty.hessian_alignment_penalty(
            self.classifier, features, labels, sizes, curvature=self.curvature,
            alpha=self.hparams["penalty_alpha"], beta=self.hparams["penalty_beta"],
            logits=logits)

    def update(self, minibatches, unlabeled=None):
        xs = [x for x, _ in minibatches]
        ys = [y for _, y in minibatches]
        sizes = [len(y) for y in ys]
        labels = torch.cat(ys)
        features = self.featurizer(torch.cat(xs))
        logits = self.classifier(features)

        nll = sum(F.cross_entropy(z, y) for z, y in
                  zip(logits.split(sizes), ys)) / len(sizes)
        if len(sizes) > 1:
            penalty = self._penalty(features, logits, labels, sizes).total
        else:
            penalty = nll.new_zeros(())
        loss = nll + penalty

        nll_value, penalty_value = nll.item(), penalty.item()
        if not (math.isfinite(nll_value) and math.isfinite(penalty_value)):
            raise NonFiniteLossError(
                f"{type(self).__name__}: non-finite training loss (nll={nll_value}, "
                f"penalty={penalty_value}); parameters were not updated. Lower lr or "
                f"penalty_alpha/penalty_beta (now {self.hparams['penalty_alpha']}, "
                f"{self.hparams['penalty_beta']}).")

        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": nll_value + penalty_value, "nll": nll_value,
                "penalty": penalty_value}

    def predict(self, x):
        return self.network(x)


class HGP(HessianAlignment):
    """Hessian-gradient-product alignment: ``A_e = H_e g_e`` (Hemati et al., 2023)."""

    def make_curvature(self):
        return public_penalty.curvature_quantity("hgp")


class Hutchinson(HessianAlignment):
    """Hessian-diagonal alignment with Hutchinson's estimator (Hemati et al., 2023).

    ``A_e = (1/S) sum_s z_s * H_e z_s`` with S = ``hutchinson_samples`` fresh
    Rademacher probes per domain and for the average loss; with
    ``hutchinson_exact=True``, the exact diagonal instead (linear head only).
    """

    def make_curvature(self):
        if self.hparams["hutchinson_exact"]:  # linear head: checked by the hparams
            return public_penalty.curvature_quantity("exact_diagonal")
        return public_penalty.curvature_quantity(
            "hutchinson", self.hparams["hutchinson_samples"], self.probe_generator,
            chunk_size=self.hparams["hutchinson_chunk_size"])


registration.finish_waiting_registrations()  # last: the classes above now exist

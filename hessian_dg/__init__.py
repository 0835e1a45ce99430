"""hessian-dg: Hessian and gradient alignment of the classifier head for domain
generalization (Hemati et al., ICCV 2023, arXiv 2308.11778), as a DomainBed plugin.

- :mod:`hessian_dg.linear_softmax`: exact closed-form curvature of a linear head;
- :mod:`hessian_dg.autograd_head`: the same quantities through autograd, any head;
- :mod:`hessian_dg.probes`: Rademacher probes and the memory-bounded probe mean;
- :mod:`hessian_dg.alignment`: the curvature quantities and the penalty;
- :mod:`hessian_dg.hparams`: hyperparameters as data;
- :mod:`hessian_dg.algorithms`: ``HGP`` and ``Hutchinson`` (imports DomainBed).
"""
__version__ = "0.1.0"

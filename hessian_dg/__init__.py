"""hessian-dg: Hessian and gradient alignment of the classifier head for domain
generalization (Hemati et al., ICCV 2023, arXiv 2308.11778).

The math, for any PyTorch training loop; it needs torch and numpy, never imports
DomainBed and changes no global state on import (the DomainBed plugin is the
``domainbed_patch`` package, which builds on this one):

- :mod:`hessian_dg.penalty`: :func:`hessian_alignment_penalty`, the public entry point;
- :mod:`hessian_dg.alignment`: the curvature quantities (HGP, Hutchinson, exact
  diagonal) and how domains are aligned;
- :mod:`hessian_dg.linear_softmax`: exact closed-form curvature of a linear softmax head;
- :mod:`hessian_dg.linear_hutchinson`: Hutchinson's estimate on that head, with a
  written-out backward that regenerates its probes;
- :mod:`hessian_dg.linear_sigmoid`: the same for a one-logit (binary) linear head;
- :mod:`hessian_dg.autograd_head`: the same quantities through autograd, any head;
- :mod:`hessian_dg.probes`: Rademacher probes, drawn in chunks from per-chunk seeds;
- :mod:`hessian_dg.distances`: gradient and Hessian distances between domains
  (Frobenius and spectral), the paper's transfer quantities.
"""
from hessian_dg.alignment import AlignmentPenalty
from hessian_dg.penalty import CURVATURES, hessian_alignment_penalty

__all__ = ["AlignmentPenalty", "CURVATURES", "hessian_alignment_penalty"]
__version__ = "0.2.0"

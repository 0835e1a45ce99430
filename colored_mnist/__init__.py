"""Colored MNIST (Arjovsky et al., 2019) as Hemati et al. (ICCV 2023) ran it.

Seven algorithms side by side on the IRM/Fishr protocol (correlation shift) and
on the authors' label-shift split: ERM, IRM, V-REx, Fishr, HGP, Hutchinson, and
HutchinsonExact (the exact Hessian diagonal, Hutchinson's S -> infinity limit).
No DomainBed: full-batch training of a 3-layer MLP on four environments.

- :mod:`colored_mnist.sources`: MNIST-format IDX files (MNIST, Fashion-MNIST, any folder);
- :mod:`colored_mnist.data`: the environments (colour, label noise, the two settings);
- :mod:`colored_mnist.model`: the MLP, returning (features, logits);
- :mod:`colored_mnist.penalties`: the algorithm registry and the penalties;
- :mod:`colored_mnist.train`: one restart;
- :mod:`colored_mnist.runner`: algorithms x restarts in parallel processes, resumable;
- :mod:`colored_mnist.report`: tables (Markdown, CSV) and curves;
- :mod:`colored_mnist.cli`: the ``cmnist`` command (``python -m colored_mnist``);
- :mod:`colored_mnist.readme`: the README's tables, rebuilt from the committed restarts.

The HGP and Hutchinson penalties are :func:`hessian_dg.hessian_alignment_penalty`
in the scripts' form (targets carry gradient, summed over the two environments).
"""
from colored_mnist.penalties import ALGORITHMS

__all__ = ["ALGORITHMS"]

r"""How far apart two domains' classifier heads are: the paper's transfer quantities.

Hemati et al. (ICCV 2023, Theorem 1) bound the transfer of a classifier from a
source domain S to a target domain T by the distance of the head's gradients and
Hessians on the two: ``||g_S - g_T||`` and ``||H_S - H_T||_2``. For two heads ``a``
and ``b`` (objects of :mod:`hessian_dg.linear_softmax`,
:mod:`hessian_dg.linear_sigmoid` or :mod:`hessian_dg.autograd_head`, same
parameters, different data):

- :func:`gradient_distance`: ``||g_a - g_b||``, exact;
- :func:`hessian_frobenius_distance`: ``||H_a - H_b||_F``. Exact for linear heads:
  densely when the head is small, otherwise through the Kronecker structure
  ``H = sum_n w_n A_n (x) x_n x_n^T`` (``A_n = diag(p_n) - p_n p_n^T`` for softmax,
  ``p_n (1 - p_n)`` for one sigmoid logit), which gives

      ||sum_n u_n A_n (x) x_n x_n^T||_F^2 = sum_{n,m} u_n u_m <A_n, A_m> (x_n . x_m)^2,
      <A_n, A_m> = p.q - sum_c p_c q_c^2 - sum_c q_c p_c^2 + (p.q)^2   (p = p_n, q = p_m)

  in O(N^2 (C + K)) time, chunked, with signed weights ``u`` (``+w`` on ``a``'s
  examples, ``-w`` on ``b``'s) and the Hessian never formed. For an autograd head
  it is estimated as ``E ||(H_a - H_b) z||^2`` over Rademacher probes ``z``;
- :func:`hessian_spectral_distance`: ``||H_a - H_b||_2``, by Lanczos iteration with
  full reorthogonalisation on Hessian-vector products, to a stated tolerance;
- :func:`hessian_spectral_norm`: ``||H_a||_2``, the same way;
- :func:`compare_domains`: all of these for named domains and pairs of them, the
  training domains' average loss included as a :class:`HeadMixture`, with the
  Frobenius distances from one Gram matrix of ``<H_e, H_f>`` (each block once).

Nothing here knows about DomainBed.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, NamedTuple, Optional

import torch

from hessian_dg import probes
from hessian_dg.linear_sigmoid import LinearSigmoidHead
from hessian_dg.linear_softmax import LinearSoftmaxHead

#: Heads with at most this many parameters get their Frobenius distance densely.
DENSE_LIMIT = 2048


class Estimate(NamedTuple):
    """A number, and how it was got (``method``):

    - ``"exact"``: a closed form, exact up to round-off;
    - ``"hutchinson"``: a mean over ``probes`` Rademacher probes (a random estimate);
    - ``"lanczos"``: Lanczos iteration, stopped when the Ritz value changed by less
      than ``tolerance`` (relative) or the Krylov space was exhausted;
      ``converged`` is False when it stopped at its iteration limit instead.
    """

    value: float
    method: str
    tolerance: Optional[float] = None
    probes: Optional[int] = None
    converged: Optional[bool] = None

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    def as_dict(self) -> dict:
        """``{"value", "method"}`` and the method's own fields that are set.

        >>> Estimate(2.0, "lanczos", tolerance=1e-4, converged=True).as_dict()
        {'value': 2.0, 'method': 'lanczos', 'tolerance': 0.0001, 'converged': True}
        """
        return {key: value for key, value in self._asdict().items() if value is not None}


def _flat(matrix: torch.Tensor) -> torch.Tensor:
    return matrix.reshape(-1)


def gradient_distance(a, b) -> float:
    """``||g_a - g_b||``: Euclidean distance of the two heads' gradients."""
    return float(torch.linalg.vector_norm(_flat(a.gradient() - b.gradient()).detach()))


def _kronecker_factors(head):
    """(design, probabilities, weights) of a linear head, or None."""
    if isinstance(head, (LinearSoftmaxHead, LinearSigmoidHead)):
        return head.design, head.probs, head.weights
    return None


def _curvature_gram(p: torch.Tensor, q: torch.Tensor, sigmoid: bool) -> torch.Tensor:
    """``<A_n, A_m>`` for the rows of ``p`` against those of ``q``."""
    if sigmoid:
        return (p * (1 - p)) @ (q * (1 - q)).t()
    pq = p @ q.t()
    return pq - p @ (q * q).t() - (p * p) @ q.t() + pq * pq


def _kronecker_inner(a, b, chunk_size: int) -> float:
    """``<H_a, H_b>_F = sum_{n in a, m in b} w_n w_m <A_n, A_m> (x_n . x_m)^2``,
    in float64, in row chunks of ``a``."""
    (fa, pa, wa), (fb, pb, wb) = [
        tuple(t.detach().double() for t in _kronecker_factors(h)) for h in (a, b)]
    sigmoid = isinstance(a, LinearSigmoidHead)
    total = 0.0
    for start in range(0, fa.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        gram = (fa[rows] @ fb.t()).pow_(2).mul_(_curvature_gram(pa[rows], pb, sigmoid))
        total += float(wa[rows] @ gram @ wb)
    return total


def _kronecker_frobenius(a, b, chunk_size: int) -> float:
    """``||H_a - H_b||_F`` from the Kronecker factors, O(N^2 (C + K)), chunked:
    one signed sum over both heads' examples, free of cancellation."""
    (fa, pa, wa), (fb, pb, wb) = _kronecker_factors(a), _kronecker_factors(b)
    joined = LinearSigmoidHead if isinstance(a, LinearSigmoidHead) else LinearSoftmaxHead
    design, probs = torch.cat([fa, fb]), torch.cat([pa, pb])
    both = joined(design, probs, probs, torch.cat([wa, -wb]))
    return math.sqrt(max(_kronecker_inner(both, both, chunk_size), 0.0))


def hessian_frobenius_distance(a, b, num_probes: int = 100,
                               generator: Optional[torch.Generator] = None,
                               chunk_size: int = 1024,
                               dense_limit: Optional[int] = None) -> Estimate:
    """``||H_a - H_b||_F``: exact for linear heads, estimated for autograd heads.

    A linear head of at most ``dense_limit`` parameters is compared densely;
    a larger one through its Kronecker structure (see the module docstring), in
    row chunks of ``chunk_size`` examples. An autograd head gets the Hutchinson
    estimate ``(1/S) sum_s ||(H_a - H_b) z_s||^2`` with ``num_probes`` probes from
    ``generator``, returned with ``method="hutchinson"`` and its probe count.
    """
    _check_pair(a, b)
    size = math.prod(a.shape)
    if _kronecker_factors(a) is not None:
        if size <= (DENSE_LIMIT if dense_limit is None else dense_limit):
            difference = (a.hessian() - b.hessian()).detach()
            return Estimate(float(torch.linalg.matrix_norm(difference)), "exact")
        return Estimate(_kronecker_frobenius(a, b, chunk_size), "exact")
    if generator is None:
        raise ValueError("an autograd head's Frobenius distance is estimated with "
                         "random probes: pass a torch.Generator")

    def probe_sum(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (a.hvp(z) - b.hvp(z)).pow(2).sum()

    reference = a.gradient()
    value = probes.rademacher_probe_mean(probe_sum, a.shape, num_probes, generator,
                                         dtype=reference.dtype, device=reference.device)
    return Estimate(math.sqrt(max(float(value), 0.0)), "hutchinson", probes=num_probes)


def hessian_inner_product(a, b, chunk_size: int = 1024,
                          dense_limit: Optional[int] = None) -> float:
    """``<H_a, H_b>_F = tr(H_a H_b)`` of two linear heads, exactly: densely when
    small, else from the Kronecker factors without forming either Hessian."""
    _check_pair(a, b)
    if _kronecker_factors(a) is None:
        raise ValueError("exact inner products need linear heads (closed forms)")
    if math.prod(a.shape) <= (DENSE_LIMIT if dense_limit is None else dense_limit):
        return float((a.hessian().detach().double() * b.hessian().detach().double()).sum())
    return _kronecker_inner(a, b, chunk_size)


def _check_pair(a, b) -> None:
    kinds = {type(m) for h in (a, b) for m, _ in _members(h)}
    if len(kinds) != 1 or tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"heads of different kinds or shapes: {type(a).__name__}"
                         f"{tuple(a.shape)} and {type(b).__name__}{tuple(b.shape)}")


def lanczos_extreme_eigenvalue(matvec: Callable[[torch.Tensor], torch.Tensor],
                               size: int, like: torch.Tensor,
                               generator: Optional[torch.Generator] = None,
                               tol: float = 1e-6, max_iter: int = 100) -> Estimate:
    """Largest ``|lambda|`` of a symmetric operator of dimension ``size``.

    Lanczos with full reorthogonalisation, from a random start drawn from
    ``generator`` (a fixed one if None): stops when the Ritz value changes by less than ``tol``
    (relative) between iterations, or when the Krylov space is exhausted (then the
    value is exact up to round-off). Returns a ``"lanczos"`` :class:`Estimate`
    with ``tolerance=tol``, ``converged`` False when ``max_iter`` came first.

    >>> m = torch.diag(torch.tensor([3.0, -5.0, 1.0]))
    >>> round(lanczos_extreme_eigenvalue(lambda v: m @ v, 3, m).value, 5)
    5.0
    """
    if generator is None:  # a fixed start: never the global RNG
        generator = torch.Generator().manual_seed(0)
    start = torch.randn(size, generator=generator, dtype=like.dtype).to(like.device)
    basis = [start / torch.linalg.vector_norm(start)]
    alphas, betas = [], []
    previous = None
    for step in range(min(size, max_iter)):
        w = matvec(basis[-1]).detach()
        alphas.append(float(w @ basis[-1]))
        stacked = torch.stack(basis)
        w = w - stacked.t() @ (stacked @ w)  # full reorthogonalisation, twice
        w = w - stacked.t() @ (stacked @ w)
        tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
        value = float(torch.linalg.eigvalsh(tridiagonal).abs().max())
        beta = float(torch.linalg.vector_norm(w))
        scale = max(value, 1e-300)
        if beta <= 1e-12 * scale or step + 1 == size or (
                previous is not None and abs(value - previous) <= tol * scale):
            return Estimate(value, "lanczos", tolerance=tol, converged=True)
        previous = value
        betas.append(beta)
        basis.append(w / beta)
    return Estimate(previous if previous is not None else 0.0, "lanczos", tolerance=tol,
                    converged=False)


def _flat_hvp(head) -> Callable[[torch.Tensor], torch.Tensor]:
    shape = tuple(head.shape)
    return lambda v: _flat(head.hvp(v.reshape(shape)))


def hessian_spectral_distance(a, b, generator: Optional[torch.Generator] = None,
                              tol: float = 1e-6, max_iter: int = 100) -> Estimate:
    """``||H_a - H_b||_2`` by Lanczos on ``v -> H_a v - H_b v`` (exact products for
    linear heads, double backprop for autograd heads)."""
    _check_pair(a, b)
    hvp_a, hvp_b = _flat_hvp(a), _flat_hvp(b)
    linear = _kronecker_factors(_members(a)[0][0]) is not None
    with torch.no_grad() if linear else contextlib.nullcontext():
        return lanczos_extreme_eigenvalue(
            lambda v: hvp_a(v) - hvp_b(v), math.prod(a.shape), _flat(a.gradient()),
            generator, tol, max_iter)


def hessian_spectral_norm(head, generator: Optional[torch.Generator] = None,
                          tol: float = 1e-6, max_iter: int = 100) -> Estimate:
    """``||H||_2`` by Lanczos on Hessian-vector products."""
    linear = _kronecker_factors(_members(head)[0][0]) is not None
    with torch.no_grad() if linear else contextlib.nullcontext():
        return lanczos_extreme_eigenvalue(
            _flat_hvp(head), math.prod(head.shape), _flat(head.gradient()), generator,
            tol, max_iter)


class HeadMixture:
    """The loss ``sum_e c_e L_e`` of heads on the same parameters: its gradient and
    Hessian are the same combinations (e.g. the training domains' average loss,
    ``c_e = 1/m``), so nothing is recomputed on concatenated data."""

    def __init__(self, heads, coefficients):
        self.heads, self.coefficients = list(heads), [float(c) for c in coefficients]
        if not self.heads or len(self.heads) != len(self.coefficients):
            raise ValueError("a mixture needs one coefficient per head, and a head")
        self.shape = tuple(self.heads[0].shape)

    def _combine(self, parts):
        return sum(c * part for c, part in zip(self.coefficients, parts))

    def gradient(self) -> torch.Tensor:
        return self._combine(h.gradient() for h in self.heads)

    def hvp(self, vectors: torch.Tensor) -> torch.Tensor:
        return self._combine(h.hvp(vectors) for h in self.heads)


def _members(head):
    """``[(base head, coefficient)]`` of a head or a mixture."""
    if isinstance(head, HeadMixture):
        return list(zip(head.heads, head.coefficients))
    return [(head, 1.0)]


def compare_domains(heads, pairs, generator: Optional[torch.Generator] = None,
                    tol: float = 1e-4, max_iter: int = 100, num_probes: int = 100,
                    chunk_size: int = 1024) -> dict:
    """The paper's transfer quantities for named heads (or :class:`HeadMixture`).

    Returns ``{"heads": {name: {"gradient_norm", "hessian_spectral_norm"}},
    "pairs": [{"a", "b", "gradient_distance", "hessian_frobenius_distance",
    "hessian_spectral_distance"}]}`` for the ``(a, b)`` name pairs asked. Each
    estimate is :meth:`Estimate.as_dict`: ``{"value", "method"}`` and the method's
    fields (``"exact"``; ``"hutchinson"`` with ``probes``; ``"lanczos"`` with
    ``tolerance`` and ``converged``). Frobenius distances come from the Gram matrix
    of ``<H_e, H_f>`` over the base heads (each block computed once, in float64;
    mixtures by linearity): exact for linear heads, for autograd heads estimated with
    shared probes, ``<H_e, H_f> ~ (1/S) sum_s (H_e z_s) . (H_f z_s)``. Spectral
    norms and distances come from Lanczos to relative tolerance ``tol``.
    """
    bases = []
    for head in heads.values():
        for base, _ in _members(head):
            if all(base is not b for b in bases):
                bases.append(base)
    index = {id(b): i for i, b in enumerate(bases)}
    linear = _kronecker_factors(bases[0]) is not None
    if linear:
        def inner(i, j):
            return hessian_inner_product(bases[i], bases[j], chunk_size)
    else:
        if generator is None:
            raise ValueError("autograd heads' Frobenius distances are estimated with "
                             "random probes: pass a torch.Generator")
        like = _flat(bases[0].gradient())
        z = probes.rademacher((num_probes, *bases[0].shape), generator,
                              dtype=like.dtype).to(like.device)
        products = [b.hvp(z).detach().reshape(num_probes, -1).double() for b in bases]

        def inner(i, j):
            return float((products[i] * products[j]).sum()) / num_probes
    gram = {}

    def gram_entry(i, j):
        key = (min(i, j), max(i, j))
        if key not in gram:
            gram[key] = inner(*key)
        return gram[key]

    def frobenius(a, b):
        terms = [(index[id(h)], c) for h, c in _members(a)] + \
                [(index[id(h)], -c) for h, c in _members(b)]
        squared = sum(ci * cj * gram_entry(i, j) for i, ci in terms for j, cj in terms)
        value = math.sqrt(max(squared, 0.0))
        return Estimate(value, "exact") if linear else \
            Estimate(value, "hutchinson", probes=num_probes)

    def as_dict(estimate):
        return estimate.as_dict()

    result = {"heads": {}, "pairs": []}
    for name, head in heads.items():
        result["heads"][name] = {
            "gradient_norm": float(torch.linalg.vector_norm(_flat(head.gradient().detach()))),
            "hessian_spectral_norm": as_dict(hessian_spectral_norm(
                head, generator, tol, max_iter))}
    for a, b in pairs:
        result["pairs"].append({
            "a": a, "b": b,
            "gradient_distance": gradient_distance(heads[a], heads[b]),
            "hessian_frobenius_distance": as_dict(frobenius(heads[a], heads[b])),
            "hessian_spectral_distance": as_dict(hessian_spectral_distance(
                heads[a], heads[b], generator, tol, max_iter))})
    return result

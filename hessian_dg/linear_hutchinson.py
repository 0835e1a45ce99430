r"""Hutchinson's diagonal estimate for a linear softmax head, with its own backward.

For S probes ``z_s`` (C, K) with Rademacher entries, the estimate is

    D = (1/S) sum_s z_s * (H z_s),     H z = M^T diag(w) F,
    U_s = F z_s^T  (N, C),   M_s = P * U_s - P * rowsum(P * U_s),

(notation of :mod:`hessian_dg.linear_softmax`). Its entries are

    D[c, k] = (1/S) sum_n w_n F[n, k] R[c, n, k],   R[c, n, k] = sum_s M_s[n, c] z_s[c, k],

so the probes are contracted into ``R`` (C x N x K, batched over classes) and
``H z`` (as large as the probes) is never formed. Built from autograd's pieces,
the backward pass would either keep every probe (S x C x K numbers: ~0.85 GB per
domain for DomainNet's head at S = 300) or recompute the forward chunk by chunk.
Here it is written out: given ``Gbar = dL/dD`` and ``Q_s = Gbar * z_s / S``,

    Mbar_s = diag(w) F Q_s^T                          (N, C)
    Abar_s = Mbar_s - rowsum(Mbar_s * P)
    Pbar   = sum_s  Abar_s * U_s - Mbar_s * rowsum(P * U_s)
    Fbar   = sum_s (Abar_s * P) z_s  +  diag(w) sum_c Gbar[c] * R[c] / S

It keeps ``U_s`` (S x N x C numbers) and ``R`` (C x N x K: the head's size
times the batch, not S times it), and regenerates the probes chunk by chunk from
their seeds into one reused buffer: nothing of size S x C x K outlives a chunk,
and the forward is not recomputed.
Per chunk of probes the forward is two matrix products (``U``, ``R``) and the
backward two (``Mbar``, ``Fbar``), each one pass over the chunk's probes.

The probes are those of :func:`hessian_dg.probes.rademacher_probe_mean` for the
same generator state, chunk size, dtype and device (layout ``(s, C, K)``), so the
estimate equals that of the generic path.

Nothing here knows about DomainBed.
"""
from __future__ import annotations

from typing import Optional

import torch

from hessian_dg import probes


def _probe_buffer(plan, shape, like: torch.Tensor) -> torch.Tensor:
    """One buffer for the largest chunk: chunks reuse it instead of allocating."""
    largest = max(size for _, size in plan)
    return torch.empty((largest, *shape), dtype=like.dtype, device=like.device)


def _row_sums(u: torch.Tensor, probs_t: torch.Tensor) -> torch.Tensor:
    """``rowsum(P * U)`` per probe and example, (s, 1, N), from U laid out (s, C, N)."""
    return (probs_t * u).sum(dim=1, keepdim=True)


def _accumulate_mz(design, probs_t, plan, keep_u: bool):
    """``R[c, n, k] = sum_s M_s[n, c] z_s[c, k]``, and every chunk's ``U_s`` if
    ``keep_u`` (the backward pass needs them).

    Then ``D = (1/S) sum_n R[:, n, :] * w_n F[n, :]``: the contraction with the
    probes is one batched product per chunk (over classes), and ``H z`` (the size
    of the probes) is never formed.
    """
    c, k = probs_t.shape[0], design.shape[1]
    mz = design.new_zeros(c, design.shape[0], k)
    buffer = _probe_buffer(plan, (c, k), design)
    kept_u = []
    for seed, size in plan:
        probe = probes.draw_chunk(seed, size, (c, k), out=buffer)
        u = (probe.view(size * c, k) @ design.t()).view(size, c, -1)
        m = probs_t * u - probs_t * _row_sums(u, probs_t)
        mz.baddbmm_(m.permute(1, 2, 0), probe.transpose(0, 1))
        if keep_u:
            kept_u.append(u)
    return mz, kept_u


class _LinearHutchinson(torch.autograd.Function):
    """``D(F, P)`` for fixed weights and probe seeds; see the module docstring."""

    @staticmethod
    def forward(ctx, design, probs, weights, plan, num_probes, needs_grad):
        probs_t = probs.t().contiguous()
        weighted_design = design * weights[:, None]
        mz, kept_u = _accumulate_mz(design, probs_t, plan, keep_u=needs_grad)
        estimate = torch.linalg.vecdot(mz, weighted_design[None], dim=1) / num_probes
        if needs_grad:
            ctx.save_for_backward(design, probs_t, weights, mz, *kept_u)
            ctx.plan = plan
            ctx.num_probes = num_probes
        return estimate

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_estimate):
        design, probs_t, weights, mz, *kept_u = ctx.saved_tensors
        c, k = grad_estimate.shape
        grad_scaled = grad_estimate.contiguous() / ctx.num_probes
        weighted_design = design * weights[:, None]
        wants_design = ctx.needs_input_grad[0]
        # d/d(w F) of sum_{s,c} M_s[n, c] Q_s[c, k], with Q_s = Gbar * z_s / S:
        grad_design = (torch.linalg.vecdot(mz, grad_scaled[:, None, :], dim=0)
                       * weights[:, None]) if wants_design else None
        # Mbar_s[n, c] = sum_k z_s[c, k] (Gbar[c, k] w_n F[n, k] / S), batched over c.
        scaled_design = grad_scaled[:, None, :] * weighted_design[None]  # (C, N, K)
        grad_probs_t = torch.zeros_like(probs_t)
        buffer = _probe_buffer(ctx.plan, (c, k), design)
        for (seed, size), u in zip(ctx.plan, kept_u):
            probe = probes.draw_chunk(seed, size, (c, k), out=buffer)
            m_bar = torch.bmm(probe.transpose(0, 1),
                              scaled_design.transpose(1, 2)).transpose(0, 1)
            row = _row_sums(u, probs_t)
            a_bar = m_bar - (m_bar * probs_t).sum(dim=1, keepdim=True)
            grad_probs_t += (a_bar * u - m_bar * row).sum(dim=0)
            if wants_design:
                u_bar = (a_bar * probs_t).reshape(size * c, -1)
                grad_design += u_bar.t() @ probe.view(size * c, k)
        return grad_design, grad_probs_t.t(), None, None, None, None


def hutchinson_diagonal(design: torch.Tensor, probs: torch.Tensor,
                        weights: torch.Tensor, num_probes: int,
                        generator: torch.Generator,
                        chunk_size: Optional[int] = probes.DEFAULT_CHUNK_SIZE
                        ) -> torch.Tensor:
    """``(1/S) sum_s z_s * (H z_s)`` of ``sum_n w_n CE``, shape (C, K).

    Differentiable in ``design`` (N, K) and ``probs`` (N, C); ``weights`` (N,)
    are constants. Memory beyond the inputs: one chunk of probes while it is in
    use and ``R`` (C x N x K: the head's size times the batch); kept for backward
    when gradients are needed, ``R`` and ``U`` for all S probes (S x C x N); the
    backward adds one more C x N x K temporary.
    """
    plan = probes.chunk_seeds(num_probes, chunk_size, generator)
    # Decided here: inside forward, grad mode is always off and needs_input_grad
    # ignores an enclosing no_grad.
    needs_grad = torch.is_grad_enabled() and (design.requires_grad or probs.requires_grad)
    return _LinearHutchinson.apply(design, probs, weights.detach(), plan, num_probes,
                                   needs_grad)

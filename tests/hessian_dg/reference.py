"""Brute-force float64 references, written straight from the definitions.

The head's parameters are one flat vector theta = vec([W | b]) (row-major (C, K)),
the layout of :class:`hessian_dg.linear_softmax.LinearSoftmaxHead`'s matrices.
"""
import torch
import torch.nn.functional as F


def linear_head_loss(theta, features, labels, weights, has_bias):
    """``sum_n w_n CE(W f_n + b, y_n)`` with theta = vec([W | b])."""
    num_classes = theta.numel() // (features.shape[1] + int(has_bias))
    matrix = theta.view(num_classes, -1)
    weight = matrix[:, :features.shape[1]]
    logits = features @ weight.t()
    if has_bias:
        logits = logits + matrix[:, -1]
    return (F.cross_entropy(logits, labels, reduction="none") * weights).sum()


def dense_hessian(theta, features, labels, weights, has_bias, create_graph=False):
    """Dense Hessian of :func:`linear_head_loss` by ``torch.autograd.functional``."""
    return torch.autograd.functional.hessian(
        lambda t: linear_head_loss(t, features, labels, weights, has_bias), theta,
        create_graph=create_graph, vectorize=True)


def dense_gradient(theta, features, labels, weights, has_bias):
    return torch.autograd.functional.jacobian(
        lambda t: linear_head_loss(t, features, labels, weights, has_bias), theta)


def double_backprop_penalty(features, weight, bias, labels, sizes, kind, alpha, beta,
                            generator=None, num_probes=None, chunk_size=None):
    """METHOD.md's penalty, written plainly with autograd double backprop.

    ``(1/m) sum_e [alpha ||A_e - sg(Abar)||^2 + beta ||g_e - sg(gbar)||^2]`` with
    theta = [W | b] (C, D+1); ``kind`` is "hgp", "diag" (exact, one Hessian-vector
    product per entry) or "hutchinson" (products of autograd, probes from
    :func:`hessian_dg.probes.rademacher_probe_mean`, drawn for the average loss
    first and then for each domain in order).
    """
    from hessian_dg import probes

    d = features.shape[1]
    m = len(sizes)

    def domain_loss(theta, f, y):
        return F.cross_entropy(f @ theta[:, :d].t() + theta[:, d], y)

    def curvature(grad, theta):
        if kind == "hgp":
            (hg,) = torch.autograd.grad(0.5 * grad.pow(2).sum(), theta, create_graph=True)
            return hg
        if kind == "diag":
            flat = grad.reshape(-1)
            entries = []
            for i in range(flat.numel()):
                (row,) = torch.autograd.grad(flat[i], theta, create_graph=True)
                entries.append(row.reshape(-1)[i])
            return torch.stack(entries).view_as(grad)
        if kind == "hutchinson":
            def probe_sum(z):
                total = 0
                for probe in z:
                    (hz,) = torch.autograd.grad(grad, theta, grad_outputs=probe,
                                                create_graph=True)
                    total = total + probe * hz
                return total
            return probes.rademacher_probe_mean(
                probe_sum, tuple(grad.shape), num_probes, generator, dtype=grad.dtype,
                chunk_size=chunk_size)
        raise ValueError(kind)

    theta = torch.cat([weight, bias[:, None]], dim=1)
    pieces = list(zip(features.split(sizes), labels.split(sizes)))

    theta_target = theta.detach().requires_grad_(True)
    average = sum(domain_loss(theta_target, f.detach(), y) for f, y in pieces) / m
    (target_grad,) = torch.autograd.grad(average, theta_target, create_graph=True)
    target_curvature = curvature(target_grad, theta_target).detach()
    target_grad = target_grad.detach()

    total = 0
    for f, y in pieces:
        (grad,) = torch.autograd.grad(domain_loss(theta, f, y), theta, create_graph=True)
        total = total + alpha * (curvature(grad, theta) - target_curvature).pow(2).sum()
        total = total + beta * (grad - target_grad).pow(2).sum()
    return total / m

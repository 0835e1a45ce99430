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
                            generator=None, num_probes=None, chunk_size=None,
                            detach_targets=True, mean_over_domains=True):
    """The penalty of ``docs/method.md``, written plainly with autograd double backprop.

    ``(1/m) sum_e [alpha ||A_e - sg(Abar)||^2 + beta ||g_e - sg(gbar)||^2]`` with
    theta = [W | b] (C, D+1); ``kind`` is "hgp", "diag" (exact, one Hessian-vector
    product per entry) or "hutchinson" (products of autograd, probes from
    :func:`hessian_dg.probes.rademacher_probe_mean` on the parameters' device,
    drawn for the average loss first and then for each domain in order). A head
    of one output (C = 1) is scored with binary cross-entropy on float targets,
    as in Colored MNIST.
    ``detach_targets=False`` lets gradient flow through ``Abar`` and ``gbar``
    (then computed on the live ``theta`` and features); ``mean_over_domains=False``
    drops the 1/m: the form of the authors' Colored MNIST scripts.

    This is the tests' oracle: its probes are drawn as the library draws them, so
    values compare exactly. ``benchmarks/stepcost/double_backprop_penalty.py`` is
    the benchmark's, drawing probes one at a time as the authors do, for timing.
    """
    from hessian_dg import probes

    d = features.shape[1]
    m = len(sizes)

    def domain_loss(theta, f, y):
        logits = f @ theta[:, :d].t() + theta[:, d]
        if theta.shape[0] == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype))
        return F.cross_entropy(logits, y)

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
                device=grad.device, chunk_size=chunk_size)
        raise ValueError(kind)

    theta = torch.cat([weight, bias[:, None]], dim=1)
    pieces = list(zip(features.split(sizes), labels.split(sizes)))

    if detach_targets:
        theta_target = theta.detach().requires_grad_(True)
        target_pieces = [(f.detach(), y) for f, y in pieces]
    else:
        theta_target, target_pieces = theta, pieces
    average = sum(domain_loss(theta_target, f, y) for f, y in target_pieces) / m
    (target_grad,) = torch.autograd.grad(average, theta_target, create_graph=True)
    target_curvature = curvature(target_grad, theta_target)
    if detach_targets:
        target_curvature, target_grad = target_curvature.detach(), target_grad.detach()

    total = 0
    for f, y in pieces:
        (grad,) = torch.autograd.grad(domain_loss(theta, f, y), theta, create_graph=True)
        total = total + alpha * (curvature(grad, theta) - target_curvature).pow(2).sum()
        total = total + beta * (grad - target_grad).pow(2).sum()
    return total / m if mean_over_domains else total

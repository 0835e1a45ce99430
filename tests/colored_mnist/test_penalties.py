"""The penalties against straightforward autograd, and whole training-step losses
against a hand-written double backprop of the authors' scripts, in float64."""
import pytest
import torch
import torch.nn.functional as F
from torch import autograd

from colored_mnist import penalties
from colored_mnist.model import MLP
from colored_mnist.penalties import ALGORITHMS, PenaltyInputs
from colored_mnist.train import TrainConfig, objective
from hessian_dg import probes

SIZES = [7, 5]  # unequal on purpose: the average weighs environments, not examples


def tiny_problem(seed=0):
    torch.manual_seed(seed)
    model = MLP((2, 3, 3), hidden_dim=6)
    images = torch.rand(sum(SIZES), 2, 3, 3)
    labels = (torch.rand(sum(SIZES), 1) < 0.5).to(images.dtype)
    return model, images, labels


def inputs_for(model, images, labels, generator=None, num_probes=4):
    features, logits = model(images)
    nlls = [F.binary_cross_entropy_with_logits(z, y)
            for z, y in zip(logits.split(SIZES), labels.split(SIZES))]
    return PenaltyInputs(model.classifier, features, logits, labels, SIZES, nlls,
                         generator, num_probes)


def head_params(model):
    return list(model.classifier.parameters())


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def check_value_and_gradients(model, ours, reference):
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-14)
    params = list(model.parameters())
    torch.testing.assert_close(flat(autograd.grad(ours, params, retain_graph=True)),
                               flat(autograd.grad(reference, params)), rtol=1e-9,
                               atol=1e-13)


def test_irm_against_the_dummy_scale(float64):
    model, images, labels = tiny_problem()
    inputs = inputs_for(model, images, labels)
    terms = []
    for z, y in zip(inputs.logits.split(SIZES), labels.split(SIZES)):
        scale = torch.tensor(1.0, requires_grad=True)
        loss = F.binary_cross_entropy_with_logits(z * scale, y)
        grad = autograd.grad(loss, [scale], create_graph=True)[0]
        terms.append(grad.pow(2).sum())
    check_value_and_gradients(model, penalties.irm_penalty(inputs),
                              torch.stack(terms).mean())


def test_vrex_is_the_squared_risk_difference(float64):
    model, images, labels = tiny_problem(1)
    inputs = inputs_for(model, images, labels)
    risks = torch.stack(inputs.nlls)
    check_value_and_gradients(model, penalties.vrex_penalty(inputs),
                              4 * risks.var(unbiased=False))


def test_fishr_against_per_example_autograd(float64):
    model, images, labels = tiny_problem(2)
    inputs = inputs_for(model, images, labels)
    variances = []
    for f, y in zip(inputs.features.split(SIZES), labels.split(SIZES)):
        per_example = []
        for i in range(f.shape[0]):
            loss = F.binary_cross_entropy_with_logits(model.classifier(f[i:i + 1]),
                                                      y[i:i + 1])
            per_example.append(flat(autograd.grad(loss, head_params(model),
                                                  create_graph=True)))
        grads = torch.stack(per_example)
        variances.append((grads - grads.mean(0)).pow(2).mean(0))
    mean = (variances[0] + variances[1]) / 2
    reference = (variances[0] - mean).pow(2).sum() + (variances[1] - mean).pow(2).sum()
    check_value_and_gradients(model, penalties.fishr_penalty(inputs), reference)


# ---- the authors' scripts, written out (cmnist_HGP.py, cmnist_Hutchinson.py) ----

def authors_base(model, images, labels):
    features, logits = model(images)
    nlls = [F.binary_cross_entropy_with_logits(z, y)
            for z, y in zip(logits.split(SIZES), labels.split(SIZES))]
    train_nll = torch.stack(nlls).mean()
    weight_norm = sum(w.norm().pow(2) for w in model.parameters())
    grads = [flat(autograd.grad(nll, head_params(model), create_graph=True))
             for nll in nlls]
    mean_grad = flat(autograd.grad(train_nll, head_params(model), create_graph=True))
    return train_nll, weight_norm, nlls, grads, mean_grad


def authors_hgp(model, images, labels):
    train_nll, weight_norm, nlls, grads, mean_grad = authors_base(model, images, labels)

    def hg(grad):  # ||g|| * grad ||g|| = H g
        norm = grad.pow(2).sum().sqrt()
        return norm * flat(autograd.grad(norm, head_params(model), create_graph=True))

    mean_hg = hg(mean_grad)
    penalty = sum((hg(g) - mean_hg).pow(2).sum() + (g - mean_grad).pow(2).sum()
                  for g in grads)
    return train_nll, weight_norm, penalty


def authors_hutchinson(model, images, labels, generator, repeat, chunk):
    train_nll, weight_norm, nlls, grads, mean_grad = authors_base(model, images, labels)

    def calc_hessian_diag(gg):  # probes as hessian_dg.probes draws them
        total = 0
        for seed, size in probes.chunk_seeds(repeat, chunk, generator):
            zs = probes.draw_chunk(seed, size, (1, gg.numel()), dtype=gg.dtype)
            for z in zs.reshape(size, -1):
                hz = flat(autograd.grad(gg @ z, head_params(model), create_graph=True))
                total = total + z * hz
        return total / repeat

    mean_d = calc_hessian_diag(mean_grad)
    diagonals = [calc_hessian_diag(g) for g in grads]
    penalty = sum((g - mean_grad).pow(2).sum() + (d - mean_d).pow(2).sum()
                  for g, d in zip(grads, diagonals))
    return train_nll, weight_norm, penalty


def authors_exact_diagonal(model, images, labels):
    train_nll, weight_norm, nlls, grads, mean_grad = authors_base(model, images, labels)

    def diagonal(gg):  # row i of the Hessian, as eval_hessian builds it
        return torch.stack([flat(autograd.grad(gg[i], head_params(model),
                                               create_graph=True))[i]
                            for i in range(gg.numel())])

    mean_d = diagonal(mean_grad)
    penalty = sum((g - mean_grad).pow(2).sum() + (diagonal(g) - mean_d).pow(2).sum()
                  for g in grads)
    return train_nll, weight_norm, penalty


def authors_loss(parts, step, config):
    train_nll, weight_norm, penalty = parts
    loss = train_nll.clone() + config.l2_regularizer_weight * weight_norm
    weight = config.penalty_weight if step >= config.penalty_anneal_iters else 1.0
    loss = loss + weight * penalty
    if weight > 1.0:
        loss = loss / weight
    return loss


@pytest.mark.parametrize("step", [0, 190])
@pytest.mark.parametrize("algorithm", ["HGP", "Hutchinson", "HutchinsonExact"])
def test_training_step_loss_matches_the_scripts(float64, algorithm, step):
    model, images, labels = tiny_problem(3)
    config = TrainConfig(hutchinson_samples=40)
    seed = 11
    ours = objective(model, algorithm, images, labels, SIZES, step, config,
                     torch.Generator().manual_seed(seed))
    if algorithm == "HGP":
        parts = authors_hgp(model, images, labels)
    elif algorithm == "Hutchinson":
        parts = authors_hutchinson(model, images, labels, torch.Generator().manual_seed(seed),
                                   40, probes.DEFAULT_CHUNK_SIZE)
    else:
        parts = authors_exact_diagonal(model, images, labels)
    torch.testing.assert_close(ours.penalty, parts[2], rtol=1e-10, atol=1e-15)
    check_value_and_gradients(model, ours.loss, authors_loss(parts, step, config))


def test_erm_and_the_other_penalties_in_the_training_step(float64):
    model, images, labels = tiny_problem(4)
    config = TrainConfig()
    train_nll, weight_norm, *_ = authors_base(model, images, labels)
    erm = objective(model, "ERM", images, labels, SIZES, 300, config)
    assert erm.penalty is None
    check_value_and_gradients(model, erm.loss,
                              train_nll + config.l2_regularizer_weight * weight_norm)
    vrex = objective(model, "VREx", images, labels, SIZES, 300, config)
    train_nll, weight_norm, *_ = authors_base(model, images, labels)
    nlls = torch.stack([F.binary_cross_entropy_with_logits(z, y) for z, y in
                        zip(model(images)[1].split(SIZES), labels.split(SIZES))])
    expected = (train_nll + config.l2_regularizer_weight * weight_norm
                + config.penalty_weight * (nlls[0] - nlls[1]) ** 2) / config.penalty_weight
    check_value_and_gradients(model, vrex.loss, expected)


def test_registry_names_and_probe_defaults():
    assert list(ALGORITHMS) == ["ERM", "IRM", "VREx", "Fishr", "HGP", "Hutchinson",
                                "HutchinsonExact"]
    assert [a.name for a in ALGORITHMS.values() if a.uses_probes] == ["Hutchinson"]
    assert TrainConfig().probes() == 150
    assert TrainConfig(setting="label_shift").probes() == 200
    assert TrainConfig(hutchinson_samples=7).probes() == 7
    assert penalties.canonical_name("vrex") == "VREx"
    assert penalties.canonical_name("rex") is None


def test_only_the_selected_penalty_is_computed(monkeypatch):
    model, images, labels = tiny_problem(5)
    called = []
    for name, spec in list(ALGORITHMS.items()):
        if spec.penalty is not None:
            def spy(inputs, _name=name, _original=spec.penalty):
                called.append(_name)
                return _original(inputs)
            monkeypatch.setitem(ALGORITHMS, name, penalties.Algorithm(
                name, spy, spec.description, spec.uses_probes))
    objective(model, "Fishr", images, labels, SIZES, 0, TrainConfig(hutchinson_samples=2),
              torch.Generator().manual_seed(0))
    assert called == ["Fishr"]

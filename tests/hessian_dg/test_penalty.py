"""The public penalty API against the plain double-backprop oracle, in both of the
authors' forms (DomainBed's, and their Colored MNIST scripts')."""
import subprocess
import sys

import pytest
import torch

from hessian_dg import hessian_alignment_penalty
from hessian_dg.penalty import curvature_quantity, describe_head
from tests.hessian_dg.reference import double_backprop_penalty

SIZES = [5, 7, 6]
FORMS = {"domainbed": dict(detach_targets=True, mean_over_domains=True),
         "cmnist": dict(detach_targets=False, mean_over_domains=False)}


def _leaves(outputs, d=4, sizes=SIZES, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    features = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(d, outputs).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(outputs, d, generator=g))
        head.bias.copy_(torch.randn(outputs, generator=g))
    labels = (torch.randint(0, 2, (n,), generator=g).double() if outputs == 1
              else torch.randint(0, outputs, (n,), generator=g))
    return features, head, labels


def _probe_args(kind):
    if kind != "hutchinson":
        return {}, {}
    return (dict(num_probes=12, generator=torch.Generator().manual_seed(5), chunk_size=5),
            dict(num_probes=12, generator=torch.Generator().manual_seed(5), chunk_size=5))


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("outputs", [3, 1], ids=["softmax", "sigmoid"])
@pytest.mark.parametrize("kind", ["hgp", "hutchinson", "exact_diagonal"])
def test_linear_heads_equal_double_backprop(kind, outputs, form):
    features, head, labels = _leaves(outputs)
    ours_args, reference_args = _probe_args(kind)
    ours = hessian_alignment_penalty(head, features, labels, SIZES, curvature=kind,
                                     alpha=0.7, beta=0.3, **ours_args, **FORMS[form]).total
    reference = double_backprop_penalty(
        features, head.weight, head.bias, labels, SIZES,
        "diag" if kind == "exact_diagonal" else kind, 0.7, 0.3, **reference_args,
        **FORMS[form])
    assert ours.item() > 1e-6
    assert abs((ours - reference).item()) < 1e-10 * max(1.0, reference.item())
    leaves = (features, head.weight, head.bias)
    for name, a, b in zip(("features", "weight", "bias"),
                          torch.autograd.grad(ours, leaves, retain_graph=True),
                          torch.autograd.grad(reference, leaves)):
        assert (a - b).abs().max() < 1e-10, (name, form)


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("outputs", [3, 1], ids=["softmax", "sigmoid"])
def test_autograd_route_equals_closed_forms(outputs, form):
    """A head that is not a bare nn.Linear goes through autograd: same numbers."""
    features, head, labels = _leaves(outputs)
    wrapped = torch.nn.Sequential(head)
    closed = hessian_alignment_penalty(head, features, labels, SIZES, alpha=0.7, beta=0.3,
                                       **FORMS[form]).total
    autograd = hessian_alignment_penalty(wrapped, features, labels, SIZES, alpha=0.7,
                                         beta=0.3, **FORMS[form]).total
    assert abs((closed - autograd).item()) < 1e-12 * max(1.0, closed.item())
    for a, b in zip(torch.autograd.grad(closed, (features, head.weight), retain_graph=True),
                    torch.autograd.grad(autograd, (features, head.weight))):
        assert (a - b).abs().max() < 1e-12


def test_lists_and_stacked_domains_agree_and_one_domain_is_zero():
    features, head, labels = _leaves(3)
    stacked = hessian_alignment_penalty(head, features, labels, SIZES).total
    listed = hessian_alignment_penalty(head, list(features.split(SIZES)),
                                       list(labels.split(SIZES))).total
    assert stacked.item() == pytest.approx(listed.item(), rel=1e-14)
    single = hessian_alignment_penalty(head, [features], [labels])
    assert single.total.item() == pytest.approx(0.0, abs=1e-24)


def test_bad_input_names_what_is_wrong():
    features, head, labels = _leaves(3)
    with pytest.raises(ValueError, match="unknown curvature 'hpg'.*'hgp'"):
        hessian_alignment_penalty(head, features, labels, SIZES, curvature="hpg")
    with pytest.raises(ValueError, match="need the sizes"):
        hessian_alignment_penalty(head, features, labels)
    with pytest.raises(ValueError, match="2 feature tensors but 1 label tensors"):
        hessian_alignment_penalty(head, [features, features], [labels])
    with pytest.raises(NotImplementedError, match="closed-form only for a linear head"):
        describe_head(torch.nn.Sequential(head), features, labels).hessian_diagonal()
    assert curvature_quantity("hutchinson").num_probes == 300


def test_importing_the_math_imports_no_domainbed_and_changes_no_global_state():
    code = ("import sys; before = set(sys.modules); hooks = list(sys.meta_path); "
            "import hessian_dg, hessian_dg.penalty, hessian_dg.distances; "
            "new = sorted(m for m in set(sys.modules) - before "
            "if m.split('.')[0] in ('domainbed', 'domainbed_patch')); "
            "print(new, sys.meta_path == hooks)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "[] True", result.stderr


def test_no_module_of_the_math_names_domainbed_in_an_import():
    import ast
    from pathlib import Path

    import hessian_dg
    for path in Path(hessian_dg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in ("domainbed", "domainbed_patch"), \
                    (path.name, name)

"""The examples in the docstrings run, and say what they print."""
import doctest
import importlib
import pkgutil

import pytest

import colored_mnist
import domainbed_patch
import hessian_dg

#: bridge modules that import DomainBed when imported: their doctests (none yet)
#: would need it, and the rest of the bridge must not.
NEEDS_DOMAINBED = {"domainbed_patch.algorithms"}


def _modules():
    for package in (hessian_dg, domainbed_patch, colored_mnist):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name not in NEEDS_DOMAINBED and not info.name.endswith("__main__"):
                yield info.name


MODULES = sorted(_modules())


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_examples_exist():
    """A guard against a walk that finds nothing: the public API's example runs."""
    attempted = {name: doctest.testmod(importlib.import_module(name)).attempted
                 for name in ("hessian_dg.penalty", "hessian_dg.probes",
                              "domainbed_patch.hparams")}
    assert all(count > 0 for count in attempted.values()), attempted

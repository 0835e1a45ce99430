"""Shared fixtures: float64 references, the real-DomainBed gate, the test device.

Tests marked ``integration`` need the real DomainBed. Where it is missing they are
skipped with the reason and how to get it; in CI (``CI=true``) that skip is a
failure instead, so a machine that silently lost DomainBed cannot pass.
Tests taking the ``authors_fork`` fixture need the authors' fork (``$HESSIAN_DG_AUTHORS_FORK``)
the same way: skipped where it is missing, failed under ``CI=true``.

``--device cuda`` (or ``$HESSIAN_DG_TEST_DEVICE``; default ``cpu``) is the device of
the ``device`` fixture, which ``tests/test_devices.py`` runs on.
"""
import os
from pathlib import Path

import pytest
import torch

from domainbed_patch.locate import DomainBedNotFoundError, ensure_domainbed_importable


def _domainbed_missing_reason():
    try:
        ensure_domainbed_importable()
    except DomainBedNotFoundError as error:
        return ("real DomainBed not found; get it with `hessian-dg setup` (git clone at "
                "the pinned commit into the cache location) or set DOMAINBED_ROOT to a "
                "clone. Details: " + str(error).splitlines()[0])
    return None


DOMAINBED_MISSING = _domainbed_missing_reason()


def in_ci() -> bool:
    """True where ``$CI`` says so (``true``, ``1``, ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail_in_ci(reason: str) -> None:
    """Skip with ``reason``; in CI, fail: CI must run every test."""
    if in_ci():
        pytest.fail(f"CI=true, and this test would be skipped: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item):
    if item.get_closest_marker("integration") is not None and DOMAINBED_MISSING:
        skip_or_fail_in_ci(DOMAINBED_MISSING)


#: The authors' DomainBed fork (their ``HessianAlignment/`` folder): tests hold the
#: plugin against it, side by side. ``.ci/run`` points it at CI's copy of the fork.
AUTHORS_FORK_VARIABLE = "HESSIAN_DG_AUTHORS_FORK"


def authors_fork_missing_reason():
    """Why the fork cannot be used here, or None."""
    fork = os.environ.get(AUTHORS_FORK_VARIABLE)
    if not fork:
        return (f"the authors' DomainBed fork is not here: set {AUTHORS_FORK_VARIABLE} to "
                "its HessianAlignment/ folder (a clone of huawei-noah/Federated-Learning "
                "at commit a50b474)")
    if not (Path(fork) / "domainbed" / "algorithms.py").is_file():
        return (f"{AUTHORS_FORK_VARIABLE}={fork!r} holds no domainbed/algorithms.py; set it "
                "to the fork's HessianAlignment/ folder")
    return None


@pytest.fixture(scope="session")
def authors_fork():
    """The fork's ``HessianAlignment/`` folder (put it on ``PYTHONPATH`` in a process
    of its own); where it is missing the test is skipped, and fails under ``CI=true``."""
    reason = authors_fork_missing_reason()
    if reason:
        skip_or_fail_in_ci(reason)
    return Path(os.environ[AUTHORS_FORK_VARIABLE]).resolve()


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


DEVICE_VARIABLE = "HESSIAN_DG_TEST_DEVICE"


def pytest_addoption(parser):
    parser.addoption("--device", default=None,
                     help=f"device of the `device` fixture: cpu, cuda or cuda:N (default: "
                          f"${DEVICE_VARIABLE}, else cpu)")


@pytest.fixture(scope="session")
def device(request):
    """The device asked for by ``--device`` or ``$HESSIAN_DG_TEST_DEVICE`` (default cpu);
    asking for CUDA where there is none fails rather than skips."""
    name = request.config.getoption("--device") or os.environ.get(DEVICE_VARIABLE) or "cpu"
    try:
        chosen = torch.device(name)
    except RuntimeError:
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        pytest.fail(f"unknown test device {name!r}; valid devices: cpu, cuda, cuda:N",
                    pytrace=False)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"test device {name} asked for, but CUDA is not available here; "
                    "valid devices: cpu", pytrace=False)
    return chosen

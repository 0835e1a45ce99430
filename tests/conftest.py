"""Shared fixtures: float64 references and the real-DomainBed gate.

Tests marked ``integration`` need the real DomainBed. Where it is missing they are
skipped with the reason and how to get it; in CI (``CI=true``) that skip is a
failure instead, so a machine that silently lost DomainBed cannot pass.
"""
import os

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


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)

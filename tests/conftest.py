"""Shared fixtures: float64 references and the real-DomainBed gate."""
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
requires_domainbed = pytest.mark.skipif(DOMAINBED_MISSING is not None,
                                        reason=DOMAINBED_MISSING or "")


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)

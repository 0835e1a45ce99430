"""Hyperparameters: authors' defaults and ranges, DomainBed's per-name seeding,
and validation errors a user can act on."""
import math

import numpy as np
import pytest

from domainbed_patch import hparams

RANGES = {  # (algorithm, name): (default, log10 range)
    ("HGP", "penalty_alpha"): (1e-4, (-5, -3)),
    ("HGP", "penalty_beta"): (5e-3, (-3, -1)),
    ("Hutchinson", "penalty_alpha"): (1e-3, (1, 4)),
    ("Hutchinson", "penalty_beta"): (5e-3, (2, 6)),
}


@pytest.mark.parametrize("algorithm, name", list(RANGES), ids=lambda x: str(x))
def test_defaults_and_random_ranges(algorithm, name):
    default, (low, high) = RANGES[(algorithm, name)]
    assert hparams.default_hparams(algorithm)[name] == default
    draws = [hparams.random_hparams(algorithm, seed)[name] for seed in range(300)]
    exponents = np.log10(draws)
    assert exponents.min() >= low and exponents.max() <= high
    # the draws spread over the range rather than sticking to one value
    assert exponents.max() - exponents.min() > 0.8 * (high - low)


def test_hutchinson_defaults():
    defaults = hparams.default_hparams("Hutchinson")
    assert defaults["hutchinson_samples"] == 300
    assert defaults["hutchinson_exact"] is False
    assert hparams.random_hparams("Hutchinson", 7)["hutchinson_samples"] == 300


def test_draws_are_per_name_and_deterministic():
    """The draw of a name depends on (seed, name) alone, as in DomainBed."""
    a = hparams.random_hparams("HGP", 123)
    assert a == hparams.random_hparams("HGP", 123)
    assert a != hparams.random_hparams("HGP", 124)
    rng = np.random.RandomState(hparams.seed_hash(123, "penalty_beta"))
    assert a["penalty_beta"] == 10 ** rng.uniform(-1, -3)  # the authors' bound order


# Read from the authors' registry (huawei-noah/Federated-Learning, HessianAlignment/
# domainbed/hparams_registry.py) for random seed seed_hash(hparams_seed, trial_seed).
AUTHORS_DRAWS = [
    ("HGP", 1, 0, 4.243422978317943e-05, 0.04201632158543692),
    ("HGP", 2, 1, 3.9649042238447995e-05, 0.010379840998488706),
    ("Hutchinson", 1, 0, 87.41269008706993, 176537.1279570853),
    ("Hutchinson", 20, 2, 78.92998962391785, 9483.114284309537),
]


@pytest.mark.parametrize("algorithm, hparams_seed, trial_seed, alpha, beta", AUTHORS_DRAWS,
                         ids=[f"{a}-{h}-{t}" for a, h, t, _, _ in AUTHORS_DRAWS])
def test_draws_equal_the_authors_value_for_value(algorithm, hparams_seed, trial_seed,
                                                 alpha, beta):
    drawn = hparams.random_hparams(algorithm, hparams.seed_hash(hparams_seed, trial_seed))
    assert (drawn["penalty_alpha"], drawn["penalty_beta"]) == (alpha, beta)


def test_ranges_read_low_to_high():
    spec = dict((s.name, s) for s in hparams.HPARAMS["Hutchinson"])["penalty_beta"]
    assert str(spec.distribution) == "10^U(2, 6)"
    assert (spec.distribution.low, spec.distribution.high) == (2, 6)


@pytest.mark.integration
def test_seed_hash_is_domainbeds():
    from domainbed.lib import misc
    for args in [(0, "penalty_alpha"), (12345, "lr"), ("PACS", "HGP", [0], 3, 1)]:
        assert hparams.seed_hash(*args) == misc.seed_hash(*args)


def test_exact_diagonal_with_a_nonlinear_head_is_refused_by_the_hparams():
    values = dict(hparams.default_hparams("Hutchinson"), hutchinson_exact=True,
                  nonlinear_classifier=True)
    with pytest.raises(ValueError, match="hutchinson_exact=true needs a linear head"):
        hparams.validate_hparams("Hutchinson", values)
    hparams.validate_hparams("Hutchinson", dict(values, nonlinear_classifier=False))


BAD = [
    ("HGP", "penalty_alpha", -1.0, "a finite real number >= 0"),
    ("HGP", "penalty_beta", "0.1", "a finite real number >= 0"),
    ("HGP", "penalty_beta", math.nan, "a finite real number >= 0"),
    ("HGP", "penalty_alpha", True, "a finite real number >= 0"),
    ("Hutchinson", "hutchinson_samples", 0, "an integer >= 1"),
    ("Hutchinson", "hutchinson_samples", 2.5, "an integer >= 1"),
    ("Hutchinson", "hutchinson_exact", "yes", "true or false"),
    ("Hutchinson", "hutchinson_chunk_size", -4, "an integer >= 1"),
]


@pytest.mark.parametrize("algorithm, name, value, allowed", BAD,
                         ids=[f"{a}-{n}-{v!r}" for a, n, v, _ in BAD])
def test_bad_values_name_the_hparam_value_and_what_is_allowed(algorithm, name, value,
                                                               allowed):
    values = dict(hparams.default_hparams(algorithm), **{name: value})
    with pytest.raises(ValueError) as error:
        hparams.validate_hparams(algorithm, values)
    message = str(error.value)
    assert name in message and repr(value) in message and allowed in message


def test_missing_hparam_and_unknown_algorithm():
    with pytest.raises(ValueError, match="missing hparam 'penalty_beta'"):
        hparams.validate_hparams("HGP", {"penalty_alpha": 1.0})
    with pytest.raises(ValueError, match=r"unknown algorithm 'HPG'.*\['HGP', 'Hutchinson'\]"):
        hparams.default_hparams("HPG")


def test_defaults_validate():
    for algorithm in hparams.HPARAMS:
        hparams.validate_hparams(algorithm, hparams.default_hparams(algorithm))
        hparams.validate_hparams(algorithm, hparams.random_hparams(algorithm, 99))

"""Hyperparameters of HGP and Hutchinson, as data.

One declaration per name: a default, a random distribution, and what values are
allowed. Random draws follow DomainBed's scheme: the value of hparam ``name`` for
``random_seed`` is drawn from ``np.random.RandomState(seed_hash(random_seed, name))``,
so draws depend on neither declaration order nor the other hparams. Random ranges
are drawn with the bounds in the authors' order (``10**r.uniform(-3, -5)``: high
first), which gives the same law as ``uniform(-5, -3)`` but, for each seed, the
authors' value: numpy returns ``start + (end - start) * u``.

The registry is :data:`HPARAMS` (the authors' values; Hutchinson's defaults lie
far outside its own random ranges, which is kept for fidelity). The README's
table is checked against it by the tests.

This is DomainBed's vocabulary (its seeding scheme, its registry's shape), so it
lives in the bridge, though nothing here imports DomainBed.
"""
from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, Mapping

import numpy as np


def seed_hash(*args) -> int:
    """Integer seed derived from ``args``: ``md5(str(args)) mod 2^31``.

    The same function as DomainBed's ``misc.seed_hash``, so per-name draws agree.

    >>> seed_hash(0, "penalty_alpha") == seed_hash(0, "penalty_alpha")
    True
    """
    digest = hashlib.md5(str(args).encode("utf-8")).hexdigest()
    return int(digest, 16) % (2**31)


def train_random_seed(hparams_seed: int, trial_seed: int) -> int:
    """The seed DomainBed's train draws a job's random hparams with:
    ``seed_hash(hparams_seed, trial_seed)`` (each hparam then seeded per name)."""
    return seed_hash(hparams_seed, trial_seed)


#: What a job's two seeds do, in two lines (``sweep plan``, ``selected.md``).
SEEDS_EXPLAINED = (
    "hparams_seed 0 trains with the default hparams; any other draws them from "
    "seed_hash(hparams_seed, trial_seed): each trial draws its own hparams.",
    "trial_seed also fixes the data splits (seed_hash(trial_seed, env)); the job's "
    "training seed hashes dataset, algorithm, test_envs and both seeds.")


# --- distributions -----------------------------------------------------------

@dataclass(frozen=True)
class LogUniform:
    """``10 ** U(low, high)``, drawn as ``10 ** rng.uniform(start, end)``.

    numpy's ``uniform(start, end)`` is ``start + (end - start) * u``: the law
    depends on the two bounds alone, the value for a given seed on their order too.
    ``start``/``end`` keep the order of the registry being reproduced; people read
    the law as a range (``str``).

    >>> str(LogUniform(-3, -5)), LogUniform(-3, -5).low
    ('10^U(-5, -3)', -5)
    """

    start: float
    end: float

    @property
    def low(self) -> float:
        return min(self.start, self.end)

    @property
    def high(self) -> float:
        return max(self.start, self.end)

    def sample(self, rng: np.random.RandomState) -> float:
        return float(10 ** rng.uniform(self.start, self.end))

    def __str__(self) -> str:
        return f"10^U({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class Fixed:
    """Always ``value``."""

    value: Any

    def sample(self, rng: np.random.RandomState) -> Any:
        return self.value

    def __str__(self) -> str:
        return repr(self.value)


# --- allowed values ------------------------------------------------------------

@dataclass(frozen=True)
class NonNegativeReal:
    description = "a finite real number >= 0"

    def accepts(self, value) -> bool:
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and math.isfinite(value) and value >= 0)


@dataclass(frozen=True)
class PositiveInt:
    description = "an integer >= 1"

    def accepts(self, value) -> bool:
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                and value >= 1)


@dataclass(frozen=True)
class Boolean:
    description = "true or false"

    def accepts(self, value) -> bool:
        return isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class HparamSpec:
    """One hyperparameter: default, random distribution, allowed values."""

    name: str
    default: Any
    distribution: Any
    allowed: Any
    doc: str

    def random(self, random_seed: int) -> Any:
        rng = np.random.RandomState(seed_hash(random_seed, self.name))
        return self.distribution.sample(rng)


def _penalty_weights(alpha_default, alpha_bounds, beta_default, beta_bounds):
    """``penalty_alpha`` and ``penalty_beta``; bounds in the authors' order."""
    return (
        HparamSpec("penalty_alpha", alpha_default, LogUniform(*alpha_bounds),
                   NonNegativeReal(), "alpha, weight of the curvature (Hessian) term"),
        HparamSpec("penalty_beta", beta_default, LogUniform(*beta_bounds),
                   NonNegativeReal(), "beta, weight of the gradient term"),
    )


#: algorithm name -> its hyperparameters, in declaration order.
HPARAMS: Dict[str, tuple] = {
    # The authors write every range high bound first, e.g. 10**r.uniform(-3, -5).
    "HGP": _penalty_weights(1e-4, (-3, -5), 5e-3, (-1, -3)),
    "Hutchinson": _penalty_weights(1e-3, (4, 1), 5e-3, (6, 2)) + (
        HparamSpec("hutchinson_samples", 300, Fixed(300), PositiveInt(),
                   "S, Rademacher probes per domain and for the average loss"),
        HparamSpec("hutchinson_exact", False, Fixed(False), Boolean(),
                   "use the exact Hessian diagonal (S -> infinity) instead of "
                   "the estimate; linear heads only"),
        HparamSpec("hutchinson_chunk_size", 32, Fixed(32), PositiveInt(),
                   "probes evaluated at once; bounds memory, not the result's law"),
    ),
}


@dataclass(frozen=True)
class Constraint:
    """A rule across hparams: ``holds(hparams)`` must be true, else ``message``."""

    names: tuple
    holds: Any
    message: str


#: algorithm -> rules across its hparams (and DomainBed's), checked with the values.
CONSTRAINTS: Dict[str, tuple] = {
    "Hutchinson": (
        Constraint(("hutchinson_exact", "nonlinear_classifier"),
                   lambda h: not (h["hutchinson_exact"] and h["nonlinear_classifier"]),
                   "hutchinson_exact=true needs a linear head, but "
                   "nonlinear_classifier=true (the exact diagonal is closed-form only "
                   "for a linear head); set one of them to false"),
    ),
}


def _specs(algorithm: str) -> tuple:
    try:
        return HPARAMS[algorithm]
    except KeyError:
        raise ValueError(f"unknown algorithm {algorithm!r}; hessian-dg defines "
                         f"{sorted(HPARAMS)}") from None


def default_hparams(algorithm: str) -> Dict[str, Any]:
    """The algorithm's own hparams at their defaults."""
    return {spec.name: spec.default for spec in _specs(algorithm)}


def random_hparams(algorithm: str, random_seed: int) -> Dict[str, Any]:
    """The algorithm's own hparams drawn for ``random_seed`` (DomainBed's scheme)."""
    return {spec.name: spec.random(random_seed) for spec in _specs(algorithm)}


def validate_hparams(algorithm: str, hparams: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first hparam that is missing or not allowed,
    or the first rule of :data:`CONSTRAINTS` that the values break."""
    for spec in _specs(algorithm):
        if spec.name not in hparams:
            raise ValueError(f"{algorithm}: missing hparam {spec.name!r} ({spec.doc}); "
                             f"default is {spec.default!r}")
        value = hparams[spec.name]
        if not spec.allowed.accepts(value):
            raise ValueError(f"{algorithm}: hparam {spec.name}={value!r} "
                             f"({type(value).__name__}) is not allowed; expected "
                             f"{spec.allowed.description}")
    for constraint in CONSTRAINTS.get(algorithm, ()):
        if all(name in hparams for name in constraint.names) and \
                not constraint.holds(hparams):
            raise ValueError(f"{algorithm}: {constraint.message}")

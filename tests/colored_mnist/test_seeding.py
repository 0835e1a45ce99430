"""Each restart's data seed and probe seed come from separate keys: no restart's
Hutchinson probes replay another restart's label noise and initial weights."""
import itertools
import sys

import numpy as np
import torch

from colored_mnist import train
from colored_mnist.train import RestartSeeds, TrainConfig, restart_seed
from tests.colored_mnist.conftest import VAL


def test_data_and_probe_seeds_are_pairwise_distinct():
    seeds = [RestartSeeds.of(seed, restart)
             for seed, restart in itertools.product(range(10), range(10))]
    every = [s.data for s in seeds] + [s.probes for s in seeds]
    assert len(set(every)) == len(every) == 200


def test_data_seeds_are_unchanged():
    """The data seed of a restart is what it was before the probe key: restart 0's
    is ``seed`` (the scripts' first restart), later ones a SeedSequence of (seed, r)."""
    assert restart_seed(7, 0) == 7
    assert restart_seed(0, 1) == int(np.random.SeedSequence([0, 1]).generate_state(1)[0])
    assert RestartSeeds.of(3, 4).data == restart_seed(3, 4)


def test_training_seeds_every_stream_with_its_own_seed(idx_folder, monkeypatch):
    """Behaviour: record the seeds train_restart gives torch's global RNG (data and
    weights) and its probe generator, over seeds 0-1 and restarts 0-2."""
    folder, images, classes = idx_folder
    used = []
    manual_seed, Generator = torch.manual_seed, torch.Generator

    def spy_global(seed):
        used.append(("data", int(seed)))
        return manual_seed(seed)

    class SeedRecorder:
        """``torch.Generator(...).manual_seed(s)`` of train.py, recording ``s``."""

        def __init__(self, generator):
            self.generator = generator

        def manual_seed(self, seed):
            used.append(("probes", int(seed)))
            return self.generator.manual_seed(seed)

    def spy_generator(*args, **kwargs):
        real = Generator(*args, **kwargs)  # hessian_dg.probes' own chunk generators
        if sys._getframe(1).f_globals.get("__name__") != train.__name__:
            return real
        return SeedRecorder(real)

    config = TrainConfig(hidden_dim=4, steps=1, log_every=1, hutchinson_samples=2)
    # One restart before the spies: torch's lazy imports (which read torch.Generator
    # in annotations) happen now, not while torch.Generator is the spy.
    train.train_restart(images, classes, "Hutchinson", config, RestartSeeds(1, 2), VAL, 200)
    monkeypatch.setattr(train.torch, "manual_seed", spy_global)
    monkeypatch.setattr(train.torch, "Generator", spy_generator)
    for seed, restart in itertools.product(range(2), range(3)):
        train.train_restart(images, classes, "Hutchinson", config,
                            RestartSeeds.of(seed, restart), VAL, 200)
    data = [s for kind, s in used if kind == "data"]
    probes = [s for kind, s in used if kind == "probes"]
    assert len(data) == len(probes) == 6
    assert len(set(data) | set(probes)) == 12

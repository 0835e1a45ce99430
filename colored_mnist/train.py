r"""One restart: full-batch training of the MLP on the two training environments.

Objective at step t (the scripts' l.270-440), over training environments 0 and 1:

    train_nll = (nll_0 + nll_1) / 2                       (unweighted, whatever N_e)
    loss      = train_nll + l2 * sum_{all params p} ||p||^2   (biases included)
    loss     += w_t * penalty,  w_t = penalty_weight if t >= anneal_iters else 1
    loss     /= w_t  when w_t > 1                          (ERM: no penalty, no rescale)

then one Adam step (lr 4.8985e-4, default betas, no weight decay) for t = 0 ..
steps - 1. The numbers of a logging step (every ``log_every`` steps, and the last
step) come from the forward pass at the *start* of that step, before its update:
train nll/acc and the raw penalty of the training forward pass; test and gray
test accuracy from a forward pass under ``no_grad`` (only at logging steps; the
scripts evaluate them every step, which changes nothing else); and
``||H_0 - H_1||_F`` over the head's 391 parameters (exact, dense), as the
Hutchinson scripts log it. Accuracies are against the noisy labels.

Seeding (a departure from the scripts, for resumable and parallel restarts),
scheme :data:`SEEDING`: restart r has its own *data seed*, ``restart_seed(seed, r)``,
from which its shuffle (numpy), label and colour noise and initialisation (torch,
one stream, in the scripts' order) are drawn, and its own *probe seed*,
``probe_seed(seed, r)``, for Hutchinson's probes (a separate generator). The two
come from different keys: a ``SeedSequence`` of ``(seed, r)`` for the data, the
same entropy under the spawn key ``(PROBE_KEY,)`` for the probes, so no restart's
probes replay another restart's data stream. The scripts instead seed once and
let the streams run on from restart to restart. Restart 0's data seed is ``seed``
itself, so at full data its environments and initial weights are those of the
scripts' first restart.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from colored_mnist.data import Environment, build_environments
from colored_mnist.model import MLP
from colored_mnist.penalties import ALGORITHMS, HUTCHINSON_SAMPLES, PenaltyInputs
from hessian_dg.distances import hessian_frobenius_distance
from hessian_dg.penalty import describe_head


@dataclass
class TrainConfig:
    """Every setting of the scripts, with their defaults."""

    setting: str = "correlation_shift"
    hidden_dim: int = 390
    l2_regularizer_weight: float = 0.00110794568
    lr: float = 0.0004898536566546834
    penalty_anneal_iters: int = 190
    penalty_weight: float = 91257.18613115903
    steps: int = 501
    label_flipping_prob: float = 0.25
    grayscale_model: bool = False
    hutchinson_samples: Optional[int] = None  # None: the scripts' value for the setting
    log_every: int = 100

    def probes(self) -> int:
        return self.hutchinson_samples or HUTCHINSON_SAMPLES[self.setting]

    def to_dict(self) -> dict:
        return asdict(self)


#: Spawn key of the probe seeds: any other key gives another, independent stream.
PROBE_KEY = 0x70726F62  # "prob"
#: The seeding scheme's name, saved in every restart's identity: restarts made under
#: another scheme (the first one seeded restart r's probes with restart r + 1's data
#: seed) are refused rather than mixed in.
SEEDING = "data:restart_seed(seed,r);probes:SeedSequence([seed,r],spawn_key=(PROBE_KEY,))"


def restart_seed(seed: int, restart: int) -> int:
    """The data seed: ``seed`` for restart 0; a SeedSequence of ``(seed, restart)`` after."""
    if restart == 0:
        return seed
    return int(np.random.SeedSequence([seed, restart]).generate_state(1)[0])


def probe_seed(seed: int, restart: int) -> int:
    """The probe seed of restart ``restart``: ``(seed, restart)`` under :data:`PROBE_KEY`."""
    sequence = np.random.SeedSequence([seed, restart], spawn_key=(PROBE_KEY,))
    return int(sequence.generate_state(1)[0])


@dataclass(frozen=True)
class RestartSeeds:
    """The two seeds of one restart: its data and initial weights, its probes."""

    data: int
    probes: int

    @classmethod
    def of(cls, seed: int, restart: int) -> RestartSeeds:
        return cls(restart_seed(seed, restart), probe_seed(seed, restart))


def logging_steps(steps: int, log_every: int) -> List[int]:
    """Every ``log_every``-th step and the last one."""
    return sorted(set(range(0, steps, log_every)) | {steps - 1})


@dataclass
class Objective:
    """The step's loss and what the log reads from its forward pass."""

    loss: torch.Tensor
    train_nll: torch.Tensor
    train_acc: torch.Tensor
    penalty: Optional[torch.Tensor]
    features: torch.Tensor
    logits: torch.Tensor


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The scripts' ``mean_accuracy``: ``1[z > 0]`` against the (noisy) labels."""
    return (((logits > 0).float() - labels).abs() < 1e-2).float().mean()


def objective(model: MLP, algorithm: str, images: torch.Tensor, labels: torch.Tensor,
              sizes: List[int], step: int, config: TrainConfig,
              generator: Optional[torch.Generator] = None) -> Objective:
    """The loss of step ``step`` on the stacked training environments."""
    features, logits = model(images)
    nlls = [F.binary_cross_entropy_with_logits(z, y)
            for z, y in zip(logits.split(sizes), labels.split(sizes))]
    accs = [accuracy(z, y) for z, y in zip(logits.split(sizes), labels.split(sizes))]
    train_nll = torch.stack(nlls).mean()
    train_acc = torch.stack(accs).mean()
    weight_norm = sum(p.pow(2).sum() for p in model.parameters())
    loss = train_nll + config.l2_regularizer_weight * weight_norm
    penalty = None
    spec = ALGORITHMS[algorithm]
    if spec.penalty is not None:
        penalty = spec.penalty(PenaltyInputs(
            model.classifier, features, logits, labels, list(sizes), nlls,
            generator=generator, num_probes=config.probes()))
        weight = (config.penalty_weight if step >= config.penalty_anneal_iters else 1.0)
        loss = loss + weight * penalty
        if weight > 1.0:
            loss = loss / weight
    return Objective(loss, train_nll, train_acc, penalty, features, logits)


def hessian_distance(model: MLP, features: torch.Tensor, logits: torch.Tensor,
                     labels: torch.Tensor, sizes: List[int]) -> float:
    """``||H_0 - H_1||_F`` of the head on the two training environments."""
    with torch.no_grad():
        heads = [describe_head(model.classifier, f, y, logits=z) for f, z, y in
                 zip(features.detach().split(sizes), logits.detach().split(sizes),
                     labels.split(sizes))]
        return hessian_frobenius_distance(heads[0], heads[1]).value


def evaluate(model: MLP, env: Environment) -> float:
    with torch.no_grad():
        return float(accuracy(model(env.images)[1], env.labels))


def make_restart(images: np.ndarray, classes: np.ndarray, config: TrainConfig, seed: int,
                 val_size: int, train_size: Optional[int]):
    """``(environments, model)`` from one seed, torch's global RNG left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        envs = build_environments(images, classes, config.setting, seed,
                                  config.label_flipping_prob, val_size, train_size)
        model = MLP(tuple(envs[0].images.shape[1:]), config.hidden_dim,
                    config.grayscale_model)
    return envs, model


def train_restart(images: np.ndarray, classes: np.ndarray, algorithm: str,
                  config: TrainConfig, seeds: RestartSeeds, val_size: int = 10_000,
                  train_size: Optional[int] = None, device: str = "cpu") -> Dict:
    """Train one restart from ``seeds``; the result as a JSON-ready dict.

    Data and initial weights are drawn on the CPU from ``seeds.data`` (the same for
    every device), then moved to ``device``; probes from ``seeds.probes`` on a CPU
    generator.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}")
    start = time.perf_counter()
    envs, model = make_restart(images, classes, config, seeds.data, val_size, train_size)
    model.to(device)
    for env in envs:
        env.images, env.labels = env.images.to(device), env.labels.to(device)
    train_envs, test_env, gray_env = envs[:2], envs[2], envs[3]
    images_train = torch.cat([e.images for e in train_envs])
    labels_train = torch.cat([e.labels for e in train_envs])
    sizes = [e.images.shape[0] for e in train_envs]
    generator = torch.Generator().manual_seed(seeds.probes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    to_log = set(logging_steps(config.steps, config.log_every))
    log = []
    for step in range(config.steps):
        result = objective(model, algorithm, images_train, labels_train, sizes, step,
                           config, generator)
        if step in to_log:
            log.append({
                "step": step,
                "train_nll": float(result.train_nll.detach()),
                "train_acc": float(result.train_acc),
                "penalty": None if result.penalty is None else float(result.penalty.detach()),
                "test_acc": evaluate(model, test_env),
                "gray_test_acc": evaluate(model, gray_env),
                "hessian_distance": hessian_distance(model, result.features,
                                                     result.logits, labels_train, sizes),
            })
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
    final = log[-1]
    return {
        "algorithm": algorithm,
        "seed": seeds.data,
        "probe_seed": seeds.probes,
        "log": log,
        "final": {key: final[key] for key in ("step", "train_acc", "test_acc",
                                              "gray_test_acc")},
        "env_sizes": {e.name: int(e.images.shape[0]) for e in envs},
        "seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }

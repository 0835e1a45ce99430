"""``hessian-dg diagnose``: the paper's transfer quantities for trained DomainBed models.

Hemati et al. (ICCV 2023) bound how well a classifier transfers between domains by
how far apart the head's gradients and Hessians are on them. For a job of a sweep
whose algorithm predicts with DomainBed's ``classifier(featurizer(x))`` (ERM, CORAL,
Fishr, HGP, Hutchinson and most others), this module

1. rebuilds the model from ``model.pkl`` (the final step's checkpoint, the one
   DomainBed's oracle selection uses), loaded without running code from it
   (:mod:`domainbed_patch.checkpoint`), and without downloading ImageNet weights:
   the state dict replaces them;
2. rebuilds the job's splits from its seeds as DomainBed's train made them, with
   augmentation off, and takes the ``in`` split of every environment (the part
   DomainBed trains on, for training environments), subsampled to at most
   ``max_examples`` examples: the same examples for every algorithm of a sweep;
3. evaluates the featurizer in eval mode, in batches, and computes with
   :func:`hessian_dg.distances.compare_domains`, for every pair of environments and
   for each environment against the training domains' average loss:
   ``||g_e - g_f||``, ``||H_e - H_f||_F``, ``||H_e - H_f||_2``, ``||g_e||``, ``||H_e||_2``
   (exact for a linear head; for a nonlinear one, Frobenius norms are estimated);
4. writes ``diagnostics.json`` beside the job's ``results.jsonl``, and nothing else
   into the job's folder (written whole or not at all, so a killed job reruns).

:func:`diagnose_trained` does steps 2-4 for a model still in memory: the sweep's
in-job option, which needs no saved model.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from domainbed_patch import job_folder, locate, validation
from domainbed_patch.checkpoint import load_checkpoint
from domainbed_patch.job_folder import DIAGNOSTICS as DIAGNOSTICS_FILE  # noqa: F401 - public
from domainbed_patch.job_folder import JobFolder

DEFAULT_MAX_EXAMPLES = 2000
TRAIN_AVERAGE = "train_average"

#: Why a job without a model file cannot be diagnosed from it, and what to do.
NO_MODEL = (f"no {job_folder.MODEL} (trained with --skip_model_save?); diagnose it in the "
            "job instead: sweep preset field diagnose = true")


class SkipJob(Exception):
    """This job cannot be diagnosed; the message says why."""


@contextlib.contextmanager
def untrained_backbones():
    """Build DomainBed's networks without fetching pretrained weights (a saved state
    dict replaces them): torchvision's ResNets and timm's models start untrained."""
    import torchvision
    patched = []
    for name in ("resnet18", "resnet50"):
        original = getattr(torchvision.models, name)
        patched.append((torchvision.models, name, original))
        setattr(torchvision.models, name,
                lambda *a, _f=original, **k: _f(weights=None))
    try:
        import timm
        original = timm.create_model
        patched.append((timm, "create_model", original))
        timm.create_model = lambda name, *a, _f=original, **k: _f(
            name, *a, **dict(k, pretrained=False))
    except ImportError:
        pass
    try:
        yield
    finally:
        for module, name, original in patched:
            setattr(module, name, original)


@contextlib.contextmanager
def _seeded_as_train(seed: int):
    """The global RNGs seeded as DomainBed's train seeds them before it builds the
    dataset (synthetic datasets draw from them), then put back as they were."""
    state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])


def environment_splits(args: dict, hparams: dict, data_dir: Optional[str] = None) -> list:
    """Each environment's ``in`` split, as DomainBed's train makes it from the job's
    seeds (holdout, then the uda part of test environments), without augmentation."""
    from domainbed import datasets
    from domainbed.lib import misc
    data_dir = data_dir or args["data_dir"]
    validation.check_data_dir(args["dataset"], data_dir)
    with _seeded_as_train(args["seed"]):
        dataset = datasets.get_dataset_class(args["dataset"])(
            data_dir, args["test_envs"], dict(hparams, data_augmentation=False))
    splits = []
    for index, environment in enumerate(dataset):
        seed = misc.seed_hash(args["trial_seed"], index)
        _, split = misc.split_dataset(environment,
                                      int(len(environment) * args["holdout_fraction"]), seed)
        if index in args["test_envs"]:
            _, split = misc.split_dataset(
                split, int(len(split) * args.get("uda_holdout_fraction", 0)), seed)
        splits.append(split)
    return splits


def _subsample(split, max_examples: Optional[int], trial_seed: int, index: int):
    """At most ``max_examples`` examples, chosen by (trial seed, environment) alone."""
    if max_examples is None or len(split) <= max_examples:
        return split
    generator = torch.Generator().manual_seed(1_000_003 * trial_seed + index)
    keep = torch.randperm(len(split), generator=generator)[:max_examples].tolist()
    return torch.utils.data.Subset(split, keep)


def _features(featurizer, split, device, batch_size: int = 64):
    loader = torch.utils.data.DataLoader(split, batch_size=batch_size, shuffle=False)
    features, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            features.append(featurizer(x.to(device)).double())
            labels.append(y.to(device))
    return torch.cat(features), torch.cat(labels)


def check_head(algorithm, algorithm_name: str, example: torch.Tensor) -> None:
    """Raise :class:`SkipJob` unless ``algorithm`` predicts with
    ``classifier(featurizer(x))``: the head the paper's quantities are about."""
    featurizer = getattr(algorithm, "featurizer", None)
    classifier = getattr(algorithm, "classifier", None)
    if not (isinstance(featurizer, torch.nn.Module) and isinstance(classifier, torch.nn.Module)):
        raise SkipJob(f"{algorithm_name} has no featurizer + classifier pair")
    reason = f"{algorithm_name} does not predict with classifier(featurizer(x))"
    with torch.no_grad():
        try:
            direct = classifier(featurizer(example))
        except RuntimeError:  # e.g. a featurizer that takes more than the image
            raise SkipJob(reason) from None
        if not torch.allclose(algorithm.predict(example), direct, rtol=1e-4, atol=1e-5):
            raise SkipJob(reason)


def diagnose_trained(algorithm, args: dict, hparams: dict, data_dir: Optional[str] = None,
                     max_examples: Optional[int] = DEFAULT_MAX_EXAMPLES,
                     device="cpu", tol: float = 1e-4) -> dict:
    """The transfer quantities of a trained algorithm on the job's splits."""
    from hessian_dg.distances import HeadMixture, compare_domains
    from hessian_dg.penalty import describe_head

    splits = environment_splits(args, hparams, data_dir)
    was_training = algorithm.training
    algorithm.eval()
    check_head(algorithm, args["algorithm"], splits[0][0][0][None].to(device))
    classifier = algorithm.classifier
    original_dtype = next(classifier.parameters()).dtype
    classifier.double()
    try:
        heads, sizes = {}, {}
        for index, split in enumerate(splits):
            subset = _subsample(split, max_examples, args["trial_seed"], index)
            features, labels = _features(algorithm.featurizer, subset, device)
            with torch.enable_grad():
                heads[f"env{index}"] = describe_head(classifier, features, labels)
            sizes[f"env{index}"] = len(subset)
        training = [f"env{i}" for i in range(len(splits)) if i not in args["test_envs"]]
        heads[TRAIN_AVERAGE] = HeadMixture([heads[n] for n in training],
                                           [1 / len(training)] * len(training))
        names = [f"env{i}" for i in range(len(splits))]
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        pairs += [(name, TRAIN_AVERAGE) for name in names]
        generator = torch.Generator().manual_seed(args["trial_seed"])
        result = compare_domains(heads, pairs, generator, tol=tol)
    finally:
        classifier.to(original_dtype)
        algorithm.train(was_training)
    result.update(
        algorithm=args["algorithm"], dataset=args["dataset"], test_envs=args["test_envs"],
        training_envs=training, split="in", examples=sizes, max_examples=max_examples,
        linear_head=isinstance(classifier, torch.nn.Linear), tolerance=tol)
    return result


def write_diagnostics(job_dir, result: dict) -> Path:
    """``diagnostics.json`` in ``job_dir``, written whole (temporary file, then rename)."""
    target = JobFolder(job_dir).diagnostics
    descriptor, temporary = tempfile.mkstemp(prefix=".diagnostics", dir=job_dir)
    with os.fdopen(descriptor, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    os.replace(temporary, target)
    return target


def diagnose_job(job_dir, data_dir: Optional[str] = None,
                 max_examples: Optional[int] = DEFAULT_MAX_EXAMPLES, device="cpu") -> dict:
    """Diagnose a finished job from its ``model.pkl``; raise :class:`SkipJob` with
    the reason when it cannot be."""
    job_dir = Path(job_dir)
    model_file = JobFolder(job_dir).model
    if not model_file.exists():
        raise SkipJob(NO_MODEL)
    locate.ensure_domainbed_importable()
    from domainbed import algorithms
    saved = load_checkpoint(model_file, map_location=device)
    args, hparams = saved["args"], saved["model_hparams"]
    if args["algorithm"] not in algorithms.ALGORITHMS:
        raise SkipJob(f"unknown algorithm {args['algorithm']!r}: DomainBed here does not "
                      "define it")
    with untrained_backbones():
        algorithm = algorithms.get_algorithm_class(args["algorithm"])(
            saved["model_input_shape"], saved["model_num_classes"],
            saved["model_num_domains"], hparams)
    algorithm.load_state_dict(saved["model_dict"])
    algorithm.to(device)
    result = diagnose_trained(algorithm, args, hparams, data_dir, max_examples, device)
    result["checkpoint"] = f"{model_file.name} (final step)"
    write_diagnostics(job_dir, result)
    return result

"""One side of the side-by-side tests against the authors' fork: a script, run in a
process of its own by ``test_authors_fork.py``, on whichever DomainBed ``import
domainbed`` finds there (upstream with the plugin, or the fork on ``PYTHONPATH``
with ``HESSIAN_DG_DISABLE=1``). Both sides run this same file.

    python authors_fork_side.py update SPEC.json
        one ``update()`` per run of the spec, from the saved initial state and batch
        (written first where the spec says ``prepare``), saved with
        ``torch.save``: every parameter's ``.grad``, every buffer, the returned dict;
    python authors_fork_side.py run MODULE ARG...
        ``python -m MODULE ARG...`` (a DomainBed train, or the job runner);
    python authors_fork_side.py audit ROOT SWEEP OUT NAME...
        each dataset class NAME on the image folders under ROOT, augmentation on
        (test environment 0 without), every image drawn under a fixed seed: its
        class attributes and a fingerprint of every image and label; and what
        DomainBed's collect_results prints for the sweep folder SWEEP, as text and
        as LaTeX; all saved to OUT as JSON (one process: imports cost the most).

Both subcommands build ResNets with untrained weights (torchvision's constructors
called with ``weights=None``: nothing is downloaded; the update reloads a saved
state anyway) and use the same number of CPU threads, so that floating-point
reductions run in the same order on both sides.
"""
import json
import runpy
import sys
from pathlib import Path

import torch

THREADS = 2
NUM_CLASSES = 7
DOMAINS, PER_DOMAIN = 3, 2
#: a probe's fingerprint: its entries weighed by these position weights, summed.
FINGERPRINT_PERIOD = 1009


def untrained_torchvision():
    import torchvision
    for name in ("resnet18", "resnet50"):
        constructor = getattr(torchvision.models, name)
        setattr(torchvision.models, name,
                lambda *a, _f=constructor, **k: _f(weights=None))


def fingerprint(z: torch.Tensor) -> float:
    weights = torch.arange(z.numel(), dtype=torch.float64) % FINGERPRINT_PERIOD + 1
    return float((z.double().flatten() * weights).sum())


def batchnorms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def prepare(directory: Path, size: int, hparams: dict) -> None:
    """The shared initial state and batch for ``size`` x ``size`` images: a
    random-init ERM network whose BatchNorm running statistics (ResNet-50's) are those
    of a calibration batch (with mean 0 and variance 1 a random ResNet-50 in
    eval-mode BatchNorm blows its activations up), and a batch of ``DOMAINS`` x
    ``PER_DOMAIN`` images with labels of ``NUM_CLASSES`` classes."""
    from domainbed import algorithms
    shape = (3, size, size)
    torch.manual_seed(0)
    erm = algorithms.ERM(shape, NUM_CLASSES, DOMAINS, hparams)
    layers = batchnorms(erm.featurizer)
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average: one batch sets the statistics
        layer.train()
    with torch.no_grad():
        erm.featurizer(torch.randn(4, *shape))
    for layer in layers:
        layer.momentum = 0.1
        layer.eval()
    torch.save({"featurizer": erm.featurizer.state_dict(),
                "classifier": erm.classifier.state_dict()}, directory / f"initial_{size}.pt")
    torch.manual_seed(1)
    batch = [(torch.randn(PER_DOMAIN, *shape),
              torch.randint(0, NUM_CLASSES, (PER_DOMAIN,))) for _ in range(DOMAINS)]
    torch.save(batch, directory / f"batch_{size}.pt")


def replayed_probes(seed: int, count: int, size: int) -> torch.Tensor:
    """The fork's probes, replayed: ``calc_hessian_diag`` draws each one as
    ``2 * torch.randint_like(gg, high=2) - 1`` from the global RNG, ``gg`` the
    flattened head gradient (weight rows, then bias), float32; nothing else in its
    ``update()`` draws (dropout is off)."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    template = torch.empty(size)
    drawn = torch.stack([2 * torch.randint_like(template, high=2) - 1 for _ in range(count)])
    torch.set_rng_state(state)
    return drawn


def substitute_probes(replay: torch.Tensor, samples: int, features: int) -> list:
    """Make the plugin's estimator use the fork's probes, at its one seam
    (:func:`hessian_dg.probes.chunk_seeds` / :func:`~hessian_dg.probes.draw_chunk`).

    Layouts: the fork draws 300 probes for the average loss, then 300 per domain
    in domain order, each a vector over the flattened head (weight (C, D) row by
    row, then bias (C)); the plugin's closed form asks for a plan of chunk seeds
    per quantity in the same order (average loss first, then domains) and draws
    each chunk as (s, C, D+1), bias in the last column. So quantity q's chunk
    starting at probe j is the fork's probes ``q*300 + j ...``, with weight entry
    [c, d] at c*D + d and bias [c] at C*D + c. A token ``q * 10**6 + j`` stands in
    for each chunk's seed. Returns the list of quantities served (for checking).
    """
    from hessian_dg import probes
    served = []

    def chunk_seeds(num_probes, chunk_size, generator):
        assert num_probes == samples, num_probes
        quantity, start, plan = len(served), 0, []
        served.append(quantity)
        for size in probes.chunk_sizes(num_probes, chunk_size):
            plan.append((quantity * 10**6 + start, size))
            start += size
        return plan

    def draw_chunk(seed, size, shape, dtype=torch.float32, device=None, out=None):
        quantity, start = divmod(seed, 10**6)
        classes, width = shape
        assert width == features + 1, shape
        block = replay[quantity * samples + start:][:size]
        weight = block[:, :classes * features].reshape(size, classes, features)
        bias = block[:, classes * features:].reshape(size, classes, 1)
        chunk = torch.cat([weight, bias], dim=2)
        if out is None:
            return chunk.to(dtype)
        view = out.view(-1)[:chunk.numel()].view(chunk.shape)
        view.copy_(chunk)
        return view

    probes.chunk_seeds = chunk_seeds
    probes.draw_chunk = draw_chunk
    return served


def record_probe_draws():
    """Wrap ``torch.randint_like`` (what the fork's estimator calls) to fingerprint
    every draw; returns the list it fills and a function that unwraps it."""
    drawn = []
    original = torch.randint_like

    def randint_like(*args, **kwargs):
        value = original(*args, **kwargs)
        drawn.append(fingerprint(2 * value - 1))
        return value

    def restore():
        torch.randint_like = original

    torch.randint_like = randint_like
    return drawn, restore


def update(spec_path: str) -> None:
    """Spec: ``side`` ("ours" or "fork"), ``dir``, ``prepare`` (write the initial
    states first), ``probe_seed``, and ``runs``: a list of ``{"algorithm", "size",
    "hparams"}``; each run's result goes to ``<side>_<algorithm>_<size>.pt``."""
    spec = json.loads(Path(spec_path).read_text())
    directory = Path(spec["dir"])
    import domainbed
    from domainbed import algorithms
    where = [str(Path(p).resolve()) for p in domainbed.__path__]
    if spec["prepare"]:
        for size in sorted({run["size"] for run in spec["runs"]}):
            erm = next(r for r in spec["runs"] if r["size"] == size)["hparams"]
            prepare(directory, size, erm)
    for run in spec["runs"]:
        name, size, hparams = run["algorithm"], run["size"], run["hparams"]
        initial = torch.load(directory / f"initial_{size}.pt")
        batch = torch.load(directory / f"batch_{size}.pt")
        torch.manual_seed(2)
        algorithm = algorithms.get_algorithm_class(name)(
            (3, size, size), NUM_CLASSES, DOMAINS, hparams)
        algorithm.featurizer.load_state_dict(initial["featurizer"])
        algorithm.classifier.load_state_dict(initial["classifier"])
        features = algorithm.featurizer.n_outputs
        head = NUM_CLASSES * features + NUM_CLASSES
        samples = hparams.get("hutchinson_samples", 300)
        served, drawn, restore = None, None, lambda: None
        if name == "Hutchinson" and spec["side"] == "ours":
            replay = replayed_probes(spec["probe_seed"], (DOMAINS + 1) * samples, head)
            served = substitute_probes(replay, samples, features)
            drawn = [fingerprint(z) for z in replay]
        elif name == "Hutchinson":
            drawn, restore = record_probe_draws()
        torch.manual_seed(spec["probe_seed"])
        out = algorithm.update(batch)
        restore()
        torch.save({
            "out": out,
            "grads": {k: None if p.grad is None else p.grad.clone()
                      for k, p in algorithm.named_parameters()},
            "buffers": {k: b.clone() for k, b in algorithm.named_buffers()},
            "batchnorm_training": [m.training for m in batchnorms(algorithm)],
            "probe_fingerprints": drawn, "quantities_served": served,
            "domainbed": where,
        }, directory / f"{spec['side']}_{name}_{size}.pt")


def collect_results(sweep: str, *flags: str) -> str:
    import contextlib
    import io
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run("domainbed.scripts.collect_results", ["--input_dir", sweep, *flags])
    return printed.getvalue()


def audit(root: str, sweep: str, out: str, *names: str) -> None:
    from domainbed import datasets
    seen = {}
    for name in names:
        cls = datasets.get_dataset_class(name)
        dataset = cls(root, [0], {"data_augmentation": True})
        images = []
        for env in dataset:
            torch.manual_seed(0)
            images.append([(fingerprint(x), float(x.double().abs().sum()), int(y))
                           for x, y in (env[i] for i in range(len(env)))])
        seen[name] = {"ENVIRONMENTS": cls.ENVIRONMENTS, "N_STEPS": cls.N_STEPS,
                      "CHECKPOINT_FREQ": cls.CHECKPOINT_FREQ, "N_WORKERS": cls.N_WORKERS,
                      "input_shape": list(dataset.input_shape),
                      "num_classes": dataset.num_classes, "images": images}
    collected = {"text": collect_results(sweep), "latex": collect_results(sweep, "--latex")}
    Path(out).write_text(json.dumps({"datasets": seen, "collect_results": collected}))


def run(module: str, argv: list) -> None:
    sys.argv = [module, *argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def main() -> None:
    torch.set_num_threads(THREADS)
    untrained_torchvision()
    command, *rest = sys.argv[1:]
    if command == "update":
        update(*rest)
    elif command == "run":
        import domainbed
        from domainbed import datasets
        datasets.Debug224.N_WORKERS = 0  # no loader workers: cheap on 2 cores
        print("domainbed:", *[str(Path(p).resolve()) for p in domainbed.__path__],
              flush=True)
        run(rest[0], rest[1:])
    elif command == "audit":
        audit(*rest)
    else:
        raise SystemExit(f"unknown command {command!r}; choose update, run or audit")


if __name__ == "__main__":
    main()

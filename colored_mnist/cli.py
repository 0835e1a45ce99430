"""The ``cmnist`` command: Colored MNIST with every algorithm side by side.

    hessian-dg cmnist --algorithms ERM IRM VREx Fishr HGP Hutchinson HutchinsonExact \\
        --setting correlation_shift --dataset mnist --output_dir cmnist_results

(also ``python -m colored_mnist ...`` with the same flags). Every flag of the
authors' scripts is here with their default; ``--restarts`` is their
``--n_restarts``. Restarts already saved under ``--output_dir`` are skipped, the
others run in ``--workers`` processes; the report (``results.md``, ``results.csv``,
``curves.png`` under ``<output_dir>/<setting>/``) is rewritten at the end.

Bad input stops before any job with one line naming the bad value and the valid
ones, exit status 2 (also: an ``--output_dir`` that is a file, a ``--train_size``
that leaves a training environment of a restart empty, ``--report_only`` with
nothing saved); a failed restart gives exit status 1 after the others ran.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import types
from typing import List, Optional

import numpy as np

from colored_mnist import sources
from colored_mnist.data import SETTINGS, VAL_SIZE
from colored_mnist.errors import CmnistError, UsageError
from colored_mnist.penalties import ALGORITHMS, canonical_name
from colored_mnist.train import TrainConfig

PROG = "hessian-dg cmnist"
DESCRIPTION = ("Colored MNIST as Hemati et al. (ICCV 2023) ran it: ERM, IRM, VREx, Fishr, "
               "HGP, Hutchinson and HutchinsonExact side by side, restarts saved as they "
               "finish and skipped when rerun.")
_DEFAULTS = TrainConfig()


def _one_line_error(parser: argparse.ArgumentParser, message: str) -> None:
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every flag of the command on ``parser``."""
    add = parser.add_argument
    add("--algorithms", nargs="+", default=list(ALGORITHMS), metavar="NAME",
        help=f"any of {', '.join(ALGORITHMS)} (default: all)")
    add("--setting", default="correlation_shift",
        help=f"{' or '.join(SETTINGS)} (default: %(default)s)")
    add("--dataset", default="mnist", help=f"{', '.join(sources.DATASETS)} (default: "
        "%(default)s; fashion_mnist reads /usr/share/datasets/fashion-mnist by default)")
    add("--data_dir", default=None, help="mnist: torchvision root (default "
        "~/datasets/mnist); fashion_mnist / idx: folder of IDX files")
    add("--output_dir", default="cmnist_results", help="default: %(default)s")
    add("--restarts", "--n_restarts", dest="restarts", type=int, default=10)
    add("--steps", type=int, default=_DEFAULTS.steps)
    add("--train_size", type=int, default=None,
        help="keep the first N of the 50,000 shuffled training images (default: all)")
    add("--val_size", type=int, default=VAL_SIZE,
        help="the last N images of the training file are the test pool")
    add("--workers", type=int, default=None, help="processes (default: min(cores, jobs))")
    add("--threads", type=int, default=None,
        help="torch threads per worker (default: max(1, cores // workers))")
    add("--seed", type=int, default=0)
    add("--device", default="cpu", help="cpu or cuda[:N] (default: %(default)s)")
    add("--label_flipping_prob", type=float, default=_DEFAULTS.label_flipping_prob)
    add("--hidden_dim", type=int, default=_DEFAULTS.hidden_dim)
    add("--l2_regularizer_weight", type=float, default=_DEFAULTS.l2_regularizer_weight)
    add("--lr", type=float, default=_DEFAULTS.lr)
    add("--penalty_anneal_iters", type=int, default=_DEFAULTS.penalty_anneal_iters)
    add("--penalty_weight", type=float, default=_DEFAULTS.penalty_weight)
    add("--grayscale_model", action="store_true")
    add("--hutchinson_samples", type=int, default=None,
        help="probes per quantity (default: 150 correlation shift, 200 label shift)")
    add("--log_every", type=int, default=_DEFAULTS.log_every)
    add("--report_only", action="store_true", help="rewrite the report, train nothing")
    add("--no_report", action="store_true", help="train, write no report")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``cmnist`` sub-command on an ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "cmnist", help="Colored MNIST: ERM, IRM, VREx, Fishr, HGP, Hutchinson side by side",
        description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=execute)
    return parser


def _check(args) -> List[str]:
    """Validate ``args``; the canonical algorithm names."""
    names = []
    for name in args.algorithms:
        canonical = canonical_name(name)
        if canonical is None:
            raise UsageError(f"unknown algorithm {name!r}; valid algorithms: "
                             f"{', '.join(ALGORITHMS)}")
        if canonical not in names:
            names.append(canonical)
    if args.setting not in SETTINGS:
        raise UsageError(f"unknown setting {args.setting!r}; valid settings: "
                         f"{', '.join(SETTINGS)}")
    if args.dataset not in sources.DATASETS:
        raise UsageError(f"unknown dataset {args.dataset!r}; valid datasets: "
                         f"{', '.join(sources.DATASETS)}")
    if args.dataset == "idx" and not args.data_dir:
        raise UsageError("--dataset idx needs --data_dir, a folder with "
                         f"{sources.IMAGES}[.gz] and {sources.LABELS}[.gz]")
    _check_device(args.device)
    minimum = {"restarts": 1, "steps": 1, "hidden_dim": 1, "log_every": 1, "workers": 1,
               "threads": 1, "hutchinson_samples": 1, "train_size": 2, "val_size": 1,
               "penalty_anneal_iters": 0, "seed": 0}
    for key, low in minimum.items():
        value = getattr(args, key)
        if value is not None and value < low:
            raise UsageError(f"--{key} {value}: must be an integer >= {low}")
    for key in ("label_flipping_prob",):
        if not 0.0 <= getattr(args, key) <= 1.0:
            raise UsageError(f"--{key} {getattr(args, key)}: must be in [0, 1]")
    for key in ("lr", "penalty_weight"):
        if not getattr(args, key) > 0:
            raise UsageError(f"--{key} {getattr(args, key)}: must be > 0")
    if args.l2_regularizer_weight < 0:
        raise UsageError(f"--l2_regularizer_weight {args.l2_regularizer_weight}: must be >= 0")
    return names


def _check_device(name: str) -> None:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"unknown --device {name!r}; valid devices: cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device here; valid devices: cpu")


def _config(args) -> TrainConfig:
    return TrainConfig(
        setting=args.setting, hidden_dim=args.hidden_dim,
        l2_regularizer_weight=args.l2_regularizer_weight, lr=args.lr,
        penalty_anneal_iters=args.penalty_anneal_iters, penalty_weight=args.penalty_weight,
        steps=args.steps, label_flipping_prob=args.label_flipping_prob,
        grayscale_model=args.grayscale_model, hutchinson_samples=args.hutchinson_samples,
        log_every=args.log_every)


def run_spec(args):
    """``(spec, algorithms)`` of the parsed command: what its run is made of."""
    from colored_mnist import runner

    algorithms = _check(args)
    spec = runner.RunSpec(args.dataset, args.data_dir, args.output_dir, _config(args),
                          args.seed, args.train_size, args.val_size, args.device)
    return spec, algorithms


def _execute(args, prog: str = PROG) -> int:
    from colored_mnist import report, runner

    spec, algorithms = run_spec(args)
    caption = (f"Colored {'Fashion-' if args.dataset == 'fashion_mnist' else ''}MNIST, "
               f"{args.setting.replace('_', ' ')}"
               + (f", {args.train_size} training images" if args.train_size else ""))
    failed = 0
    if args.report_only and args.no_report:
        raise UsageError("--report_only with --no_report: nothing to do (--report_only "
                         "trains nothing, --no_report writes no report)")
    _check_output_dir(args)
    done, pending = runner.plan(spec, algorithms, args.restarts)  # reads no data
    fate = "left out of the report" if args.report_only else "it runs again"
    for path, problem in runner.unreadable_results(spec, pending):
        print(f"{prog}: warning: {path} is not a saved restart ({problem}): {fate}",
              file=sys.stderr)
    finished = list(done)
    if pending and not args.report_only:
        images, classes = runner.load_data(args.dataset, args.data_dir)  # fail fast
        pool = min(50_000, len(images) - args.val_size)
        if not 0 < args.val_size < len(images):
            raise UsageError(f"--val_size {args.val_size}: must be below the "
                             f"{len(images)} images of the training file")
        if args.train_size is not None and args.train_size > pool:
            raise UsageError(f"--train_size {args.train_size}: at most {pool} here")
        _check_training_sizes(args, classes, sorted({r for _, r in pending}))
        spec.data_fingerprint = sources.fingerprint(images, classes)
        spec.code_commit = runner.code_commit()  # what runs, however long it takes
        done, pending = runner.plan(spec, algorithms, args.restarts)  # data checked too
        cores = runner.available_cores()
        workers = args.workers or max(1, min(cores, len(pending)))
        threads = args.threads or max(1, cores // workers)
        print(f"{len(done)} restarts already saved, {len(pending)} to run with {workers} "
              f"worker(s) x {threads} thread(s)", file=sys.stderr)
        try:
            results = runner.run_jobs(spec, pending, workers, threads)
        except runner.Interrupted:
            # Counted on disk: a worker may have saved a restart whose result never
            # reached this process before the interrupt.
            now, _ = runner.plan(spec, algorithms, args.restarts)
            saved = len(now) - len(done)
            print(f"\ninterrupted: {saved} restart(s) saved in this run ({len(now)}"
                  f" of {len(done) + len(pending)} in all), {len(pending) - saved} not; "
                  "rerun the same command to resume", file=sys.stderr)
            return 130
        failed = sum("error" in r for r in results.values())
        finished = done + [job for job, r in results.items() if "error" not in r]
    elif not args.report_only:
        print(f"{len(done)} restarts already saved, 0 to run", file=sys.stderr)
    if not args.no_report:
        written = report.write_report(args.output_dir, args.setting, caption,
                                      jobs=finished)
        if written is None and args.report_only:
            raise UsageError(f"--report_only: no saved restart of {', '.join(algorithms)} "
                             f"under {os.path.join(args.output_dir, args.setting)}"
                             + ("" if os.path.isdir(args.output_dir) else
                                " (the folder does not exist)") + ": nothing to report")
        if written is None:
            print(f"no saved restarts under {args.output_dir}/{args.setting}: no report",
                  file=sys.stderr)
        else:
            print(written["table"])
            print("written: " + ", ".join(written["paths"].values()), file=sys.stderr)
    if failed:
        print(f"{failed} restart(s) failed; rerun the same command to retry them",
              file=sys.stderr)
        return 1
    return 0


def _check_output_dir(args) -> None:
    """``--output_dir`` is a folder, or can be made one, and can be written to; checked
    before any job, nothing made yet."""
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise UsageError(f"--output_dir {args.output_dir} is a file, not a folder; give "
                         "a folder (made if missing)")
    existing = os.path.abspath(args.output_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"--output_dir {args.output_dir} cannot be made: {existing} is a "
                         "file; give a folder (made if missing)")
    problem = not args.report_only and _cannot_write_in(existing)
    if problem:
        raise UsageError(f"--output_dir {args.output_dir}: {existing} is not writable "
                         f"({problem}); give a folder you can write to")


def _cannot_write_in(folder: str) -> str:
    """Why nothing can be made in ``folder`` ('' if something can), tried by making an
    empty folder and removing it: permission bits miss what root cannot do. (The
    bridge's ``validation.cannot_write_in`` is the same check; neither package may
    import the other.)"""
    try:
        probe = tempfile.mkdtemp(prefix=".cmnist-write-check-", dir=folder)
    except OSError as error:
        return error.strerror or type(error).__name__
    os.rmdir(probe)
    return ""


def _check_training_sizes(args, classes, restarts: List[int]) -> None:
    """Every training environment of every restart to run holds an image: how many
    each gets depends on the setting, ``--train_size`` and the restart's shuffle."""
    from colored_mnist.data import training_sizes
    from colored_mnist.train import RestartSeeds

    sizes = {r: training_sizes(classes, args.setting, RestartSeeds.of(args.seed, r).data,
                               args.val_size) for r in restarts}
    if not sizes:
        return
    pool = len(next(iter(sizes.values()))) - 1
    length = args.train_size or pool
    for restart, table in sizes.items():
        if table[length].min() > 0:
            continue
        usable = np.all([(t > 0).all(axis=1) for t in sizes.values()], axis=0)
        larger = np.nonzero(usable[length:])[0]
        hint = (f"the smallest --train_size from {length} on that fills them all is "
                f"{length + larger[0]}" if len(larger) else "no --train_size fills them all")
        raise UsageError(
            f"--train_size {length} with --setting {args.setting}: restart {restart}'s "
            f"training environments would hold {table[length][0]} and {table[length][1]} "
            f"images, and each needs at least one; {hint}")


def execute(args, prog: str = PROG) -> int:
    """Run the parsed command (``hessian-dg cmnist``'s body). Bad input or data raises
    :class:`~colored_mnist.errors.CmnistError`, which the caller shows; Ctrl-C
    outside the restarts says that saved restarts are kept, exit status 130."""
    try:
        return _execute(args, prog)
    except KeyboardInterrupt:  # outside the restarts (their interrupt is _execute's)
        print("\ninterrupted; saved restarts are kept: rerun the same command to resume",
              file=sys.stderr)
        return 130


def run(args, prog: str = "python -m colored_mnist") -> int:
    """:func:`execute` for ``python -m colored_mnist``, which has no ``hessian-dg``
    entry to show its errors: the same convention, one line on stderr, status 2."""
    try:
        return execute(args, prog)
    except CmnistError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2


def build_parser(prog: str = "python -m colored_mnist") -> argparse.ArgumentParser:
    """The parser of ``python -m colored_mnist``: a refused flag is one line too."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.error = types.MethodType(_one_line_error, parser)
    return add_arguments(parser)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m colored_mnist [flags]``."""
    prog = "python -m colored_mnist"
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    return run(args, prog)

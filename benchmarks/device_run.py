r"""The GPU run of issue 19 in one command: install, device tests, step costs, Colored MNIST.

    benchmarks/device_prepare.sh             # here: fills .device_carry/ (wheels, DomainBed, data)
    benchmarks/device_run.sh --out "$OUT"    # there: every stage, at most ~5 minutes
    benchmarks/device_run.sh --stages cmnist # rerun some stages (a warm machine resumes cmnist)
    benchmarks/device_run.sh --smoke --out /tmp/o   # tiny sizes on the CPU (the CI test)

Stages run in the order of :data:`STAGES`, each under its own time limit (every
command through coreutils ``timeout``, which kills the command's process group, so a
stage that runs long loses nothing of the others), and each writes its files into
the output folder (``--out``, else ``$OUT``) as soon as it ends:

- ``env.txt``: machine, GPU, versions, and the install stage's log (always written);
- ``timing.txt``: every stage's status, seconds and limit, and the check of the
  output folder (rewritten after every stage);
- ``tests.txt``: ``pytest tests/test_devices.py --device cuda``;
- ``benchmarks.txt``, ``step_cost.json``, ``penalty_cost.json``: ResNet-50 x DomainNet
  step costs at 3 x 32 and 3 x 8 images, and the penalty alone;
- ``cmnist.tar.gz``: the 140 restart files of both Colored Fashion-MNIST settings and
  their logs, packed every 30 s while they run and once more at the end.

The output folder holds at most 8 files, flat, of at most 16 MiB, named with letters,
digits, '.', '_' and '-' only (what the device tool brings back); ``timing.txt`` says
whether it does. Exit status 0 when every stage asked for succeeded. The parts live in
``benchmarks/devicerun``: ``core.py`` (the run, its environment, commands under
``timeout``) and ``stages.py``; this file is the table of stages and the command line.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for ``devicerun``

from devicerun.core import REPO, Outcome, Run  # noqa: E402
from devicerun.stages import (  # noqa: E402
    stage_benchmarks,
    stage_cmnist,
    stage_install,
    stage_tests,
)

MAX_FILES, MAX_BYTES, MAX_DEPTH = 8, 16 * 2**20, 2
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class Stage:
    seconds: float
    run: Callable[[Run, float], Outcome]
    what: str


#: In order; the limits add up to 285 s, and env.txt's few seconds come first (with
#: --smoke, on a small shared CPU machine, each is SMOKE_SLACK times longer). Colored
#: MNIST is GPU-bound (about 90 GFLOP per full-batch step, 140 x 501 steps: ~140 s of
#: float32 products on an H200); what its limit cuts, a rerun of --stages cmnist resumes.
STAGES: Dict[str, Stage] = {
    "install": Stage(35, stage_install, "wheels, pip install -e ., import checks"),
    "tests": Stage(45, stage_tests, "pytest tests/test_devices.py --device"),
    "benchmarks": Stage(75, stage_benchmarks, "step_cost.py and penalty_cost.py"),
    "cmnist": Stage(130, stage_cmnist, "Colored Fashion-MNIST tables, 140 restarts"),
}
SMOKE_SLACK = 3


def write_env(run: Run) -> None:
    """env.txt: what the machine is (the install stage appends its log)."""
    lines = [f"# device_run {'smoke ' if run.smoke else ''}on {os.uname().nodename}, "
             f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cpus, "
             f"python {sys.version.split()[0]} ({sys.executable})"]
    commit = run.carry / "COMMIT"
    lines.append(f"# project: {commit.read_text().strip()}" if commit.is_file()
                 else f"# project: {_git_commit()}")
    probes = [["nvidia-smi"],
              [sys.executable, "-c", "import torch, json; c = torch.cuda.is_available(); "
               "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
               "'cudnn': torch.backends.cudnn.version(), 'gpu': c and "
               "torch.cuda.get_device_name(0), 'capability': c and "
               "torch.cuda.get_device_capability(0)}))"],
              [sys.executable, "-m", "pip", "list", "--format=freeze"]]
    for argv in probes:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            text = (done.stdout + done.stderr).strip()
        except (OSError, subprocess.SubprocessError) as error:
            text = f"({error})"
        lines += [f"\n$ {' '.join(argv[:2])}", text]
    (run.out / "env.txt").write_text("\n".join(lines) + "\n")


def _git_commit() -> str:
    try:
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or "unknown (no git)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"


def check_outputs(out: Path) -> List[str]:
    """What breaks the rules of what comes back: count, size, depth, names."""
    files = [p for p in sorted(out.rglob("*")) if p.is_file()]
    problems = [] if len(files) <= MAX_FILES else [f"{len(files)} files, at most {MAX_FILES}"]
    for path in files:
        relative = path.relative_to(out)
        if path.stat().st_size > MAX_BYTES:
            problems.append(f"{relative}: {path.stat().st_size} bytes, over 16 MiB")
        if len(relative.parts) - 1 > MAX_DEPTH:
            problems.append(f"{relative}: more than {MAX_DEPTH} folders deep")
        if not all(NAME.match(part) for part in relative.parts):
            problems.append(f"{relative}: a name with characters other than A-Z a-z 0-9 . _ -")
    return problems


def write_timing(run: Run, done: Dict[str, tuple], final: bool = False) -> List[str]:
    lines = [f"# device_run{' --smoke' if run.smoke else ''} --device {run.device}: "
             f"{time.monotonic() - run.began:.0f} s so far" if not final else
             f"# device_run{' --smoke' if run.smoke else ''} --device {run.device}: "
             f"{time.monotonic() - run.began:.0f} s in all",
             "stage       status     seconds  limit  notes"]
    for name, (outcome, seconds) in done.items():
        limit = STAGES[name].seconds * (SMOKE_SLACK if run.smoke else 1)
        lines.append(f"{name:<11} {outcome.status:<10} {seconds:7.1f}  {limit:5.0f}"
                     f"  {'; '.join(outcome.notes)}")
    problems = check_outputs(run.out) if final else []
    if final:
        lines.append("output folder: " + ("; ".join(problems) if problems else
                                          f"ok (<= {MAX_FILES} files, flat, names safe)"))
    (run.out / "timing.txt").write_text("\n".join(lines) + "\n")
    return problems


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT"),
                        help="output folder (default: $OUT)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated, from {', '.join(STAGES)} (default: all)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on the CPU, pip only with --dry-run (the CI test)")
    parser.add_argument("--device", help="default: cuda, or cpu with --smoke")
    parser.add_argument("--carry", default=str(REPO / ".device_carry"),
                        help="what device_prepare.sh filled (default: .device_carry)")
    parser.add_argument("--work", default=str(REPO / ".device_work"),
                        help="scratch kept between reruns (default: .device_work)")
    parser.add_argument("--cmnist_workers", type=int, default=7,
                        help="worker processes per Colored MNIST setting (default: 7)")
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        parser.error(f"unknown stages {unknown or args.stages!r}; valid stages: "
                     f"{', '.join(STAGES)}")
    args.stages = [s for s in STAGES if s in stages]
    if not args.out:
        parser.error("no output folder: pass --out DIR or set $OUT")
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    if args.cmnist_workers < 1:
        parser.error(f"--cmnist_workers {args.cmnist_workers}: must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_arguments(argv)
    run = Run(args)
    write_env(run)
    done: Dict[str, tuple] = {}
    for name in args.stages:
        stage = STAGES[name]
        print(f"[device_run] {name}: {stage.what} (limit {stage.seconds:.0f} s)", flush=True)
        began = time.monotonic()
        try:
            outcome = stage.run(run, stage.seconds * (SMOKE_SLACK if run.smoke else 1))
        except Exception as error:  # noqa: BLE001 - one broken stage must not stop the rest
            outcome = Outcome("failed", [f"{type(error).__name__}: {error}"])
        done[name] = (outcome, time.monotonic() - began)
        print(f"[device_run] {name}: {outcome.status} in {done[name][1]:.1f} s"
              + (f" ({'; '.join(outcome.notes)})" if outcome.notes else ""), flush=True)
        write_timing(run, done)
    problems = write_timing(run, done, final=True)
    print((run.out / "timing.txt").read_text(), end="")
    return 0 if not problems and all(o.status == "ok" for o, _ in done.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

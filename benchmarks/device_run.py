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
whether it does. Exit status 0 when every stage asked for succeeded.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
MAX_FILES, MAX_BYTES, MAX_DEPTH = 8, 16 * 2**20, 2
NAME = re.compile(r"^[A-Za-z0-9._-]+$")
CMNIST_SETTINGS = ("correlation_shift", "label_shift")
#: The step-cost runs: ResNet-50 with DomainNet's 345 classes, 32 and 8 images per domain.
STEP_VARIANTS = "erm,hgp,hutchinson-s300,dbp-hgp,dbp-hutchinson-s300"
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


@dataclass
class Outcome:
    status: str = "ok"  # ok, failed, timed out, skipped
    notes: List[str] = field(default_factory=list)

    def command(self, rc: int, what: str) -> None:
        if rc in (124, 137):
            self.status = "timed out"
            self.notes.append(f"{what}: cut by its time limit")
        elif rc != 0:
            self.status = "failed" if self.status == "ok" else self.status
            self.notes.append(f"{what}: exit status {rc}")


class Run:
    """One invocation: where things go, what mode, the children's environment."""

    def __init__(self, args):
        self.out, self.work, self.carry = Path(args.out), Path(args.work), Path(args.carry)
        self.smoke, self.device, self.workers = args.smoke, args.device, args.cmnist_workers
        self.began = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self._env: Optional[dict] = None

    def env(self, **extra) -> dict:
        """The children's environment: the carried DomainBed, the repository on the
        path, and where the installed start-up hook is not active, a sitecustomize
        that imports it."""
        if self._env is None:
            env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_NO_INDEX="1",
                       PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_BREAK_SYSTEM_PACKAGES="1")
            if (self.carry / "DomainBed" / "domainbed" / "__init__.py").is_file():
                env["DOMAINBED_ROOT"] = str(self.carry / "DomainBed")
            paths = [str(REPO)]
            probe = subprocess.run([sys.executable, "-c", "import sys; print("
                                    "'domainbed_patch.startup' in sys.modules)"],
                                   capture_output=True, text=True, env=env, timeout=60)
            if probe.stdout.strip() != "True":
                site = self.work / "site"
                site.mkdir(exist_ok=True)
                (site / "sitecustomize.py").write_text("import domainbed_patch.startup\n")
                paths.insert(0, str(site))
            env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep)
            self._env = env
        return dict(self._env, **extra)

    def command(self, argv: List[str], log: Path, limit: float, env=None) -> int:
        """Run ``argv`` under ``timeout``, appending its output to ``log``."""
        limit = max(1, int(limit))
        with open(log, "a") as handle:
            handle.write(f"\n$ {' '.join(argv)}   # limit {limit} s\n")
            handle.flush()
            began = time.monotonic()
            rc = subprocess.call(["timeout", "-k", "5", str(limit), *argv], cwd=REPO,
                                 stdout=handle, stderr=subprocess.STDOUT,
                                 env=env or self.env())
            handle.write(f"# exit status {rc} after {time.monotonic() - began:.1f} s\n")
        return rc


# --- the stages ---------------------------------------------------------------------------

def stage_install(run: Run, limit: float) -> Outcome:
    """Wheels the machine lacks, then the project (editable, with its .pth), then checks."""
    outcome, log, deadline = Outcome(), run.out / "env.txt", time.monotonic() + limit
    wheels = sorted((run.carry / "wheels").glob("*.whl"))
    missing = [p for p in (run.carry / "wheels", run.carry / "DomainBed" / "domainbed",
                           *(run.carry / "fashion-mnist" / f for f in FASHION_FILES))
               if not p.exists()]
    if missing and not run.smoke:
        outcome.status = "failed"
        outcome.notes.append(f"missing {', '.join(map(str, missing))}: run "
                             "benchmarks/device_prepare.sh before the device run")
    dry = ["--dry-run"] if run.smoke else []
    needed = [w for w in wheels if not _installed(w)]
    if needed:
        outcome.command(run.command([sys.executable, "-m", "pip", "install", "--no-index",
                                     "--no-deps", *dry, *map(str, needed)], log,
                                    deadline - time.monotonic()), "pip install wheels")
    elif run.smoke and not wheels:
        outcome.notes.append("smoke: no carried wheels here, nothing to install")
    outcome.command(run.command([sys.executable, "-m", "pip", "install", "--no-index",
                                 "--no-deps", "--no-build-isolation", *dry, "-e", str(REPO)],
                                log, deadline - time.monotonic()), "pip install -e .")
    if run.smoke:
        outcome.notes.append("smoke: pip ran with --dry-run (nothing installed)")
    run._env = None  # the hook may be active now
    outcome.command(run.command([sys.executable, "-c", VERIFY], log,
                                deadline - time.monotonic()), "import checks")
    return outcome


#: Run in a fresh interpreter after the install: what the other stages rely on.
VERIFY = r"""
import importlib, importlib.util, json, sys
report = {"startup hook": "domainbed_patch.startup" in sys.modules}
from domainbed_patch.locate import locate
where = locate()
report["domainbed"] = f"{where.root} ({where.how}, commit {where.commit})"
from domainbed import algorithms
report["HGP, Hutchinson registered"] = all(n in algorithms.ALGORITHMS
                                          for n in ("HGP", "Hutchinson"))
for name in ("torch", "torchvision", "numpy", "timm", "pytest"):
    module = importlib.import_module(name)
    report[name] = getattr(module, "__version__", "?")
# domainbed.datasets imports wilds, which needs pandas, scipy and scikit-learn (~60 MB
# of wheels): no stage imports it; say whether it could be, without importing it.
absent = [n for n in ("wilds", "pandas", "scipy", "sklearn", "PIL")
          if importlib.util.find_spec(n) is None]
report["domainbed.datasets"] = (f"not importable here (no {', '.join(absent)}); no stage "
                                "needs it" if absent else "importable")
import torch
report["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(json.dumps(report, indent=1))
sys.exit(0 if report["HGP, Hutchinson registered"] else 1)
"""


def _installed(wheel: Path) -> bool:
    """True when the wheel's distribution is installed (setuptools: at least 64)."""
    from importlib import metadata
    name = wheel.name.split("-")[0]
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    if name == "setuptools":
        return int(version.split(".")[0]) >= 64
    return True


def stage_tests(run: Run, limit: float) -> Outcome:
    outcome = Outcome()
    select = ["-k", "penalty_on_the_device and hgp"] if run.smoke else []
    rc = run.command([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                      "tests/test_devices.py", "--device", run.device, *select],
                     run.out / "tests.txt", limit,
                     env=run.env(CI="true", HESSIAN_DG_TEST_DEVICE=run.device))
    outcome.command(rc, "pytest tests/test_devices.py")
    return outcome


def stage_benchmarks(run: Run, limit: float) -> Outcome:
    """Step costs at each batch size (merged into step_cost.json as each ends), then
    the penalty alone."""
    outcome, log, deadline = Outcome(), run.out / "benchmarks.txt", time.monotonic() + limit
    if run.smoke:
        common = ["--device", "cpu", "--featurizers", "mnist_cnn", "--heads", "pacs",
                  "--variants", "erm,hgp,hutchinson-s4,dbp-hutchinson-s4", "--steps", "1",
                  "--warmup", "0", "--dbp_max_probes", "3", "--threads", "1", "--no_memory"]
        batches, shares = [4], [0.7]
        penalty = ["--device", "cpu", "--shapes", "4,7,9", "--probes", "8", "--chunk_size",
                   "4", "--repeats", "1", "--variants", "hutchinson,hgp,hgp-double-backprop"]
    else:
        common = ["--device", run.device, "--featurizers", "resnet50", "--heads",
                  "domainnet", "--variants", STEP_VARIANTS, "--warmup", "3", "--steps", "10",
                  "--max_seconds", "6"]
        batches, shares = [32, 8], [0.45, 0.6]  # of what is left when each starts
        penalty = ["--device", run.device, "--shapes", "8,345,2049;32,345,2049",
                   "--repeats", "5"]
    merged = {}
    for batch, share in zip(batches, shares):
        output = run.work / f"step_cost_b{batch}.json"
        output.unlink(missing_ok=True)
        rc = run.command([sys.executable, "benchmarks/step_cost.py", *common, "--batch_size",
                          str(batch), "--output", str(output)], log,
                         share * (deadline - time.monotonic()))
        outcome.command(rc, f"step_cost.py --batch_size {batch}")
        if output.exists():
            merged[f"batch_{batch}"] = json.loads(output.read_text())
            _write_json(run.out / "step_cost.json", merged)
    output = run.work / "penalty_cost.json"
    output.unlink(missing_ok=True)
    rc = run.command([sys.executable, "benchmarks/penalty_cost.py", *penalty, "--output",
                      str(output)], log, deadline - time.monotonic())
    outcome.command(rc, "penalty_cost.py")
    if output.exists():
        _write_json(run.out / "penalty_cost.json", json.loads(output.read_text()))
    return outcome


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")


def stage_cmnist(run: Run, limit: float) -> Outcome:
    """Both settings at once, restarts in parallel worker processes on the one device;
    restarts already saved under the work folder are skipped (a rerun resumes)."""
    outcome, deadline = Outcome(), time.monotonic() + limit
    results = run.work / "cmnist"
    (results / "logs").mkdir(parents=True, exist_ok=True)
    if run.smoke:
        data = ["--dataset", "idx", "--data_dir", str(_smoke_idx(run.work)),
                "--train_size", "200", "--val_size", "100", "--steps", "3", "--log_every",
                "1", "--restarts", "1", "--hidden_dim", "8", "--hutchinson_samples", "4",
                "--algorithms", "ERM", "HGP", "Hutchinson", "--workers", "1"]
    else:
        data = ["--dataset", "fashion_mnist", "--data_dir", str(run.carry / "fashion-mnist"),
                "--restarts", "10", "--workers", str(run.workers)]
    packer = _Packer(results, run.out / "cmnist.tar.gz")
    packer.start()
    try:
        children = []
        for setting in CMNIST_SETTINGS:
            argv = [sys.executable, "-m", "colored_mnist", *data, "--setting", setting,
                    "--device", run.device, "--threads", "1", "--output_dir", str(results),
                    "--no_report"]
            handle = open(results / "logs" / f"{setting}.log", "a")
            handle.write(f"$ {' '.join(argv)}\n")
            handle.flush()
            remaining = max(1, int(deadline - time.monotonic()))
            children.append((setting, handle, subprocess.Popen(
                ["timeout", "-k", "5", str(remaining), *argv], cwd=REPO, stdout=handle,
                stderr=subprocess.STDOUT, env=run.env())))
        for setting, handle, child in children:
            outcome.command(child.wait(), f"cmnist {setting}")
            handle.close()
    finally:
        packer.stop()
    saved = sorted(results.glob("*/*/restart_*.json"))
    outcome.notes.append(f"{len(saved)} restart files packed")
    return outcome


def _smoke_idx(work: Path) -> Path:
    """A small synthetic IDX folder (600 images) for the smoke run."""
    import numpy as np

    from colored_mnist import sources
    folder = work / "smoke_idx"
    folder.mkdir(exist_ok=True)
    rng = np.random.RandomState(0)
    sources.write_idx(str(folder / (sources.IMAGES + ".gz")),
                      rng.randint(1, 256, size=(600, 28, 28)))
    sources.write_idx(str(folder / (sources.LABELS + ".gz")), rng.randint(0, 10, size=600))
    return folder


class _Packer:
    """Packs a folder into a .tar.gz every ``every`` seconds and once when stopped."""

    def __init__(self, folder: Path, archive: Path, every: float = 30.0):
        self.folder, self.archive, self.every = folder, archive, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._lock = threading.Lock()

    def start(self):
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(self.every):
            self.pack()

    def pack(self):
        with self._lock:
            partial = self.archive.with_name(self.archive.name + ".partial")
            with tarfile.open(partial, "w:gz") as tar:
                tar.add(self.folder, arcname=self.folder.name,
                        filter=lambda info: None if ".tmp" in info.name else info)
            os.replace(partial, self.archive)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.pack()


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

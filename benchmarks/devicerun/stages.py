"""The stages of the device run; each takes the run and its time limit in seconds and
returns an :class:`~devicerun.core.Outcome`, its files already written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

from devicerun.core import REPO, Outcome, Run

CMNIST_SETTINGS = ("correlation_shift", "label_shift")
#: The step-cost runs: ResNet-50 with DomainNet's 345 classes, 32 and 8 images per domain.
STEP_VARIANTS = "erm,hgp,hutchinson-s300,dbp-hgp,dbp-hutchinson-s300"
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


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
            try:
                self.pack()
            except OSError as error:  # a file renamed while packing: next round
                print(f"[device_run] packing {self.folder}: {error}", file=sys.stderr)

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

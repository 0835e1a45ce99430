"""What made a job's numbers, written beside DomainBed's files: ``provenance.json``.

The job runner writes it when a job starts (:func:`record_job`), never through
DomainBed's train arguments, so no job folder's name (DomainBed's hash of those
arguments) changes. It holds:

- ``software``: hessian-dg's version and git commit (``None`` outside a checkout),
  DomainBed's commit and folder, Python, torch, torchvision, timm (``None`` when not
  installed), CUDA and cuDNN;
- ``device``: ``cuda`` or ``cpu``, as DomainBed's train chooses, and its name;
- ``sweep``: the preset's name and file, its overrides and its protocol, which
  ``hessian-dg sweep`` hands the runner as ``--provenance JSON`` (a runner-only
  flag, like ``--diagnose_max_examples``); ``None`` for a job started without it.

``hessian-dg report`` gathers them (:mod:`domainbed_patch.report.provenance`).
"""
from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import List, Mapping, Optional

from domainbed_patch import locate
from domainbed_patch.job_folder import JobFolder

FLAG = "--provenance"
#: Bump when a field changes meaning.
FORMAT = 1


def sweep_provenance(preset, overrides: Mapping) -> dict:
    """What a sweep passes each job: preset name and file, overrides, protocol."""
    return {"preset": preset.name, "preset_source": preset.source,
            "overrides": dict(overrides), "protocol": preset.protocol}


def runner_flags(preset, overrides: Mapping) -> tuple:
    """The job runner's ``--provenance JSON`` flag for a sweep's jobs."""
    return (FLAG, json.dumps(sweep_provenance(preset, overrides), sort_keys=True))


def _version(module: str) -> Optional[str]:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def project_commit(root: Optional[Path] = None) -> Optional[str]:
    """hessian-dg's git commit when it runs from a checkout, else ``None``; with
    ``+dirty`` where tracked files of the code a job runs (``domainbed_patch/``,
    ``hessian_dg/``) differ from it and ``+unverified`` where git cannot say, so a
    number is never credited to a commit that did not make it."""
    root = Path(root or Path(__file__).resolve().parents[1])
    commit = locate.read_commit(root) if (root / ".git").exists() else None
    if commit is None:
        return None
    try:
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                  "--untracked-files=no", "--", "domainbed_patch",
                                  "hessian_dg"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return commit + "+unverified"
    if changed.returncode != 0:
        return commit + "+unverified"
    return commit + ("+dirty" if changed.stdout.strip() else "")


def software() -> dict:
    """Versions of what trains: hessian-dg, DomainBed, Python, torch & co."""
    import torch

    import hessian_dg
    try:
        where = locate.locate()
        domainbed = {"domainbed_commit": where.commit, "domainbed_root": str(where.root)}
    except locate.DomainBedNotFoundError:
        domainbed = {"domainbed_commit": None, "domainbed_root": None}
    return {"hessian_dg": hessian_dg.__version__, "hessian_dg_commit": project_commit(),
            **domainbed, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": _version("torchvision"), "timm": _version("timm"),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def device() -> dict:
    """The device DomainBed's train will use (``cuda`` when available) and its name."""
    import torch
    if torch.cuda.is_available():
        return {"device": "cuda", "device_name": torch.cuda.get_device_name()}
    return {"device": "cpu", "device_name": platform.processor() or platform.machine()}


def provenance(sweep: Optional[dict] = None) -> dict:
    """The content of ``provenance.json``."""
    return {"format": FORMAT, "software": software(), **device(), "sweep": sweep}


def split_flag(argv: List[str]) -> tuple:
    """(the sweep's provenance or ``None``, ``argv`` without ``--provenance JSON``),
    the flag being first."""
    if argv[:1] != [FLAG]:
        return None, argv
    if len(argv) < 2:
        raise SystemExit(f"domainbed_patch.job_runner: {FLAG} needs a JSON object")
    try:
        sweep = json.loads(argv[1])
    except json.JSONDecodeError as error:
        raise SystemExit(f"domainbed_patch.job_runner: {FLAG} {argv[1]!r} is not JSON "
                         f"({error.msg})") from None
    return sweep, argv[2:]


def record_job(output_dir, argv: List[str]) -> List[str]:
    """Write the job's ``provenance.json``; return DomainBed train's arguments
    (``argv`` without the runner's ``--provenance JSON``)."""
    sweep, argv = split_flag(argv)
    folder = JobFolder(output_dir)
    try:
        record = provenance(sweep)
    except Exception as error:  # noqa: BLE001 - provenance must never stop a training
        record = {"format": FORMAT, "sweep": sweep, "error": f"{type(error).__name__}: {error}"}
        folder.append_error(f"provenance incomplete: {record['error']}\n")
    folder.provenance.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return argv


def read(path) -> Optional[dict]:
    """A ``provenance.json``, or ``None`` when absent or unreadable."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None

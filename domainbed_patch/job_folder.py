"""A sweep job's folder and a sweep's own folders: the one place their names live.

A job folder (named by DomainBed's hash of the job's train arguments) holds

======================  =====================================================
``results.jsonl``       one JSON record per checkpoint (DomainBed's train)
``done``                written by DomainBed's train when the job ends
``model.pkl``           the final checkpoint (unless ``--skip_model_save``)
``out.txt``/``err.txt`` DomainBed's copies of the job's stdout and stderr
``failed``              the last error line, written by the job runner on failure
``diagnostics.json``    the transfer quantities of :mod:`domainbed_patch.diagnose`
======================  =====================================================

and is in one of four states: **done** (``done``), **failed** (``failed``),
**incomplete** (a folder with neither: running, or killed) and **not launched**
(no folder). A sweep folder holds one folder per job and the sweep's own folders,
which are never jobs: ``submitit_logs`` (the submitit launchers' default log
folder, or the ``[launcher] log_dir`` that :func:`record_log_folder` wrote down),
``diagnose_logs`` and ``report``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Set, Union

PathLike = Union[str, os.PathLike]

RESULTS = "results.jsonl"
DONE_MARKER = "done"
MODEL = "model.pkl"
OUT_LOG = "out.txt"
ERROR_LOG = "err.txt"
FAILED_MARKER = "failed"
DIAGNOSTICS = "diagnostics.json"

DONE, FAILED, INCOMPLETE, NOT_LAUNCHED = "done", "failed", "incomplete", "not launched"
STATES = (DONE, FAILED, INCOMPLETE, NOT_LAUNCHED)

SUBMITIT_LOGS = "submitit_logs"
DIAGNOSE_LOGS = "diagnose_logs"
REPORT = "report"
#: The sweep's record of its own folders (a file: DomainBed reads only folders).
SWEEP_RECORD = ".hessian-dg-sweep.json"


@dataclass(frozen=True)
class JobFolder:
    """The files of one job's folder and the state they say the job is in."""

    path: Path

    def __init__(self, path: PathLike):
        object.__setattr__(self, "path", Path(path))

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    @property
    def done_marker(self) -> Path:
        return self.path / DONE_MARKER

    @property
    def failed_marker(self) -> Path:
        return self.path / FAILED_MARKER

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def error_log(self) -> Path:
        return self.path / ERROR_LOG

    @property
    def diagnostics(self) -> Path:
        return self.path / DIAGNOSTICS

    @property
    def is_done(self) -> bool:
        return self.done_marker.is_file()

    @property
    def state(self) -> str:
        if self.is_done:
            return DONE
        if self.failed_marker.exists():
            return FAILED
        return INCOMPLETE if self.path.exists() else NOT_LAUNCHED

    def leftovers(self) -> List[Path]:
        """What an earlier attempt leaves that a new one must not append to or trust."""
        return [self.results, self.failed_marker, self.diagnostics]

    def append_error(self, text: str) -> None:
        with open(self.error_log, "a") as log:
            log.write(text)

    def last_error_line(self) -> str:
        """Last non-empty line of the failed marker, else of the error log ('' if none)."""
        for path in (self.failed_marker, self.error_log):
            text = path.read_text(errors="replace").strip() if path.exists() else ""
            if text:
                return text.splitlines()[-1].strip()
        return ""


def record_log_folder(sweep_dir: PathLike, log_dir: PathLike) -> None:
    """Write down a launcher log folder inside ``sweep_dir`` so it is never a job."""
    sweep_dir = Path(sweep_dir)
    record = _read_record(sweep_dir)
    name = os.path.relpath(os.path.abspath(log_dir), os.path.abspath(sweep_dir))
    if name.startswith(os.pardir) or name in record["log_dirs"]:
        return
    record["log_dirs"].append(name)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_RECORD).write_text(json.dumps(record, indent=1) + "\n")


def _read_record(sweep_dir: Path) -> dict:
    try:
        record = json.loads((sweep_dir / SWEEP_RECORD).read_text())
    except (OSError, ValueError):
        return {"log_dirs": []}
    if not isinstance(record, dict) or not isinstance(record.get("log_dirs"), list):
        return {"log_dirs": []}
    return record


def own_folders(sweep_dir: PathLike) -> Set[Path]:
    """The folders of ``sweep_dir`` that belong to the sweep, not to a job (resolved)."""
    sweep_dir = Path(sweep_dir)
    names = [SUBMITIT_LOGS, DIAGNOSE_LOGS, REPORT, *_read_record(sweep_dir)["log_dirs"]]
    return {(sweep_dir / name).resolve() for name in names}


def job_folders(sweep_dir: PathLike, exclude: Iterable[PathLike] = ()) -> List[Path]:
    """Every non-hidden subfolder of ``sweep_dir`` but the sweep's own and ``exclude``."""
    sweep_dir = Path(sweep_dir)
    skipped = own_folders(sweep_dir) | {Path(p).resolve() for p in exclude}
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir()
                  and not p.name.startswith(".") and p.resolve() not in skipped)

"""A sweep job's folder and a sweep's own folders: the one place their names live.

A job folder (named by DomainBed's hash of the job's train arguments) is made by the
job runner when the job starts (never up front; only a queue such as Slurm's gets
it at submission, with a ``running`` marker naming the queue) and holds

======================  =====================================================
``results.jsonl``       one JSON record per checkpoint (DomainBed's train)
``done``                written by DomainBed's train when the job ends
``model.pkl``           the final checkpoint (unless ``--skip_model_save``)
``out.txt``/``err.txt`` DomainBed's copies of the job's stdout and stderr
``running``             the job runner's host, pid and process start time while it runs
``interrupted``         the signal that stopped the job (SIGINT, SIGTERM)
``failed``              the last error line, written by the job runner on failure
``diagnostics.json``    the transfer quantities of :mod:`domainbed_patch.diagnose`
``provenance.json``     what made the numbers (:mod:`domainbed_patch.provenance`)
======================  =====================================================

and is in one of five states: **done** (``done`` and results), **done without
results** (``done`` but no or an empty ``results.jsonl``: rerun on launch),
**failed** (``failed``), **incomplete** (a folder with neither) and **not
launched** (no folder). An incomplete job's :attr:`JobFolder.attempt` says what
its ``running`` marker tells: **running** (a live process of this host),
**on another host** (a Slurm node, say: this host cannot tell whether it still
runs) or **interrupted or killed** (an ``interrupted`` marker, a marker whose
process is gone, or no marker: a folder DomainBed's own sweep made up front).
A sweep folder holds one folder per job and the sweep's own folders,
which are never jobs: ``submitit_logs`` (the submitit launchers' default log
folder, or the ``[launcher] log_dir`` that :func:`record_log_folder` wrote down),
``diagnose_logs`` and ``report``.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Set, Union

PathLike = Union[str, os.PathLike]

RESULTS = "results.jsonl"
DONE_MARKER = "done"
MODEL = "model.pkl"
OUT_LOG = "out.txt"
ERROR_LOG = "err.txt"
FAILED_MARKER = "failed"
DIAGNOSTICS = "diagnostics.json"
PROVENANCE = "provenance.json"
RUNNING_MARKER = "running"
INTERRUPTED_MARKER = "interrupted"

DONE, FAILED, INCOMPLETE, NOT_LAUNCHED = "done", "failed", "incomplete", "not launched"
DONE_NO_RESULTS = "done without results"
STATES = (DONE, FAILED, INCOMPLETE, NOT_LAUNCHED, DONE_NO_RESULTS)
#: What an incomplete job's ``running`` marker says (:attr:`JobFolder.attempt`).
RUNNING, OTHER_HOST, STOPPED = "running", "on another host", "interrupted or killed"
ATTEMPTS = (RUNNING, OTHER_HOST, STOPPED)

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
    def provenance(self) -> Path:
        return self.path / PROVENANCE

    @property
    def running_marker(self) -> Path:
        return self.path / RUNNING_MARKER

    @property
    def interrupted_marker(self) -> Path:
        return self.path / INTERRUPTED_MARKER

    @property
    def is_done(self) -> bool:
        """DomainBed's meaning: the ``done`` marker is there (results or not)."""
        return self.done_marker.is_file()

    @property
    def has_results(self) -> bool:
        return self.results.is_file() and self.results.stat().st_size > 0

    @property
    def state(self) -> str:
        if self.is_done:
            return DONE if self.has_results else DONE_NO_RESULTS
        if self.failed_marker.exists():
            return FAILED
        return INCOMPLETE if self.path.exists() else NOT_LAUNCHED

    def leftovers(self) -> List[Path]:
        """What an earlier attempt leaves that a new one must not append to or trust
        (``done`` only matters to a job done without results: a done job is skipped)."""
        return [self.results, self.failed_marker, self.diagnostics,
                self.interrupted_marker, self.done_marker]

    # -- the attempt in progress ------------------------------------------------------
    def mark_running(self) -> None:
        """Write down this process (host, pid, start time) as the job's attempt."""
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "process_start": process_start(os.getpid())}
        _write_atomic(self.running_marker, json.dumps(record) + "\n")

    def mark_queued(self, queue: str) -> None:
        """Make the folder of a job handed to ``queue`` (Slurm): it is on another host
        until its job runner starts and writes its own marker."""
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"host": socket.gethostname(), "queued": queue}
        _write_atomic(self.running_marker, json.dumps(record) + "\n")

    def mark_interrupted(self, signal_name: str) -> None:
        _write_atomic(self.interrupted_marker, signal_name + "\n")
        self.clear_running()

    def clear_running(self) -> None:
        if self.running_marker.exists():
            self.running_marker.unlink()

    def running_record(self) -> Optional[dict]:
        """The ``running`` marker's record; None without one, {} if unreadable."""
        try:
            record = json.loads(self.running_marker.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    @property
    def attempt(self) -> str:
        """For an incomplete job: RUNNING, OTHER_HOST or STOPPED (see the module)."""
        record = self.running_record()
        if self.interrupted_marker.exists() or not record:
            return STOPPED
        if record.get("queued") or record.get("host") != socket.gethostname():
            return OTHER_HOST
        alive = process_alive(record.get("pid"), record.get("process_start"))
        return RUNNING if alive else STOPPED

    def attempt_note(self) -> str:
        """What happened to an incomplete job, in a few words."""
        record = self.running_record() or {}
        where = f"pid {record.get('pid')} on {record.get('host')}"
        if self.interrupted_marker.exists():
            signal_name = self.interrupted_marker.read_text(errors="replace").strip()
            return f"interrupted by {signal_name or 'a signal'}"
        if record.get("queued") and not self.interrupted_marker.exists():
            return (f"submitted to {record['queued']} from {record.get('host')}; this host "
                    "cannot tell whether it still waits or runs")
        attempt = self.attempt
        if attempt == RUNNING:
            return f"running: {where}"
        if attempt == OTHER_HOST:
            return f"started as {where}; this host cannot tell whether it still runs"
        if self.running_record() is None:
            return "no job runner recorded: a folder made up front (DomainBed's sweep?)"
        return f"killed: {where} is gone"

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


def process_start(pid: int) -> Optional[str]:
    """The kernel's start time of process ``pid`` (field 22 of ``/proc/PID/stat``): with
    the pid it names one process even after the pid is reused. None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid, start: Optional[str]) -> bool:
    """Whether process ``pid`` of this host runs and is the one that started at ``start``."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal said it exists
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # a zombie: ended, not yet reaped
    return start is None or process_start(pid) == start


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def record_log_folder(sweep_dir: PathLike, log_dir: PathLike) -> None:
    """Write down a launcher log folder inside ``sweep_dir`` so it is never a job."""
    sweep_dir = Path(sweep_dir)
    record = _read_record(sweep_dir)
    name = os.path.relpath(os.path.abspath(log_dir), os.path.abspath(sweep_dir))
    if name.startswith(os.pardir) or name == SUBMITIT_LOGS or name in record["log_dirs"]:
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

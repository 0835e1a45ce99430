"""``hessian-dg diagnose``: every finished job of a sweep, diagnosed as jobs of their own.

Each job of the sweep folder with a ``done`` file becomes a diagnose job, run by the
preset's launcher (local, local_parallel, Slurm or submitit; ``--command_launcher``
overrides): ``python -m domainbed_patch.diagnose_sweep --job_dir DIR ...`` writes
that job's ``diagnostics.json`` (:mod:`domainbed_patch.diagnose`). Jobs already
diagnosed are skipped, and a killed diagnose job leaves no file, so a relaunch
finishes the rest; failed ones are retried, and so are jobs diagnosed with another
``--max_examples`` (said so; their ``diagnostics.json`` is replaced when the new one
is written). Jobs that cannot be diagnosed (no ``model.pkl``, no readable record in
``results.jsonl``, an algorithm DomainBed does not define, one that does not predict
with ``classifier(featurizer(x))``) are named with the reason; a ``model.pkl`` that
is corrupt or would run code (:mod:`domainbed_patch.checkpoint`) fails its job with
one line. Notes of skipped jobs, and the
errors of failed diagnose jobs, go to ``<sweep>/diagnose_logs/``, never into a
job's folder. The table and figure of :mod:`domainbed_patch.report.diagnostics`
close the run (``hessian-dg report`` shows them too).
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch

from domainbed_patch import diagnose, launchers, locate, presets, validation
from domainbed_patch.checkpoint import CheckpointError
from domainbed_patch.job_folder import DIAGNOSE_LOGS as LOG_DIR
from domainbed_patch.job_folder import DONE, FAILED, NOT_LAUNCHED, JobFolder, job_folders

SKIPPED = "skipped"
#: diagnosed, but with another --max_examples (or an unreadable diagnostics.json)
STALE = "diagnosed with another --max_examples"


@dataclass
class DiagnoseJob:
    """Diagnosing one finished training job; states as the launchers know them."""

    job_dir: Path
    data_dir: str
    max_examples: int  #: 0: every example
    log_dir: Path

    def note_path(self, state: str) -> Path:
        """Where a skipped or failed job's note lives: the log folder, never the job's."""
        return self.log_dir / f"{self.job_dir.name}.{state}"

    def write_note(self, state: str, text: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.note_path(state).write_text(text)

    def recorded_max_examples(self):
        """The ``max_examples`` its ``diagnostics.json`` was made with (None: all;
        ``STALE`` when the file cannot be read)."""
        try:
            return json.loads(JobFolder(self.job_dir).diagnostics.read_text())["max_examples"]
        except (OSError, ValueError, TypeError, KeyError):
            return STALE

    @property
    def state(self) -> str:
        if JobFolder(self.job_dir).diagnostics.exists():
            wanted = self.max_examples or None
            return DONE if self.recorded_max_examples() == wanted else STALE
        return next((s for s in (SKIPPED, FAILED) if self.note_path(s).exists()),
                    NOT_LAUNCHED)

    def note(self) -> str:
        """The last line of the note of a skipped or failed job ('' if none)."""
        state = self.state
        if state not in (SKIPPED, FAILED):
            return ""
        return self.note_path(state).read_text().strip().splitlines()[-1]

    def command(self) -> List[str]:
        return [sys.executable, "-m", "domainbed_patch.diagnose_sweep", "--job_dir",
                str(self.job_dir), "--data_dir", self.data_dir, "--max_examples",
                str(self.max_examples), "--log_dir", str(self.log_dir)]


def finished_jobs(input_dir: Path) -> List[Path]:
    """The job folders of a sweep that hold a ``done`` file."""
    return [p for p in job_folders(input_dir) if JobFolder(p).is_done]


def recorded_args(job_dir: Path):
    """``(args, None)``: the train arguments of the job's last readable record in
    ``results.jsonl``; ``(None, why not)`` when there is none."""
    results = JobFolder(job_dir).results
    try:
        lines = results.read_text(errors="replace").splitlines()
    except OSError as error:
        return None, f"its {results.name} cannot be read ({error.strerror})"
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("args"), dict):
            return record["args"], None
    return None, (f"its {results.name} holds no record with DomainBed's 'args' "
                  f"({len(lines)} lines): not a DomainBed job folder, or a corrupt one")


def _precheck(job_dir: Path, data_dir: str) -> Optional[str]:
    """Why a job cannot be diagnosed, when that shows without loading it; checks
    that its dataset is there (the doctor's message otherwise)."""
    folder = JobFolder(job_dir)
    args, reason = recorded_args(job_dir)
    if reason is not None:
        return reason
    from domainbed import algorithms
    if args.get("algorithm") not in algorithms.ALGORITHMS:
        return f"unknown algorithm {args.get('algorithm')!r}: DomainBed here does not define it"
    if not folder.model.exists():
        return diagnose.NO_MODEL
    if not isinstance(args.get("dataset"), str):
        return f"its args name no dataset ({args.get('dataset')!r})"
    validation.check_data_dir(args["dataset"], data_dir or args.get("data_dir"))
    return None


def run_one(argv=None) -> int:
    """The body of one diagnose job."""
    parser = argparse.ArgumentParser(prog="python -m domainbed_patch.diagnose_sweep")
    for flag in ("--job_dir", "--data_dir", "--log_dir"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--max_examples", type=int, required=True)
    args = parser.parse_args(argv)
    job = DiagnoseJob(Path(args.job_dir), args.data_dir, args.max_examples,
                      Path(args.log_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        diagnose.diagnose_job(args.job_dir, args.data_dir or None, args.max_examples or None,
                              device=device)
    except diagnose.SkipJob as reason:
        job.write_note(SKIPPED, f"{reason}\n")
        return 0
    except CheckpointError as error:  # one line: nothing in the traceback helps
        job.write_note(FAILED, f"{error}\n")
        return 1
    except Exception:  # noqa: BLE001 - recorded for the summary, then reported
        job.write_note(FAILED, traceback.format_exc())
        return 1
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "diagnose", help="the paper's transfer quantities for a sweep's trained models",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_dir", required=True, help="a DomainBed sweep folder")
    parser.add_argument("--data_dir", default="", help="default: each job's own")
    parser.add_argument("--max_examples", type=int, default=diagnose.DEFAULT_MAX_EXAMPLES,
                        help="examples per environment, the same for every algorithm "
                        "(0: all; Frobenius distances cost O(N^2))")
    parser.add_argument("--preset", default=presets.DEFAULT_PRESET,
                        help="whose [launcher] runs the diagnose jobs (default: smoke; "
                        "paper_domainbed for its Slurm array)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a preset field, e.g. "
                        "launcher.partition=\"gpu\"")
    parser.add_argument("--command_launcher", help="launcher name (overrides the preset's)")
    parser.set_defaults(func=run)


def run(args) -> int:
    input_dir = Path(args.input_dir)
    if not input_dir.is_dir():
        raise validation.UsageError(f"--input_dir {args.input_dir!r} is not a folder")
    if args.max_examples < 0:
        raise validation.UsageError(f"--max_examples {args.max_examples}: must be an "
                                    "integer >= 0 (examples per environment; 0: all)")
    finished = finished_jobs(input_dir)
    if not finished:
        raise validation.UsageError(
            f"--input_dir {args.input_dir!r} holds no finished job ({len(job_folders(input_dir))} "
            "job folders, none with a done file): nothing to diagnose")
    locate.ensure_domainbed_importable()
    overrides = presets.parse_overrides(args.overrides)
    settings = dict(presets.load_preset(args.preset, overrides).launcher)
    name = args.command_launcher or settings.get("name", "local")
    launch = launchers.get_launcher(name)
    log_dir = input_dir / LOG_DIR
    jobs = [DiagnoseJob(d, args.data_dir, args.max_examples, log_dir) for d in finished]
    stale = [job for job in jobs if job.state == STALE]
    if stale:
        print(f"{len(stale)} jobs were diagnosed with another --max_examples (or their "
              f"{JobFolder(stale[0].job_dir).diagnostics.name} is unreadable): diagnosing "
              f"them again with --max_examples {args.max_examples}")
    todo = []
    for job in jobs:
        if job.state in (DONE, SKIPPED):
            continue
        job.note_path(FAILED).unlink(missing_ok=True)  # failed: retried
        reason = _precheck(job.job_dir, args.data_dir)
        if reason is None:
            todo.append(job)
        else:
            job.write_note(SKIPPED, reason + "\n")
    print(f"{len(jobs)} finished jobs; launching {len(todo)} diagnose jobs with {name}.")
    if todo:
        launch(todo, settings, log_dir / "launcher")
    for job in jobs:
        if job.state in (SKIPPED, FAILED):
            print(f"{job.state}: {job.job_dir.name}: {job.note()}")
    if name not in launchers.BLOCKING:
        return 0
    from domainbed_patch.report import diagnostics
    frame = diagnostics.load_diagnostics(input_dir)
    if not frame.empty:
        print(diagnostics.diagnostics_markdown(frame))
    return 1 if any(job.state == FAILED for job in jobs) else 0


if __name__ == "__main__":
    sys.exit(run_one())

"""A sweep folder's records, what DomainBed computes from them, and the DomainBed
vocabulary the report shares (selection methods, order of datasets and algorithms).

DomainBed is imported only inside the functions that use it, so that reading a
folder fails with a :class:`ReportError` before DomainBed is needed.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional

import pandas as pd

from domainbed_patch import job_folder
from domainbed_patch.errors import UserError
from domainbed_patch.job_folder import JobFolder, job_folders
from domainbed_patch.locate import import_domainbed

#: Keys every record needs for the tables (``args`` holds the rest).
RECORD_ARGS = ("dataset", "algorithm", "test_envs", "trial_seed", "hparams_seed")

#: DomainBed selection method (class name in ``domainbed.model_selection``) ->
#: the label the reference CSV uses for it. Order is the report's order.
SELECTION_LABELS = {
    "IIDAccuracySelectionMethod": "training-domain validation",
    "LeaveOneOutSelectionMethod": "leave-one-domain-out",
    "OracleSelectionMethod": "test-domain oracle",
}

AVERAGES_COLUMNS = ("selection", "dataset", "algorithm", "accuracy", "stderr", "trials")


class ReportError(UserError, ValueError):
    """Something the user can fix: a missing folder, a malformed reference CSV."""


class CorruptRecordWarning(UserWarning):
    """A line of a ``results.jsonl`` was skipped."""


@dataclass
class Sweep:
    """The finished part of a sweep folder: ``records`` is a DomainBed ``Q`` of its records."""

    input_dir: Path
    records: object
    done_jobs: List[str]
    incomplete_jobs: List[str]
    skipped_lines: int

    def summary(self) -> str:
        return (f"{len(self.records)} records from {len(self.done_jobs)} finished "
                f"jobs; {len(self.incomplete_jobs)} incomplete jobs (no `done` file) "
                f"excluded; {self.skipped_lines} corrupt lines skipped.")


def selection_methods() -> list:
    """DomainBed's three selection methods, in the report's order."""
    return [getattr(import_domainbed("model_selection"), name) for name in SELECTION_LABELS]


def selection_names() -> dict:
    """Selection label -> DomainBed's own name of the method."""
    return {SELECTION_LABELS[m.__name__]: m.name for m in selection_methods()}


def domainbed_order(registry: str, names) -> list:
    """``names`` (once each) in the order of DomainBed's ``datasets.DATASETS`` or
    ``algorithms.ALGORITHMS`` (``registry``: "datasets" or "algorithms"), then the others sorted."""
    canonical = getattr(import_domainbed(registry), registry.upper())
    names = list(dict.fromkeys(names))
    return ([n for n in canonical if n in names]
            + sorted(n for n in names if n not in canonical))


def _record_problem(record) -> Optional[str]:
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if not isinstance(record.get("args"), dict):
        return "no 'args' object"
    missing = [key for key in RECORD_ARGS if key not in record["args"]]
    if "step" not in record:
        missing.append("step")
    return f"missing {', '.join(missing)}" if missing else None


def read_records(path: Path) -> tuple:
    """The records of one ``results.jsonl``, and how many lines (half-written, not
    JSON, not a record) were skipped, each with a :class:`CorruptRecordWarning`."""
    records, skipped = [], 0
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                problem = _record_problem(record)
            except json.JSONDecodeError as error:
                problem = f"not valid JSON ({error.msg})"
            if problem is not None:
                skipped += 1
                warnings.warn(f"{path}:{number}: skipped a corrupt line: {problem}",
                              CorruptRecordWarning, stacklevel=2)
                continue
            records.append(record)
    return records, skipped


#: Files of which a job folder holds at least one from the moment its job starts.
JOB_FILES = (job_folder.RESULTS, job_folder.DONE_MARKER, job_folder.FAILED_MARKER,
             job_folder.OUT_LOG, job_folder.ERROR_LOG, job_folder.MODEL,
             job_folder.RUNNING_MARKER, job_folder.INTERRUPTED_MARKER)


def looks_like_job(path: Path) -> bool:
    """A subfolder holding none of :data:`JOB_FILES` is not a job (a user's folder, an
    empty one) and is not counted as incomplete."""
    return any((Path(path) / name).exists() for name in JOB_FILES)


def load_sweep(input_dir, exclude: Iterable = ()) -> Sweep:
    """Read a sweep folder: records of jobs with a ``done`` file, counts of the rest.
    Every non-hidden subfolder is a job, except those in ``exclude`` and those that
    hold no job file (:func:`looks_like_job`) (the report's
    own output folder). Raises :class:`ReportError` when the folder is missing,
    holds no job, no finished job, or no readable record."""
    input_dir = Path(input_dir)
    if not input_dir.exists():
        raise ReportError(f"input directory {input_dir} does not exist; pass the "
                          "--output_dir of a DomainBed sweep")
    if not input_dir.is_dir():
        raise ReportError(f"input directory {input_dir} is not a directory")
    jobs = [job for job in job_folders(input_dir, exclude) if looks_like_job(job)]
    if not jobs:
        raise ReportError(f"input directory {input_dir} holds no job folders (a "
                          "DomainBed sweep has one subfolder per job, with "
                          f"{job_folder.RESULTS} and {job_folder.DONE_MARKER})")
    done = [job for job in jobs if JobFolder(job).is_done]
    records, skipped = [], 0
    for job in done:
        results = JobFolder(job).results
        if not results.is_file():
            warnings.warn(f"{job}: has a done file but no {results.name}",
                          CorruptRecordWarning, stacklevel=2)
            continue
        job_records, job_skipped = read_records(results)
        records += job_records
        skipped += job_skipped
    if not done:
        raise ReportError(f"none of the {len(jobs)} job folders in {input_dir} has a "
                          "`done` file: no job has finished yet")
    if not records:
        raise ReportError(f"the {len(done)} finished jobs in {input_dir} hold no "
                          f"readable record in their {job_folder.RESULTS}")
    Q = import_domainbed("lib.query").Q
    incomplete = [job.name for job in sorted(set(jobs) - set(done))]
    return Sweep(input_dir, Q(records), [job.name for job in done], incomplete, skipped)


def collect_results_text(records) -> str:
    """What ``python -m domainbed.scripts.collect_results`` prints, as a string."""
    collect_results = import_domainbed("scripts.collect_results")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print("Total records:", len(records))
        for method in selection_methods():
            collect_results.print_results_tables(records, method, latex=False)
    return text.getvalue()


def sweep_averages(records) -> pd.DataFrame:
    """Per (selection, dataset, algorithm): mean and standard error (in %) over
    trials of the trial's mean ``sweep_acc`` over test environments, i.e. the
    numbers of collect_results' "Averages" table. Pairs without a result under
    a selection method get no row."""
    Q = import_domainbed("lib.query").Q
    collect_results = import_domainbed("scripts.collect_results")
    groups = import_domainbed("lib.reporting").get_grouped_records(records)
    rows = []
    for method in selection_methods():
        scored = Q([{**group, "sweep_acc": method.sweep_acc(group["records"])} for group in groups])
        scored = scored.filter(lambda group: group["sweep_acc"] is not None)
        for (dataset, algorithm), pair in scored.group("dataset, algorithm"):
            trial_means = pair.group("trial_seed").map(
                lambda seed, trial: trial.select("sweep_acc").mean())
            mean, stderr, _ = collect_results.format_mean(trial_means, False)
            rows.append((SELECTION_LABELS[method.__name__], dataset, algorithm, mean,
                         stderr, len(trial_means)))
    return pd.DataFrame(rows, columns=list(AVERAGES_COLUMNS))

"""The report's provenance header and its warnings.

Each finished job's ``provenance.json`` (:mod:`domainbed_patch.provenance`) says
which hessian-dg, DomainBed, torch & co., device and protocol made its numbers.
:func:`header_markdown` lists, per field, each value with the number of jobs that
had it. :func:`provenance_warnings` warns where the jobs of one dataset (the rows
a table compares) disagree on a field of :data:`MUST_AGREE`, and where jobs have
no provenance at all; :func:`budget_warnings` where a row rests on fewer hparams x
trials than the reference row it is compared with (:data:`REFERENCE_BUDGETS`).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePath
from typing import Dict, List, Optional

import pandas as pd

from domainbed_patch import provenance
from domainbed_patch.job_folder import JobFolder
from domainbed_patch.report.references import PACKAGED_SOURCE

#: Field -> its label in the header. Order is the header's.
FIELDS = {"hessian_dg": "hessian-dg", "hessian_dg_commit": "hessian-dg commit",
          "domainbed_commit": "DomainBed commit", "python": "Python", "torch": "torch",
          "torchvision": "torchvision", "timm": "timm", "cuda": "CUDA", "cudnn": "cuDNN",
          "device": "device", "protocol": "protocol", "preset": "preset",
          "overrides": "preset overrides"}
#: Fields the jobs of one dataset must agree on (else a warning).
MUST_AGREE = ("hessian_dg", "hessian_dg_commit", "domainbed_commit", "torch", "torchvision",
              "timm", "cuda", "device", "protocol")
#: Reference source -> (hparams, trials) each of its rows rests on. DomainBed's
#: 2020 rows: 20 random hparams x 3 trials.
REFERENCE_BUDGETS = {PACKAGED_SOURCE: (20, 3)}
UNKNOWN = "unknown"


class ProvenanceWarning(UserWarning):
    """Jobs of one table disagree on what made them, or rest on a smaller sweep than
    their reference."""


def flatten(record: Optional[dict]) -> Optional[Dict[str, str]]:
    """A ``provenance.json`` as {field of :data:`FIELDS`: text}; ``None`` stays ``None``."""
    if record is None:
        return None
    software = record.get("software") or {}
    sweep = record.get("sweep") or {}
    device = record.get("device")
    values = {**{key: software.get(key) for key in FIELDS},
              "device": f"{device}: {record.get('device_name')}" if device else None,
              "protocol": sweep.get("protocol"), "preset": sweep.get("preset"),
              "overrides": (json.dumps(sweep["overrides"], sort_keys=True)
                            if "overrides" in sweep else None)}
    return {key: UNKNOWN if values[key] is None else str(values[key]) for key in FIELDS}


def load(sweep) -> Dict[str, Optional[Dict[str, str]]]:
    """Finished job's folder name -> its flattened provenance (``None`` if it has none)."""
    return {name: flatten(provenance.read(JobFolder(Path(sweep.input_dir) / name).provenance))
            for name in sweep.done_jobs}


def _job_datasets(records) -> Dict[str, str]:
    """Job folder name -> dataset, from the records' ``args.output_dir``."""
    return {PurePath(str(r["args"].get("output_dir", ""))).name: r["args"]["dataset"]
            for r in records}


def _counted(values) -> str:
    return ", ".join(f"{value} ({count} job{'s' * (count != 1)})"
                     for value, count in Counter(values).most_common())


def provenance_warnings(sweep, by_job) -> List[str]:
    """Jobs without provenance; per dataset, each field of :data:`MUST_AGREE` on
    which its jobs disagree."""
    out = []
    missing = [name for name, values in by_job.items() if values is None]
    if missing:
        out.append(f"{len(missing)} of {len(by_job)} finished jobs have no "
                   f"{JobFolder('.').provenance.name} (run outside hessian-dg sweep's job "
                   "runner, or before it recorded provenance): their commits, versions, "
                   "device and protocol are unknown")
    datasets = _job_datasets(sweep.records)
    for dataset in dict.fromkeys(datasets.values()):
        known = [by_job[name] for name, d in datasets.items()
                 if d == dataset and by_job.get(name) is not None]
        for field in MUST_AGREE:
            values = [record[field] for record in known]
            if len(set(values)) > 1:
                out.append(f"{dataset}: its jobs disagree on the {FIELDS[field]}: "
                           f"{_counted(values)}; their numbers may not be comparable")
    return out


def budgets(records) -> pd.DataFrame:
    """Per (dataset, algorithm): ``hparams`` (the fewest distinct hparams_seed of any
    trial and test environment) and ``trials`` (distinct trial_seed)."""
    rows = [(r["args"]["dataset"], r["args"]["algorithm"], r["args"]["trial_seed"],
             tuple(r["args"]["test_envs"]), r["args"]["hparams_seed"]) for r in records]
    table = pd.DataFrame(rows, columns=["dataset", "algorithm", "trial", "test_envs",
                                        "hparams_seed"])
    per_group = (table.groupby(["dataset", "algorithm", "trial", "test_envs"])
                 ["hparams_seed"].nunique().reset_index())
    return per_group.groupby(["dataset", "algorithm"]).agg(
        hparams=("hparams_seed", "min"), trials=("trial", "nunique")).reset_index()


def budget_warnings(records, comparison: pd.DataFrame) -> List[str]:
    """Per dataset and reference source of known budget whose rows stand in that
    dataset's table: the sweep's algorithms there that rest on fewer hparams or
    trials than those rows (an algorithm without a reference row of its own, HGP
    say, is still read beside them)."""
    compared = comparison[comparison["reference_source"].isin(list(REFERENCE_BUDGETS))
                          & comparison["reference_accuracy"].notna()]
    ours = budgets(records)
    out = []
    for (dataset, source), _ in compared.groupby(["dataset", "reference_source"], sort=False):
        hparams, trials = REFERENCE_BUDGETS[source]
        part = ours[ours["dataset"] == dataset]
        short = part[(part["hparams"] < hparams) | (part["trials"] < trials)]
        if not short.empty:
            rows = ", ".join(f"{row.algorithm} on {row.hparams} x {row.trials}"
                             for row in short.itertuples())
            out.append(f"{dataset}: {rows} (hparams x trials), fewer than the "
                       f"{hparams} x {trials} of the {source} rows in the same table: "
                       "the difference is not only the algorithm's")
    return out


def header_markdown(by_job) -> List[str]:
    """The report's "Provenance" section: per field, its values and their job
    counts, as Markdown lines."""
    known = [values for values in by_job.values() if values is not None]
    out = ["## Provenance", "",
           f"From the {JobFolder('.').provenance.name} of each job folder "
           f"({len(known)} of {len(by_job)} finished jobs have one).", ""]
    if known:
        out += ["| What | Value (jobs) |", "|---|---|"]
        out += [f"| {label} | " + _counted(r[field] for r in known).replace("|", "\\|")
                + " |" for field, label in FIELDS.items()]
        out.append("")
    return out

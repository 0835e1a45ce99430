"""The report's provenance header and its warnings (``report.provenance``)."""
import json

import pytest

from domainbed_patch import provenance as job_provenance
from domainbed_patch.job_folder import JobFolder
from domainbed_patch.report import provenance
from domainbed_patch.report.records import load_sweep, sweep_averages
from domainbed_patch.report.references import compare, load_references
from tests.domainbed_patch.report.smoke_sweep import (
    JOBS,
    SWEEP,
    copy_sweep,
    jobs_of,
    run_main,
)

pytestmark = pytest.mark.integration  # DomainBed's Q holds the records


def _write_provenance(sweep_dir, **changes):
    """Each job folder gets the provenance of this process, the sweep part of the
    smoke preset; ``changes`` ({job index: {field: value}}) are applied on top."""
    sweep = {"preset": "smoke", "preset_source": "sweeps/smoke.toml",
             "overrides": {"n_trials": 2}, "protocol": "paper"}
    base = job_provenance.provenance(sweep)
    for index, job in enumerate(jobs_of(sweep_dir)):
        record = json.loads(json.dumps(base))
        for key, value in changes.get(f"job{index}", {}).items():
            if key in record["software"]:
                record["software"][key] = value
            else:
                record[key] = value
        JobFolder(job).provenance.write_text(json.dumps(record))
    return base


def test_agreeing_jobs_give_a_header_and_no_warning(tmp_path):
    sweep_dir = copy_sweep(tmp_path)
    base = _write_provenance(sweep_dir)
    sweep = load_sweep(sweep_dir)
    by_job = provenance.load(sweep)
    assert len(by_job) == JOBS and None not in by_job.values()
    assert provenance.provenance_warnings(sweep, by_job) == []
    header = "\n".join(provenance.header_markdown(by_job))
    assert f"({JOBS} of {JOBS} finished jobs have one)" in header
    assert f"| torch | {base['software']['torch']} ({JOBS} jobs) |" in header
    assert f"| protocol | paper ({JOBS} jobs) |" in header
    assert '| preset overrides | {"n_trials": 2} (36 jobs) |' in header


def test_mixed_commits_devices_and_missing_files_are_warned(tmp_path):
    sweep_dir = copy_sweep(tmp_path)
    _write_provenance(sweep_dir, job0={"device": "cuda", "device_name": "NVIDIA H200"},
                      job1={"domainbed_commit": "7df6f06"}, job2={"domainbed_commit": "7df6f06"})
    JobFolder(jobs_of(sweep_dir)[3]).provenance.unlink()
    status, _, stderr = run_main("--input_dir", sweep_dir, "--output_dir", tmp_path / "out",
                                 "--no_figures")
    assert status == 0
    lines = stderr.splitlines()
    prefix = "hessian-dg report: warning: "
    assert f"{prefix}1 of {JOBS} finished jobs have no provenance.json" in stderr
    assert (f"{prefix}Debug28: its jobs disagree on the DomainBed commit: "
            f"{job_provenance.locate.locate().commit} ({JOBS - 3} jobs), 7df6f06 (2 jobs); "
            "their numbers may not be comparable") in lines
    device = [line for line in lines if "disagree on the device" in line]
    assert len(device) == 1 and "cuda: NVIDIA H200 (1 job)" in device[0]
    assert len(lines) == 3
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Warning: Debug28: its jobs disagree on the device: " in report
    assert f"({JOBS - 1} of {JOBS} finished jobs have one)" in report


def test_a_row_on_fewer_hparams_x_trials_than_domainbeds_2020_rows_is_warned():
    """The committed sweep's records as VLCS jobs: 2 hparams x 2 trials, in one table
    with the packaged rows, which rest on 20 x 3. HGP and Hutchinson have no 2020 row
    of their own, but are read beside ERM's and the others': they are named too."""
    sweep = load_sweep(SWEEP)
    records = sweep.records.map(lambda r: {**r, "args": {**r["args"], "dataset": "VLCS"}})
    budgets = provenance.budgets(records)
    assert set(zip(budgets["algorithm"], budgets["hparams"], budgets["trials"])) == {
        ("ERM", 2, 2), ("HGP", 2, 2), ("Hutchinson", 2, 2)}
    comparison = compare(sweep_averages(records), load_references(), ["VLCS"])
    (warning,) = provenance.budget_warnings(records, comparison)
    assert warning.startswith("VLCS: ERM on 2 x 2, HGP on 2 x 2, Hutchinson on 2 x 2 "
                              "(hparams x trials), fewer than the 20 x 3 of the DomainBed "
                              "2020 rows in the same table")
    hgp_alone = records.filter(lambda r: r["args"]["algorithm"] == "HGP")
    comparison = compare(sweep_averages(hgp_alone), load_references(), ["VLCS"])
    (warning,) = provenance.budget_warnings(hgp_alone, comparison)
    assert warning.startswith("VLCS: HGP on 2 x 2 (hparams x trials)")
    no_reference = compare(sweep_averages(records), load_references().iloc[:0], ["VLCS"])
    assert provenance.budget_warnings(records, no_reference) == []

"""Reading a sweep folder, and DomainBed's numbers of it (``report.records``)."""
import re
import warnings

import pandas as pd
import pytest

from domainbed_patch.report.records import CorruptRecordWarning, ReportError, load_sweep
from tests.domainbed_patch.report.smoke_sweep import (
    JOBS,
    RECORDS,
    copy_sweep,
    jobs_of,
    needs_domainbed,
    only_no_provenance_warning,
    run_main,
)

# ---------------------------------------------------------- DomainBed's own numbers

@needs_domainbed
def test_collect_results_txt_holds_domainbed_tables(full_report):
    text = (full_report[0] / "collect_results.txt").read_text()
    assert text.startswith(f"Total records: {RECORDS}")
    for method in ("training-domain validation set",
                   "leave-one-domain-out cross-validation",
                   "test-domain validation set (oracle)"):
        assert f"Averages, model selection method: {method}" in text


@needs_domainbed
def test_averages_equal_collect_results_averages(full_report):
    """report.csv agrees with the "Averages" tables DomainBed itself printed."""
    output = full_report[0]
    text = (output / "collect_results.txt").read_text()
    table = pd.read_csv(output / "report.csv")
    names = {"training-domain validation set": "training-domain validation",
             "test-domain validation set (oracle)": "test-domain oracle"}
    for method, label in names.items():
        section = text.split(f"Averages, model selection method: {method}")[1]
        for algorithm in ("ERM", "HGP", "Hutchinson"):
            mean, err = re.search(rf"^{algorithm} +([\d.]+) \+/- ([\d.]+)", section,
                                  re.M).groups()
            row = table[(table["selection"] == label) & (table["algorithm"] == algorithm)]
            assert f"{row['accuracy'].item():.1f}" == mean
            assert f"{row['stderr'].item():.1f}" == err
            assert row["trials"].item() == 2


# -------------------------------------------------------------------------- faults

@needs_domainbed
def test_corrupt_line_is_skipped_with_a_warning_naming_file_and_line(tmp_path):
    sweep_dir = copy_sweep(tmp_path)
    results = jobs_of(sweep_dir)[0] / "results.jsonl"
    first, second = results.read_text().splitlines()
    results.write_text(first + "\n" + second[: len(second) // 2])  # half-written

    with pytest.warns(CorruptRecordWarning, match=re.escape(f"{results}:2:")):
        sweep = load_sweep(sweep_dir)
    assert (len(sweep.records), sweep.skipped_lines) == (RECORDS - 1, 1)

    status, stdout, stderr = run_main("--input_dir", sweep_dir, "--output_dir",
                                      tmp_path / "out", "--no_figures")
    assert status == 0
    assert f"hessian-dg report: warning: {results}:2: skipped a corrupt line" in stderr
    assert "1 corrupt lines skipped" in stdout


@needs_domainbed
def test_incomplete_jobs_are_excluded_and_counted(tmp_path):
    sweep_dir = copy_sweep(tmp_path)
    killed = jobs_of(sweep_dir)[:2]
    for job in killed:
        (job / "done").unlink()
    running = sweep_dir / "0123456789abcdef0123456789abcdef"  # killed mid-write
    running.mkdir()
    line = (killed[0] / "results.jsonl").read_text().splitlines()[0]
    (running / "results.jsonl").write_text(line + "\n" + line[:100])

    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptRecordWarning)  # incomplete: not read
        sweep = load_sweep(sweep_dir)
    assert len(sweep.done_jobs) == JOBS - 2
    assert sorted(sweep.incomplete_jobs) == sorted([j.name for j in killed]
                                                   + [running.name])
    assert len(sweep.records) == RECORDS - 4
    read_from = {r["args"]["output_dir"].rsplit("/", 1)[-1] for r in sweep.records}
    assert read_from.isdisjoint(j.name for j in killed)

    status, stdout, stderr = run_main("--input_dir", sweep_dir, "--output_dir",
                                      tmp_path / "out", "--no_figures")
    assert status == 0 and only_no_provenance_warning(stderr, JOBS - 2)
    assert "3 incomplete jobs (no `done` file) excluded" in stdout
    assert "3 incomplete jobs" in (tmp_path / "out" / "report.md").read_text()


def _only_incomplete(path):
    (path / "job").mkdir(parents=True)
    (path / "job" / "results.jsonl").write_text("{")


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "holds no job folders"),
    (lambda p: p.write_text("x"), "is not a directory"),
    (_only_incomplete, "has a `done` file"),
], ids=["missing", "empty", "a-file", "no-finished-job"])
def test_unusable_input_dir_is_a_one_line_error(tmp_path, make, message):
    input_dir = tmp_path / "sweep"
    make(input_dir)
    with pytest.raises(ReportError, match=re.escape(message)):
        load_sweep(input_dir)
    status, stdout, stderr = run_main("--input_dir", input_dir,
                                      "--output_dir", tmp_path / "out")
    assert status == 2 and stdout == ""
    assert stderr.startswith("hessian-dg: error: ") and message in stderr
    assert stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()

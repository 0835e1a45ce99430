"""``write_report`` and the command (``hessian-dg report``)."""
import argparse

import pytest

from domainbed_patch import report
from domainbed_patch.report.records import ReportError
from tests.domainbed_patch.report.smoke_sweep import (
    FIGURES,
    JOBS,
    OUTPUTS,
    RECORDS,
    copy_sweep,
    needs_domainbed,
    only_no_provenance_warning,
    run_main,
)


@needs_domainbed
def test_every_output_is_written_and_announced(full_report):
    output, stdout, stderr = full_report
    assert f"{RECORDS} records from {JOBS} finished jobs" in stdout
    assert "0 incomplete jobs" in stdout
    for name in OUTPUTS + FIGURES:
        assert (output / name).stat().st_size > 0
        assert f"Wrote {output / name}" in stdout
    assert only_no_provenance_warning(stderr, JOBS)


@needs_domainbed
def test_default_output_dir_is_not_read_as_a_job(tmp_path):
    sweep_dir = copy_sweep(tmp_path)
    for _ in range(2):
        status, stdout, _ = run_main("--input_dir", sweep_dir, "--no_figures")
        assert status == 0
        assert f"{JOBS} finished jobs; 0 incomplete jobs" in stdout
    assert (sweep_dir / "report" / "report.md").is_file()


def test_add_parser_adds_a_report_subcommand_that_runs(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="hessian-dg")
    subparsers = parser.add_subparsers(dest="subcommand")
    report.add_parser(subparsers)
    assert subparsers.choices["report"].prog == "hessian-dg report"
    assert report.HELP in parser.format_help()

    args = parser.parse_args(["report", "--input_dir", str(tmp_path / "absent"),
                              "--reference", "a.csv", "--reference", "b.csv"])
    assert args.func is report.run
    assert (args.output_dir, args.reference, args.no_published, args.no_figures) == (
        None, ["a.csv", "b.csv"], False, False)
    with pytest.raises(ReportError, match="does not exist"):
        args.func(args)  # the entry shows it (hessian_dg_cli's one convention)
    status, stdout, stderr = run_main("--input_dir", tmp_path / "absent")
    assert status == 2 and stdout == ""
    assert stderr == (f"hessian-dg: error: input directory "
                      f"{tmp_path / 'absent'} does not exist; pass the "
                      "--output_dir of a DomainBed sweep\n")
    assert not (tmp_path / "absent").exists()

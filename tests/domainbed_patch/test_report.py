"""``hessian-dg report`` on a real DomainBed sweep (``tests/fixtures/smoke_sweep``).

The fixture is the ``results.jsonl`` and ``done`` of each of the 36 jobs of::

    python -m domainbed.scripts.sweep launch --datasets Debug28 \\
        --algorithms ERM HGP Hutchinson --n_hparams 2 --n_trials 2 --steps 11 \\
        --single_test_envs --hparams '{"batch_size": 8, "hutchinson_samples": 20}' \\
        --command_launcher local --skip_confirmation --data_dir /tmp/unused \\
        --output_dir /tmp/smoke_fixture_raw

Regenerate the golden Markdown (after a deliberate change of the report's format)::

    python -m domainbed_patch.report --input_dir tests/fixtures/smoke_sweep \\
        --output_dir /tmp/golden --no_figures
    cp /tmp/golden/report.md tests/fixtures/smoke_sweep_report.md

Broken sweeps (corrupt lines, killed jobs) are made from copies in ``tmp_path``.
"""
import contextlib
import io
import re
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from domainbed_patch import report, report_tables
from domainbed_patch.report import CorruptRecordWarning
from domainbed_patch.report_tables import ReportError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SWEEP = FIXTURES / "smoke_sweep"
GOLDEN = FIXTURES / "smoke_sweep_report.md"
JOBS, RECORDS = 36, 72
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ("collect_results.txt", "report.md", "report.tex", "report.csv")
FIGURES = ("accuracy.png", "curves.png")


def needs_domainbed(test):
    """Marks a test that runs DomainBed's own code."""
    return pytest.mark.integration(test)


def run_main(*argv):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = report.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def copy_sweep(tmp_path) -> Path:
    return Path(shutil.copytree(SWEEP, tmp_path / "sweep"))


def jobs_of(sweep_dir):
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """The report of the committed sweep, figures included, made once."""
    output = tmp_path_factory.mktemp("report")
    status, stdout, stderr = run_main("--input_dir", SWEEP, "--output_dir", output)
    assert status == 0, stderr
    return output, stdout, stderr


# ------------------------------------------------------------------ committed sweep

@needs_domainbed
def test_markdown_matches_golden(full_report):
    output, _, _ = full_report
    written = (output / "report.md").read_text(encoding="utf-8")
    assert written == GOLDEN.read_text(encoding="utf-8"), (
        "report.md differs from tests/fixtures/smoke_sweep_report.md; if the change "
        "is meant, regenerate it as this module's docstring says")


@needs_domainbed
def test_every_output_is_written_and_announced(full_report):
    output, stdout, stderr = full_report
    assert f"{RECORDS} records from {JOBS} finished jobs" in stdout
    assert "0 incomplete jobs" in stdout
    for name in OUTPUTS + FIGURES:
        assert (output / name).stat().st_size > 0
        assert f"Wrote {output / name}" in stdout
    assert stderr == ""


@needs_domainbed
@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_readable_pngs(full_report, name):
    from matplotlib import image

    path = full_report[0] / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


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


@needs_domainbed
def test_latex_has_one_booktabs_table_per_selection_method(full_report):
    tex = (full_report[0] / "report.tex").read_text(encoding="utf-8")
    assert tex.count(r"\begin{tabular}") == 3 and tex.count(r"\bottomrule") == 3
    assert r"56.4 $\pm$ 5.4" in tex and "±" not in tex and "—" not in tex


# -------------------------------------------------------------------------- faults

@needs_domainbed
def test_corrupt_line_is_skipped_with_a_warning_naming_file_and_line(tmp_path):
    sweep_dir = copy_sweep(tmp_path)
    results = jobs_of(sweep_dir)[0] / "results.jsonl"
    first, second = results.read_text().splitlines()
    results.write_text(first + "\n" + second[: len(second) // 2])  # half-written

    with pytest.warns(CorruptRecordWarning, match=re.escape(f"{results}:2:")):
        sweep = report.load_sweep(sweep_dir)
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
        sweep = report.load_sweep(sweep_dir)
    assert len(sweep.done_jobs) == JOBS - 2
    assert sorted(sweep.incomplete_jobs) == sorted([j.name for j in killed]
                                                   + [running.name])
    assert len(sweep.records) == RECORDS - 4
    read_from = {r["args"]["output_dir"].rsplit("/", 1)[-1] for r in sweep.records}
    assert read_from.isdisjoint(j.name for j in killed)

    status, stdout, stderr = run_main("--input_dir", sweep_dir, "--output_dir",
                                      tmp_path / "out", "--no_figures")
    assert status == 0 and stderr == ""
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
        report.load_sweep(input_dir)
    status, stdout, stderr = run_main("--input_dir", input_dir,
                                      "--output_dir", tmp_path / "out")
    assert status == 2 and stdout == ""
    assert stderr.startswith("hessian-dg report: error: ") and message in stderr
    assert stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- reference

@needs_domainbed
def test_user_reference_rows_appear_with_differences(tmp_path):
    csv = tmp_path / "paper.csv"
    csv.write_text(
        "selection,dataset,algorithm,environment,accuracy,stderr\n"
        "training-domain validation,Averages,HGP,Debug28,50.0,1.0\n"
        # DomainBed's own name of the method; a dataset "Avg" row without stderr
        "test-domain validation set (oracle),Debug28,Hutchinson,Avg,60.0,\n")
    status, _, stderr = run_main("--input_dir", SWEEP, "--output_dir", tmp_path / "out",
                                 "--reference", csv, "--no_figures")
    assert status == 0, stderr
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert re.search(r"Reference sources: DomainBed 2020 \(.*\), paper\.csv\.", markdown)
    assert "| Debug28 | HGP | 56.4 ± 5.4 | 2 | 50.0 ± 1.0 | +6.4 | paper.csv |" in markdown
    assert "| Debug28 | Hutchinson | 59.0 ± 1.8 | 2 | 60.0 | -1.0 | paper.csv |" in markdown
    table = pd.read_csv(tmp_path / "out" / "report.csv")
    hgp = table[(table["reference_source"] == "paper.csv")
                & (table["algorithm"] == "HGP")].iloc[0]
    assert hgp["difference"] == pytest.approx(hgp["accuracy"] - 50.0)


@needs_domainbed
def test_packaged_reference_holds_the_published_averages():
    averages = report_tables.reference_averages(report_tables.load_references())
    assert set(averages["source"]) == {report_tables.PACKAGED_SOURCE}
    assert set(averages["selection"]) == set(report_tables.SELECTION_LABELS.values())
    pacs_erm = averages[(averages["selection"] == "training-domain validation")
                        & (averages["dataset"] == "PACS")
                        & (averages["algorithm"] == "ERM")]
    assert pacs_erm[["accuracy", "stderr"]].values.tolist() == [[85.5, 0.2]]
    assert averages.groupby("selection").size().tolist() == [7 * 14] * 3


@needs_domainbed
@pytest.mark.parametrize("content, message", [
    ("selection,dataset,algorithm,accuracy\n", "lacks the column(s) environment, stderr"),
    ("selection,dataset,algorithm,environment,accuracy,stderr\n"
     "best-of-test,PACS,HGP,Avg,80,\n", "unknown selection 'best-of-test'"),
    ("selection,dataset,algorithm,environment,accuracy,stderr\n"
     "test-domain oracle,PACS,HGP,Avg,eighty,\n", "line 2: accuracy 'eighty'"),
], ids=["missing-columns", "unknown-selection", "not-a-number"])
def test_malformed_reference_csv_is_a_clear_error(tmp_path, content, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(ReportError, match=re.escape(message)):
        report_tables.load_references([csv])
    with pytest.raises(ReportError, match="does not exist"):
        report_tables.load_references([tmp_path / "absent.csv"])


@needs_domainbed
def test_default_output_dir_is_not_read_as_a_job(tmp_path):
    sweep_dir = copy_sweep(tmp_path)
    for _ in range(2):
        status, stdout, _ = run_main("--input_dir", sweep_dir, "--no_figures")
        assert status == 0
        assert f"{JOBS} finished jobs; 0 incomplete jobs" in stdout
    assert (sweep_dir / "report" / "report.md").is_file()

"""The committed sweep ``tests/fixtures/smoke_sweep`` and ``hessian-dg report`` run on it.

The fixture is the ``results.jsonl`` and ``done`` of each of the 36 jobs of::

    python -m domainbed.scripts.sweep launch --datasets Debug28 \\
        --algorithms ERM HGP Hutchinson --n_hparams 2 --n_trials 2 --steps 11 \\
        --single_test_envs --hparams '{"batch_size": 8, "hutchinson_samples": 20}' \\
        --command_launcher local --skip_confirmation --data_dir /tmp/unused \\
        --output_dir /tmp/smoke_fixture_raw

Regenerate the golden Markdown (after a deliberate change of the report's format)::

    hessian-dg report --input_dir tests/fixtures/smoke_sweep \\
        --output_dir /tmp/golden --no_figures
    cp /tmp/golden/report.md tests/fixtures/smoke_sweep_report.md

Broken sweeps (corrupt lines, killed jobs) are made from copies in ``tmp_path``.
"""
import contextlib
import io
import shutil
from pathlib import Path

import pytest

import hessian_dg_cli as cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SWEEP = FIXTURES / "smoke_sweep"
GOLDEN = FIXTURES / "smoke_sweep_report.md"
JOBS, RECORDS = 36, 72
OUTPUTS = ("collect_results.txt", "report.md", "report.tex", "report.csv", "selected.csv",
           "selected.md", "per_domain.csv", "per_domain.md")
FIGURES = ("accuracy.png", "curves.png")


def needs_domainbed(test):
    """Marks a test that runs DomainBed's own code."""
    return pytest.mark.integration(test)


def run_main(*argv):
    """``hessian-dg report ARGV`` -> (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(["report", *map(str, argv)])
    return status, out.getvalue(), err.getvalue()


def only_no_provenance_warning(stderr: str, jobs: int) -> bool:
    """True when ``stderr`` is one line: the warning that the ``jobs`` finished jobs
    of the fixture (made by DomainBed's own sweep) have no provenance.json."""
    return stderr.count("\n") == 1 and stderr.startswith(
        f"hessian-dg report: warning: {jobs} of {jobs} finished jobs have no "
        "provenance.json")


def copy_sweep(tmp_path) -> Path:
    return Path(shutil.copytree(SWEEP, tmp_path / "sweep"))


def jobs_of(sweep_dir):
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir())

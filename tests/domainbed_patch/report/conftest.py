"""The report of the committed sweep, shared by the tests of this folder."""
import pytest

from tests.domainbed_patch.report.smoke_sweep import SWEEP, run_main


@pytest.fixture(scope="package")
def full_report(tmp_path_factory):
    """The report of the committed sweep, figures included, made once:
    (output folder, stdout, stderr)."""
    output = tmp_path_factory.mktemp("report")
    status, stdout, stderr = run_main("--input_dir", SWEEP, "--output_dir", output)
    assert status == 0, stderr
    return output, stdout, stderr

"""One place turns a user error into an exit status: ``hessian-dg: error: <line>`` on
stderr, hint lines after it, exit status 2; other exceptions are not swallowed."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hessian_dg_cli
from domainbed_patch.errors import UserError

MIRROR = Path(os.environ.get("HESSIAN_DG_DOMAINBED_MIRROR",
                             "/work/shared/domainbed/DomainBed.git"))


def _main_raising(error, monkeypatch):
    """``hessian_dg_cli.main`` on a command whose body raises ``error``."""
    def add_parser(subparsers):
        def run(args):
            raise error
        subparsers.add_parser("doctor").set_defaults(func=run)
    monkeypatch.setattr("domainbed_patch.doctor.add_parser", add_parser)
    return hessian_dg_cli.main(["doctor"])


def test_a_user_error_is_its_lines_then_the_hint_exit_2(monkeypatch, capsys):
    error = UserError("--dest x is a file\nsecond line of the message")
    error.hint = "what to do\nand how"
    assert _main_raising(error, monkeypatch) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["hessian-dg: error: --dest x is a file",
                                         "second line of the message", "what to do",
                                         "and how"]


def test_colored_mnists_errors_are_user_errors_too(monkeypatch, capsys):
    from colored_mnist.errors import DataError
    assert _main_raising(DataError("no MNIST under /nowhere"), monkeypatch) == 2
    assert capsys.readouterr().err == "hessian-dg: error: no MNIST under /nowhere\n"


def test_other_exceptions_are_not_swallowed(monkeypatch):
    with pytest.raises(ZeroDivisionError):
        _main_raising(ZeroDivisionError("a bug"), monkeypatch)


def test_the_bridges_errors_share_the_base():
    from domainbed_patch.locate import DomainBedNotFoundError
    from domainbed_patch.presets import PresetError
    from domainbed_patch.setup_domainbed import DestinationError, SetupError
    from domainbed_patch.validation import UsageError
    for cls, ordinary in [(UsageError, ValueError), (PresetError, ValueError),
                          (DomainBedNotFoundError, ImportError),
                          (SetupError, RuntimeError), (DestinationError, ValueError)]:
        assert issubclass(cls, UserError) and issubclass(cls, ordinary), cls


@pytest.mark.skipif(not (MIRROR / "HEAD").is_file(), reason=f"no DomainBed mirror at {MIRROR}")
def test_setup_that_cannot_get_domainbed_says_so_on_stderr_exit_2(tmp_path):
    """It printed its error to stdout and exited 1; now the common convention, and
    the offline hint after the error line."""
    result = subprocess.run(
        [sys.executable, "-m", "hessian_dg_cli", "setup", "--source", str(MIRROR),
         "--commit", "0123456789abcdef", "--dest", str(tmp_path / "DomainBed")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"hessian-dg: error: {MIRROR} has no commit 0123456789abcdef"
    assert lines[1].startswith("Could not get DomainBed. Without a network")
    assert any("hessian-dg setup --source /path/to/DomainBed" in line for line in lines[2:])
    assert not (tmp_path / "DomainBed").exists()


def test_a_refused_flag_is_the_same_line_and_names_the_commands_help(capsys):
    with pytest.raises(SystemExit) as stop:
        hessian_dg_cli.main(["sweep", "plan", "--no_such_flag"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "hessian-dg: error: unrecognized arguments: --no_such_flag",
        "run 'hessian-dg sweep --help' for its options"]
    with pytest.raises(SystemExit):  # a sub-sub-command's flags: its own --help
        hessian_dg_cli.main(["dataset", "add", "Mine", "/nowhere", "--no_such_flag"])
    assert capsys.readouterr().err.splitlines()[1] == \
        "run 'hessian-dg dataset add --help' for its options"
    with pytest.raises(SystemExit) as stop:
        hessian_dg_cli.main(["report", "--input_dir"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "hessian-dg: error: argument --input_dir: expected one argument",
        "run 'hessian-dg report --help' for its options"]


@pytest.mark.integration  # DomainBed's own code runs
def test_the_report_shows_its_errors_through_the_entry(tmp_path, capsys):
    """It caught its own errors and said 'hessian-dg report: error:'."""
    assert hessian_dg_cli.main(["report", "--input_dir", str(tmp_path / "absent")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(
        f"hessian-dg: error: input directory {tmp_path / 'absent'} does not exist")
    from tests.domainbed_patch.report.smoke_sweep import copy_sweep
    sweep = copy_sweep(tmp_path)  # a real sweep's jobs: the report gets as far as writing
    (tmp_path / "out").write_text("a file where the report's folder would go")
    status = hessian_dg_cli.main(["report", "--input_dir", str(sweep), "--no_figures",
                                  "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and err[-1] == (f"hessian-dg: error: cannot read the sweep or write "
                                       f"the report {tmp_path / 'out'}: File exists")


def _cmnist(command, *argv):
    return subprocess.run([sys.executable, "-m", command, *argv], capture_output=True,
                          text=True, timeout=300)


def test_python_m_colored_mnist_follows_the_convention():
    result = _cmnist("colored_mnist", "--steps", "0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "python -m colored_mnist: error: --steps 0: must be an integer >= 1"]


def test_hessian_dg_cmnist_errors_go_through_the_entry():
    """It said 'hessian-dg cmnist: error:' from a catch of its own."""
    result = _cmnist("hessian_dg_cli", "cmnist", "--steps", "0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["hessian-dg: error: --steps 0: must be an "
                                          "integer >= 1"]

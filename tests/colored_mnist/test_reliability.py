"""``cmnist``: sizes checked per setting before any job, unreadable inputs and
outputs in one line, tampered restart files run again instead of a traceback."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from colored_mnist import cli
from colored_mnist.data import SETTINGS, build_environments, training_sizes
from colored_mnist.train import RestartSeeds
from tests.colored_mnist.conftest import VAL

PROG = "python -m colored_mnist: error: "


def tiny(folder, output_dir, *extra):
    return ["--dataset", "idx", "--data_dir", folder, "--output_dir", str(output_dir),
            "--val_size", str(VAL), "--hidden_dim", "8", "--steps", "2", "--log_every", "1",
            "--penalty_anneal_iters", "1", "--workers", "1", "--algorithms", "ERM", *extra]


def run_main(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


@pytest.mark.parametrize("setting", SETTINGS)
def test_training_sizes_are_those_of_the_environments(idx_folder, setting):
    _, images, classes = idx_folder
    for seed in (0, 7):
        sizes = training_sizes(classes, setting, seed, VAL)
        assert len(sizes) == 5001 and (sizes.sum(axis=1) == np.arange(5001)).all()
        for length in (2, 3, 4, 33, 100, 5000):
            envs = build_environments(images, classes, setting, seed, val_size=VAL,
                                      train_size=length)
            assert tuple(sizes[length]) == (len(envs[0].labels), len(envs[1].labels))


def _a_seed_that_empties_an_environment(classes, length, restarts):
    for seed in range(50):
        tables = [training_sizes(classes, "label_shift", RestartSeeds.of(seed, r).data, VAL)
                  for r in range(restarts)]
        if any(t[length].min() == 0 for t in tables):
            return seed, tables
    raise AssertionError("no seed empties an environment")


def test_label_shift_train_size_is_checked_before_any_job(idx_folder, tmp_path, capsys):
    """``--train_size 2 --setting label_shift`` used to fail in every job with a reshape
    error ("rerun to retry"): an empty environment is now refused up front, with the
    smallest size that fills every restart's two environments."""
    folder, images, classes = idx_folder
    seed, tables = _a_seed_that_empties_an_environment(classes, 2, 2)
    out = tmp_path / "out"
    flags = tiny(folder, out, "--setting", "label_shift", "--restarts", "2", "--seed",
                 str(seed))
    code, lines = run_main(flags + ["--train_size", "2"], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(PROG + "--train_size 2 with --setting label_shift: restart ")
    assert "each needs at least one" in lines[0]
    smallest = int(re.search(r"fills them all is (\d+)$", lines[0]).group(1))
    assert smallest > 2 and not any(out.rglob("restart_*.json"))
    for size in range(2, smallest + 1):
        filled = [(t[size] > 0).all() for t in tables]
        assert all(filled) == (size == smallest), size
    for restart in range(2):
        envs = build_environments(images, classes, "label_shift",
                                  RestartSeeds.of(seed, restart).data, val_size=VAL,
                                  train_size=smallest)
        assert len(envs[0].labels) > 0 and len(envs[1].labels) > 0
    code, lines = run_main(flags + ["--train_size", str(smallest)], capsys)
    assert code == 0, lines
    assert len(list(out.rglob("restart_*.json"))) == 2


def test_an_output_dir_nothing_can_be_made_in_is_one_line(idx_folder, tmp_path):
    """/sys takes no folder, for root too: tried, not read from permission bits."""
    target = "/sys/cmnist-test"
    done = subprocess.run([sys.executable, "-m", "colored_mnist",
                           *tiny(idx_folder[0], target, "--restarts", "1")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(PROG + f"--output_dir {target}: /sys is not writable (")


def test_an_output_dir_that_is_a_file_is_one_line(idx_folder, tmp_path):
    """The real command: one line, before any job (no error log that cannot exist)."""
    target = tmp_path / "results"
    target.write_text("mine")
    sub = target / "sub"
    for output_dir, needle in ((target, f"--output_dir {target} is a file, not a folder"),
                               (sub, f"--output_dir {sub} cannot be made: {target} is a file")):
        done = subprocess.run([sys.executable, "-m", "colored_mnist",
                               *tiny(idx_folder[0], output_dir, "--restarts", "1")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done
        assert done.stderr.strip().splitlines() == [
            PROG + needle + "; give a folder (made if missing)"]
        assert target.read_text() == "mine"


def test_report_only_on_nothing_is_an_error(tmp_path, capsys):
    for output_dir, note in ((tmp_path / "missing", " (the folder does not exist)"),
                             (tmp_path, "")):
        code, lines = run_main(["--report_only", "--algorithms", "ERM", "HGP",
                                "--output_dir", str(output_dir)], capsys)
        assert code == 2
        assert lines == [PROG + "--report_only: no saved restart of ERM, HGP under "
                         f"{output_dir / 'correlation_shift'}{note}: nothing to report"]
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("tamper, problem", [
    (lambda r: "[1, 2]", "a JSON list, not an object"),
    (lambda r: "5", "a JSON int, not an object"),
    (lambda r: json.dumps(dict(r, identity="x")), "no 'identity' object"),
    (lambda r: json.dumps(dict(r, identity=dict(r["identity"], config=[]))),
     "no 'identity' object with a 'config' object"),
    (lambda r: json.dumps(dict(r, final={"train_acc": 0.5})), "no 'final' object"),
    (lambda r: json.dumps(dict(r, log="x")), "no 'log' of steps"),
    (lambda r: '{"final": ', "not JSON"),
])
def test_a_tampered_restart_file_runs_again(idx_folder, tmp_path, capsys, tamper, problem):
    out = tmp_path / "out"
    flags = tiny(idx_folder[0], out, "--restarts", "1", "--train_size", "100")
    assert cli.main(flags) == 0
    path = out / "correlation_shift" / "ERM" / "restart_0.json"
    original = json.loads(path.read_text())
    path.write_text(tamper(original))
    capsys.readouterr()
    code, lines = run_main(["--report_only", *flags], capsys)
    assert code == 2 and "nothing to report" in lines[-1]  # never reported as a result
    assert lines[0].endswith("): left out of the report")  # --report_only runs nothing
    code, lines = run_main(["--report_only", "--no_report", *flags], capsys)
    assert code == 2 and lines == ["python -m colored_mnist: error: --report_only with "
                                   "--no_report: nothing to do (--report_only trains "
                                   "nothing, --no_report writes no report)"]
    code, lines = run_main(flags, capsys)
    assert code == 0, lines
    warning = f"python -m colored_mnist: warning: {path} is not a saved restart ("
    assert lines[0].startswith(warning) and problem in lines[0]
    assert lines[0].endswith("): it runs again")
    assert "0 restarts already saved, 1 to run" in lines[1]
    again = json.loads(path.read_text())
    assert again["log"] == original["log"] and again["identity"] == original["identity"]

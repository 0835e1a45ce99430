"""Value ranges and unreadable inputs: one line, exit 2, before any job, by the same
checks for ``train`` and ``sweep``."""
import argparse
import json
import subprocess

import pytest

from domainbed_patch import domainbed_scripts, presets, sweep_commands
from domainbed_patch.presets import PresetError
from domainbed_patch.report import records
from domainbed_patch.validation import UsageError

pytestmark = pytest.mark.integration

TRAIN = ["train", "--dataset", "Debug28", "--algorithm", "ERM"]


def _run(module, argv):
    """``argv`` through the command's own parser, in this process (no job runs:
    every case here is refused before one would start)."""
    parser = argparse.ArgumentParser()
    module.add_parser(parser.add_subparsers())
    args, _ = parser.parse_known_args(argv)
    args.command_argv = argv[1:]
    return args.func(args)


def _refused(module, argv, pattern, error=UsageError):
    with pytest.raises(error, match=pattern) as caught:
        _run(module, argv)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("hparams, pattern", [
    ({"batch_size": 0}, r"hparam batch_size=0 is out of range .*: expected an integer >= 1"),
    ({"batch_size": -8}, r"batch_size=-8 is out of range"),
    ({"lr": -0.1}, r"hparam lr=-0.1 is out of range for ERM on Debug28: expected a finite "
                   r"number > 0"),
    ({"lr": float("nan")}, r"hparam lr=nan is out of range"),
    ({"weight_decay": -1.0}, r"weight_decay=-1.0 is out of range"),
])
def test_hparam_ranges_for_train_and_sweep(hparams, pattern, tmp_path):
    text = json.dumps(hparams)
    _refused(domainbed_scripts, TRAIN + ["--hparams", text, "--output_dir",
                                         str(tmp_path / "t")], pattern)
    _refused(sweep_commands, ["sweep", "launch", "smoke", "--hparams", text,
                              "--output_dir", str(tmp_path / "s")], pattern)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("value, pattern", [
    ("-0.2", r"--holdout_fraction -0.2: must be a number in \(0, 1\)"),
    ("1", r"--holdout_fraction 1.0: must be a number in \(0, 1\)"),
    ("nan", r"--holdout_fraction nan: must be"),
    ("0.01", r"holdout_fraction 0.01 holds out no example of Debug28's smallest "
             r"environment \(16 examples\).* at least 0.0625"),
])
def test_holdout_fraction_for_train(value, pattern, tmp_path):
    _refused(domainbed_scripts, TRAIN + ["--holdout_fraction", value, "--hparams",
                                         '{"batch_size": 8}', "--output_dir",
                                         str(tmp_path / "t")], pattern)


@pytest.mark.parametrize("value", ["-0.2", "1", "nan"])
def test_holdout_fraction_for_sweep(value, tmp_path):
    _refused(sweep_commands, ["sweep", "plan", "--holdout_fraction", value],
             r"holdout_fraction = .* is not valid; expected a number in \(0, 1\)",
             PresetError)


def test_every_environment_a_test_environment(tmp_path):
    _refused(domainbed_scripts, TRAIN + ["--test_envs", "0", "1", "2", "--output_dir",
                                         str(tmp_path / "t")],
             r"--test_envs \[0, 1, 2\]: every environment of Debug28 \(0..2\) would be a "
             r"test environment, none left to train on")


@pytest.mark.parametrize("action", ["plan", "launch", "status"])
def test_sweep_test_envs_out_of_range(action, tmp_path):
    _refused(sweep_commands, ["sweep", action, "smoke", "--test_envs", "9",
                              "--output_dir", str(tmp_path / "s")],
             r"test_envs \[9\] out of range: Debug28 has environments 0..2")
    _refused(sweep_commands, ["sweep", action, "smoke", "--test_envs", "0", "1", "2",
                              "--output_dir", str(tmp_path / "s")],
             r"every environment of Debug28")
    assert not (tmp_path / "s").exists()


def test_a_filter_no_job_matches(tmp_path):
    _refused(sweep_commands, ["sweep", "plan", "smoke", "--test_envs", "0", "1"],
             r"preset smoke with these overrides makes no job .*test_envs \[\[0, 1\]\].*"
             r"nothing to run")


@pytest.mark.parametrize("value", ["-1", "nan", "0", "inf"])
def test_seconds_per_step(value):
    _refused(sweep_commands, ["sweep", "plan", "smoke", "--seconds_per_step", value],
             rf"--seconds_per_step {float(value)}: must be a finite number of seconds > 0")


def test_output_dirs_that_are_files(tmp_path):
    target = tmp_path / "file"
    target.write_text("mine")
    for action in ("launch", "status", "plan", "delete_incomplete"):
        _refused(sweep_commands, ["sweep", action, "smoke", "--output_dir", str(target)],
                 rf"output_dir {target} is a file, not a folder")
    _refused(sweep_commands, ["sweep", "launch", "smoke", "--output_dir",
                              str(target / "sub")], rf"cannot be made: {target} is a file")
    _refused(domainbed_scripts, TRAIN + ["--hparams", '{"batch_size": 8}', "--output_dir",
                                         str(target)], rf"--output_dir {target} is a file")
    assert target.read_text() == "mine"


def test_output_dirs_nothing_can_be_made_in(tmp_path):
    """/sys takes no folder, for root too (whose permission bits pass): the folder
    is tried, not its bits; one line, nothing left behind where it could be made."""
    target = "/sys/hessian-dg-test/out"
    unwritable = r"/sys is not writable \([^)]+\)"  # EPERM, EACCES or EROFS
    _refused(sweep_commands, ["sweep", "launch", "smoke", "--output_dir", target],
             rf"output_dir {target}: {unwritable}")
    _refused(domainbed_scripts, TRAIN + ["--hparams", '{"batch_size": 8}', "--output_dir",
                                         target], rf"--output_dir {target}: {unwritable}")
    from domainbed_patch.validation import cannot_write_in
    assert cannot_write_in(str(tmp_path)) == "" and list(tmp_path.iterdir()) == []


def test_presets_that_are_not_text_or_are_folders(tmp_path):
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(PresetError, match=rf"{binary}: not a TOML text file \(not UTF-8: "
                       r"byte 0x89 at offset 0\)"):
        presets.load_preset(str(binary))
    (tmp_path / "d.toml").mkdir()
    with pytest.raises(PresetError, match=r"d.toml is a folder, not a .toml file"):
        presets.load_preset(str(tmp_path / "d.toml"))


def _sweep_with_junk(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "my_notes").mkdir(parents=True)
    (sweep / "my_notes" / "todo.md").write_text("x")
    (sweep / "empty").mkdir()
    job = sweep / "job"
    job.mkdir()
    record = {"args": {"dataset": "Debug28", "algorithm": "ERM", "test_envs": [0],
                       "trial_seed": 0, "hparams_seed": 0}, "step": 0,
              "env0_in_acc": 0.5, "env0_out_acc": 0.5, "env1_in_acc": 0.5,
              "env1_out_acc": 0.5, "env2_in_acc": 0.5, "env2_out_acc": 0.5}
    (job / "results.jsonl").write_text(json.dumps(record) + "\n{\"half\": \n\x00\xff\n")
    (job / "done").write_text("done")
    (sweep / "running").mkdir()
    (sweep / "running" / "out.txt").write_text("")
    return sweep


def test_report_ignores_folders_that_are_not_jobs(tmp_path):
    sweep = records.load_sweep(_sweep_with_junk(tmp_path))
    assert sweep.done_jobs == ["job"] and sweep.incomplete_jobs == ["running"]
    only_junk = tmp_path / "junk"
    (only_junk / "notes").mkdir(parents=True)
    with pytest.raises(records.ReportError, match="holds no job folders"):
        records.load_sweep(only_junk)


def test_collect_copes_with_junk_and_corrupt_lines(tmp_path):
    """The real command: DomainBed's tables from the readable records, one warning per
    skipped line, no traceback."""
    sweep = _sweep_with_junk(tmp_path)
    done = subprocess.run(["hessian-dg", "collect", "--input_dir", str(sweep)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Total records: 1" in done.stdout and "ERM" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2 and all("skipped a corrupt line" in w for w in warnings)
    assert f"{sweep / 'job' / 'results.jsonl'}:2" in warnings[0]
    lost = sweep / "lost_rows"  # done, its results.jsonl gone: named, not dropped silently
    lost.mkdir()
    (lost / "done").write_text("done")
    empty = sweep / "empty_rows"  # done, an empty results.jsonl: the same
    empty.mkdir()
    (empty / "done").write_text("done")
    (empty / "results.jsonl").write_text("")
    done = subprocess.run(["hessian-dg", "collect", "--input_dir", str(sweep)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Total records: 1" in done.stdout
    assert ("hessian-dg collect: warning: 2 job(s) marked done have no results.jsonl "
            "rows, left out: empty_rows, lost_rows") in done.stderr


def test_collect_on_nothing_is_an_error(tmp_path):
    (tmp_path / "junk").mkdir()
    _refused(domainbed_scripts, ["collect", "--input_dir", str(tmp_path)],
             r"holds no DomainBed record .*: nothing to collect")
    _refused(domainbed_scripts, ["collect", "--input_dir", str(tmp_path / "missing")],
             r"is not a folder")


def test_sweep_status_on_a_file_exits_non_zero(tmp_path):
    """The real command."""
    target = tmp_path / "file"
    target.write_text("")
    done = subprocess.run(["hessian-dg", "sweep", "status", "smoke", "--output_dir",
                           str(target)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"hessian-dg: error: output_dir {target} is a file, not "
                                   "a folder; give a folder (made if missing)")

"""Runs, resumes and reports: each restart saved as it finishes, missing ones only
rerun, a failed restart never loses the others."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from colored_mnist import cli, report, runner, sources
from colored_mnist.train import SEEDING, RestartSeeds, TrainConfig, probe_seed, train_restart
from tests.colored_mnist.conftest import VAL, synthetic_arrays, write_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_flags(folder, output_dir, *extra):
    return ["--dataset", "idx", "--data_dir", folder, "--output_dir", str(output_dir),
            "--val_size", str(VAL), "--train_size", "200", "--hidden_dim", "8",
            "--steps", "4", "--log_every", "2", "--penalty_anneal_iters", "2",
            "--hutchinson_samples", "3", *extra]


def saved(output_dir, setting="correlation_shift"):
    folder = os.path.join(output_dir, setting)
    found = {}
    algorithms = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for algorithm in [a for a in algorithms if os.path.isdir(os.path.join(folder, a))]:
        for name in os.listdir(os.path.join(folder, algorithm)):
            if name.startswith("restart_") and name.endswith(".json"):
                path = os.path.join(folder, algorithm, name)
                found[(algorithm, name)] = os.stat(path).st_mtime_ns
    return found


def test_restart_is_reproducible_on_its_own(idx_folder):
    folder, images, classes = idx_folder
    config = TrainConfig(hidden_dim=8, steps=3, log_every=1, hutchinson_samples=3)
    first = train_restart(images, classes, "Hutchinson", config, RestartSeeds(17, 5), VAL, 200)
    again = train_restart(images, classes, "Hutchinson", config, RestartSeeds(17, 5), VAL, 200)
    assert first["log"] == again["log"]
    other = train_restart(images, classes, "Hutchinson", config, RestartSeeds(18, 5), VAL, 200)
    assert other["log"] != first["log"]
    assert [e["step"] for e in first["log"]] == [0, 1, 2]
    assert set(first["log"][0]) == {"step", "train_nll", "train_acc", "penalty",
                                    "test_acc", "gray_test_acc", "hessian_distance"}
    assert first["final"]["step"] == 2


def test_partial_run_resumes_only_missing_restarts(idx_folder, tmp_path, capsys):
    folder = idx_folder[0]
    out = tmp_path / "out"
    flags = tiny_flags(folder, out, "--algorithms", "ERM", "HGP", "--restarts", "2",
                       "--workers", "1")
    assert cli.main(flags) == 0
    first = saved(out)
    assert len(first) == 4
    # A killed run: one result missing, one half-written temporary, one corrupt file.
    os.remove(out / "correlation_shift" / "HGP" / "restart_1.json")
    (out / "correlation_shift" / "HGP" / "restart_1.json.tmp999").write_text("{")
    (out / "correlation_shift" / "ERM" / "restart_0.json").write_text('{"final": ')
    capsys.readouterr()
    assert cli.main(flags) == 0
    assert "2 restarts already saved, 2 to run" in capsys.readouterr().err
    second = saved(out)
    assert second[("ERM", "restart_1.json")] == first[("ERM", "restart_1.json")]
    assert second[("HGP", "restart_0.json")] == first[("HGP", "restart_0.json")]
    assert len(second) == 4
    capsys.readouterr()
    assert cli.main(flags) == 0  # nothing left to do
    assert "4 restarts already saved, 0 to run" in capsys.readouterr().err
    # The report: every algorithm, published rows beside, CSV and curves.
    table = (out / "correlation_shift" / "results.md").read_text()
    assert "| ERM | 2 |" in table and "86.4 ± 0.2" in table and "| HGP | 2 |" in table
    assert (out / "correlation_shift" / "curves.png").stat().st_size > 1000
    assert "train_acc_mean" in (out / "correlation_shift" / "results.csv").read_text()


def test_other_settings_are_refused_not_mixed(idx_folder, tmp_path, capsys):
    folder = idx_folder[0]
    out = tmp_path / "out"
    assert cli.main(tiny_flags(folder, out, "--algorithms", "VREx", "--restarts", "1",
                               "--workers", "1")) == 0
    capsys.readouterr()
    code = cli.main(tiny_flags(folder, out, "--algorithms", "VREx", "--restarts", "1",
                               "--lr", "0.01"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "other settings" in err[0] and "lr" in err[0]


def test_a_failed_restart_never_loses_the_others(idx_folder, tmp_path, monkeypatch,
                                                 capsys):
    folder = idx_folder[0]
    out = tmp_path / "out"
    original = runner.train_restart

    def sometimes_failing(images, classes, algorithm, *args):
        if algorithm == "IRM":
            raise RuntimeError("boom")
        return original(images, classes, algorithm, *args)

    monkeypatch.setattr(runner, "train_restart", sometimes_failing)
    code = cli.main(tiny_flags(folder, out, "--algorithms", "IRM", "Fishr",
                               "--restarts", "2", "--workers", "1"))
    assert code == 1
    assert "IRM restart 0: FAILED (RuntimeError: boom" in capsys.readouterr().err
    assert sorted(saved(out)) == [("Fishr", "restart_0.json"), ("Fishr", "restart_1.json")]
    assert "boom" in (out / "correlation_shift" / "IRM" / "restart_1.error.txt").read_text()


def test_parallel_workers_and_a_killed_process_resume(idx_folder, tmp_path):
    """Two spawned workers, killed (with the whole process group) once three
    restarts are saved; the rerun trains the missing ones only."""
    folder = idx_folder[0]
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    flags = tiny_flags(folder, out, "--algorithms", "ERM", "VREx", "--setting",
                       "label_shift", "--restarts", "8")
    log = open(tmp_path / "killed.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "colored_mnist", *flags,
                                "--workers", "2"], env=env, stdout=log, stderr=log,
                               start_new_session=True)
    deadline = time.time() + 180
    while len(saved(out, "label_shift")) < 3 and time.time() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.02)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    log.close()
    assert "2 worker(s) x 1 thread(s)" in (tmp_path / "killed.log").read_text()
    kept = saved(out, "label_shift")
    assert 3 <= len(kept) < 16, "killed before the end"
    finish = subprocess.run([sys.executable, "-m", "colored_mnist", *flags,
                             "--workers", "1"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert f"{len(kept)} restarts already saved, {16 - len(kept)} to run" in finish.stderr
    final = saved(out, "label_shift")
    assert len(final) == 16
    assert all(final[key] == kept[key] for key in kept)


def test_summary_uses_the_population_std(tmp_path):
    for restart, acc in enumerate((0.6, 0.7, 0.8)):
        path = runner.result_path(str(tmp_path), "label_shift", "HGP", restart)
        runner.write_json_atomic(path, {
            "algorithm": "HGP", "restart": restart, "seconds": 2.0,
            "final": {"train_acc": acc, "test_acc": acc / 2, "gray_test_acc": acc},
            "log": [{"step": 0, "train_nll": 1.0, "penalty": 0.1, "test_acc": acc,
                     "hessian_distance": 0.2}]})
    written = report.write_report(str(tmp_path), "label_shift")
    row = written["rows"][0]
    assert row["restarts"] == 3
    assert row["train_acc_mean"] == pytest.approx(70.0)
    assert row["train_acc_std"] == pytest.approx(np.std([60, 70, 80]))
    assert "Fishr paper" not in written["table"]  # published rows: correlation shift only
    assert "| HGP | 3 | 70.0 ± 8.2 | 35.0 ± 4.1 | 70.0 ± 8.2 | 2 |" in written["table"]
    # Only the restarts of the reported run are read.
    only = report.write_report(str(tmp_path), "label_shift", jobs=[("HGP", 0), ("HGP", 2)])
    assert only["rows"][0]["restarts"] == 2
    assert only["rows"][0]["train_acc_mean"] == pytest.approx(70.0)
    assert only["rows"][0]["train_acc_std"] == pytest.approx(10.0)


def test_a_restart_records_identity_and_provenance(idx_folder, tmp_path):
    folder, images, classes = idx_folder
    out = tmp_path / "out"
    assert cli.main(tiny_flags(folder, out, "--algorithms", "Hutchinson", "--restarts",
                               "1", "--workers", "1", "--no_report")) == 0
    result = json.load(open(out / "correlation_shift" / "Hutchinson" / "restart_0.json"))
    identity = result["identity"]
    assert identity["seeding"] == SEEDING
    assert identity["data"] == sources.fingerprint(images, classes)
    assert identity["seed"] == 0 and identity["probe_seed"] == probe_seed(0, 0)
    assert result["probe_seed"] == identity["probe_seed"]
    assert result["provenance"]["torch"] == torch.__version__
    assert result["provenance"]["device"] == "cpu"
    assert result["provenance"]["device_name"]
    assert result["provenance"]["hessian_dg_commit"] == runner.code_commit()


def test_the_commit_says_when_the_code_that_trains_was_edited(tmp_path):
    from tests.git_checkout import make_checkout
    root = tmp_path / "checkout"
    commit = make_checkout(root, ["colored_mnist", "hessian_dg", "docs"])
    assert runner.code_commit(str(root)) == commit
    (root / "docs" / "code.py").write_text("x = 2\n")  # not code that trains
    assert runner.code_commit(str(root)) == commit
    (root / "hessian_dg" / "code.py").write_text("x = 2\n")
    assert runner.code_commit(str(root)) == commit + "+dirty"
    assert runner.code_commit(str(tmp_path)) is None  # no checkout: an installed copy


def test_the_commit_is_the_one_the_run_started_with(idx_folder, tmp_path, monkeypatch):
    """Taken once, before the first restart trains: a restart that ends after HEAD
    moved (a commit made while a long run goes on) names the code it ran."""
    commits = iter(["aaaa", "bbbb", "cccc"])
    monkeypatch.setattr(runner, "code_commit", lambda: next(commits))
    out = tmp_path / "out"
    assert cli.main(tiny_flags(idx_folder[0], out, "--algorithms", "ERM", "VREx",
                               "--restarts", "1", "--workers", "1", "--no_report")) == 0
    for algorithm in ("ERM", "VREx"):
        result = json.load(open(out / "correlation_shift" / algorithm / "restart_0.json"))
        assert result["provenance"]["hessian_dg_commit"] == "aaaa"


def test_a_restart_of_the_old_seeding_scheme_is_refused(idx_folder, tmp_path, capsys):
    """Restarts saved before the probe seed had a key of its own (probes of restart r
    = data stream of restart r + 1) are not reused: their identity lacks the scheme."""
    folder = idx_folder[0]
    out = tmp_path / "out"
    flags = tiny_flags(folder, out, "--algorithms", "Hutchinson", "--restarts", "1",
                       "--workers", "1", "--no_report")
    assert cli.main(flags) == 0
    path = out / "correlation_shift" / "Hutchinson" / "restart_0.json"
    result = json.load(open(path))
    for key in ("seeding", "probe_seed", "data"):
        del result["identity"][key]
    path.write_text(json.dumps(result))
    capsys.readouterr()
    assert cli.main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "seeding" in err[0]


def test_other_data_is_refused_and_no_data_is_needed_when_all_is_saved(
        idx_folder, tmp_path, capsys):
    folder = idx_folder[0]
    out = tmp_path / "out"
    flags = ["--algorithms", "ERM", "--workers", "1"]
    assert cli.main(tiny_flags(folder, out, *flags, "--restarts", "1")) == 0
    # Nothing left to train: the data is not read (here: it is gone).
    moved = write_folder(tmp_path / "gone", *synthetic_arrays())
    capsys.readouterr()
    assert cli.main(tiny_flags(str(tmp_path / "missing"), out, *flags,
                               "--restarts", "1")) == 0
    assert "1 restarts already saved, 0 to run" in capsys.readouterr().err
    # A second restart on other pixels: the saved one's data fingerprint differs.
    images, classes = synthetic_arrays(seed=1)
    other = write_folder(tmp_path / "other", images, classes)
    assert moved != other
    assert cli.main(tiny_flags(other, out, *flags, "--restarts", "2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data: 'sha256:" in err[0]

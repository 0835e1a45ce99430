"""``model.pkl`` is loaded without running code; a bad one, or a garbage job folder,
is one line, never a traceback."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from domainbed_patch import checkpoint, diagnose, diagnose_sweep
from domainbed_patch.checkpoint import CheckpointError, load_checkpoint
from domainbed_patch.validation import UsageError


class _Hostile:
    """Unpickling this creates the file ``target`` (``os.mknod``)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.mknod, (self.target,))


def _hostile_checkpoint(path, marker):
    torch.save({"args": _Hostile(marker), "model_dict": {}}, path)


def test_a_hostile_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "created_by_the_pickle"
    _hostile_checkpoint(tmp_path / "model.pkl", marker)
    with pytest.raises(CheckpointError, match="unsupported GLOBAL posix.mknod") as error:
        load_checkpoint(tmp_path / "model.pkl")
    assert "\n" not in str(error.value) and "never runs code" in str(error.value)
    assert not marker.exists()
    # the same file, loaded the way diagnose loaded it before, does run code
    torch.load(tmp_path / "model.pkl", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("content, needle", [
    (os.urandom(2048), "not loaded"),
    (b"", "not loaded"),
    (b"not a checkpoint", "not loaded"),
])
def test_corrupt_files_are_one_line(tmp_path, content, needle):
    path = tmp_path / "model.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=needle) as error:
        load_checkpoint(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_foreign_checkpoints_are_named(tmp_path):
    path = tmp_path / "model.pkl"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match=r"not a DomainBed checkpoint: expected a dict "
                       r"with args, .*; found \['state_dict'\]"):
        load_checkpoint(path)
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="found list"):
        load_checkpoint(path)
    saved = {key: 0 for key in checkpoint.KEYS}
    saved["args"] = {"algorithm": "ERM"}
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match="its args lack dataset, test_envs, seed"):
        load_checkpoint(path)


def test_numpy_hparams_load(tmp_path):
    """DomainBed's random hparams are numpy scalars: the allow-list builds them."""
    path = tmp_path / "model.pkl"
    saved = {key: 0 for key in checkpoint.KEYS}
    saved["args"] = {key: 0 for key in checkpoint.ARGS}
    saved["model_hparams"] = {"lr": np.float64(1e-4), "batch_size": np.int64(8),
                              "flag": np.bool_(True), "name": np.str_("x")}
    torch.save(saved, path)
    loaded = load_checkpoint(path)["model_hparams"]
    assert loaded == saved["model_hparams"]
    assert type(loaded["lr"]) is np.float64 and type(loaded["batch_size"]) is np.int64


def _diagnose(*argv):
    parser = argparse.ArgumentParser()
    diagnose_sweep.add_parser(parser.add_subparsers())
    return diagnose_sweep.run(parser.parse_args(["diagnose", *argv]))


def _job(sweep, name, results=None, model=None):
    job = sweep / name
    job.mkdir(parents=True)
    (job / "done").write_text("done")
    if results is not None:
        (job / "results.jsonl").write_text(results)
    if model is not None:
        (job / "model.pkl").write_bytes(model)
    return job


DEBUG_ARGS = {"algorithm": "ERM", "dataset": "Debug28", "data_dir": "", "test_envs": [0],
              "seed": 0, "trial_seed": 0, "holdout_fraction": 0.2}


@pytest.mark.integration
def test_the_command_on_a_hostile_model_runs_nothing(tmp_path):
    """The real command, the job in its own process, as a shared sweep folder gives it."""
    sweep, marker = tmp_path / "sweep", tmp_path / "pwned"
    job = _job(sweep, "job", results=json.dumps({"args": DEBUG_ARGS, "step": 0}) + "\n")
    _hostile_checkpoint(job / "model.pkl", marker)
    done = subprocess.run(["hessian-dg", "diagnose", "--input_dir", str(sweep),
                           "--command_launcher", "local"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stdout + done.stderr
    assert f"failed: job: {job / 'model.pkl'}: not loaded (Trying to load unsupported " \
           "GLOBAL posix.mknod" in done.stdout
    assert not marker.exists()


@pytest.mark.integration
def test_garbage_job_folders_are_named_not_tracebacks(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    _job(sweep, "binary", results="\x00\xff garbage\n", model=b"x")
    _job(sweep, "no_args", results=json.dumps({"step": 0}) + "\n", model=b"x")
    _job(sweep, "no_results", model=b"x")
    _job(sweep, "no_dataset", results=json.dumps({"args": {"algorithm": "ERM"}}) + "\n",
         model=b"x")
    assert _diagnose("--input_dir", str(sweep), "--command_launcher", "local") == 0
    out = capsys.readouterr().out
    assert "4 finished jobs; launching 0 diagnose jobs" in out
    assert "skipped: binary: its results.jsonl holds no record with DomainBed's 'args' " \
           "(1 lines)" in out
    assert "skipped: no_args: its results.jsonl holds no record" in out
    assert "skipped: no_results: its results.jsonl cannot be read (No such file" in out
    assert "skipped: no_dataset: its args name no dataset (None)" in out


def test_an_empty_or_missing_sweep_is_refused(tmp_path):
    with pytest.raises(UsageError, match="is not a folder"):
        _diagnose("--input_dir", str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"holds no finished job \(0 job folders, none "
                       "with a done file\\): nothing to diagnose"):
        _diagnose("--input_dir", str(tmp_path / "empty"))
    (tmp_path / "empty" / "running").mkdir()
    with pytest.raises(UsageError, match=r"\(1 job folders"):
        _diagnose("--input_dir", str(tmp_path / "empty"))


def test_negative_max_examples_is_refused(tmp_path):
    _job(tmp_path, "job")
    with pytest.raises(UsageError, match=r"--max_examples -3: must be an integer >= 0 "
                       r"\(examples per environment; 0: all\)"):
        _diagnose("--input_dir", str(tmp_path), "--max_examples", "-3")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real DomainBed checkpoint: Debug28, ERM, random hparams (numpy scalars), 1 step."""
    sweep = tmp_path_factory.mktemp("checkpoint") / "sweep"
    job = sweep / "job"
    subprocess.run([sys.executable, "-m", "domainbed.scripts.train", "--dataset", "Debug28",
                    "--algorithm", "ERM", "--hparams_seed", "1", "--steps", "1",
                    "--hparams", '{"batch_size": 8}', "--output_dir", str(job)],
                   check=True, capture_output=True, timeout=600,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    return sweep, job


@pytest.mark.integration
def test_a_real_checkpoint_loads_as_before(trained):
    _, job = trained
    safe = load_checkpoint(job / "model.pkl")
    unsafe = torch.load(job / "model.pkl", weights_only=False)
    assert any(isinstance(v, np.generic) for v in unsafe["model_hparams"].values())
    assert safe["args"] == unsafe["args"] and safe["model_hparams"] == unsafe["model_hparams"]
    assert safe["model_input_shape"] == unsafe["model_input_shape"] == (3, 28, 28)
    assert list(safe["model_dict"]) == list(unsafe["model_dict"])
    for key, tensor in unsafe["model_dict"].items():
        assert torch.equal(safe["model_dict"][key], tensor), key


@pytest.mark.integration
def test_another_max_examples_is_diagnosed_again(trained, capsys):
    sweep, job = trained
    first = diagnose.diagnose_job(job, max_examples=4)
    assert first["max_examples"] == 4 and set(first["examples"].values()) == {4}
    assert _diagnose("--input_dir", str(sweep), "--max_examples", "4",
                     "--command_launcher", "local") == 0
    assert "launching 0 diagnose jobs" in capsys.readouterr().out
    assert _diagnose("--input_dir", str(sweep), "--max_examples", "6",
                     "--command_launcher", "local") == 0
    out = capsys.readouterr().out
    assert "1 jobs were diagnosed with another --max_examples" in out
    assert "launching 1 diagnose jobs" in out
    again = json.loads((job / "diagnostics.json").read_text())
    assert again["max_examples"] == 6 and set(again["examples"].values()) == {6}

"""``hessian-dg diagnose`` on a real DomainBed sweep of ERM and HGP on Debug28."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hessian_dg_cli as cli
from domainbed_patch import diagnose, jobs, presets

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """6 jobs, diagnosed in the job (in memory) and then from model.pkl."""
    out = tmp_path_factory.mktemp("diagnose") / "sweep"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launched = subprocess.run(
        ["hessian-dg", "sweep", "launch", "smoke", "--algorithms", "ERM", "HGP",
         "--n_hparams", "1", "--steps", "5", "--output_dir", str(out), "--set",
         "diagnose=true", "--no_collect"], env=env, capture_output=True, text=True,
        timeout=900)
    assert launched.returncode == 0, launched.stderr[-3000:]
    in_memory = {p.parent.name: json.loads(p.read_text())
                 for p in out.glob(f"*/{diagnose.DIAGNOSTICS_FILE}")}
    assert len(in_memory) == 6
    return out, in_memory


def test_in_job_diagnostics_leave_the_job_folders_as_they_were(sweep):
    """The option reaches the job runner only: job folders (hashes of DomainBed's
    train arguments) are the same as without it."""
    out, in_memory = sweep
    plain = jobs.make_jobs(presets.load_preset("smoke", {
        "algorithms": ["ERM", "HGP"], "n_hparams": 1, "steps": 5, "output_dir": str(out)}))
    assert {j.output_dir.name for j in plain} == set(in_memory)
    assert all(j.runner_flags == () for j in plain)
    for result in in_memory.values():
        assert result["checkpoint"] == "in memory (final step)"
        assert 0 < result["seconds"] < result["training_seconds"]


def test_diagnose_command_from_saved_models_equals_the_in_job_numbers(sweep, capsys):
    out, in_memory = sweep
    for path in out.glob(f"*/{diagnose.DIAGNOSTICS_FILE}"):
        path.unlink()
    without_model = sorted(in_memory)[0]
    (out / without_model / "model.pkl").unlink()
    before = {d.name: sorted(p.name for p in d.iterdir()) for d in out.iterdir()
              if d.is_dir()}
    assert cli.main(["diagnose", "--input_dir", str(out),
                     "--command_launcher", "local"]) == 0
    printed = capsys.readouterr().out
    assert f"skipped: {without_model}: no model.pkl" in printed
    assert "| Debug28 | ERM |" in printed and "| Debug28 | HGP |" in printed
    for name, listing in before.items():  # nothing else written into a job's folder
        after = sorted(p.name for p in (out / name).iterdir())
        if name in in_memory and name != without_model:
            listing = sorted(listing + [diagnose.DIAGNOSTICS_FILE])
        assert after == listing, name
    for name, expected in in_memory.items():
        if name == without_model:
            continue
        saved = json.loads((out / name / diagnose.DIAGNOSTICS_FILE).read_text())
        assert saved["checkpoint"] == "model.pkl (final step)"
        assert saved["examples"] == expected["examples"]
        for ours, theirs in zip(saved["pairs"], expected["pairs"]):
            assert (ours["a"], ours["b"]) == (theirs["a"], theirs["b"])
            assert ours["hessian_frobenius_distance"]["method"] == "exact"
            assert ours["hessian_spectral_distance"]["method"] == "lanczos"
            assert ours["hessian_spectral_distance"]["converged"]
            for key in ("hessian_frobenius_distance", "hessian_spectral_distance"):
                assert ours[key]["value"] == pytest.approx(theirs[key]["value"], rel=1e-4)
            assert ours["gradient_distance"] == pytest.approx(theirs["gradient_distance"],
                                                              rel=1e-5)
    # relaunching diagnoses nothing twice
    assert cli.main(["diagnose", "--input_dir", str(out), "--command_launcher", "local"]) == 0
    assert "launching 0 diagnose jobs" in capsys.readouterr().out


def test_report_shows_the_table_and_figure(sweep):
    out, _ = sweep
    assert cli.main(["report", "--input_dir", str(out)]) == 0
    text = (out / "report" / "report.md").read_text()
    assert "## Transfer diagnostics" in text and "| Debug28 | HGP |" in text
    assert (out / "report" / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_algorithms_and_missing_data_are_named(tmp_path, capsys):
    job = tmp_path / "sweep" / "job"
    job.mkdir(parents=True)
    (job / "done").write_text("done")
    record = {"args": {"algorithm": "NoSuchAlgorithm", "dataset": "PACS", "data_dir": ""}}
    (job / "results.jsonl").write_text(json.dumps(record) + "\n")
    assert cli.main(["diagnose", "--input_dir", str(tmp_path / "sweep"),
                     "--command_launcher", "local"]) == 0
    assert "skipped: job: unknown algorithm 'NoSuchAlgorithm'" in capsys.readouterr().out
    (job / "model.pkl").write_text("")
    record["args"]["algorithm"] = "ERM"
    (job / "results.jsonl").write_text(json.dumps(record) + "\n")
    (tmp_path / "sweep" / "diagnose_logs" / "job.skipped").unlink()
    assert cli.main(["diagnose", "--input_dir", str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err
    assert "dataset PACS needs its data" in err and "download_pacs" in err


def test_networks_are_rebuilt_without_downloading_weights():
    """No network here: building DomainBed's ResNet would fail if it fetched weights."""
    from domainbed import hparams_registry, networks
    hparams = dict(hparams_registry.default_hparams("ERM", "PACS"), resnet18=True,
                   resnet50_augmix=False)
    with diagnose.untrained_backbones():
        featurizer = networks.Featurizer((3, 224, 224), hparams)
    assert featurizer.n_outputs == 512


def test_algorithms_without_the_pair_are_skipped_with_the_reason():
    import torch
    from domainbed import algorithms
    fish = algorithms.Fish((3, 28, 28), 2, 2, {**_debug_hparams(), "meta_lr": 0.5})
    with pytest.raises(diagnose.SkipJob, match="Fish has no featurizer"):
        diagnose.check_head(fish, "Fish", torch.zeros(1, 3, 28, 28))
    arm = algorithms.ARM((3, 28, 28), 2, 2, {**_debug_hparams(), "batch_size": 8})
    with pytest.raises(diagnose.SkipJob, match="does not predict with"):
        diagnose.check_head(arm, "ARM", torch.randn(1, 3, 28, 28))


def _debug_hparams():
    from domainbed import hparams_registry
    return hparams_registry.default_hparams("ERM", "Debug28")


def test_job_body_records_failures_in_the_log_folder(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "model.pkl").write_text("not a checkpoint")
    log_dir = tmp_path / "logs"
    result = subprocess.run([sys.executable, "-m", "domainbed_patch.diagnose_sweep",
                             "--job_dir", str(job), "--data_dir", "", "--max_examples", "10",
                             "--log_dir", str(log_dir)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    note = (log_dir / "job.failed").read_text()
    assert note.startswith(f"{job / 'model.pkl'}: not loaded (") and note.count("\n") == 1
    assert sorted(p.name for p in job.iterdir()) == ["model.pkl"]
    assert Path(log_dir / "job.failed").exists()


def test_failed_diagnose_jobs_are_retried(tmp_path, capsys):
    job = tmp_path / "sweep" / "job"
    job.mkdir(parents=True)
    (job / "done").write_text("done")
    (job / "model.pkl").write_text("not a checkpoint")
    record = {"args": {"algorithm": "ERM", "dataset": "Debug28", "data_dir": ""}}
    (job / "results.jsonl").write_text(json.dumps(record) + "\n")
    argv = ["diagnose", "--input_dir", str(tmp_path / "sweep"), "--command_launcher", "local"]
    assert cli.main(argv) == 1
    assert "failed: job:" in capsys.readouterr().out
    assert cli.main(argv) == 1
    assert "launching 1 diagnose jobs" in capsys.readouterr().out

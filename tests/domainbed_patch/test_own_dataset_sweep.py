"""An own image-folder dataset end to end, no file of DomainBed edited: DomainBed's
train, hessian-dg's sweep (whose jobs are DomainBed's train), DomainBed's
collect_results, hessian-dg's report and diagnose.

There is no network here, so ImageNet weights cannot be fetched: torchvision finds
a ResNet-18 checkpoint of random weights where it caches downloads ($TORCH_HOME).
A 224x224 ResNet-18 at batch size 2 for 2 steps, and no data-loader worker
processes (``dataset add --n_workers 0``), keep every job cheap on a CPU.
"""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from domainbed_patch import locate, own_datasets
from tests.domainbed_patch.image_folders import write_image_folder

pytestmark = pytest.mark.integration

DOMAINS = ["desert", "forest", "tundra"]
CHEAP = {"resnet18": True, "resnet50_augmix": False, "batch_size": 2}


def _random_resnet18_checkpoint(torch_home: Path) -> None:
    import torch
    import torchvision
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    target = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), target)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The folder, registered as Wildlife; a private registry, view cache and
    TORCH_HOME for this process and its children."""
    base = tmp_path_factory.mktemp("own_dataset")
    folder = write_image_folder(base / "wildlife", DOMAINS, ["fox", "owl"], per_class=4)
    (folder / ".cache").mkdir()  # hidden: not a domain
    _random_resnet18_checkpoint(base / "torch")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOMAINBED_ROOT", str(locate.locate().root))
        patch.setenv(own_datasets.REGISTRY_VARIABLE, str(base / "datasets.json"))
        patch.setenv("XDG_CACHE_HOME", str(base / "cache"))
        patch.setenv("TORCH_HOME", str(base / "torch"))
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.delenv("HESSIAN_DG_DISABLE", raising=False)
        own_datasets.add("Wildlife", folder, n_workers=0)
        yield base
    own_datasets.refresh()


def _run(argv, cwd):
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _records(job_dir):
    return [json.loads(l) for l in (Path(job_dir) / "results.jsonl").read_text().splitlines()]


def test_domainbeds_own_train_trains_on_it_without_a_data_dir(world):
    out = world / "train"
    _run([sys.executable, "-m", "domainbed.scripts.train", "--dataset", "Wildlife",
          "--algorithm", "ERM", "--test_envs", "2", "--steps", "2", "--checkpoint_freq", "1",
          "--hparams", json.dumps(CHEAP), "--output_dir", str(out), "--skip_model_save"],
         cwd=world)
    records = _records(out)
    assert [r["step"] for r in records] == [0, 1]
    for r in records:
        assert r["args"]["dataset"] == "Wildlife" and r["hparams"]["resnet18"] is True
        accuracies = {k: v for k, v in r.items() if k.endswith("_acc")}
        # 8 images per domain: an out-split of int(8 * 0.2) = 1, an in-split of 7
        assert sorted(accuracies) == [f"env{i}_{s}_acc" for i in range(3)
                                      for s in ("in", "out")]
        assert all(round(v * 7) == v * 7 for k, v in accuracies.items() if "_in_" in k)
        assert all(v in (0.0, 1.0) for k, v in accuracies.items() if "_out_" in k)
        assert math.isfinite(r["loss"])
    assert (out / "done").exists()


@pytest.fixture(scope="module")
def sweep(world):
    """HGP through hessian-dg sweep launch (smoke preset, 1 hparam, test env 0)."""
    out = world / "sweep"
    launched = _run(["hessian-dg", "sweep", "launch", "smoke", "--datasets", "Wildlife",
                     "--algorithms", "HGP", "--n_hparams", "1", "--steps", "2",
                     "--test_envs", "0", "--hparams", json.dumps(CHEAP),
                     "--output_dir", str(out), "--no_collect"], cwd=world)
    assert "1 jobs: 1 done, 0 failed" in launched.stdout
    return out


def test_the_sweep_job_trains_hgp_on_it(sweep):
    (job,) = [d for d in sweep.iterdir() if (d / "done").exists()]
    last = _records(job)[-1]
    assert last["args"]["dataset"] == "Wildlife" and last["args"]["test_envs"] == [0]
    assert last["args"]["algorithm"] == "HGP" and last["step"] == 1
    assert math.isfinite(last["penalty"]) and last["penalty"] > 0
    assert (job / "model.pkl").exists()


def _collect_average(stdout: str, algorithm: str) -> float:
    """The algorithm's entry in collect_results' "Averages" table (training-domain
    validation, the first one printed)."""
    averages = stdout.split("Averages", 1)[1]
    row = next(l for l in averages.splitlines() if l.split() and l.split()[0] == algorithm)
    return float(re.findall(r"\d+\.\d", row)[0])


def test_domainbeds_collect_results_and_hessian_dgs_report_agree(sweep, world):
    collected = _run([sys.executable, "-m", "domainbed.scripts.collect_results",
                      "--input_dir", str(sweep)], cwd=world).stdout
    assert "Dataset: Wildlife" in collected
    header = next(l for l in collected.splitlines() if l.split()[:1] == ["Algorithm"]
                  and "desert" in l)
    assert header.split()[1:4] == DOMAINS
    import hessian_dg_cli as cli
    assert cli.main(["report", "--input_dir", str(sweep), "--no_figures"]) == 0
    report = (sweep / "report" / "report.md").read_text()
    row = next(l for l in report.splitlines() if l.startswith("| Wildlife | HGP | "))
    assert float(re.findall(r"\d+\.\d", row.split("|")[3])[0]) == _collect_average(
        collected, "HGP")
    # What the selection chose, per domain, and what made it: the report's other files.
    import pandas as pd
    (job,) = [d for d in sweep.iterdir() if (d / "done").exists()]
    selected = pd.read_csv(sweep / "report" / "selected.csv")
    chosen = selected[selected["selection"].str.startswith("training-domain")]
    assert len(chosen) == 1
    choice = chosen.iloc[0]
    assert (choice["dataset"], choice["algorithm"], choice["test_env"]) == ("Wildlife", "HGP", 0)
    assert choice["job"] == job.name and choice["trial_seed"] == 0
    assert bool(choice["hparam.resnet18"]) is True and choice["hparam.batch_size"] == 2
    # training-domain validation: the step of best mean out-split accuracy over the
    # training domains; its test accuracy is the test domain's in-split accuracy
    record = next(r for r in _records(job) if r["step"] == choice["step"])
    assert choice["validation_accuracy"] == pytest.approx(
        100 * (record["env1_out_acc"] + record["env2_out_acc"]) / 2)
    assert choice["test_accuracy"] == pytest.approx(100 * record["env0_in_acc"])
    per_domain = (sweep / "report" / "per_domain.md").read_text()
    assert "| HGP |" in per_domain and "desert" in per_domain
    assert "## Provenance" in report and "(1 of 1 finished jobs have one)" in report
    assert "| preset | smoke (1 job) |" in report and "| protocol | paper (1 job) |" in report


def test_hessian_dg_diagnose_reads_it_from_the_registered_folder(sweep, capsys):
    import hessian_dg_cli as cli
    assert cli.main(["diagnose", "--input_dir", str(sweep), "--max_examples", "4",
                     "--command_launcher", "local"]) == 0
    assert "| Wildlife | HGP |" in capsys.readouterr().out
    (path,) = sweep.glob("*/diagnostics.json")
    result = json.loads(path.read_text())
    assert result["dataset"] == "Wildlife" and result["checkpoint"] == "model.pkl (final step)"
    assert result["examples"] == {"env0": 4, "env1": 4, "env2": 4}
    assert len(result["pairs"]) == 6  # 3 domain pairs, 3 domains against the training average
    for pair in result["pairs"]:
        assert math.isfinite(pair["gradient_distance"]) and pair["gradient_distance"] >= 0
        assert math.isfinite(pair["hessian_frobenius_distance"]["value"])
        assert pair["hessian_frobenius_distance"]["value"] >= 0


def test_domainbeds_own_sweep_launches_its_jobs_and_collects_them(world):
    """DomainBed's sweep script itself, launching (local launcher: each job a new
    DomainBed train process that finds the dataset through the registry), one job per
    test domain; then its collect_results reads them."""
    out = world / "domainbed_sweep"
    launched = _run([sys.executable, "-m", "domainbed.scripts.sweep", "launch",
                     "--datasets", "Wildlife", "--algorithms", "ERM", "--n_hparams", "1",
                     "--n_trials", "1", "--steps", "1", "--single_test_envs",
                     "--hparams", json.dumps(CHEAP), "--output_dir", str(out),
                     "--data_dir", str(world), "--command_launcher", "local",
                     "--skip_confirmation"], cwd=world)
    assert "3 jobs: 0 done, 0 incomplete, 3 not launched." in launched.stdout
    done = sorted(d for d in out.iterdir() if (d / "done").exists())
    assert len(done) == 3
    assert sorted(_records(d)[-1]["args"]["test_envs"][0] for d in done) == [0, 1, 2]
    assert all(_records(d)[-1]["args"]["dataset"] == "Wildlife" for d in done)
    collected = _run([sys.executable, "-m", "domainbed.scripts.collect_results",
                      "--input_dir", str(out)], cwd=world).stdout
    assert "Dataset: Wildlife" in collected and "Total records: 3" in collected

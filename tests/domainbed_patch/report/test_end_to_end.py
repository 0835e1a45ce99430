"""A real small sweep (Debug28, ERM, 2 hparams x 2 trials, 2 steps, test env 0),
launched by ``hessian-dg sweep``, then reported: provenance in every job, the
selected hparams and per-domain tables in the report."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from domainbed_patch import provenance as job_provenance
from domainbed_patch.job_folder import JobFolder, job_folders
from tests.domainbed_patch.report.smoke_sweep import run_main

pytestmark = pytest.mark.integration
OVERRIDES = ["--algorithms", "ERM", "--n_hparams", "2", "--n_trials", "2", "--steps", "2",
             "--test_envs", "0"]


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    sweep_dir = base / "sweep"
    launched = subprocess.run(
        [sys.executable, "-m", "hessian_dg_cli", "sweep", "launch", "smoke", *OVERRIDES,
         "--output_dir", str(sweep_dir), "--no_collect"], cwd=base, capture_output=True,
        text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-3000:]
    status, stdout, stderr = run_main("--input_dir", sweep_dir, "--no_figures")
    assert status == 0, stderr
    return sweep_dir, stderr


def test_every_job_records_its_provenance_outside_domainbeds_arguments(reported):
    sweep_dir, _ = reported
    jobs = job_folders(sweep_dir)
    assert len(jobs) == 4
    for job in jobs:
        record = json.loads(JobFolder(job).provenance.read_text())
        assert record["sweep"]["preset"] == "smoke"
        assert record["sweep"]["protocol"] == "paper"
        assert record["sweep"]["overrides"]["n_trials"] == 2
        assert record["software"]["torch"] == torch.__version__
        assert record["software"]["domainbed_commit"] == job_provenance.locate.locate().commit
        args = json.loads(JobFolder(job).results.read_text().splitlines()[0])["args"]
        assert "provenance" not in json.dumps(args)


def test_the_report_shows_provenance_and_warns_of_nothing_else(reported):
    sweep_dir, stderr = reported
    text = (sweep_dir / "report" / "report.md").read_text()
    assert "(4 of 4 finished jobs have one)" in text
    assert "| preset | smoke (4 jobs) |" in text and "| protocol | paper (4 jobs) |" in text
    # other work may be committed while the sweep runs; nothing else may differ
    assert all("disagree on the hessian-dg commit" in line for line in stderr.splitlines())


def test_selected_hparams_are_domainbeds_draw_for_both_seeds(reported):
    """Each trial draws its own hparams: DomainBed's registry for
    seed_hash(hparams_seed, trial_seed) (defaults for hparams_seed 0), then the
    sweep's --hparams, exactly as the chosen job trained."""
    from domainbed import hparams_registry
    from domainbed.lib import misc
    sweep_dir, _ = reported
    table = pd.read_csv(sweep_dir / "report" / "selected.csv")
    assert len(table) == 2 * 2  # training-domain validation and oracle x 2 trials
    assert set(table["trial_seed"]) == {0, 1} and set(table["hparams_seed"]) <= {0, 1}
    for _, row in table.iterrows():
        job = sweep_dir / row["job"]
        first = json.loads(JobFolder(job).results.read_text().splitlines()[0])
        seeds = row["hparams_seed"], row["trial_seed"]
        expected = (hparams_registry.default_hparams("ERM", "Debug28") if seeds[0] == 0
                    else hparams_registry.random_hparams("ERM", "Debug28",
                                                         misc.seed_hash(*seeds)))
        expected.update(json.loads(first["args"]["hparams"]))
        assert (first["args"]["hparams_seed"], first["args"]["trial_seed"]) == seeds
        assert {key: row[f"hparam.{key}"] for key in expected} == pytest.approx(expected)
    draws = [hparams_registry.random_hparams("ERM", "Debug28", misc.seed_hash(1, t))["lr"]
             for t in (0, 1)]
    assert draws[0] != draws[1]  # one hparams_seed, another draw in each trial
    per_domain = pd.read_csv(sweep_dir / "report" / "per_domain.csv")
    assert list(per_domain["environment"].astype(str)) == ["0", "0"]  # one env: no Avg
    assert list(per_domain["trials"]) == [2, 2]
    selected_md = (sweep_dir / "report" / "selected.md").read_text()
    assert "| Algorithm | Test env | trial_seed | hparams_seed | Step |" in selected_md

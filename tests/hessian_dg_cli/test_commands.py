"""``hessian-dg`` (hessian_dg_cli): bad input to any command fails in one line,
before any job starts."""
import pytest

import hessian_dg_cli as cli

TRAIN = ["train", "--dataset", "Debug28", "--algorithm", "HGP", "--steps", "1"]
SWEEP = ["sweep", "launch", "smoke"]

BAD_INPUT = {
    "train-unknown-algorithm": (["train", "--dataset", "Debug28", "--algorithm", "HPG"],
                                ["unknown algorithm 'HPG'", "HGP", "Hutchinson", "ERM"]),
    "train-unknown-dataset": (["train", "--dataset", "Debug29", "--algorithm", "HGP"],
                              ["unknown dataset 'Debug29'", "Debug28", "PACS"]),
    "train-malformed-json": (TRAIN + ["--hparams", "{batch_size: 8"],
                             ["--hparams is not valid JSON", "{batch_size: 8"]),
    "train-json-not-object": (TRAIN + ["--hparams", "[8]"], ["must be a JSON object"]),
    "train-wrong-type": (TRAIN + ["--hparams", '{"batch_size": "8"}'],
                         ["hparam batch_size='8' is a str", "expects a int"]),
    "train-plugin-domain": (TRAIN + ["--hparams", '{"batch_size": 8, "penalty_beta": -1}'],
                            ["penalty_beta=-1", "a finite real number >= 0"]),
    "train-missing-data-dir": (["train", "--dataset", "PACS", "--algorithm", "HGP"],
                               ["dataset PACS needs its data", "--data_dir is missing",
                                "download_pacs"]),
    "train-hparam-typo": (TRAIN + ["--hparams", '{"batch_size": 8, "penalty_alpah": 1}'],
                          ["unknown hparam 'penalty_alpah'", "did you mean 'penalty_alpha'",
                           "HGP on Debug28 takes", "penalty_beta"]),
    "train-exact-nonlinear": (["train", "--dataset", "Debug28", "--algorithm", "Hutchinson",
                               "--hparams", '{"batch_size": 8, "hutchinson_exact": true, '
                               '"nonlinear_classifier": true}'],
                              ["hutchinson_exact=true needs a linear head",
                               "nonlinear_classifier=true"]),
    "train-batch-hangs": (TRAIN, ["batch_size 64 exceeds the 13 examples", "Debug28",
                                  "batch_size\": 13"]),
    "train-test-env-range": (TRAIN + ["--test_envs", "5"], ["--test_envs [5] out of range"]),
    "sweep-unknown-algorithm": (SWEEP + ["--algorithms", "ERM", "HPG"],
                                ["unknown ['HPG']", "valid names are", "Hutchinson"]),
    "sweep-unknown-dataset": (SWEEP + ["--datasets", "PAC"], ["unknown ['PAC']", "PACS"]),
    "sweep-malformed-json": (SWEEP + ["--hparams", "{'lr': 1}"], ["not valid JSON"]),
    "sweep-wrong-type": (SWEEP + ["--hparams", '{"lr": "fast"}'],
                         ["hparam lr='fast' is a str", "expects a float"]),
    "sweep-missing-data-dir": (SWEEP + ["--datasets", "VLCS"],
                               ["dataset VLCS needs its data", "download_vlcs"]),
    "sweep-hparam-typo": (SWEEP + ["--hparams", '{"hutchinson_sample": 8}'],
                          ["unknown hparam 'hutchinson_sample'",
                           "did you mean 'hutchinson_samples'"]),
    "sweep-plan-hparam-typo": (["sweep", "plan", "--set", "hparams.lrr=0.1"],
                               ["unknown hparam 'lrr'", "did you mean 'lr'"]),
    "sweep-batch-hangs": (SWEEP + ["--hparams", '{"batch_size": 64}'],
                          ["batch_size 64 exceeds the 13 examples"]),
    "sweep-unknown-launcher": (SWEEP + ["--command_launcher", "slurmm"],
                               ["unknown launcher 'slurmm'", "local_parallel", "slurm"]),
}
#: refused from the preset alone: no DomainBed needed.
PRESET_INPUT = {
    "sweep-unknown-preset": (["sweep", "plan", "smok"], ["unknown preset 'smok'",
                                                         "paper_domainbed", "smoke"]),
    "sweep-unknown-key": (["sweep", "plan", "--set", "n_trial=2"],
                          ["smoke.toml", "unknown key(s) ['n_trial']", "n_trials"]),
    "sweep-bad-type": (["sweep", "plan", "--set", "n_trials='3'"],
                       ["smoke.toml", "n_trials = '3' is not valid", "an integer >= 1"]),
    "sweep-bad-protocol": (["sweep", "plan", "--set", "protocol='old'"],
                           ["protocol = 'old' is not valid", "'paper', 'upstream'"]),
    "sweep-bad-flag-value": (["sweep", "plan", "--n_trials", "0"],
                             ["n_trials = 0 is not valid"]),
}


def _refused_in_one_line(argv, needles, capsys, tmp_path):
    argv = argv + (["--output_dir", str(tmp_path / "out")] if argv[0] != "sweep" or
                   argv[1] != "plan" else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hessian-dg: error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.integration
@pytest.mark.parametrize("argv, needles", list(BAD_INPUT.values()), ids=list(BAD_INPUT))
def test_bad_input_is_one_line_naming_the_valid_choices(argv, needles, capsys, tmp_path):
    _refused_in_one_line(argv, needles, capsys, tmp_path)


@pytest.mark.parametrize("argv, needles", list(PRESET_INPUT.values()),
                         ids=list(PRESET_INPUT))
def test_bad_presets_are_refused_without_domainbed(argv, needles, capsys, tmp_path):
    _refused_in_one_line(argv, needles, capsys, tmp_path)


@pytest.mark.parametrize("command", ["setup", "doctor", "train", "sweep", "collect",
                                     "report", "diagnose", "cmnist"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: hessian-dg {command}" in capsys.readouterr().out


def test_unknown_flags_are_refused_except_by_train(capsys):
    with pytest.raises(SystemExit):
        cli.main(["doctor", "--data_dri", "x"])
    assert "unrecognized arguments: --data_dri x" in capsys.readouterr().err


@pytest.mark.integration
def test_doctor_names_domainbed_commit_and_datasets(capsys, tmp_path):
    from tests.domainbed_patch.image_folders import fake_paper_dataset
    fake_paper_dataset(tmp_path, "PACS")  # the doctor checks its layout, not only its folder
    assert cli.main(["doctor", "--data_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    from domainbed_patch.locate import PINNED_COMMIT
    assert f"commit {PINNED_COMMIT}" in out and "HGP and Hutchinson" in out
    assert "[ok] PACS" in out and "[!!] VLCS" in out and "download_vlcs" in out


@pytest.mark.integration
def test_plan_counts_jobs_and_compute(capsys):
    assert cli.main(["sweep", "plan", "smoke", "--seconds_per_step", "3600"]) == 0
    out = capsys.readouterr().out
    # 3 algorithms x 3 test environments x 2 hparams x 1 trial, 11 steps each
    assert "18 jobs, 198 training steps" in out
    assert "compute: 198 GPU-hours" in out and "protocol: paper" in out
    # the smoke preset's [hparams] apply to every algorithm; plan says who ignores what
    assert "hparams.hutchinson_samples = 50: ignored by ERM, HGP" in out
    assert "hparams.batch_size" not in out


@pytest.mark.integration
def test_a_key_another_algorithm_declares_passes(tmp_path):
    """mlp_width is declared (for DANN) and read by DomainBed's networks for some
    inputs: a typo check must not refuse it."""
    from domainbed_patch import validation
    merged = validation.check_hparams("HGP", "Debug28", {"mlp_width": 64})
    assert merged["mlp_width"] == 64

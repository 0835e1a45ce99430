"""Presets as data: every field validated, errors name the file, the key and the valid values."""
import pytest

from domainbed_patch import presets

DATASETS = ["Debug28", "PACS", "VLCS", "OfficeHome", "TerraIncognita", "DomainNet"]
ALGORITHMS = ["ERM", "HGP", "Hutchinson"]


def _load(name="smoke", overrides=()):
    return presets.load_preset(name, presets.parse_overrides(overrides),
                               known_datasets=DATASETS, known_algorithms=ALGORITHMS)


def test_shipped_presets_load():
    smoke = _load()
    assert smoke.datasets == ("Debug28",) and smoke.algorithms == tuple(ALGORITHMS)
    assert smoke.hparams["batch_size"] <= 13 and smoke.launcher["name"] == "local_parallel"
    paper = _load("paper_domainbed")
    assert paper.datasets == ("PACS", "VLCS", "OfficeHome", "TerraIncognita", "DomainNet")
    assert (paper.n_hparams, paper.n_trials, paper.single_test_envs) == (20, 3, True)
    assert paper.protocol == "paper" and paper.steps is None and paper.holdout_fraction == 0.2


def test_overrides_reach_any_field_and_tables():
    preset = _load(overrides=["n_trials=2", 'launcher.name="slurm"',
                              "launcher.partition=a100", "hparams.lr=1e-4",
                              "test_envs=[[0], [2]]", 'algorithms=["HGP"]'])
    assert preset.n_trials == 2 and preset.algorithms == ("HGP",)
    assert preset.launcher == {"name": "slurm", "max_parallel": 2, "partition": "a100"}
    assert preset.hparams["lr"] == 1e-4 and preset.hparams["batch_size"] == 8
    assert preset.test_envs == ((0,), (2,))


BAD = {
    "unknown-key": (["n_trial=2"], ["smoke.toml", "unknown key(s) ['n_trial']", "n_trials"]),
    "wrong-type": (['n_hparams="20"'], ["n_hparams = '20' is not valid", "an integer >= 1"]),
    "bool-not-int": (["n_trials=true"], ["n_trials = True is not valid"]),
    "fraction": (["holdout_fraction=1.5"], ["holdout_fraction = 1.5", "a number in (0, 1)"]),
    "protocol": (['protocol="2020"'], ["protocol = '2020'", "['paper', 'upstream']"]),
    "dataset": (['datasets=["PAC"]'], ["datasets has unknown ['PAC']", "PACS"]),
    "algorithm": (['algorithms=["HGP", "Hutch"]'], ["unknown ['Hutch']", "Hutchinson"]),
    "launcher-key": (["launcher.gpus=1"], ["unknown key(s) ['gpus'] in [launcher]",
                                           "gpus_per_job"]),
    "launcher-type": (["launcher.max_concurrent=0"], ["launcher.max_concurrent = 0",
                                                      "an integer >= 1"]),
    "test-envs": (["test_envs=[0]"], ["test_envs = [0] is not valid", "[[0], [1]]"]),
    "not-a-table": (["n_trials.x=1"], ["'n_trials' is not a table"]),
    "no-equals": (["n_trials"], ["not of the form key=value"]),
}


@pytest.mark.parametrize("overrides, needles", list(BAD.values()), ids=list(BAD))
def test_errors_name_file_key_and_valid_values(overrides, needles):
    with pytest.raises(presets.PresetError) as error:
        _load(overrides=overrides)
    for needle in needles:
        assert needle in str(error.value), (needle, str(error.value))


def test_every_default_is_declared_once_in_the_dataclass():
    """Defaults come from SweepPreset alone: a preset naming only the required keys
    gets them, and the error messages read the same declarations."""
    minimal = presets.validate({"datasets": ["PACS"], "algorithms": ["HGP"],
                                "output_dir": "o"}, "x.toml")
    preset = presets.SweepPreset(name="x", source="x.toml", **minimal)
    assert (preset.n_hparams, preset.n_trials, preset.protocol, preset.test_envs) == \
        (20, 3, "paper", ())
    required = [name for name, spec in presets.FIELDS.items()
                if spec.default is presets.REQUIRED]
    assert required == ["datasets", "algorithms", "output_dir"]


def test_overrides_are_one_mapping_parsed_once():
    assert presets.parse_overrides(["a.b=1", 'c="x"', "d=bare words", "e=[1, 2]"]) == \
        {"a.b": 1, "c": "x", "d": "bare words", "e": [1, 2]}
    preset = presets.load_preset("smoke", {"n_trials": 2, "hparams.lr": 1e-4})
    assert preset.n_trials == 2 and preset.hparams == {"batch_size": 8,
                                                      "hutchinson_samples": 50, "lr": 1e-4}


def test_unknown_preset_and_files(tmp_path):
    with pytest.raises(presets.PresetError, match=r"unknown preset 'papr'.*paper_domainbed"):
        _load("papr")
    broken = tmp_path / "broken.toml"
    broken.write_text("datasets = [\n")
    with pytest.raises(presets.PresetError, match="broken.toml: not valid TOML"):
        _load(str(broken))
    missing = tmp_path / "mine.toml"
    missing.write_text('algorithms = ["HGP"]\noutput_dir = "o"\n')
    with pytest.raises(presets.PresetError, match="mine.toml: missing key 'datasets'"):
        _load(str(missing))
    with pytest.raises(presets.PresetError, match="does not exist"):
        _load(str(tmp_path / "nope.toml"))

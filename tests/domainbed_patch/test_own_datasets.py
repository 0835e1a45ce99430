"""Own image-folder datasets served to the real DomainBed: registry, registration in
this and fresh processes, DomainBed's transforms and hparams, the sweep's defaults."""
import argparse
import json
import os
import pickle
import subprocess
import sys

import pytest

from domainbed_patch import dataset_commands, locate, own_datasets, registration
from tests.domainbed_patch.image_folders import write_image_folder

pytestmark = pytest.mark.integration

DOMAINS = ["alpha", "beta", "gamma"]
CLASSES = ["cat", "dog"]


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """An empty registry and view cache of the test's own; DomainBed found as before."""
    monkeypatch.setenv("DOMAINBED_ROOT", str(locate.locate().root))
    monkeypatch.setenv(own_datasets.REGISTRY_VARIABLE, str(tmp_path / "datasets.json"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield tmp_path
    monkeypatch.undo()
    own_datasets.refresh()


@pytest.fixture
def folder(tmp_path):
    """Three domains, two classes, four PNGs each, and hidden folders to skip."""
    root = write_image_folder(tmp_path / "pictures", DOMAINS, CLASSES, per_class=4)
    write_image_folder(root / ".thumbnails", ["x"], ["y"], per_class=1)
    (root / "alpha" / ".ipynb_checkpoints").mkdir()  # empty: ImageFolder would refuse it
    return root


def test_the_registry_lives_in_the_users_config_folder_unless_told(monkeypatch, tmp_path):
    monkeypatch.setenv(own_datasets.REGISTRY_VARIABLE, str(tmp_path / "r.json"))
    assert own_datasets.registry_path() == tmp_path / "r.json"
    monkeypatch.delenv(own_datasets.REGISTRY_VARIABLE)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert own_datasets.registry_path() == tmp_path / "config" / "hessian-dg" / "datasets.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert own_datasets.registry_path() == (tmp_path / "home" / ".config" / "hessian-dg"
                                            / "datasets.json")


def test_an_added_folder_is_a_domainbed_dataset_until_removed(registry, folder):
    from domainbed import datasets
    entry = own_datasets.add("Mine", folder)
    assert entry == {"folder": str(folder), "domains": DOMAINS, "classes": CLASSES}
    assert json.loads((registry / "datasets.json").read_text()) == {"Mine": entry}
    assert datasets.DATASETS.count("Mine") == 1
    assert datasets.get_dataset_class("Mine").ENVIRONMENTS == DOMAINS
    assert datasets.num_environments("Mine") == 3
    assert pickle.loads(pickle.dumps(datasets.Mine)) is datasets.Mine
    own_datasets.remove("Mine")
    assert "Mine" not in datasets.DATASETS and not hasattr(datasets, "Mine")
    with pytest.raises(own_datasets.OwnDatasetError,
                       match="no own dataset 'Mine'; registered: none"):
        own_datasets.remove("Mine")


def test_unregister_undoes_it_and_register_serves_it_again(registry, folder):
    from domainbed import datasets
    own_datasets.add("Mine", folder)
    registration.unregister()
    assert "Mine" not in datasets.DATASETS and not hasattr(datasets, "Mine")
    registration.register()
    registration.register()
    assert datasets.DATASETS.count("Mine") == 1 and hasattr(datasets, "Mine")


@pytest.mark.parametrize("name, message", [
    ("PACS", "DomainBed's datasets module already has 'PACS'; choose another name "
             "(DomainBed's datasets: Debug28, Debug224, ColoredMNIST,"),
    ("Debug", "DomainBed's datasets module already has 'Debug'"),
    ("os", "DomainBed's datasets module already has 'os'"),
    ("my-data", "dataset name 'my-data' is not valid: use letters, digits and _, "
                "starting with a letter"),
    ("1st", "dataset name '1st' is not valid"),
])
def test_names_domainbed_has_and_bad_names_are_refused(registry, folder, name, message):
    with pytest.raises(own_datasets.OwnDatasetError) as error:
        own_datasets.add(name, folder)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert not (registry / "datasets.json").exists()


def test_a_bad_layout_or_a_second_add_is_refused(registry, folder, tmp_path):
    bad = write_image_folder(tmp_path / "bad", DOMAINS, {"alpha": CLASSES, "beta": CLASSES,
                                                         "gamma": ["cat"]})
    with pytest.raises(own_datasets.OwnDatasetError) as error:
        own_datasets.add("Bad", bad)
    assert str(error.value).splitlines() == [
        f"{bad} is not a dataset DomainBed can read:",
        f"  {bad / 'gamma'}/ lacks class folder(s) dog that other domains have (DomainBed "
        "labels classes by their position, so later classes would be mislabelled there): "
        "add them, with images, or remove them from every domain"]
    own_datasets.add("Mine", folder)
    with pytest.raises(own_datasets.OwnDatasetError,
                       match=f"'Mine' is already registered \\({folder}\\); pass --force"):
        own_datasets.add("Mine", bad)
    other = write_image_folder(tmp_path / "other", ["a", "b"], CLASSES, per_class=1)
    assert own_datasets.add("Mine", other, force=True)["domains"] == ["a", "b"]


def test_hparams_are_those_of_domainbeds_224x224_datasets(registry, folder):
    """No per-dataset rule of DomainBed's registry names an own dataset: its hparams,
    default and drawn, are VLCS's for every algorithm."""
    from domainbed import algorithms, hparams_registry
    own_datasets.add("Mine", folder)
    for algorithm in algorithms.ALGORITHMS:
        assert (hparams_registry.default_hparams(algorithm, "Mine")
                == hparams_registry.default_hparams(algorithm, "VLCS")), algorithm
        for seed in (1, 7):
            assert (hparams_registry.random_hparams(algorithm, "Mine", seed)
                    == hparams_registry.random_hparams(algorithm, "VLCS", seed)), algorithm


def test_images_transforms_and_sizes_are_domainbeds(registry, folder, tmp_path):
    """Compared with DomainBed's PACS on a folder of the same kind: the same
    transforms for a training and a test domain, input shape and checkpoint period."""
    from domainbed import datasets, hparams_registry
    own_datasets.add("Mine", folder)
    write_image_folder(tmp_path / "data" / "PACS", ["art_painting", "cartoon", "photo",
                                                    "sketch"], CLASSES, per_class=1)
    hparams = hparams_registry.default_hparams("ERM", "Mine")
    assert hparams["data_augmentation"] is True
    mine = datasets.Mine("ignored", [1], hparams)
    pacs = datasets.PACS(str(tmp_path / "data"), [1], hparams)
    assert [repr(mine.datasets[i].transform) for i in (0, 1)] == [
        repr(pacs.datasets[i].transform) for i in (0, 1)]
    assert "RandomResizedCrop" in repr(mine.datasets[0].transform)
    assert "RandomResizedCrop" not in repr(mine.datasets[1].transform)
    assert [len(env) for env in mine] == [8, 8, 8] and mine.num_classes == 2
    assert mine[0].classes == CLASSES  # the hidden, empty class folder is skipped
    image, label = mine[2][5]
    assert tuple(image.shape) == mine.input_shape == pacs.input_shape == (3, 224, 224)
    assert label == 1
    assert (datasets.Mine.CHECKPOINT_FREQ, datasets.Mine.N_STEPS, datasets.Mine.N_WORKERS) \
        == (datasets.PACS.CHECKPOINT_FREQ, datasets.PACS.N_STEPS, datasets.PACS.N_WORKERS)


def test_data_loader_workers_can_be_set_per_dataset(registry, folder):
    from domainbed import datasets
    own_datasets.add("Mine", folder, n_workers=0)
    assert datasets.Mine.N_WORKERS == 0 and own_datasets.load()["Mine"]["n_workers"] == 0
    with pytest.raises(own_datasets.OwnDatasetError,
                       match="n_workers -1 is not valid: an integer >= 0"):
        own_datasets.add("Mine", folder, force=True, n_workers=-1)


def test_a_folder_changed_since_add_fails_in_one_line(registry, folder):
    from domainbed import datasets, hparams_registry
    own_datasets.add("Mine", folder)
    write_image_folder(folder, ["delta"], CLASSES, per_class=1)
    with pytest.raises(own_datasets.OwnDatasetError) as error:
        datasets.Mine("", [0], hparams_registry.default_hparams("ERM", "Mine"))
    assert str(error.value) == (
        f"dataset Mine: {folder} now has domains ['alpha', 'beta', 'delta', 'gamma'], "
        f"registered with ['alpha', 'beta', 'gamma']; run hessian-dg dataset add Mine "
        f"{folder} --force")


def test_a_broken_registry_or_a_taken_name_is_warned_about_not_raised(registry, folder):
    from domainbed import datasets
    (registry / "datasets.json").write_text("{not json")
    with pytest.warns(own_datasets.OwnDatasetWarning, match="is not a dataset registry"):
        own_datasets.refresh()
    own_datasets.save({"VLCS": {"folder": str(folder), "domains": DOMAINS,
                                "classes": CLASSES}})
    with pytest.warns(own_datasets.OwnDatasetWarning, match="own dataset 'VLCS' .* not served"):
        own_datasets.refresh()
    assert datasets.VLCS.ENVIRONMENTS == ["C", "L", "S", "V"]
    assert datasets.DATASETS.count("VLCS") == 1


def test_hessian_dg_train_knows_an_own_datasets_split_sizes(registry, folder, capsys):
    """DomainBed's train waits forever for a batch larger than a training split."""
    import hessian_dg_cli as cli
    own_datasets.add("Mine", folder)
    assert cli.main(["train", "--dataset", "Mine", "--algorithm", "ERM",
                     "--hparams", '{"batch_size": 8}']) == 2
    assert ("batch_size 8 exceeds the 7 examples of a training split of Mine "
            "(holdout_fraction 0.2)") in capsys.readouterr().err


def test_train_and_a_preset_can_name_the_folder_themselves(registry, folder, tmp_path,
                                                          capsys):
    """``train --dataset NAME --dataset_folder F`` and a preset's ``[own_datasets]``
    register the folder on the way (no ``dataset add`` first); a name already
    registered to that folder is left as it is, one registered elsewhere is refused."""
    import hessian_dg_cli as cli
    assert cli.main(["train", "--dataset", "Mine", "--dataset_folder", str(folder),
                     "--algorithm", "ERM", "--hparams", '{"batch_size": 8}']) == 2
    err = capsys.readouterr().err  # registered, then its split sizes were known
    assert "batch_size 8 exceeds the 7 examples of a training split of Mine" in err
    assert own_datasets.load()["Mine"]["folder"] == str(folder)
    assert cli.main(["sweep", "plan", "smoke", "--datasets", "Yours", "--algorithms", "ERM",
                     "--n_hparams", "1", "--output_dir", str(tmp_path / "sweep"),
                     "--set", f'own_datasets.Yours="{folder}"',
                     "--set", f'own_datasets.Mine="{folder}"']) == 0
    assert "Yours" in capsys.readouterr().out
    assert set(own_datasets.load()) == {"Mine", "Yours"}
    other = write_image_folder(tmp_path / "other", DOMAINS, CLASSES, per_class=4)
    assert cli.main(["sweep", "plan", "smoke", "--datasets", "Mine", "--output_dir",
                     str(tmp_path / "sweep"), "--set", f'own_datasets.Mine="{other}"']) == 2
    assert capsys.readouterr().err.startswith(
        f"hessian-dg: error: dataset 'Mine' is registered to {folder}, not {other}; to "
        f"serve {other} under that name: hessian-dg dataset add Mine {other} --force")
    from domainbed_patch.domainbed_scripts import without_flag
    assert without_flag(["--dataset_folder=/x", "--steps", "2"], "--dataset_folder") == [
        "--steps", "2"]


def _dataset_command(argv):
    parser = argparse.ArgumentParser(prog="hessian-dg")
    dataset_commands.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dataset", *argv])
    return args.func(args)


def test_the_dataset_command_adds_lists_and_removes(registry, folder, capsys):
    assert _dataset_command(["add", "Mine", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out == (f"dataset Mine: {folder}, domains alpha, beta, gamma (test environments "
                   f"0..2), 2 classes; registered in {registry / 'datasets.json'}\n")
    assert _dataset_command(["list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"registry: {registry / 'datasets.json'}",
        f"Mine             {folder}  domains: alpha, beta, gamma; 2 classes"]
    assert _dataset_command(["remove", "Mine"]) == 0
    _dataset_command(["list"])
    assert "no own datasets" in capsys.readouterr().out


def _fresh_python(argv, cwd, **env):
    """``python argv`` in a new process, the plugin switched on unless ``env`` says."""
    env = {**{k: v for k, v in os.environ.items() if k != "HESSIAN_DG_DISABLE"},
           "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, *argv], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("disable, expected", [
    ("", "True 3 ['alpha', 'beta', 'gamma'] False"), ("1", "False")],
                         ids=["enabled", "HESSIAN_DG_DISABLE=1"])
def test_a_fresh_process_serves_own_datasets_unless_switched_off(registry, folder,
                                                                 disable, expected):
    """... and DomainBed's sweep module, imported, keeps its default list (DATASETS)."""
    own_datasets.add("Mine", folder)
    code = ("import domainbed.datasets as d\n"
            "if hasattr(d, 'Mine'):\n"
            "    import domainbed.scripts.sweep as s\n"
            "    print(True, d.num_environments('Mine'), d.Mine.ENVIRONMENTS, 'Mine' in "
            "s.DATASETS)\n"
            "else:\n"
            "    print('Mine' in d.DATASETS)")
    extra = {"HESSIAN_DG_DISABLE": disable} if disable else {}
    # PYTHONPATH: DomainBed importable without the plugin's finder
    result = _fresh_python(["-c", code], registry, PYTHONPATH=str(locate.locate().root),
                           **extra)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == expected


def test_domainbeds_sweep_keeps_its_default_datasets(registry, folder):
    """Run as a script, its default --datasets lack own datasets and --datasets Mine
    works (imported, see the test above)."""
    own_datasets.add("Mine", folder)
    common = ["-m", "domainbed.scripts.sweep", "delete_incomplete", "--algorithms", "ERM",
              "--n_hparams", "1", "--n_trials", "1", "--output_dir", str(registry / "out"),
              "--data_dir", str(registry), "--command_launcher", "local",
              "--single_test_envs", "--skip_confirmation"]
    defaults = _fresh_python(common, registry)
    assert defaults.returncode == 0, defaults.stderr[-2000:]
    assert "'PACS'" in defaults.stdout and "Mine" not in defaults.stdout
    named = _fresh_python(common + ["--datasets", "Mine", "PACS"], registry)
    assert named.returncode == 0, named.stderr[-2000:]
    jobs = [line for line in named.stdout.splitlines() if "'Mine'" in line]
    assert len(jobs) == 3, named.stdout  # one per test environment, then PACS's 4
    assert "7 jobs: 0 done, 0 incomplete, 7 not launched." in named.stdout

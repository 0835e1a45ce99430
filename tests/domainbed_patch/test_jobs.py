"""Expanding presets into DomainBed jobs: counts, protocol, states."""
import csv
import json
from pathlib import Path

import pytest

from domainbed_patch import jobs as sweep_jobs
from domainbed_patch import presets, protocol

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def paper_jobs(tmp_path_factory):
    preset = presets.load_preset("paper_domainbed", presets.parse_overrides([
        f'output_dir="{tmp_path_factory.mktemp("paper")}"']))
    return preset, sweep_jobs.make_jobs(preset)


def test_paper_job_count_follows_domainbeds_environments(paper_jobs):
    from domainbed import datasets
    preset, jobs = paper_jobs
    expected = sum(datasets.num_environments(d) for d in preset.datasets) * \
        len(preset.algorithms) * preset.n_hparams * preset.n_trials
    assert len(jobs) == expected
    assert len({j.output_dir for j in jobs}) == expected
    assert {j.train_args["algorithm"] for j in jobs} == {"ERM", "HGP", "Hutchinson"}
    assert all(len(j.train_args["test_envs"]) == 1 for j in jobs)
    assert all(j.state == sweep_jobs.NOT_LAUNCHED for j in jobs)


PAPER_RANGES = {"DomainNet": (4, 5)}


def test_every_paper_job_runs_the_paper_protocol(paper_jobs):
    _, jobs = paper_jobs
    for job in jobs:
        a = job.train_args
        fixed = json.loads(a["hparams"])
        assert fixed["resnet50_augmix"] is False, job.describe()
        assert fixed["freeze_bn"] is True, job.describe()
        if a["hparams_seed"] == 0:
            assert "batch_size" not in fixed
            continue
        low, high = PAPER_RANGES.get(a["dataset"], (4, 5.5))
        assert 2 ** low <= fixed["batch_size"] < 2 ** high, job.describe()


def test_job_hparams_are_what_train_will_use(paper_jobs):
    _, jobs = paper_jobs
    job = next(j for j in jobs if j.train_args["hparams_seed"] == 5
               and j.train_args["algorithm"] == "HGP")
    hparams = sweep_jobs.job_hparams(job)
    a = job.train_args
    assert hparams["resnet50_augmix"] is False and hparams["freeze_bn"] is True
    assert hparams["batch_size"] == protocol.paper_batch_size(a["dataset"], 5, a["trial_seed"])
    assert 1e-5 <= hparams["penalty_alpha"] <= 1e-3


AUTHORS_REGISTRY = Path(__file__).resolve().parents[1] / "fixtures" / \
    "authors_registry_paper_domainbed.csv"


def _authors_hparams():
    """(dataset, algorithm, hparams_seed, trial_seed) -> the fork's hparams (data read
    from the authors' registry; see the file's header)."""
    with open(AUTHORS_REGISTRY) as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        table = {}
        for row in rows:
            key = (row.pop("dataset"), row.pop("algorithm"), int(row.pop("hparams_seed")),
                   int(row.pop("trial_seed")))
            table[key] = {k: json.loads(v) for k, v in row.items() if v != "null"}
    return table


def test_paper_jobs_train_with_the_authors_hparams(paper_jobs):
    """Every job of paper_domainbed: the hparams DomainBed's train will use (registry
    with the plugin, then the paper protocol) equal the authors' fork's, value for
    value, for every hparam both registries know."""
    _, jobs = paper_jobs
    authors = _authors_hparams()
    assert len(authors) == 900
    compared, differences = set(), []
    for job in jobs:
        a = job.train_args
        key = (a["dataset"], a["algorithm"], a["hparams_seed"], a["trial_seed"])
        if key in compared:
            continue
        compared.add(key)
        ours = sweep_jobs.job_hparams(job)
        theirs = authors[key]
        shared = set(ours) & set(theirs)
        assert {"lr", "batch_size", "weight_decay", "resnet_dropout"} <= shared
        if a["algorithm"] != "ERM":
            assert {"penalty_alpha", "penalty_beta"} <= shared
        differences += [(key, k, ours[k], theirs[k]) for k in sorted(shared)
                        if ours[k] != theirs[k]]
    assert compared == set(authors)
    assert differences == []


def test_upstream_protocol_fixes_nothing(tmp_path):
    preset = presets.load_preset("paper_domainbed", presets.parse_overrides([
        'protocol="upstream"', f'output_dir="{tmp_path}"', 'datasets=["PACS"]',
        "n_hparams=2", "n_trials=1"]))
    jobs = sweep_jobs.make_jobs(preset)
    assert len(jobs) == 4 * 3 * 2
    assert all("hparams" not in j.train_args for j in jobs)



@pytest.mark.parametrize("protocol_name, shared", [("upstream", True), ("paper", False)])
def test_folders_are_domainbeds_own_only_under_the_upstream_protocol(protocol_name, shared,
                                                                      tmp_path):
    """DomainBed's sweep with the same arguments names the same folders under
    "upstream"; under "paper" each job's fixed hparams enter its hash, so none."""
    from domainbed.scripts import sweep as domainbed_sweep
    preset = presets.load_preset("paper_domainbed", presets.parse_overrides([
        f'protocol="{protocol_name}"', f'output_dir="{tmp_path}"', 'datasets=["PACS"]',
        "n_hparams=2", "n_trials=1"]))
    theirs = domainbed_sweep.make_args_list(
        n_trials=1, dataset_names=["PACS"], algorithms=list(preset.algorithms),
        n_hparams_from=preset.n_hparams_from, n_hparams=2, steps=preset.steps,
        data_dir=preset.data_dir and str(Path(preset.data_dir).resolve()),
        task=preset.task, holdout_fraction=preset.holdout_fraction,
        single_test_envs=preset.single_test_envs, hparams=None)
    theirs = {Path(domainbed_sweep.Job(a, str(tmp_path)).output_dir).name for a in theirs}
    ours = {job.output_dir.name for job in sweep_jobs.make_jobs(preset)}
    assert len(ours) == len(theirs) == 24
    assert (ours == theirs) if shared else not (ours & theirs)


def test_states_and_last_error_line(tmp_path):
    preset = presets.load_preset("smoke", presets.parse_overrides([f'output_dir="{tmp_path}"']))
    job = sweep_jobs.make_jobs(preset)[0]
    assert job.state == sweep_jobs.NOT_LAUNCHED
    job.output_dir.mkdir(parents=True)
    assert job.state == sweep_jobs.INCOMPLETE
    (job.output_dir / "err.txt").write_text("Traceback\n  ...\nValueError: boom\n\n")
    job.folder.failed_marker.write_text("ValueError: boom\n")
    assert job.state == sweep_jobs.FAILED and job.last_error_line() == "ValueError: boom"
    (job.output_dir / "done").write_text("done")
    assert job.state == sweep_jobs.DONE_NO_RESULTS
    job.folder.results.write_text('{"step": 0}\n')
    assert job.state == sweep_jobs.DONE
    assert job.command()[1:3] == ["-m", "domainbed_patch.job_runner"]
    assert "--output_dir" in job.command()

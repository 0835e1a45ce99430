"""What each selection method chose (``report.selection``), against DomainBed's own
``sweep_acc`` and collect_results."""
import json
import random
import re

import pytest

from domainbed_patch.report import selection
from domainbed_patch.report.records import load_sweep, selection_methods
from tests.domainbed_patch.report.smoke_sweep import SWEEP

pytestmark = pytest.mark.integration  # DomainBed's own model_selection and reporting
N_ENVS = 3


def _record(test_envs, hparams_seed, step, val, test, trial_seed=0):
    """A record of Debug28-like shape: every ``out`` accuracy is ``val``, the test
    environments' ``in`` accuracies are ``test``, the others ``val``."""
    test_env = test_envs[0]
    record = {"args": {"dataset": "Debug28", "algorithm": "ERM", "test_envs": list(test_envs),
                       "trial_seed": trial_seed, "hparams_seed": hparams_seed,
                       "seed": 7, "output_dir": f"/sweep/job-{test_envs}-{hparams_seed}"},
              "step": step, "hparams": {"lr": 10.0 ** -hparams_seed, "batch_size": 8}}
    for env in range(N_ENVS):
        record[f"env{env}_out_acc"] = val
        record[f"env{env}_in_acc"] = test if env == test_env else val
    return record


def _groups(records):
    from domainbed.lib import query, reporting
    return reporting.get_grouped_records(query.Q(records))


def _assert_same_choice_as_sweep_acc(records):
    """Every chosen record's own test accuracy (unique per record) is DomainBed's
    ``sweep_acc``: the extended method chose that very record."""
    checked = 0
    for method in selection_methods():
        for group in _groups(records):
            expected = method.sweep_acc(group["records"])
            choice = selection.choose(method, group)
            assert (choice is None) == (expected is None)
            if choice is None:
                continue
            assert choice.test_acc == expected
            assert selection.choosing(method).sweep_acc(group["records"]) == expected
            record = next(r for r in group["records"]
                          if r["args"]["output_dir"].endswith(choice.job)
                          and r["step"] == choice.step and len(r["args"]["test_envs"]) == 1)
            assert record[f"env{group['test_env']}_in_acc"] == expected
            assert choice.hparams == record["hparams"]
            checked += 1
    return checked


def test_a_tie_between_runs_goes_to_the_higher_hparams_seed_as_in_domainbed():
    records = [_record([0], seed, step, val=0.5, test=0.1 + seed / 10 + step / 100)
               for seed in range(3) for step in (0, 1)]
    (group,) = _groups(records)
    for method in selection_methods()[::2]:  # training-domain validation, oracle
        choice = selection.choose(method, group)
        assert choice.hparams_seed == 2
        assert choice.job == "job-[0]-2"
        assert choice.hparams == {"lr": 0.01, "batch_size": 8}
    iid, oracle = (selection.choose(m, group) for m in selection_methods()[::2])
    assert (iid.step, iid.test_acc) == (0, pytest.approx(0.3))  # first best step
    assert (oracle.step, oracle.test_acc) == (1, pytest.approx(0.31))  # last step
    assert _assert_same_choice_as_sweep_acc(records) == 2


def test_leave_one_out_ties_between_steps_go_to_the_first():
    # test env 0; validation jobs hold envs 1 and 2 out, with equal accuracy at both steps
    records = [_record([0], 1, step, val=0.5, test=0.2 + step / 10) for step in (0, 1)]
    records += [_record([0, held], 1, step, val=0.5, test=0.5)
                for held in (1, 2) for step in (0, 1)]
    group = next(g for g in _groups(records) if g["test_env"] == 0)
    choice = selection.choose(selection_methods()[1], group)
    assert (choice.selection, choice.step, choice.test_acc) == (
        "leave-one-domain-out", 0, pytest.approx(0.2))
    assert choice.job == "job-[0]-1"  # the job that held only the test env out
    assert _assert_same_choice_as_sweep_acc(records) >= 3


def test_many_ties_random_sweep_chooses_what_sweep_acc_chooses():
    """Validation accuracies from {0, 0.5, 1} (ties everywhere), test accuracies
    unique, with every job of a leave-one-out sweep over 3 environments."""
    rng = random.Random(0)
    test_values = iter(rng.sample(range(1, 10 ** 6), 2000))
    records = []
    for trial in range(2):
        for envs in ([0], [0, 1], [0, 2], [1], [1, 2], [2]):
            for seed in range(4):
                for step in range(3):
                    record = _record(envs, seed, step, val=0.5, test=0.5, trial_seed=trial)
                    for key in [k for k in record if k.endswith("_acc")]:
                        record[key] = rng.choice([0.0, 0.5, 1.0])
                    for env in envs:
                        record[f"env{env}_in_acc"] = next(test_values) / 10 ** 6
                    records.append(record)
    assert _assert_same_choice_as_sweep_acc(records) == 3 * 2 * 3


@pytest.fixture(scope="module")
def fixture_choices():
    sweep = load_sweep(SWEEP)
    return sweep, selection.choices(sweep.records)


def test_the_committed_sweeps_choices_are_sweep_accs_and_real_records(fixture_choices):
    sweep, found = fixture_choices
    # single test environments: no leave-one-out; 3 algorithms x 3 envs x 2 trials
    assert len(found) == 2 * 3 * 3 * 2
    assert _assert_same_choice_as_sweep_acc(list(sweep.records)) == len(found)
    for choice in found:
        lines = (SWEEP / choice.job / "results.jsonl").read_text().splitlines()
        record = next(r for r in map(json.loads, lines) if r["step"] == choice.step)
        assert record["args"]["hparams_seed"] == choice.hparams_seed
        assert record["args"]["trial_seed"] == choice.trial_seed
        assert record[f"env{choice.test_env}_in_acc"] == choice.test_acc
        assert record["hparams"] == choice.hparams


def test_hparams_follow_the_seeds_each_trial_draws_its_own(fixture_choices):
    """The recorded hparams are DomainBed's registry for seed_hash(hparams_seed,
    trial_seed) with the sweep's --hparams: one hparams_seed, two different draws.
    (ERM's: the fixture's HGP and Hutchinson draws predate this project's current
    ranges of their penalty hparams.)"""
    from domainbed_patch.protocol import resolve_hparams
    sweep, found = fixture_choices
    overrides = json.loads(sweep.records[0]["args"]["hparams"])
    for choice in [c for c in found if c.algorithm == "ERM"]:
        assert choice.hparams == pytest.approx(resolve_hparams(
            choice.algorithm, choice.dataset, choice.hparams_seed, choice.trial_seed,
            overrides=overrides))
    lrs = {c.trial_seed: c.hparams["lr"] for c in found
           if c.hparams_seed == 1 and c.algorithm == "ERM"}
    assert len(lrs) == 2 and lrs[0] != lrs[1]
    table = selection.choices_table(found)
    assert list(table.columns[:11]) == list(selection.SELECTED_COLUMNS)
    assert "hparam.lr" in table and "hparam.penalty_alpha" in table
    assert table["hparam.penalty_alpha"][table["algorithm"] == "ERM"].isna().all()


def test_per_domain_equals_collect_results_per_dataset_tables(fixture_choices):
    from domainbed_patch.report.records import collect_results_text
    sweep, found = fixture_choices
    text = collect_results_text(sweep.records)
    table = selection.per_domain_table(found)
    names = {m.name: label for label, m in zip(selection.SELECTION_LABELS.values(),
                                               selection_methods())}
    compared = 0
    for name, label in names.items():
        section = text.split(f"Dataset: Debug28, model selection method: {name}")
        if len(section) == 1:
            continue
        for algorithm in ("ERM", "HGP", "Hutchinson"):
            line = re.search(rf"^{algorithm} +(.*)$", section[1], re.M).group(1).strip()
            cells = re.findall(r"([\d.]+) \+/- ([\d.]+)|([\d.]+)$", line)
            rows = table[(table["selection"] == label) & (table["algorithm"] == algorithm)]
            if rows.empty:  # leave-one-out: DomainBed prints X, there is no choice
                assert set(line.split()) == {"X"}
                continue
            assert list(rows["environment"]) == ["0", "1", "2", "Avg"]
            for (mean, err, average), row in zip(cells, rows.itertuples()):
                if average:
                    assert f"{row.accuracy:.1f}" == average
                else:
                    assert (f"{row.accuracy:.1f}", f"{row.stderr:.1f}") == (mean, err)
                    assert row.trials == 2
                compared += 1
    assert compared == 2 * 3 * 4


def test_markdown_shows_seeds_varying_hparams_and_shared_ones(fixture_choices):
    _, found = fixture_choices
    text = selection.selected_markdown(found)
    assert selection.SEEDS_NOTE in text
    header = next(line for line in text.splitlines() if line.startswith("| Algorithm"))
    assert "| trial_seed | hparams_seed | Step |" in header and " lr " in header
    assert "Every row: batch_size=8," in text  # shared by every job
    first = found[0]
    assert (f"| {first.algorithm} | 0 | {first.trial_seed} | {first.hparams_seed} | "
            f"{first.step} | {100 * first.val_acc:.1f} | ") in text
    assert text.count("### Model selection:") == 2  # no leave-one-out result
    per_domain = selection.per_domain_markdown(selection.per_domain_table(found))
    assert "| Algorithm | 0 | 1 | 2 | Avg |" in per_domain

"""The protocol a sweep's records show, and the report's warnings about it."""
import pandas as pd
import pytest

from domainbed_patch import protocol
from domainbed_patch.report import protocols


def _seeds_where_ranges_differ(dataset):
    for h in range(1, 50):
        paper = protocol.drawn_batch_size(dataset, h, 0, protocol.PAPER_BATCH_EXPONENTS)
        upstream = protocol.drawn_batch_size(dataset, h, 0, protocol.UPSTREAM_BATCH_EXPONENTS)
        if paper != upstream:
            return h, paper, upstream
    raise AssertionError("no seed")


def record(hparams, dataset="PACS", hparams_seed=0, output_dir="job"):
    return {"args": {"dataset": dataset, "algorithm": "ERM", "test_envs": [0],
                     "hparams_seed": hparams_seed, "trial_seed": 0,
                     "output_dir": output_dir}, "hparams": hparams, "step": 0}


def test_record_settings():
    fork = protocols.record_settings(record({"resnet18": False}))  # no freeze_bn key
    assert fork == {"backbone": "torchvision ResNet-50", "BatchNorm": "frozen"}
    upstream = protocols.record_settings(record({"resnet50_augmix": True, "freeze_bn": False}))
    assert upstream == {"backbone": "timm AugMix ResNet-50", "BatchNorm": "trained"}
    assert protocols.record_settings(record({"freeze_bn": False}, dataset="Debug28")) == {}


@pytest.mark.parametrize("dataset", ["PACS", "DomainNet"])
def test_batch_size_range_is_read_from_the_draw(dataset):
    h, paper, upstream = _seeds_where_ranges_differ(dataset)
    args = record({}, dataset=dataset, hparams_seed=h)["args"]
    assert protocols.batch_size_range(args, {"batch_size": paper}) == "2^U(4, .)"
    assert protocols.batch_size_range(args, {"batch_size": upstream}) == "2^U(3, .)"
    assert protocols.batch_size_range(args, {"batch_size": 3}) == protocols.SET_BY_HAND
    assert protocols.batch_size_range(dict(args, hparams_seed=0), {"batch_size": 32}) is None


def _comparison(source, dataset="PACS"):
    return pd.DataFrame({"dataset": [dataset], "reference_source": [source]})


def test_a_table_mixing_frozen_and_trained_batchnorm_is_warned_about():
    records = [record({"freeze_bn": True}, output_dir="a"),
               record({"freeze_bn": True}, output_dir="a"),  # a second checkpoint
               record({"freeze_bn": False}, output_dir="b")]
    [line] = protocols.protocol_warnings(records, _comparison(""))
    assert line.startswith("PACS: the table mixes jobs trained with BatchNorm frozen "
                           "(1 jobs) and trained (1 jobs)")


def test_a_sweep_under_another_protocol_than_the_reference_rows_is_warned_about():
    h, paper, upstream = _seeds_where_ranges_differ("PACS")
    paper_job = record({"freeze_bn": True, "resnet50_augmix": False, "batch_size": paper},
                       hparams_seed=h)
    [line] = protocols.protocol_warnings([paper_job], _comparison("DomainBed 2020"))
    assert line == ("PACS: compared with DomainBed 2020 rows measured with random batch "
                    "sizes 2^U(3, .) (this sweep: 2^U(4, .) (1 jobs))")
    upstream_job = record({"freeze_bn": False, "resnet50_augmix": True,
                           "batch_size": upstream}, hparams_seed=h)
    [line] = protocols.protocol_warnings([upstream_job], _comparison("DomainBed 2020"))
    assert "backbone torchvision ResNet-50 (this sweep: timm AugMix ResNet-50" in line
    assert "BatchNorm frozen (this sweep: trained (1 jobs))" in line
    assert "random batch sizes" not in line  # the same range as the 2020 rows
    assert protocols.protocol_warnings([upstream_job], _comparison("mine.csv")) == []
    assert protocols.protocol_warnings([upstream_job], _comparison("DomainBed 2020",
                                                                   "VLCS")) == []


def test_the_settings_of_each_protocol_are_what_its_jobs_show():
    for name, settings in protocol.SETTINGS.items():
        h, _, _ = _seeds_where_ranges_differ("PACS")
        fixed = protocol.protocol_hparams(name, "PACS", "ERM", h, 0)
        hparams = {"freeze_bn": False, "resnet50_augmix": True,  # upstream's defaults
                   "batch_size": protocol.drawn_batch_size("PACS", h, 0), **fixed}
        assert protocols.record_settings(record(hparams, hparams_seed=h)) == settings

"""The paper's protocol: frozen BatchNorm, torchvision ResNet-50 and the fork's batch-size
ranges."""

import numpy as np
import pytest

from domainbed_patch import protocol
from domainbed_patch.hparams import seed_hash


@pytest.mark.parametrize("dataset, low, high", [
    ("PACS", 4, 5.5), ("TerraIncognita", 4, 5.5), ("DomainNet", 4, 5), ("Debug28", 4, 9),
])
def test_paper_batch_sizes_are_drawn_from_the_old_ranges(dataset, low, high):
    sizes = [protocol.paper_batch_size(dataset, h, t) for h in range(1, 40) for t in range(3)]
    assert min(sizes) >= 2 ** low and max(sizes) < 2 ** high
    assert len(set(sizes)) > 3


def test_batch_size_uses_train_py_seed_path():
    """DomainBed's train seeds random hparams with seed_hash(hparams_seed, trial_seed),
    then each hparam with seed_hash(that, name)."""
    rng = np.random.RandomState(seed_hash(seed_hash(7, 2), "batch_size"))
    u = rng.uniform(0, 1)
    assert protocol.paper_batch_size("VLCS", 7, 2) == int(2 ** (4 + 1.5 * u))


def test_protocol_hparams():
    assert protocol.protocol_hparams("upstream", "PACS", "HGP", 3, 0) == {}
    frozen = {"freeze_bn": True, "resnet50_augmix": False}
    for algorithm in ("ERM", "HGP", "Hutchinson", "ARM"):
        assert protocol.protocol_hparams("paper", "PACS", algorithm, 0, 0) == frozen
    assert protocol.protocol_hparams("paper", "Debug28", "ERM", 0, 0) == frozen
    fixed = protocol.protocol_hparams("paper", "PACS", "ERM", 3, 1)
    assert fixed == {**frozen, "batch_size": protocol.paper_batch_size("PACS", 3, 1)}
    assert "batch_size" not in protocol.protocol_hparams("paper", "PACS", "ARM", 3, 1)
    with pytest.raises(ValueError, match="unknown protocol 'v1'"):
        protocol.protocol_hparams("v1", "PACS", "ERM", 0, 0)


def test_describe_says_what_changes():
    text = protocol.describe("paper")
    assert "resnet50_augmix=false" in text and "2^U(4, 5.5) instead of 2^U(3, 5.5)" in text
    assert "freeze_bn=true (BatchNorm frozen" in text
    upstream = protocol.describe("upstream")
    assert "upstream" in upstream and "BatchNorm trained (freeze_bn=false)" in upstream


@pytest.mark.parametrize("dataset", ["PACS", "DomainNet", "Debug28"])
def test_drawn_batch_size_spans_both_registries(dataset):
    """The same uniform variate, two ranges: the fork's 2^U(4, .) and upstream's 2^U(3, .)."""
    for h, t in [(1, 0), (7, 2), (19, 1)]:
        u = np.random.RandomState(seed_hash(seed_hash(h, t), "batch_size")).uniform(0, 1)
        for exponents in (protocol.PAPER_BATCH_EXPONENTS, protocol.UPSTREAM_BATCH_EXPONENTS):
            low, high = exponents[protocol._dataset_kind(dataset)]
            assert protocol.drawn_batch_size(dataset, h, t, exponents) == \
                int(2 ** (low + (high - low) * u))

"""The paper's protocol: torchvision ResNet-50 and the batch-size ranges of the time."""

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
    assert protocol.protocol_hparams("paper", "PACS", "ERM", 0, 0) == {"resnet50_augmix": False}
    fixed = protocol.protocol_hparams("paper", "PACS", "ERM", 3, 1)
    assert fixed == {"resnet50_augmix": False,
                     "batch_size": protocol.paper_batch_size("PACS", 3, 1)}
    assert "batch_size" not in protocol.protocol_hparams("paper", "PACS", "ARM", 3, 1)
    with pytest.raises(ValueError, match="unknown protocol 'v1'"):
        protocol.protocol_hparams("v1", "PACS", "ERM", 0, 0)


def test_describe_says_what_changes():
    text = protocol.describe("paper")
    assert "resnet50_augmix=false" in text and "2^U(4, 5.5) instead of 2^U(3, 5.5)" in text
    assert "upstream" in protocol.describe("upstream")

"""Every preset shipped in sweeps/ is valid against DomainBed's own names."""
import pytest

from domainbed_patch import presets
from sweeps import preset_names


def test_the_documented_presets_ship():
    assert {"smoke", "paper_domainbed"} <= set(preset_names())


@pytest.mark.integration
@pytest.mark.parametrize("name", preset_names())
def test_shipped_preset_is_valid(name):
    from domainbed import algorithms, datasets

    from domainbed_patch import launchers
    preset = presets.load_preset(name, known_datasets=datasets.DATASETS,
                                 known_algorithms=algorithms.ALGORITHMS)
    assert preset.description
    launchers.get_launcher(preset.launcher["name"])

"""``accuracy.png`` and ``curves.png`` (``report.figures``)."""
import pytest

from tests.domainbed_patch.report.smoke_sweep import FIGURES, needs_domainbed

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@needs_domainbed
@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_readable_pngs(full_report, name):
    from matplotlib import image

    path = full_report[0] / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100

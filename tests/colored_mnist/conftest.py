"""Synthetic MNIST-format data for the Colored MNIST tests."""
import os

import numpy as np
import pytest

from colored_mnist import sources

#: Small synthetic files: the pool is all but the last VAL images.
N_IMAGES = 6000
VAL = 1000


def synthetic_arrays(n=N_IMAGES, seed=0):
    """Images (n, 28, 28) with every pixel in 1..255 (so a zeroed channel shows)
    and classes 0..9."""
    rng = np.random.RandomState(seed)
    images = rng.randint(1, 256, size=(n, 28, 28)).astype(np.uint8)
    classes = rng.randint(0, 10, size=n).astype(np.uint8)
    return images, classes


def write_folder(folder, images, classes, gzipped=True):
    os.makedirs(folder, exist_ok=True)
    suffix = ".gz" if gzipped else ""
    sources.write_idx(os.path.join(folder, sources.IMAGES + suffix), images)
    sources.write_idx(os.path.join(folder, sources.LABELS + suffix), classes)
    return str(folder)


@pytest.fixture(scope="session")
def idx_folder(tmp_path_factory):
    """A gzipped IDX folder of synthetic data: (folder, images, classes)."""
    images, classes = synthetic_arrays()
    folder = write_folder(tmp_path_factory.mktemp("idx") / "data", images, classes)
    return folder, images, classes.astype(np.int64)

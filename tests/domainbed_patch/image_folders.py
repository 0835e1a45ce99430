"""Small image folders written by the tests: real PNG files, laid out as DomainBed's
image datasets are (``root/<domain>/<class>/<image>``)."""
import io
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(seed: int, size: int = 8) -> bytes:
    """A tiny RGB PNG of seeded noise."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_folder(root, domains, classes, per_class: int = 3, seed: int = 0) -> Path:
    """``root/<domain>/<class>/<i>.png`` for every domain and class; ``classes`` is a
    list for all domains or a {domain: list} mapping."""
    root = Path(root)
    for d, domain in enumerate(domains):
        names = classes[domain] if isinstance(classes, dict) else classes
        for c, name in enumerate(names):
            folder = root / domain / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                (folder / f"{i}.png").write_bytes(png_bytes(seed + 1000 * d + 100 * c + i))
    return root


def fake_paper_dataset(data_dir, dataset, empty_files=False) -> Path:
    """The folders of ``dataset_layout.PAPER_LAYOUTS[dataset]`` under ``data_dir``, with
    one tiny PNG (or, ``empty_files``, one empty ``0.jpg``) per class."""
    from domainbed_patch.dataset_layout import PAPER_LAYOUTS
    from domainbed_patch.validation import DATASET_FOLDERS
    expected = PAPER_LAYOUTS[dataset]
    root = Path(data_dir) / DATASET_FOLDERS[dataset][0]
    classes = [f"class{i:03d}" for i in range(expected.n_classes)]
    if not empty_files:
        return write_image_folder(root, expected.domains, classes, per_class=1)
    for domain in expected.domains:
        for cls in classes:
            (root / domain / cls).mkdir(parents=True)
            (root / domain / cls / "0.jpg").touch()
    return root

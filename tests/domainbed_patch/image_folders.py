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

"""The images behind Colored MNIST: MNIST-format IDX files, from any folder.

Only the official *training* split is read (``train-images-idx3-ubyte`` and
``train-labels-idx1-ubyte``, gzipped or not), as in the authors' scripts, which
take its first 50,000 images for training and the last 10,000 as the test
environments; the official test split is never used.

Three sources (``--dataset``):

- ``mnist``: torchvision's MNIST under ``--data_dir`` (default ``~/datasets/mnist``,
  the scripts' root): the raw IDX files of ``<data_dir>/MNIST/raw`` are read
  directly when present, else torchvision downloads them first;
- ``fashion_mnist``: Fashion-MNIST's IDX files, by default from
  ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``);
- ``idx``: the IDX files of ``--data_dir``.

Classes are read as 0..9; the binary label is ``class < 5`` for all three (for
Fashion-MNIST: T-shirt, trouser, pullover, dress, coat against sandal, shirt,
sneaker, bag, ankle boot).

IDX format: a big-endian header ``0x00 0x00 <type> <ndim>`` (type 0x08 =
unsigned byte), then ``ndim`` big-endian uint32 sizes, then the data. Any file
that breaks it raises :class:`~colored_mnist.errors.DataError` with one line that
names the file and how to get a good one.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from typing import Optional, Tuple

import numpy as np

from colored_mnist.errors import DataError

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"
DATASETS = ("mnist", "fashion_mnist", "idx")
DEFAULT_DATA_DIRS = {"mnist": "~/datasets/mnist",
                     "fashion_mnist": "/usr/share/datasets/fashion-mnist"}
_UNSIGNED_BYTE = 0x08


def how_to_get(dataset: str, data_dir: str) -> str:
    """One sentence: where a good copy of ``dataset`` comes from."""
    if dataset == "fashion_mnist":
        return ("install it with: apt-get install dataset-fashion-mnist (files in "
                f"{DEFAULT_DATA_DIRS['fashion_mnist']}), or pass --data_dir to a folder "
                f"with {IMAGES}[.gz] and {LABELS}[.gz]")
    if dataset == "mnist":
        return ("download it with: python -c \"from torchvision.datasets import MNIST; "
                f"MNIST('{data_dir}', train=True, download=True)\" (delete a corrupt "
                "file first), or use --dataset idx --data_dir FOLDER")
    return f"--data_dir must hold MNIST-format IDX files {IMAGES}[.gz] and {LABELS}[.gz]"


def find_file(folder: str, stem: str) -> Optional[str]:
    """``folder/stem.gz`` or ``folder/stem``, whichever exists (gzipped first)."""
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file's name
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"corrupt gzip data ({error})") from None
    return raw


def parse_idx(raw: bytes, ndim: int) -> np.ndarray:
    """The unsigned-byte array of ``ndim`` dimensions held by IDX bytes ``raw``."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError("not an IDX file (bad magic number)")
    if raw[2] != _UNSIGNED_BYTE:
        raise ValueError(f"IDX data type 0x{raw[2]:02x}, expected unsigned byte 0x08")
    if raw[3] != ndim:
        raise ValueError(f"{raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError("truncated header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{len(raw)} bytes for shape {shape}, expected {expected} "
                         "(truncated or padded)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_idx(path: str, ndim: int) -> np.ndarray:
    """Read one IDX file (gzipped or not); ValueError with the reason if bad."""
    return parse_idx(_read_bytes(path), ndim)


def read_idx_folder(folder: str, dataset: str = "idx") -> Tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, H, W), classes int64 (N,))`` from a folder of IDX files."""
    folder = os.path.expanduser(folder)
    arrays = []
    for stem, ndim in ((IMAGES, 3), (LABELS, 1)):
        path = find_file(folder, stem)
        if path is None:
            raise DataError(f"{os.path.join(folder, stem)}[.gz] not found; "
                            f"{how_to_get(dataset, folder)}")
        try:
            arrays.append(read_idx(path, ndim))
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: {error}; {how_to_get(dataset, folder)}") from None
    images, classes = arrays
    labels_path = find_file(folder, LABELS)
    if len(classes) != len(images):
        raise DataError(f"{labels_path}: {len(classes)} labels for {len(images)} images; "
                        f"{how_to_get(dataset, folder)}")
    if classes.size and int(classes.max()) > 9:
        raise DataError(f"{labels_path}: class {int(classes.max())} outside 0..9; "
                        f"{how_to_get(dataset, folder)}")
    return images, classes.astype(np.int64)


def _mnist_raw_folder(data_dir: str) -> str:
    folder = os.path.join(os.path.expanduser(data_dir), "MNIST", "raw")
    if find_file(folder, IMAGES) and find_file(folder, LABELS):
        return folder
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        raise DataError(f"{os.path.join(folder, IMAGES)}[.gz] not found and torchvision "
                        f"is not installed to download it; {how_to_get('mnist', data_dir)}"
                        ) from None
    try:
        MNIST(os.path.expanduser(data_dir), train=True, download=True)
    except Exception as error:  # noqa: BLE001 - torchvision raises several kinds; one line
        reason = str(error).strip().splitlines()[0] if str(error).strip() else \
            type(error).__name__
        raise DataError(f"{os.path.join(folder, IMAGES)}[.gz] not found and the download "
                        f"failed ({reason}); {how_to_get('mnist', data_dir)}") from None
    return folder


def load(dataset: str, data_dir: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The official training split of ``dataset`` (one of :data:`DATASETS`).

    ``data_dir`` defaults to :data:`DEFAULT_DATA_DIRS`; ``idx`` needs one.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    if not data_dir:
        if dataset == "idx":
            raise DataError("--dataset idx needs --data_dir, a folder with "
                            f"{IMAGES}[.gz] and {LABELS}[.gz]")
        data_dir = DEFAULT_DATA_DIRS[dataset]
    if dataset == "mnist":
        return read_idx_folder(_mnist_raw_folder(data_dir), "mnist")
    return read_idx_folder(data_dir, dataset)


def fingerprint(images: np.ndarray, classes: np.ndarray) -> str:
    """``sha256:<hex>`` of the decoded images and classes (shapes and bytes).

    The data's identity in a saved restart: the same pixels and classes give the
    same fingerprint whether the files were gzipped or not.
    """
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(images, dtype=np.uint8),
                  np.ascontiguousarray(classes, dtype=np.int64)):
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def write_idx(path: str, array: np.ndarray, compress: Optional[bool] = None) -> None:
    """Write an unsigned-byte array as an IDX file (gzipped if ``path`` ends in .gz).

    For tests and for converting other data to the format.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UNSIGNED_BYTE, array.ndim]) + \
        np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + array.tobytes()
    if compress if compress is not None else path.endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=1)
    with open(path, "wb") as handle:
        handle.write(raw)

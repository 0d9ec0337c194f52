"""Data for training: MNIST from its original IDX gzip files, the built-in 8×8 digits, input
normalisation, a seeded train/validation split and shuffled minibatches.

Every way a file can be wrong (missing, not gzip, truncated, wrong magic number, counts that
disagree, labels outside 0..9) raises DataError naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..validate import positive_int

__all__ = ["Dataset", "load_mnist", "load_digits", "read_idx", "Standardizer", "split",
           "minibatches", "MNIST_ENV", "MNIST_FILES"]

MNIST_ENV = "MSGPASS_MNIST"   # a directory holding the four MNIST files
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
IDX_IMAGES, IDX_LABELS = 2051, 2049   # magic numbers: 0x0803 (ubyte, 3 dims), 0x0801 (1 dim)
IDX_KINDS = {IDX_IMAGES: "images", IDX_LABELS: "labels"}


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (N, D) float64 and integer labels ``y`` (N,) in 0..classes−1."""

    x: np.ndarray
    y: np.ndarray
    name: str
    classes: int = 10

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray, name: str | None = None) -> Dataset:
        return Dataset(self.x[index], self.y[index], name or self.name, self.classes)


GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path, magic: int) -> bytes:
    """The IDX bytes of ``path``: decompressed if it is gzip, as they are if it is a plain IDX
    file; anything else is a DataError saying what the file looks like."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    what = IDX_KINDS.get(magic, "data")
    expected = f"expected a gzip-compressed IDX {what} file (as MNIST is distributed)"
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a readable gzip file ({err}); the download may be "
                        f"corrupt or truncated") from None
    if int.from_bytes(raw[:4], "big") in IDX_KINDS:
        return raw                                     # a plain IDX file: read_idx checks it
    if not raw:
        raise DataError(f"{path}: an empty file, {expected}")
    start = raw[:512].lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        looks = "it looks like an HTML page (a download that saved an error or sign-in page?)"
    else:
        looks = f"it begins with {raw[:20]!r}"
    raise DataError(f"{path}: not a gzip IDX file: {looks}; {expected}")


def read_idx(path, magic: int) -> np.ndarray:
    """An IDX file (gzip or plain) of unsigned bytes: images (magic 2051, N × rows × cols) or
    labels (magic 2049, N). Checks the magic number and that the payload is exactly the size
    the header promises; gzip's CRC-32 catches a flipped bit in a compressed file (a plain
    file has no checksum). Anything else is a DataError naming the file and what is wrong."""
    path = Path(path)
    data = _read_bytes(path, magic)
    what = IDX_KINDS.get(magic, "data")
    ndim = 3 if magic == IDX_IMAGES else 1
    header = 4 * (1 + ndim)
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found is not None and found != magic:
        compressed = path.read_bytes()[:2] == GZIP_MAGIC
        if found in IDX_KINDS:
            kind = "an IDX" if compressed else "a plain (uncompressed) IDX"
            raise DataError(f"{path}: magic number {found}, expected {magic} for IDX {what}: "
                            f"this is {kind} {IDX_KINDS[found]} file")
        raise DataError(f"{path}: not an IDX file: its decompressed data begin with "
                        f"{data[:8]!r} (magic number {found}), expected magic number {magic} "
                        f"for IDX {what}")
    if len(data) < header:
        raise DataError(f"{path}: {len(data)} bytes, too short for an IDX {what} header "
                        f"({header} bytes)")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims))
    payload = len(data) - header
    if payload != expected:
        state = "truncated" if payload < expected else "longer than its header says"
        raise DataError(f"{path}: {state}: the header promises {' × '.join(map(str, dims))} = "
                        f"{expected:,} bytes of {what}, the file holds {payload:,}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def mnist_directory(path=None) -> Path:
    """The MNIST directory: ``path``, else $MSGPASS_MNIST; DataError if neither is given."""
    chosen = path if path is not None else os.environ.get(MNIST_ENV)
    if chosen is None:
        raise DataError(f"no MNIST directory given: pass one (--mnist DIR) or set {MNIST_ENV} "
                        f"to a directory holding {', '.join(MNIST_FILES['train'][:2])} and the "
                        f"t10k files")
    directory = Path(chosen)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (expected the four MNIST .gz files)")
    return directory


def load_mnist(split: str = "train", path=None) -> Dataset:
    """MNIST "train" (60,000) or "test" (10,000): pixels scaled to [0, 1] as (N, 784)."""
    if split not in MNIST_FILES:
        raise DataError(f"MNIST split must be 'train' or 'test', got {split!r}")
    directory = mnist_directory(path)
    image_file, label_file, count = MNIST_FILES[split]
    images = read_idx(directory / image_file, IDX_IMAGES)
    labels = read_idx(directory / label_file, IDX_LABELS)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{directory / image_file}: images are {images.shape[1]}×"
                        f"{images.shape[2]}, expected 28×28")
    if len(images) != len(labels):
        raise DataError(f"{directory}: {len(images):,} images but {len(labels):,} labels")
    if len(images) != count:
        raise DataError(f"{directory / image_file}: {len(images):,} images, expected {count:,} "
                        f"for MNIST {split}")
    _check_labels(labels, directory / label_file)
    return Dataset(images.reshape(len(images), -1).astype(np.float64) / 255.0,
                   labels.astype(np.int64), f"mnist-{split}")


def _check_labels(labels: np.ndarray, where) -> None:
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(f"{where}: label {int(labels[bad[0]])} at index {int(bad[0])}; labels "
                        f"must be 0..9 ({bad.size} outside)")


def load_digits() -> Dataset:
    """The 8×8 handwritten digits shipped with msgpass: 1,797 samples, pixels 0..16 as
    (N, 64) float64, labels 0..9."""
    raw = resources.files("msgpass.training").joinpath("digits.csv.gz").read_bytes()
    table = np.loadtxt(io.StringIO(gzip.decompress(raw).decode("ascii")), delimiter=",",
                       dtype=np.int64)
    if table.shape != (1797, 65):
        raise DataError(f"the built-in digits have shape {table.shape}, expected (1797, 65)")
    _check_labels(table[:, 64], "the built-in digits")
    return Dataset(table[:, :64].astype(np.float64), table[:, 64], "digits")


@dataclass(frozen=True)
class Standardizer:
    """Per-feature (x − mean) / (std + eps), fitted on the training split only.

    ``eps`` should be a small fraction of the features' range: a pixel that is nearly
    constant in training (an MNIST border pixel) would otherwise turn a rare non-zero value
    in validation into an enormous input. The CLI uses a tenth of a pixel's range."""

    mean: np.ndarray
    std: np.ndarray
    eps: float = 1e-7

    @classmethod
    def fit(cls, x: np.ndarray, eps: float = 1e-7) -> Standardizer:
        return cls(x.mean(axis=0), x.std(axis=0), eps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / (self.std + self.eps)


def split(data: Dataset, validation: float, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded random split into (train, validation), the validation part a fraction."""
    if not 0 < validation < 1:
        raise DataError(f"the validation fraction must be between 0 and 1, got {validation}")
    order = np.random.default_rng(seed).permutation(len(data))
    cut = len(data) - max(1, int(round(validation * len(data))))
    return (data.subset(order[:cut], f"{data.name}-train"),
            data.subset(order[cut:], f"{data.name}-validation"))


def minibatches(count: int, batch: int, rng: np.random.Generator, shuffle: bool = True,
                smallest: int = 1) -> Iterator[np.ndarray]:
    """Index arrays of one epoch: a fresh permutation (seeded by ``rng``), cut into batches;
    the last one may be smaller, but a last batch of fewer than ``smallest`` samples joins
    the one before (BatchNorm in training mode needs at least 2)."""
    positive_int(batch, "the batch size", DataError)
    order = rng.permutation(count) if shuffle else np.arange(count)
    starts = list(range(0, count, batch))
    if len(starts) > 1 and count - starts[-1] < smallest:
        starts.pop()
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else count
        yield order[start:stop]

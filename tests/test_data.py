"""Training data (msgpass.training.data): the built-in digits, MNIST and its IDX files with their
errors, the Standardizer, the seeded split and minibatches."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from msgpass.errors import DataError
from msgpass.training.data import (
    IDX_IMAGES,
    IDX_LABELS,
    Standardizer,
    load_digits,
    load_mnist,
    minibatches,
    read_idx,
    split,
)

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason=f"MNIST files not found in {MNIST}")


def idx_bytes(magic, dims, payload: bytes) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return head + payload


def write_gz(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


def test_digits_are_built_in():
    d = load_digits()
    assert d.x.shape == (1797, 64) and d.x.min() == 0 and d.x.max() == 16
    assert list(np.bincount(d.y)) == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@needs_mnist
def test_mnist_loads_with_the_published_counts():
    test = load_mnist("test", MNIST)
    assert test.x.shape == (10000, 784) and 0 <= test.x.min() and test.x.max() == 1.0
    assert list(np.bincount(test.y)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_idx_files_are_checked(tmp_path):
    good = idx_bytes(IDX_IMAGES, [2, 28, 28], bytes(2 * 784))
    np.testing.assert_array_equal(read_idx(write_gz(tmp_path / "ok.gz", good), IDX_IMAGES),
                                  np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"truncated: the header promises 2 × 28 × 28 = 1,568"):
        read_idx(write_gz(tmp_path / "short.gz", good[:-100]), IDX_IMAGES)
    with pytest.raises(DataError, match="magic number 2049, expected 2051.*labels file"):
        read_idx(write_gz(tmp_path / "labels.gz", idx_bytes(IDX_LABELS, [3], bytes(3))),
                 IDX_IMAGES)
    corrupt = gzip.compress(good)
    (tmp_path / "corrupt.gz").write_bytes(corrupt[:len(corrupt) // 2])
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx(tmp_path / "corrupt.gz", IDX_IMAGES)
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nothing.gz", IDX_IMAGES)


def test_mnist_directory_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("MSGPASS_MNIST", raising=False)
    with pytest.raises(DataError, match="no MNIST directory given.*MSGPASS_MNIST"):
        load_mnist("test")
    with pytest.raises(DataError, match="not a directory"):
        load_mnist("test", tmp_path / "missing")
    write_gz(tmp_path / "t10k-images-idx3-ubyte.gz",
             idx_bytes(IDX_IMAGES, [10000, 28, 28], bytes(10000 * 784)))
    labels = bytearray(10000)
    labels[42] = 11
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(IDX_LABELS, [10000],
                                                                bytes(labels)))
    with pytest.raises(DataError, match="label 11 at index 42; labels must be 0..9"):
        load_mnist("test", tmp_path)
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(IDX_LABELS, [9999],
                                                                bytes(9999)))
    with pytest.raises(DataError, match="10,000 images but 9,999 labels"):
        load_mnist("test", tmp_path)
    monkeypatch.setenv("MSGPASS_MNIST", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="elsewhere: not a directory"):
        load_mnist("test")


def test_standardizer_split_and_minibatches():
    d = load_digits()
    train_set, val = split(d, 0.2, seed=3)
    assert len(train_set) + len(val) == len(d) and len(val) == 359
    assert list(np.bincount(train_set.y) + np.bincount(val.y)) == list(np.bincount(d.y))
    again, _ = split(d, 0.2, seed=3)
    np.testing.assert_array_equal(again.y, train_set.y)       # seeded
    scale = Standardizer.fit(train_set.x)
    z = scale(train_set.x)
    live = train_set.x.std(axis=0) > 0.1     # where eps = 1e-7 is negligible
    np.testing.assert_allclose(z[:, live].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z[:, live].std(axis=0), 1, rtol=1e-6)
    assert np.all(np.isfinite(scale(val.x)))                    # constant pixels: eps, no NaN
    batches = list(minibatches(10, 4, np.random.default_rng(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches)) == list(range(10))


def test_a_file_that_is_not_gzip_says_what_it_looks_like_and_what_was_expected(tmp_path):
    """Issue 22: an HTML page saved under an MNIST name gave "magic number 1751477356"."""
    page = tmp_path / "train-images-idx3-ubyte.gz"
    page.write_bytes(b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: not a gzip IDX file: it "
                                        r"looks like an HTML page.*expected a gzip-compressed "
                                        r"IDX images file") as caught:
        read_idx(page, IDX_IMAGES)
    assert "magic number" not in str(caught.value)
    text = tmp_path / "notes.gz"
    text.write_bytes(b"hello, this is not MNIST\n")
    with pytest.raises(DataError, match=r"notes.gz: not a gzip IDX file: it begins with "
                                        r"b'hello, this is not M'.*expected a gzip-compressed IDX "
                                        r"labels file"):
        read_idx(text, IDX_LABELS)
    plain = tmp_path / "labels-plain.gz"                   # an uncompressed IDX labels file
    plain.write_bytes(idx_bytes(IDX_LABELS, [3], bytes(3)))
    with pytest.raises(DataError, match=r"labels-plain.gz: magic number 2049, expected 2051 for "
                                        r"IDX images: this is a plain \(uncompressed\) IDX "
                                        r"labels file"):
        read_idx(plain, IDX_IMAGES)
    np.testing.assert_array_equal(read_idx(plain, IDX_LABELS), np.zeros(3, np.uint8))
    zipped_page = write_gz(tmp_path / "page.gz", b"<html><body>moved</body></html>")
    with pytest.raises(DataError, match=r"page.gz: not an IDX file: its decompressed data begin "
                                        r"with b'<html><b' \(magic number \d+\), expected magic "
                                        r"number 2051 for IDX images"):
        read_idx(zipped_page, IDX_IMAGES)
    (tmp_path / "empty.gz").write_bytes(b"")
    with pytest.raises(DataError, match="empty.gz: an empty file, expected a gzip-compressed"):
        read_idx(tmp_path / "empty.gz", IDX_IMAGES)


@needs_mnist
def test_every_bit_flip_or_cut_of_a_gzip_idx_file_is_caught_or_harmless(tmp_path):
    """A flipped bit anywhere in a gzip IDX file either leaves the data unchanged (gzip's
    header has a timestamp and flags it never checks) or is a DataError naming the file: gzip's
    CRC-32 covers the payload. A cut at any length is a DataError."""
    source = tmp_path / "t10k-labels-idx1-ubyte.gz"
    source.write_bytes((MNIST / source.name).read_bytes())     # never touch the shared copy
    raw = source.read_bytes()
    good = read_idx(source, IDX_LABELS)
    rng = np.random.default_rng(22)
    header = raw.index(b"\0", 10) + 1 if raw[3] & 8 else 10   # fixed fields and file name
    payload_bits = rng.choice(np.arange(8 * header, 8 * len(raw)), 600, replace=False)
    target = tmp_path / "flipped.gz"
    for bit in [*range(8 * header), *payload_bits.tolist(), *range(8 * len(raw) - 64,
                                                                   8 * len(raw))]:
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(bytes(flipped))
        try:
            labels = read_idx(target, IDX_LABELS)
        except DataError as err:
            assert str(err).startswith(f"{target}: "), err
            continue
        assert bit < 8 * header, f"bit {bit} of the compressed data flipped, no error"
        assert np.array_equal(labels, good), f"bit {bit}: different labels, no error"
    for cut in sorted(rng.choice(len(raw), 40, replace=False).tolist()):
        target.write_bytes(raw[:cut])
        with pytest.raises(DataError, match="flipped.gz: "):
            read_idx(target, IDX_LABELS)

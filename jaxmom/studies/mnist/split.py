"""The validation split: the last training examples of a
:class:`~jaxmom.studies.mnist.data.Dataset` held out as its validation set, the same for every seed.

:func:`hold_out` is the split that --sweep and --search use by default (--validation), and the one
``experiments/tuning.py`` and ``experiments/pbt_benchmark.py`` use; :func:`validation_size` is its
size, and :class:`SplitError` the one-line error for a split the training set cannot give.
"""

from jaxmom.studies.mnist.data import DataError, Dataset

VALIDATION = 5000  # --validation's default: at most this, and at most a tenth of the training set


class SplitError(DataError):
    """A validation split that the training set cannot give (a command line's usage error)."""


def validation_size(n_train: int, n: int | None = None) -> int:
    """The validation set's size: ``n``, or by default ``min(5000, n_train // 10)`` (5,000 of
    MNIST's 60,000, 400 of the embedded 4,000). ``SplitError`` (one line) unless
    ``0 <= n < n_train``."""
    n = min(VALIDATION, n_train // 10) if n is None else n
    if not 0 <= n < n_train:
        raise SplitError(
            f"--validation {n}: the validation set must hold 0 to {n_train - 1} of the "
            f"{n_train} training examples"
        )
    return n


def hold_out(ds: Dataset, n: int | None = None) -> Dataset:
    """``ds`` with its LAST ``n`` training examples (:func:`validation_size`; 0: none, ``ds``
    itself) moved to ``val_images``/``val_labels``, the rest kept for training, in order, and a
    ``source`` that says so. The split is the same for every seed, and it is the one
    ``experiments/tuning.py`` and ``experiments/pbt_benchmark.py`` use."""
    n = validation_size(len(ds.train_labels), n)
    if n == 0:
        return ds
    k = len(ds.train_labels) - n
    return ds._replace(
        train_images=ds.train_images[:k],
        train_labels=ds.train_labels[:k],
        val_images=ds.train_images[k:],
        val_labels=ds.train_labels[k:],
        source=f"{ds.source} (last {n} training examples held out for validation)",
    )

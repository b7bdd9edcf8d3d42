"""Files written whole or not at all, and output folders checked before any work.

Every file the sweeps and the study write (JSON, CSV, PNG, NPZ, checkpoints) goes through
:func:`atomic_open`: the bytes go to a temporary file beside the target, which replaces the target
with ``os.replace`` only once it is complete. A kill, a full disk or an exception leaves the earlier
file as it was and no temporary file behind.

Every JSON file they write (a sweep's saved result, a checkpoint's header, the study's
results.json) is strict JSON (RFC 8259), which has no NaN or Infinity: :func:`json_text` writes a
float NaN, inf or -inf as ``null`` and runs ``json.dumps`` with ``allow_nan=False``, so any JSON
reader parses the file. Their readers take ``null`` where a number was meant as NaN
(:func:`nan_if_null`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


class OutputError(OSError):
    """A file or folder could not be written; the message is one line naming the path."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` written to a temporary file that replaces ``path`` on success.

    On any error (an ``OSError`` such as a full disk becomes :class:`OutputError`, one line naming
    ``path``) the temporary file is removed and ``path`` keeps its earlier content.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make every output private
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def _strict(obj, default):
    """``obj`` with every non-finite float as None and NumPy scalars and arrays as Python ones."""
    if isinstance(obj, float):  # np.float64 too
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, (np.generic, np.ndarray)):
        return _strict(obj.tolist(), default)
    if isinstance(obj, dict):
        return {k: _strict(v, default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v, default) for v in obj]
    if default is not None:
        return _strict(default(obj), default)
    return obj  # json.dumps says what it cannot write


def json_text(obj, *, indent: int | None = 1, default=None) -> str:
    """``obj`` as strict JSON text: NaN, inf and -inf (Python or NumPy floats, also inside NumPy
    arrays) are written as ``null``, NumPy scalars and arrays as numbers and lists, and
    ``json.dumps`` runs with ``allow_nan=False`` so that nothing else non-strict slips through.
    ``default`` converts any other object (as ``json.dumps``'s ``default``; its result is made
    strict too). A reader takes ``null`` where a number was meant as NaN (:func:`nan_if_null`)."""
    return json.dumps(_strict(obj, default), indent=indent, allow_nan=False)


def write_json(path, obj, *, indent: int | None = 1, default=None) -> None:
    """Write :func:`json_text` of ``obj`` (and a newline) to ``path`` atomically."""
    write_text(path, json_text(obj, indent=indent, default=default) + "\n")


def nan_if_null(value):
    """``value``, or NaN where it is None: a number that :func:`json_text` wrote as ``null``."""
    return math.nan if value is None else value


def check_writable(folder) -> Path:
    """Create ``folder`` if needed and prove it writable by writing and removing a probe file;
    raise :class:`OutputError` (one line naming the folder) before any training otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe.", delete=True) as f:
            f.write(b"x")
            f.flush()
    except OSError as e:
        raise OutputError(f"output folder {folder} is not writable: {e.strerror or e}") from None
    return folder

"""Files written whole or not at all, and output folders checked before any work.

Every file the sweeps and the study write (JSON, CSV, PNG, NPZ, checkpoints) goes through
:func:`atomic_open`: the bytes go to a temporary file beside the target, which replaces the target
with ``os.replace`` only once it is complete. A kill, a full disk or an exception leaves the earlier
file as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


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

"""A sweep's checkpoint: its state and results so far, whole or not at all, checked on load.

A checkpoint in ``folder`` is two files. ``<stem>.json``, the header: a JSON object (strict JSON,
NaN written as ``null``) that says what the run is and where it stands, and names the state file
with its sha256. ``<stem>.<chunk>.<epoch>.npz``, the state file (NumPy's ``.npz``, read without
pickle): arrays ``state/<i>``, the leaves of the state in ``jax.tree.leaves`` order, one row per
cell, and any other named arrays (results so far). Each file is written whole by
:mod:`jaxmom.sweep._files`; the state file first, under a new name, then the header that names it,
then the older state files are removed, so a kill at any moment leaves a header whose state file
exists and matches its hash.

The header's fields (:data:`FIELDS`), each checked on read, where a header written or edited by
hand is refused in one line naming the file and the field: ``chunk`` and ``epoch`` (non-negative
integers: the chunk being trained and the epochs it finished; with the run's ``chunks=`` and
``epochs=``, ``chunk < chunks`` and ``epoch <= epochs``), ``chunk_size`` and ``devices``
(positive integers), ``seconds`` (an object of numbers ``compile``, ``train`` and ``eval``; ``null``
reads as NaN), ``file`` (exactly ``<stem>.<chunk>.<epoch>.npz``) and ``sha256`` (64 hex digits).

The folder cleans up after itself: opening a checkpoint and every save remove this stem's
temporary files (``.<stem>...tmp``, left by a kill during a write) and its state files that the
header does not name (superseded ones, and one whose header a kill kept from being written); never
another stem's files, and never the file the header names until a new header is in place.
"""

from __future__ import annotations

import hashlib
import io
import json
import numbers
import os
import re
from typing import Any

import jax
import numpy as np

from jaxmom.sweep import _files

# field: (what it holds, its check)
FIELDS = {
    "chunk": "a non-negative integer",
    "epoch": "a non-negative integer",
    "chunk_size": "a positive integer",
    "devices": "a positive integer",
    "seconds": "an object of numbers 'compile', 'train' and 'eval'",
    "file": "the state file's name",
    "sha256": "64 hex digits",
}
SECONDS = ("compile", "train", "eval")


def _is_int(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def check_header(
    path, header, stem: str, *, chunks: int | None = None, epochs: int | None = None
) -> dict:
    """``header`` (read from ``path``) with its fields checked (see the module's docstring) and
    ``seconds`` as floats (``null``: NaN); else a one-line ``ValueError`` naming ``path`` and the
    field. ``chunks`` and ``epochs``, where given, bound ``chunk`` and ``epoch``."""

    def refuse(field: str, got) -> ValueError:
        return ValueError(
            f"checkpoint {path}: field {field!r} must be {FIELDS[field]}, got {got!r}"[:300]
        )

    if not isinstance(header, dict):
        raise ValueError(
            f"checkpoint {path} is not a checkpoint header: a JSON object was expected, "
            f"got {type(header).__name__}"
        )
    missing = [f for f in FIELDS if f not in header]
    if missing:
        raise ValueError(f"checkpoint {path}: field {missing[0]!r} is missing")
    for field, low in (("chunk", 0), ("epoch", 0), ("chunk_size", 1), ("devices", 1)):
        if not _is_int(header[field], low):
            raise refuse(field, header[field])
    seconds = header["seconds"]
    if not isinstance(seconds, dict) or not all(
        k in seconds
        and (seconds[k] is None or isinstance(seconds[k], numbers.Real))
        and not isinstance(seconds[k], bool)
        for k in SECONDS
    ):
        raise refuse("seconds", seconds)
    sha = header["sha256"]
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise refuse("sha256", sha)
    chunk, epoch = header["chunk"], header["epoch"]
    if chunks is not None and chunk >= chunks:
        raise ValueError(
            f"checkpoint {path}: field 'chunk' is {chunk}, beyond the run's {chunks} chunks"
        )
    if epochs is not None and epoch > epochs:
        raise ValueError(
            f"checkpoint {path}: field 'epoch' is {epoch}, beyond the run's {epochs} epochs"
        )
    name = f"{stem}.{chunk}.{epoch}.npz"
    if header["file"] != name:
        raise ValueError(
            f"checkpoint {path}: field 'file' must be {name!r} (its chunk and epoch), "
            f"got {header['file']!r}"[:300]
        )
    seconds = {**seconds, **{k: float(_files.nan_if_null(seconds[k])) for k in SECONDS}}
    return {**header, "seconds": seconds}


class Checkpoint:
    """The checkpoint ``<stem>.json`` in ``folder`` (created and checked writable; ``""`` is
    refused: it would silently mean the current folder). Opening it removes this stem's
    temporary and superseded files (see the module's docstring)."""

    def __init__(self, folder, stem: str):
        if isinstance(folder, (str, bytes)) and not folder:
            raise ValueError(
                "checkpoint_dir is '', which names no folder: give one ('.' for the current one)"
            )
        self.folder = _files.check_writable(folder)
        self.stem = stem
        self.header = self.folder / f"{stem}.json"
        self._state = re.compile(re.escape(stem) + r"\.\d+\.\d+\.npz")
        self._tmp = re.compile(
            r"\." + re.escape(stem) + r"(?:\.json|\.\d+\.\d+\.npz)\.[A-Za-z0-9_]+\.tmp"
        )
        try:
            keep = (self.read_header() or {}).get("file")
            self._clean(keep, states=True)
        except ValueError:  # a header refused on load: its files stay for a look by hand
            self._clean(None, states=False)

    def _clean(self, keep: str | None, *, states: bool) -> None:
        """Remove this stem's temporary files and (with ``states``) its state files but ``keep``."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            dead = self._tmp.fullmatch(name) or (
                states and name != keep and self._state.fullmatch(name)
            )
            if dead:
                try:
                    (self.folder / name).unlink(missing_ok=True)
                except OSError:
                    pass

    def read_header(self, *, chunks: int | None = None, epochs: int | None = None) -> dict | None:
        """The header, checked (see :func:`check_header`; ``chunks`` and ``epochs``, the run's
        sizes, bound its ``chunk`` and ``epoch``), or None when there is none; an unreadable or
        malformed one is refused in one line naming the file and the field."""
        if not self.header.exists():
            return None
        try:
            header = json.loads(self.header.read_text())
        except (OSError, ValueError, RecursionError) as e:
            why = str(e) if not isinstance(e, RecursionError) else "nested too deeply"
            raise ValueError(f"checkpoint {self.header} cannot be read: {why}"[:300]) from None
        return check_header(self.header, header, self.stem, chunks=chunks, epochs=epochs)

    def load(
        self, state_template, *, chunks: int | None = None, epochs: int | None = None
    ) -> tuple[dict, Any, dict[str, np.ndarray]] | None:
        """(header, state, other arrays) or None when there is no checkpoint. The state takes the
        tree structure, shapes and dtypes of ``state_template``. A header that is malformed (or,
        given the run's ``chunks`` and ``epochs``, out of range), a state file that is missing,
        whose sha256 differs from the header's, or that holds another state, is refused in one
        line naming the file."""
        header = self.read_header(chunks=chunks, epochs=epochs)
        if header is None:
            return None
        path = self.folder / header["file"]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ValueError(f"checkpoint {path} cannot be read: {e.strerror or e}") from None
        if hashlib.sha256(data).hexdigest() != header["sha256"]:
            raise ValueError(f"checkpoint {path} does not match its sha256 in {self.header.name}")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        state = []
        for i, t in enumerate(jax.tree.leaves(state_template)):
            x = arrays.pop(f"state/{i}", None)
            if x is None or x.shape != t.shape or x.dtype.itemsize != np.dtype(t.dtype).itemsize:
                raise ValueError(f"checkpoint {path} holds another state (leaf {i})")
            state.append(x.view(t.dtype) if x.dtype != t.dtype else x)  # e.g. bfloat16, saved as V2
        return header, jax.tree.unflatten(jax.tree.structure(state_template), state), arrays

    def save(self, header: dict, state, arrays: dict[str, np.ndarray]) -> None:
        """Write the state file, then the header that names it, then drop the older state files
        and any temporary files of this stem; ``header`` needs the fields of :data:`FIELDS` but
        ``file`` and ``sha256`` (``chunk`` and ``epoch`` name the state file)."""
        out: dict[str, Any] = {
            f"state/{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))
        }
        buffer = io.BytesIO()
        np.savez(buffer, **out, **arrays)  # pyright: ignore[reportArgumentType]
        data = buffer.getvalue()
        name = f"{self.stem}.{header['chunk']}.{header['epoch']}.npz"
        header = {**header, "file": name, "sha256": hashlib.sha256(data).hexdigest()}
        check_header(self.header, json.loads(_files.json_text(header)), self.stem)  # as read
        _files.write_bytes(self.folder / name, data)
        _files.write_json(self.header, header)  # strict JSON: NaN and inf as null
        self._clean(name, states=True)

    def state_file(self) -> str:
        return str(self.folder / str((self.read_header() or {}).get("file")))


def refuse_nonfinite(path: str, state, ok: np.ndarray) -> None:
    """Refuse (one line naming ``path``) a state with NaN or inf in a row (cell) where ``ok``."""
    for x in jax.tree.leaves(state):
        x = np.asarray(x)
        if np.issubdtype(x.dtype, np.inexact):
            bad = ~np.isfinite(x.reshape(len(x), -1)).all(-1)
            if (bad & ok).any():
                raise ValueError(
                    f"checkpoint {path} holds NaN or inf parameters in a cell that had not diverged"
                )

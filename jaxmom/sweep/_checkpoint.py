"""A sweep's checkpoint: its state and results so far, whole or not at all, checked on load.

A checkpoint in ``folder`` is two files. ``<stem>.json``, the header: a JSON object that says what
the run is and where it stands, and names the state file with its sha256. ``<stem>.<chunk>.<epoch>.npz``,
the state file (NumPy's ``.npz``, read without pickle): arrays ``state/<i>``, the leaves of the
state in ``jax.tree.leaves`` order, one row per cell, and any other named arrays (results so far).
Each file is written whole by :mod:`jaxmom.sweep._files`; the state file first, under a new name,
then the header that names it, then the older state file is removed, so a kill at any moment
leaves a header whose state file exists and matches its hash.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import jax
import numpy as np

from jaxmom.sweep import _files


class Checkpoint:
    """The checkpoint ``<stem>.json`` in ``folder`` (created and checked writable)."""

    def __init__(self, folder, stem: str):
        self.folder = _files.check_writable(folder)
        self.stem = stem
        self.header = self.folder / f"{stem}.json"

    def read_header(self) -> dict | None:
        """The header, or None when there is none; an unreadable one is refused in one line."""
        if not self.header.exists():
            return None
        try:
            return json.loads(self.header.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"checkpoint {self.header} cannot be read: {e}") from None

    def load(self, state_template) -> tuple[dict, Any, dict[str, np.ndarray]] | None:
        """(header, state, other arrays) or None when there is no checkpoint. The state takes the
        tree structure, shapes and dtypes of ``state_template``. A state file that is missing,
        whose sha256 differs from the header's, or that holds another state, is refused in one
        line naming the file."""
        header = self.read_header()
        if header is None:
            return None
        path = self.folder / str(header.get("file"))
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ValueError(f"checkpoint {path} cannot be read: {e.strerror or e}") from None
        if hashlib.sha256(data).hexdigest() != header.get("sha256"):
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
        """Write the state file, then the header that names it, then drop the older state file;
        ``header`` needs ``chunk`` and ``epoch``, which name the state file."""
        old = (self.read_header() or {}).get("file")
        out: dict[str, Any] = {
            f"state/{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))
        }
        buffer = io.BytesIO()
        np.savez(buffer, **out, **arrays)  # pyright: ignore[reportArgumentType]
        data = buffer.getvalue()
        name = f"{self.stem}.{header['chunk']}.{header['epoch']}.npz"
        _files.write_bytes(self.folder / name, data)
        header = {**header, "file": name, "sha256": hashlib.sha256(data).hexdigest()}
        _files.write_json(self.header, header)  # strict JSON: NaN and inf as null
        if old and old != name:
            (self.folder / old).unlink(missing_ok=True)

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

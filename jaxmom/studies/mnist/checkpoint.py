"""Checkpoints of a run: one file per distinct run, written atomically, restored into templates.

Every checkpoint records :data:`FORMAT`, the version of the parameters' layout, in its file and in
the fingerprint that names it; a checkpoint of another format is refused with a one-line error
rather than restored wrongly (Flax restores arrays by name, whatever their shape).
"""

import dataclasses
import hashlib
import json
from pathlib import Path

import flax.serialization
import jax
import numpy as np

from jaxmom.studies.mnist.config import Config
from jaxmom.sweep._files import write_bytes

# 1: kernels (in, out) as flax.linen.Dense; 2: kernels (out, in) as torch.nn.Linear.
FORMAT = 2


def checkpoint_path(checkpoint_dir, config: Config, data_source: str) -> Path:
    """One file per distinct run: a readable name plus a hash of everything that shapes the run."""
    fingerprint = json.dumps(
        [dataclasses.asdict(config), config.full_hparams(), data_source, {"format": FORMAT}],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    name = "".join(
        c if c.isalnum() or c in "-_." else "_" for c in (config.label or config.optimizer)
    )
    return Path(checkpoint_dir) / f"{name}-{digest}.msgpack"


def save_checkpoint(path: Path, state: dict) -> None:
    """flax.serialization msgpack, written atomically (:func:`jaxmom.sweep._files.write_bytes`): a
    kill or a full disk never leaves a half-written checkpoint or a temporary file, and a failed
    write is one line naming the file."""
    write_bytes(path, flax.serialization.to_bytes({**state, "format": FORMAT}))


def load_checkpoint(path: Path, params, opt_state) -> dict | None:
    """The saved state, with params and opt_state restored into the given templates; None if absent."""
    if not path.is_file():
        return None
    try:
        raw: dict = dict(flax.serialization.msgpack_restore(path.read_bytes()))  # type: ignore[arg-type]
    except Exception as e:
        raise ValueError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    found = int(raw.get("format", 1))
    if found != FORMAT:
        raise ValueError(
            f"{path}: checkpoint format {found}, but this version reads format {FORMAT} "
            "((out, in) kernels); delete the file or use another --checkpoint-dir"
        )
    try:
        raw["params"] = flax.serialization.from_state_dict(params, raw["params"])
        raw["opt_state"] = flax.serialization.from_state_dict(opt_state, raw["opt_state"])
        for want, got in zip(
            jax.tree.leaves((params, opt_state)), jax.tree.leaves((raw["params"], raw["opt_state"]))
        ):
            if np.shape(want) != np.shape(got):
                raise ValueError(f"an array of shape {np.shape(got)} where {np.shape(want)} fits")
    except Exception as e:
        raise ValueError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    return raw

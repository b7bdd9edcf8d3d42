"""Checkpoints of a run: one file per distinct run, written atomically, restored into templates."""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import flax.serialization

from jaxmom.studies.mnist.config import Config


def checkpoint_path(checkpoint_dir, config: Config, data_source: str) -> Path:
    """One file per distinct run: a readable name plus a hash of everything that shapes the run."""
    fingerprint = json.dumps(
        [dataclasses.asdict(config), config.full_hparams(), data_source],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    name = "".join(
        c if c.isalnum() or c in "-_." else "_" for c in (config.label or config.optimizer)
    )
    return Path(checkpoint_dir) / f"{name}-{digest}.msgpack"


def save_checkpoint(path: Path, state: dict) -> None:
    """flax.serialization msgpack, written to a temporary file and renamed: a kill never leaves a
    half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(flax.serialization.to_bytes(state))
    os.replace(tmp, path)


def load_checkpoint(path: Path, params, opt_state) -> dict | None:
    """The saved state, with params and opt_state restored into the given templates; None if absent."""
    if not path.is_file():
        return None
    try:
        raw: dict = dict(flax.serialization.msgpack_restore(path.read_bytes()))  # type: ignore[arg-type]
        raw["params"] = flax.serialization.from_state_dict(params, raw["params"])
        raw["opt_state"] = flax.serialization.from_state_dict(opt_state, raw["opt_state"])
    except Exception as e:
        raise ValueError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    return raw

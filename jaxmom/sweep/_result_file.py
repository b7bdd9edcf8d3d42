"""The file format of a saved :class:`~jaxmom.sweep.SweepResult`: :func:`save` and :func:`load`
(see :func:`load` for the format). No pickle anywhere; a file that is not one is refused in one line
before anything is allocated."""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxmom.sweep._files import atomic_open, json_text, nan_if_null
from jaxmom.sweep._grid import Grid
from jaxmom.sweep._result import SweepResult, _leaf_name

FORMAT, VERSION = "jaxmom.SweepResult", 1


def _encode(node, leaves: list) -> object:
    """The pytree's structure as JSON, its arrays appended to ``leaves``. Dicts (string keys),
    lists, tuples and None keep their type; another container (a NamedTuple, a dataclass) becomes
    a dict of its leaves by their path names."""
    if isinstance(node, dict) and all(isinstance(k, str) for k in node):
        return {"dict": [[k, _encode(v, leaves)] for k, v in node.items()]}
    if type(node) in (list, tuple):
        return {type(node).__name__: [_encode(v, leaves) for v in node]}
    if node is None:
        return None
    if isinstance(node, (np.ndarray, np.generic, jax.Array, float, int, bool)):
        leaves.append(np.asarray(node))
        return {"leaf": len(leaves) - 1}
    named = jax.tree_util.tree_leaves_with_path(node)
    return {"dict": [[_leaf_name(p), _encode(np.asarray(x), leaves)] for p, x in named]}


# A saved pytree nests at most this deep (deeper is refused in one line, never a RecursionError).
MAX_DEPTH = 100


def _decode(node, leaves: list, field: str = "metrics", depth: int = 0):
    """The pytree that :func:`_encode` wrote as ``node``, its leaves taken from ``leaves``; a node
    that :func:`_encode` never writes is a one-line ``ValueError`` naming ``result.json``'s
    ``field``."""

    def bad(why: str) -> ValueError:
        return ValueError(f"result.json field {field!r} {why}")

    if node is None:
        return None
    if depth > MAX_DEPTH:
        raise bad(f"nests deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict) or len(node) != 1:
        raise bad(f"holds {type(node).__name__} {str(node)[:60]}, not a pytree node")
    ((kind, value),) = node.items()
    if kind == "leaf":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(leaves):
            raise bad(f"names leaf {value!r}, not one of the file's {len(leaves)} arrays")
        return leaves[value]
    if kind == "dict":
        pairs = value if isinstance(value, list) else None
        if pairs is None or not all(
            isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) for kv in pairs
        ):
            raise bad("holds a dict that is not a list of [name, node] pairs")
        return {k: _decode(v, leaves, field, depth + 1) for k, v in pairs}
    if kind in ("list", "tuple") and isinstance(value, list):
        items = [_decode(v, leaves, field, depth + 1) for v in value]
        return tuple(items) if kind == "tuple" else items
    raise bad(f"holds a node of kind {kind!r}, not leaf, dict, list or tuple")


def save(res: SweepResult, path) -> None:
    import zipfile

    leaves: list = []
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "grid": [{"name": a.name, "columns": list(a.columns)} for a in res.grid.axes],
        "metrics": _encode(res.metrics, leaves),
        "history": res.history,
        "divergence_factor": res.divergence_factor,
        "compile_seconds": res.compile_seconds,
        "train_seconds": res.train_seconds,
        "eval_seconds": res.eval_seconds,
        "devices": [str(d) for d in res.devices],
        "info": res.info,
    }
    arrays = {f"metrics/{i}": x for i, x in enumerate(leaves)}
    for field in ("params", "model_state"):
        if getattr(res, field) is not None:
            tree: list = []
            meta[field] = _encode(getattr(res, field), tree)
            arrays.update({f"{field}/{i}": x for i, x in enumerate(tree)})
    for i, axis in enumerate(res.grid.axes):
        arrays.update({f"grid/{i}/{j}": c for j, c in enumerate(axis.columns.values())})
    arrays.update(diverged=res.diverged, diverged_step=res.diverged_step)
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w") as z:
        z.writestr("result.json", json_text(meta))  # strict: NaN and inf as null
        for name, x in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(x), allow_pickle=False)


# The archive's members may decompress to at most MAX_RATIO times their compressed size, plus
# SLACK bytes (save stores them uncompressed, ratio 1): a zip bomb is refused before it is read.
MAX_RATIO = 100
SLACK = 1 << 20


def _check_archive(z, size: int | None) -> None:
    """Refuse an archive whose members claim more bytes than it can hold (before reading any)."""
    members = z.infolist()
    packed = sum(m.compress_size for m in members)
    unpacked = sum(m.file_size for m in members)
    if size is not None and packed > size:
        raise ValueError(f"its members claim {packed} compressed bytes in a {size}-byte file")
    if unpacked > MAX_RATIO * packed + SLACK:
        raise ValueError(
            f"its members would decompress to {unpacked} bytes from {packed} (more than "
            f"{MAX_RATIO} times, a zip bomb)"
        )


def _read_array(z, name: str) -> np.ndarray:
    """The ``.npy`` member ``name``, its declared shape and dtype checked against the bytes it
    holds before anything is allocated."""
    import math

    info = z.getinfo(f"{name}.npy")  # KeyError: missing
    with z.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"{name}.npy has npy format version {version}, not 1.0 or 2.0")
        if dtype.hasobject:
            raise ValueError(f"{name}.npy holds Python objects")
        declared = math.prod(shape) * dtype.itemsize
        held = info.file_size - member.tell()
    if any(d < 0 for d in shape) or declared != held:
        raise ValueError(
            f"{name}.npy declares shape {shape} of {dtype} ({declared} bytes) but holds {held}"
        )
    with z.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _check_meta(meta) -> None:
    """Refuse, naming the field, a ``result.json`` whose fields are not what :func:`_save` writes
    (the pytrees ``metrics``, ``params`` and ``model_state`` are checked as they are decoded)."""
    if not isinstance(meta, dict):
        raise ValueError(f"result.json holds a {type(meta).__name__}, not a JSON object")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = f"{str(meta.get('format'))[:60]} version {str(meta.get('version'))[:20]}"
        raise ValueError(f"holds {found}, not {FORMAT} version {VERSION}")
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    strings = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)
    axis = lambda a: (
        isinstance(a, dict) and isinstance(a.get("name"), str) and strings(a.get("columns"))
    )
    checks = {
        "grid": (lambda v: isinstance(v, list) and v and all(map(axis, v)), "a list of axes"),
        "history": (lambda v: isinstance(v, str), "a string"),
        "divergence_factor": (lambda v: v is None or number(v), "a number or null"),
        "compile_seconds": (lambda v: v is None or number(v), "a number or null"),
        "train_seconds": (lambda v: v is None or number(v), "a number or null"),
        "eval_seconds": (lambda v: v is None or number(v), "a number or null"),
        "devices": (strings, "a list of strings"),
    }
    for field, (ok, what) in checks.items():
        if field not in meta:
            raise ValueError(f"result.json field {field!r} is missing")
        if not ok(meta[field]):
            raise ValueError(f"result.json field {field!r} is not {what}")
    if "metrics" not in meta:
        raise ValueError("result.json field 'metrics' is missing")
    if not isinstance(meta.get("info", {}), dict):
        raise ValueError("result.json field 'info' is not an object")


def _check_grid(grid: Grid) -> None:
    for i, a in enumerate(grid.axes):
        cols = list(a.columns.values())
        if any(c.ndim != 1 or c.dtype.kind not in "biuf" for c in cols):
            raise ValueError(f"grid axis {i} ({a.name!r}) holds a column that is not 1-D numbers")
        if len({len(c) for c in cols}) != 1 or not len(cols[0]):
            raise ValueError(f"grid axis {i} ({a.name!r}) has columns of unequal or no length")


def load(path, cls=SweepResult) -> SweepResult:
    """Read a :class:`SweepResult` written by :meth:`SweepResult.save`.

    The file is a zip archive that ``numpy.load`` also reads as an ``.npz`` (no pickle
    anywhere): ``result.json`` holds the format name and version, the grid's axes (names and
    hyperparameter names), the metrics' pytree structure (dicts, lists, tuples; leaves by number),
    ``history``, ``divergence_factor``, the timings, the devices (as strings), ``info`` and, where
    there are params (and a model state), their structure; the arrays are ``metrics/<n>.npy``,
    ``params/<n>.npy``, ``model_state/<n>.npy``,
    ``grid/<axis>/<column>.npy`` (exact values and dtypes), ``diverged.npy`` and
    ``diverged_step.npy``. ``result.json`` is strict JSON: a number written as ``null`` (NaN or
    inf) reads as NaN where a number is meant (the timings), as None in ``info``.

    Anything else is refused with a one-line ``ValueError`` naming the file (and the field or
    member) before anything is allocated: a ``result.json`` that is not the object ``save`` writes
    (a field missing or of another type, a pytree nested deeper than :data:`MAX_DEPTH`), an
    ``.npy`` member whose declared shape and dtype do not match the bytes it holds, and an archive
    whose members would decompress to more than :data:`MAX_RATIO` times their compressed size
    (plus :data:`SLACK` bytes).
    """
    import json
    import zipfile

    from jaxmom.sweep._grid import Axis

    try:
        size = os.path.getsize(path) if isinstance(path, (str, os.PathLike)) else None
        with zipfile.ZipFile(path) as z:
            _check_archive(z, size)
            try:
                meta = json.loads(z.read("result.json"))
            except RecursionError:
                raise ValueError("result.json nests too deeply") from None
            _check_meta(meta)
            read = lambda name: _read_array(z, name)
            axes = [
                Axis(a["name"], {c: read(f"grid/{i}/{j}") for j, c in enumerate(a["columns"])})
                for i, a in enumerate(meta["grid"])
            ]
            grid = Grid(axes)
            _check_grid(grid)
            names = set(z.namelist())

            def count(prefix: str) -> int:  # members <prefix>0.npy, <prefix>1.npy, ...
                n = 0
                while f"{prefix}{n}.npy" in names:
                    n += 1
                return n

            metrics = _decode(
                meta["metrics"], [read(f"metrics/{i}") for i in range(count("metrics/"))]
            )
            trees = {}
            for field in ("params", "model_state"):
                trees[field] = None
                if meta.get(field) is not None:
                    leaves = [read(f"{field}/{i}") for i in range(count(f"{field}/"))]
                    trees[field] = _decode(meta[field], leaves, field)
            marks = read("diverged"), read("diverged_step")
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, IndexError, EOFError) as e:
        why = (str(e).strip("'\"") or type(e).__name__).replace("\n", " ")[:300]
        raise ValueError(f"{path} is not a saved jaxmom SweepResult: {why}") from None
    except RecursionError:
        raise ValueError(f"{path} is not a saved jaxmom SweepResult: nested too deeply") from None
    shapes = [np.shape(x) for x in jax.tree.leaves(metrics)] + [m.shape for m in marks]
    if any(s[: len(grid.shape)] != grid.shape for s in shapes) or marks[0].dtype != bool:
        raise ValueError(f"{path} is not a saved jaxmom SweepResult: arrays do not fit its grid")
    if (
        marks[1].dtype.kind not in "iu"
        or marks[0].shape != grid.shape
        or marks[1].shape != grid.shape
    ):
        raise ValueError(f"{path} is not a saved jaxmom SweepResult: its divergence marks are bad")
    res = cls.__new__(cls)
    res.grid, res.metrics, res.devices = grid, metrics, tuple(meta["devices"])
    seconds = [nan_if_null(meta[f"{k}_seconds"]) for k in ("compile", "train", "eval")]
    res.compile_seconds, res.train_seconds, res.eval_seconds = seconds  # null: NaN, as written
    res.history = meta["history"]
    res.divergence_factor = meta["divergence_factor"]
    res.info, res.params, res.model_state = meta.get("info", {}), *trees.values()
    res._setup(marks)
    return res

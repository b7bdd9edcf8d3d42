"""The checked setup of a ``fit``: its functions, every cell's values, the data on the devices,
the mesh and the chunk size, in one frozen :class:`Setup` built by :func:`setup`.

Everything a search needs to know before it compiles anything lives here; a bad argument or a cell
that the optimizer refuses is one line, raised before any compile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmom.sweep import _checks, _contract, _engine
from jaxmom.sweep._engine import _put
from jaxmom.sweep._grid import SEED, Grid, check_float32
from jaxmom.sweep._metrics import eval_metric


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """What a fit is made of, checked: the functions, the cells' values, the data on device, the
    mesh and the chunk size (cells per device). Build it with :func:`setup`."""

    grid: Grid
    init: Callable
    loss: Callable
    optimizer: Callable
    evaluate: Callable | None
    eval_params: Callable | None
    has_state: bool  # init gives (params, model_state); loss and evaluate take the model state
    loss_key: bool  # loss takes key= (a parameter named key)
    eval_key: bool  # evaluate takes key=
    hparams: dict[str, np.ndarray]  # flat, one value per cell (float32, int32 or bool)
    seeds: np.ndarray | None  # flat per cell as _engine._seed_input gives them; None: shared
    seed: int
    fixed: dict[str, Any]  # traced, shared by every cell
    static: tuple  # fixed values given to the optimizer as Python constants: (name, value)
    train: tuple
    evals: tuple  # ((set name, or None for the one unnamed set, arrays), ...)
    names: tuple  # the names evaluate returns (traced), before each set's prefix
    batch_size: int
    eval_batch_size: int
    epochs: int
    drop_last: bool
    mesh: Mesh
    chunk: int
    stepwise: bool = False  # a Python loop of compiled steps instead of a compiled epoch

    @property
    def exact(self) -> bool:
        """Whether every training batch meets ``loss`` at its true size (a model with state or a
        key: see :mod:`jaxmom.sweep._cell`)."""
        return self.has_state or self.loss_key

    @property
    def exact_eval(self) -> bool:
        """Whether every evaluation batch meets ``evaluate`` at its true size."""
        return self.has_state or self.eval_key

    @property
    def eval(self) -> tuple:
        """Every evaluation array, set after set."""
        return tuple(a for _, arrays in self.evals for a in arrays)

    @property
    def metric_names(self) -> list[str]:
        """The per-epoch metrics of ``evaluate``, as the result names them (each set's)."""
        return [eval_metric(name, k) for name, _ in self.evals for k in self.names]

    @property
    def n(self) -> int:
        return int(self.train[0].shape[0])

    @property
    def steps(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    @property
    def width(self) -> int:
        """Cells trained at once: ``chunk`` per device."""
        return self.chunk * self.mesh.devices.size

    def chunks(self, cells: np.ndarray | None = None) -> list[np.ndarray]:
        """``cells`` (flat indices, default the whole grid) in groups of :attr:`width`; the last
        is padded by repeating its last cell."""
        cells = np.arange(self.grid.size) if cells is None else np.asarray(cells)
        padded = -(-len(cells) // self.width) * self.width
        cells = cells[np.minimum(np.arange(padded), len(cells) - 1)]
        return [cells[i : i + self.width] for i in range(0, padded, self.width)]

    def with_chunk(self, chunk: int) -> Setup:
        return dataclasses.replace(self, chunk=chunk)

    def key(self, kind: str) -> tuple:
        """What shapes a compiled program: never hyperparameter values, seeds or data values."""
        sig = tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves((self.train, self.eval)))
        names = tuple(sorted(self.hparams)), tuple(sorted(self.fixed))
        fns = (self.init, self.loss, self.optimizer, self.evaluate, self.eval_params)
        fns += (self.has_state,) if self.has_state else ()
        sizes = (self.batch_size, self.eval_batch_size, self.drop_last, self.chunk)
        sizes += tuple(name for name, _ in self.evals if name is not None)
        devices = tuple(self.mesh.devices.flat)
        return ("fit", kind, fns, names, self.static, self.seeds is not None, sizes, sig, devices)


def _cell_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def _traced_value(name: str, value) -> Any:
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        check_float32(f"fixed {name!r}", arr)
        return jnp.asarray(arr, jnp.float32)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            raise ValueError(f"fixed {name!r} does not fit in int32: {value!r}")
        return jnp.asarray(arr, jnp.int32)
    if arr.dtype.kind == "c":
        return jnp.asarray(arr, jnp.complex64)
    raise ValueError(f"fixed {name!r} must be numeric, got {value!r}")


def _split_fixed(fixed: Mapping[str, Any]) -> tuple[dict, tuple]:
    """(traced, static): scalar zeros, bools, strings and None stay Python constants of the program
    (so an optimizer can skip a zero term, as PyTorch's ``if weight_decay != 0`` does); every other
    value is a traced argument, so another value reuses the compiled program."""
    traced, static = {}, []
    for k, v in fixed.items():
        if v is None or isinstance(v, bool | str):
            static.append((k, v))
        elif isinstance(v, int | float) and v == 0:
            static.append((k, v))
        else:
            traced[k] = _traced_value(k, v)
    return traced, tuple(sorted(static))


def _arrays(name: str, data) -> tuple:
    if not isinstance(data, tuple | list) or not data:
        raise ValueError(f"{name} must be a non-empty tuple of arrays, got {type(data).__name__}")
    arrays = []
    for i, a in enumerate(data):
        arr = a if isinstance(a, jax.Array) else np.asarray(a)
        if arr.ndim < 1:
            raise ValueError(f"{name}[{i}] needs an example axis first, got shape {arr.shape}")
        if arr.dtype == np.int64 and not jax.config.read("jax_enable_x64"):
            big = np.iinfo(np.int32)
            if arr.size and (arr.min() < big.min or arr.max() > big.max):
                raise ValueError(f"{name}[{i}] holds int64 values outside int32's range")
            arr = arr.astype(np.int32)
        arrays.append(arr)
    lengths = [int(a.shape[0]) for a in arrays]
    if len(set(lengths)) != 1:
        raise ValueError(f"{name} arrays need equal leading (example) axes, got {lengths}")
    if lengths[0] < 1:
        raise ValueError(f"{name} needs at least one example, got 0")
    return tuple(arrays)


def check_cells(grid: Grid, optimizer: Callable, fixed: Mapping[str, Any]) -> None:
    """Build ``optimizer`` once per distinct cell with concrete Python values (the cell's and
    ``fixed``'s): a value it refuses raises one line naming the cell, before anything compiles."""
    coords = {k: v.reshape(-1) for k, v in grid.coords().items() if k != SEED}
    seen = set()
    for i in range(grid.size):
        cell = {k: v[i].item() for k, v in coords.items()}
        key = tuple(cell.items())
        if key in seen:
            continue
        seen.add(key)
        try:
            optimizer({**fixed, **cell})
        except (ValueError, TypeError) as e:
            msg = " ".join(str(e).split())
            raise ValueError(f"grid cell {_cell_text(cell)}: {msg}") from None
        except KeyError as e:
            names = sorted({*grid.params, *fixed})
            raise ValueError(
                f"grid cell {_cell_text(cell)}: optimizer reads the hyperparameter {e.args[0]!r}, "
                f"which is neither the grid's nor fixed's: those are {names}"
            ) from None


def batch_shapes(arrays, size: int) -> tuple:
    """A batch of ``size`` examples of ``arrays``, as ``jax.ShapeDtypeStruct``s."""
    return tuple(jax.ShapeDtypeStruct((size, *a.shape[1:]), a.dtype) for a in arrays)


def setup(
    grid: Grid,
    *,
    init: Callable,
    loss: Callable,
    optimizer: Callable,
    train,
    batch_size: int,
    epochs: int,
    eval=None,
    evaluate: Callable | None = None,
    seed: int = 0,
    drop_last: bool = False,
    fixed: Mapping[str, Any] | None = None,
    eval_params: Callable | None = None,
    eval_batch_size: int | None = None,
    devices: Sequence[Any] | None = None,
    has_state: bool = False,
) -> Setup:
    """Check every argument of :func:`fit` (one line per problem, before any compile) and build the
    :class:`Setup`, with a provisional chunk of the whole grid; see :func:`fit` for the arguments."""
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a jaxmom.sweep.Grid, got {type(grid).__name__}")
    for name, fn in (("init", init), ("loss", loss), ("optimizer", optimizer)):
        if not callable(fn):
            raise TypeError(f"{name} must be a function, got {type(fn).__name__}")
    batch_size = _checks.positive_int("batch_size", batch_size)
    epochs = _checks.positive_int("epochs", epochs)
    seed = _checks.seed(seed)
    train = _arrays("train", train)
    n = int(train[0].shape[0])
    if drop_last and n < batch_size:
        raise ValueError(
            f"drop_last=True with batch_size {batch_size} above the {n} training examples "
            "leaves no step"
        )
    batch_size = min(batch_size, n)  # one batch of every example, as PyTorch's DataLoader
    if (eval is None) != (evaluate is None):
        raise ValueError("eval and evaluate go together: give both or neither")
    if not isinstance(has_state, bool):
        raise TypeError(f"has_state must be True or False, got {has_state!r}")
    evals = _eval_sets(eval)
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    eval_batch_size = _checks.positive_int("eval_batch_size", eval_batch_size)
    if evals:
        eval_batch_size = min(eval_batch_size, max(int(a[0].shape[0]) for _, a in evals))
    fixed = dict(fixed or {})
    clash = sorted(set(fixed) & set(grid.params))
    if clash:
        raise ValueError(f"fixed hyperparameters {clash} are also axes of the grid")
    check_cells(grid, optimizer, fixed)
    traced, static = _split_fixed(fixed)
    params, model_state = _contract.check_init(init, has_state)
    batch = batch_shapes(train, batch_size)
    used = _contract.check_loss(loss, params, model_state, batch, has_state)
    names = []
    for _, arrays in evals:
        b = min(eval_batch_size, int(arrays[0].shape[0]))
        batch = batch_shapes(arrays, b)
        names = _contract.check_evaluate(evaluate, params, model_state, batch, has_state)
    _contract.check_names(names, [name for name, _ in evals], grid)

    coords = {k: v.reshape(-1) for k, v in grid.coords().items()}
    seeds = coords.pop(SEED, None)
    seeds = None if seeds is None else _engine._seed_input(seeds)  # exact, as sweep() feeds them
    coords = {k: _engine._hparam_input(k, v) for k, v in coords.items()}
    devices = _checks.devices(devices)
    mesh = Mesh(np.array(devices), ("grid",))
    shared = NamedSharding(mesh, P())
    put = lambda tree: jax.tree.map(lambda a: _put(a, shared), tree)
    return Setup(
        grid=grid,
        init=init,
        loss=loss,
        optimizer=optimizer,
        evaluate=evaluate,
        eval_params=eval_params,
        has_state=has_state,
        loss_key=_contract.takes_key(loss),
        eval_key=_contract.takes_key(evaluate),
        hparams=coords,
        seeds=seeds,
        seed=seed,
        fixed=put(traced),
        static=static,
        train=put(train),
        evals=tuple((name, put(arrays)) for name, arrays in evals),
        names=tuple(names),
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        epochs=epochs,
        drop_last=bool(drop_last),
        mesh=mesh,
        chunk=-(-grid.size // len(devices)),
        # Whether loss convolves (its primitives, traced once by the contract's check). XLA:CPU runs
        # a convolution inside a loop (a lax.scan epoch) several times slower than the same one
        # outside, and the grouped convolution that vmap makes of stacked kernels slower than one
        # convolution per configuration (experiments/benchmark.py --cnn measures both ways
        # against single runs): on CPU such models train one configuration at a time
        # (chunk_size="auto"), one compiled step at a time.
        stepwise=devices[0].platform == "cpu" and "conv_general_dilated" in used,
    )


def _eval_sets(eval) -> tuple:
    """``eval`` as ``((name, arrays), ...)``: a tuple of arrays is the one unnamed set (name
    None), a dict names each set."""
    if eval is None:
        return ()
    if not isinstance(eval, Mapping):
        return ((None, _arrays("eval", eval)),)
    if not eval:
        raise ValueError("eval must name at least one evaluation set, got an empty dict")
    for name in eval:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"eval's set names must be non-empty strings without '/', got {name!r}"
            )
    return tuple((name, _arrays(f"eval[{name!r}]", arrays)) for name, arrays in eval.items())

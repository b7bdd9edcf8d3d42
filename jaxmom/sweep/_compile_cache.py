"""JAX's persistent compilation cache, turned on by a call (never on import).

Every process compiles its programs again unless JAX keeps them on disk: the MNIST study's
default run spends most of a cold start compiling. :func:`use_compile_cache` is the one line a
library user writes to keep them, in a per-user folder (:func:`default_compile_cache_dir`); the
study's command line and the ``experiments/`` scripts call :func:`configure_compile_cache`, which
reads ``--compile-cache DIR`` / ``--no-compile-cache`` (:func:`add_compile_cache_flags`), else
the environment variable ``JAXMOM_COMPILE_CACHE`` (``off`` or a folder), and only warns, in one
line, when the folder cannot be used.

The cache is trusted code: whoever can write into its folder can make the process run anything.
The folder is therefore created private (mode 0o700), and an existing one that another user owns
or that others may write into is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

ENV = "JAXMOM_COMPILE_CACHE"
OFF = ("off", "0", "no", "false", "none")
# JAX turns an unreadable or unwritable entry into a UserWarning that starts with one of these.
_JAX_WARNINGS = r"Error (reading|writing) persistent compilation cache"


def _jax_dir() -> str | None:
    """JAX's ``jax_compilation_cache_dir`` now (set by an update or by its environment variable)."""
    import jax

    return jax.config.values.get("jax_compilation_cache_dir")


def default_compile_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jaxmom/jax``, or ``~/.cache/jaxmom/jax`` where that is unset (or, as the
    XDG specification says to treat it, not an absolute path)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "jaxmom" / "jax"


def _private_folder(path: Path) -> Path:
    """``path`` created with mode 0o700 (its missing parents with the default mode), checked to
    be a folder this user owns, that nobody else may write into, and that takes a file; an
    ``OSError`` with a one-line message otherwise."""
    path = Path(path).expanduser().absolute()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise OSError(f"{path} is not a folder") from None
    except OSError as e:
        raise OSError(f"cannot create {path}: {e.strerror or e}") from None
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise OSError(f"{path} belongs to another user")
    if st.st_mode & 0o022:
        raise OSError(f"{path} may be written by other users (mode {st.st_mode & 0o777:o})")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise OSError(f"cannot write into {path}: {e.strerror or e}") from None
    return path


def use_compile_cache(path: str | os.PathLike | None = None) -> Path:
    """Keep every compiled program in JAX's persistent compilation cache, in ``path`` (default
    :func:`default_compile_cache_dir`), so a later process loads it instead of compiling again.

    Sets ``jax_compilation_cache_dir`` and lowers ``jax_persistent_cache_min_compile_time_secs``
    to 0 and ``jax_persistent_cache_min_entry_size_bytes`` to -1, so small programs are kept too.
    The folder is created with mode 0o700; one that is not usable (not a folder, not writable,
    another user's, writable by others) raises ``OSError`` with a one-line message and leaves
    JAX's configuration as it was. Call it before the programs compile; calling it again with
    another folder moves the cache. Returns the folder.

    >>> from jaxmom import sweep
    >>> sweep.use_compile_cache()  # doctest: +SKIP
    PosixPath('/home/me/.cache/jaxmom/jax')
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    folder = _private_folder(default_compile_cache_dir() if path is None else Path(path))
    if _jax_dir() != str(folder):
        compilation_cache.reset_cache()  # JAX opens its cache once, at the first compile after
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder


def add_compile_cache_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--compile-cache DIR`` and ``--no-compile-cache`` (both into ``compile_cache``), for
    :func:`configure_compile_cache`."""
    parser.add_argument(
        "--compile-cache",
        metavar="DIR",
        help=f"keep compiled programs in DIR, or 'off' (default: ${ENV}, else "
        "$XDG_CACHE_HOME/jaxmom/jax or ~/.cache/jaxmom/jax)",
    )
    parser.add_argument(
        "--no-compile-cache",
        dest="compile_cache",
        action="store_const",
        const="off",
        help="compile every program again, keeping none on disk",
    )


def configure_compile_cache(setting: str | os.PathLike | None = None, *, prog: str = "jaxmom"):
    """What a script calls before it compiles: JAX's persistent compilation cache in the folder
    ``setting`` names (a flag's value), else in ``$JAXMOM_COMPILE_CACHE``, else in
    :func:`default_compile_cache_dir`; ``off`` (or ``0``, ``no``, ``false``, ``none``) in either
    leaves it off. Without ``setting``, a process whose cache is already chosen (by an earlier
    call, by :func:`use_compile_cache` or by JAX's own ``jax_compilation_cache_dir``) keeps it:
    a script that runs another script's ``main`` passes its choice on.

    A folder that cannot be used prints one line on stderr (``prog: warning: ...``) and leaves
    the cache off; JAX's own warnings about an unreadable or unwritable entry are shown once, in
    one line. Returns the folder, or None when the cache is off."""
    import jax

    if setting is None and (_CHOSEN or _jax_dir()):
        current = _jax_dir()
        return Path(current) if current else None
    _CHOSEN.append(setting)
    if setting is None:
        setting = os.environ.get(ENV) or None
    if setting is not None and str(setting).strip().lower() in OFF:
        if _jax_dir():
            from jax.experimental.compilation_cache import compilation_cache

            compilation_cache.reset_cache()  # else JAX keeps using the folder it opened
            jax.config.update("jax_compilation_cache_dir", None)
        return None
    try:
        folder = use_compile_cache(None if setting is None else Path(setting))
    except OSError as e:
        print(f"{prog}: warning: compile cache off: {e}", file=sys.stderr)
        return None
    _one_line_jax_warnings(prog)
    return folder


_CHOSEN: list = []  # the settings configure_compile_cache was called with in this process


def _one_line_jax_warnings(prog: str) -> None:
    """JAX's warnings about the cache's entries: the first as one line on stderr, the rest
    silenced (a broken cache would otherwise warn at every compile, two lines each)."""
    shown = warnings.showwarning
    if getattr(shown, "_jaxmom_cache", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text.startswith("Error reading persistent") or text.startswith("Error writing persist"):
            if not show.said:
                show.said = True
                first = " ".join(text.split())[:300]
                print(f"{prog}: warning: compile cache: {first}", file=sys.stderr)
            return
        shown(message, category, filename, lineno, file, line)

    show.said = False  # type: ignore[attr-defined]
    show._jaxmom_cache = True  # type: ignore[attr-defined]
    warnings.showwarning = show
    warnings.filterwarnings("always", message=_JAX_WARNINGS)

"""What every demo script shares: the ``--out`` option, JAX's persistent compilation cache
(``--compile-cache DIR`` / ``--no-compile-cache``, see the README's "Compile cache") and saving a
figure."""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from jaxmom.sweep import (
    OutputError,
    add_compile_cache_flags,
    atomic_open,
    check_writable,
    configure_compile_cache,
)


def output_dir(argv, name, description):
    """Parses ``--out`` (default ``runs/<name>/``), creates it and returns it as a Path; turns on
    the compile cache (:func:`jaxmom.sweep.configure_compile_cache`).

    A directory that cannot be created ends the script with a one-line message on stderr, exit 1.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / name,
        help=f"folder for the PNG figures (default: runs/{name}/)",
    )
    add_compile_cache_flags(parser)
    args = parser.parse_args(argv)
    out = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot create --out folder {str(out)!r}: {error.strerror}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        check_writable(out)  # before any computation
    except OutputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    configure_compile_cache(args.compile_cache, prog=f"{name}.py")
    return out


def save(fig, path):
    """Writes ``fig`` to ``path`` as a PNG, whole or not at all (a temporary file, then
    ``os.replace``), closes it and says where it went; a failed write is one line, exit 1."""
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    except OutputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        plt.close(fig)
    print(f"wrote {path}")

"""What every demo script shares: the ``--out`` option and saving a figure."""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def output_dir(argv, name, description):
    """Parses ``--out`` (default ``runs/<name>/``), creates it and returns it as a Path.

    A directory that cannot be created ends the script with a one-line message on stderr, exit 1.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / name,
        help=f"folder for the PNG figures (default: runs/{name}/)",
    )
    out = parser.parse_args(argv).out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot create --out folder {str(out)!r}: {error.strerror}", file=sys.stderr)
        raise SystemExit(1) from None
    return out


def save(fig, path):
    """Writes ``fig`` to ``path`` as a PNG, closes it and says where it went."""
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")

"""Where the study writes: --out and --checkpoint-dir, checked before any data or training.

The policy: a folder is created and proved writable (:func:`jaxmom.sweep.check_writable`) before
anything compiles; an --out that already holds another run's results (any of :data:`OUTPUTS`) is
refused unless the caller means to overwrite it. Each refusal is one
:class:`~jaxmom.sweep.OutputError`, a one-line message naming the flag and the folder; a
--checkpoint-dir that is a file is a ``ValueError``, a mistake in the command line. The files
themselves are written by :mod:`~jaxmom.studies.mnist.report`.
"""

import time
from pathlib import Path

from jaxmom.sweep import OutputError, check_writable

# Files a run writes into --out; a folder holding any of them holds another run's results.
LOSS_CSV = "train_loss.csv"
OUTPUTS = (
    "results.json",
    "sweep.csv",
    LOSS_CSV,
    "loss_curves.png",
    "heatmap_*.png",
    "scatter_*.png",
)


def existing_outputs(out: Path) -> list[Path]:
    """The files of :data:`OUTPUTS` already in ``out`` (none if it does not exist)."""
    return [p for pattern in OUTPUTS for p in sorted(Path(out).glob(pattern))]


def check_checkpoint_dir(folder: Path | None) -> None:
    """A ``ValueError`` if --checkpoint-dir names a file: the command line's mistake."""
    if folder is not None and Path(folder).is_file():
        raise ValueError(f"--checkpoint-dir {str(folder)!r} is a file, not a folder")


def checkpoint_folder(folder: Path | None) -> None:
    """Creates --checkpoint-dir, if given, and proves it writable."""
    if folder is not None:
        try:
            check_writable(folder)
        except OutputError as e:
            raise OutputError(f"--checkpoint-dir: {e}") from None


def out_folder(out: Path | None, stem: str, *, overwrite: bool) -> Path:
    """--out, or ``runs/<stem>-<timestamp>``; refused if it holds another run's results and
    ``overwrite`` is false. Nothing is created here: :func:`make_out` does, once the data loaded."""
    out = out or Path("runs") / time.strftime(f"{stem}-%Y%m%d-%H%M%S")
    found = existing_outputs(out)
    if found and not overwrite:
        raise OutputError(
            f"--out {str(out)!r} already holds results ({found[0].name}); "
            "pass --overwrite to replace them, or choose another --out"
        )
    return out


def make_out(out: Path) -> Path:
    """Creates ``out`` and proves it writable, before anything compiles."""
    try:
        return check_writable(out)
    except OutputError as e:
        raise OutputError(f"--out: {e}") from None

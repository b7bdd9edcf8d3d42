"""Where the study writes: --out and --checkpoint-dir, checked before any data or training.

An --out folder holds exactly one run, whole. The rule:

- --out must be new, empty, or hold only files a run of the study writes (:data:`OUTPUTS`); a
  folder that holds anything else (a file of yours, a subfolder), that is the current folder, or
  that holds --checkpoint-dir or --data-dir, is refused, --overwrite or not: a run replaces its
  --out folder whole, and never deletes a file the study did not write.
- One that holds an earlier run's results is refused unless --overwrite is given.
- The run is written into a fresh sibling folder, ``<out>.tmp-<pid>`` (:class:`Staging`, created
  and proved writable before the data loads), and swapped in only once every file is complete:
  the earlier folder is renamed to ``<out>.old-<pid>``, the new one renamed to --out, and the
  earlier one's files removed. A failure before that (a bad value found late, a full disk, an
  error, Ctrl-C) removes the sibling and leaves --out as it was: the earlier run, or nothing. A
  ``kill -9`` can leave a ``<out>.tmp-<pid>`` folder beside --out, never a mixed --out.

A refusal by the rule is a ``ValueError`` (the command line's mistake: exit status 2); a folder
that cannot be written is one :class:`~jaxmom.sweep.OutputError` (exit status 1), a one-line
message naming the flag and the folder. The files themselves are written by
:mod:`~jaxmom.studies.mnist.report`.
"""

import contextlib
import fnmatch
import os
import shutil
import signal
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
    "pbt_schedules.png",
)


def existing_outputs(out: Path) -> list[Path]:
    """The files of :data:`OUTPUTS` already in ``out`` (none if it does not exist)."""
    return [p for pattern in OUTPUTS for p in sorted(Path(out).glob(pattern))]


def foreign(out: Path) -> list[Path]:
    """What ``out`` holds that a run of the study did not write: anything but a file named as
    in :data:`OUTPUTS` (or an interrupted atomic write of one, ``.<name>.*.tmp``)."""
    if not out.is_dir():
        return []
    ours = (*OUTPUTS, *(f".{pattern}.*.tmp" for pattern in OUTPUTS))
    return sorted(
        p
        for p in out.iterdir()
        if p.is_symlink() or not p.is_file() or not any(fnmatch.fnmatch(p.name, o) for o in ours)
    )


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


def out_folder(args) -> "Staging":
    """--out (``args.out``), or ``runs/<mnist|sweep|search>-<timestamp>``, checked against the
    rule (the module's docstring) with ``args.overwrite``, ``args.checkpoint_dir`` and
    ``args.data_dir``: one ``ValueError`` if it is refused. Nothing is created here: the
    :class:`Staging` returned does, when entered."""
    stem = "sweep" if args.sweep else "search" if args.search else "mnist"
    out = args.out or Path("runs") / time.strftime(f"{stem}-%Y%m%d-%H%M%S")
    inside = {"--checkpoint-dir": args.checkpoint_dir, "--data-dir": args.data_dir}
    said, target = f"--out {str(out)!r}", Path(out).resolve()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{said} is a file, not a folder")
    if target == Path.cwd().resolve() or os.path.ismount(target):
        what = "the current folder" if target == Path.cwd().resolve() else "a mount point"
        raise ValueError(
            f"{said} is {what}: a run replaces its --out folder whole; "
            "give a folder of its own, e.g. --out results"
        )
    for flag, folder in inside.items():
        if folder is not None and Path(folder).resolve().is_relative_to(target):
            raise ValueError(f"{flag} lies inside {said}, which a run replaces whole")
    try:
        other, found = foreign(target), existing_outputs(target)
    except OSError as e:
        raise OutputError(f"--out: cannot read {out}: {e.strerror or e}") from None
    if other:
        raise ValueError(
            f"{said} holds {other[0].name}, which the study did not write: a run replaces its "
            "--out folder whole, so give a new or empty folder"
        )
    if found and not args.overwrite:
        raise ValueError(
            f"{said} already holds results ({found[0].name}); "
            "pass --overwrite to replace them, or choose another --out"
        )
    return Staging(Path(out), overwrite=args.overwrite)


class Staging:
    """The folder a run writes into, beside --out, swapped in whole by :meth:`commit`.

    ``with Staging(out, overwrite=...) as stage:`` creates ``<out>.tmp-<pid>`` (and --out's missing parents) and
    proves it writable; the run writes into ``stage.path``; :meth:`commit` makes it --out. Leaving
    the block without a commit removes it (and the parents it created), and an
    :class:`~jaxmom.sweep.OutputError` about a file in it names the file as it would be in --out.
    """

    def __init__(self, out: Path, *, overwrite: bool = False):
        self.out, self.overwrite = Path(out), overwrite
        target = self.out.resolve()
        self.target = target
        self.path = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        self.aside = target.with_name(f"{target.name}.old-{os.getpid()}")
        self.made: list[Path] = []  # parents of --out this run created
        self.done = False

    def __enter__(self) -> "Staging":
        missing = [p for p in self.target.parents if not p.exists()]
        try:
            for parent in reversed(missing):
                parent.mkdir()
                self.made.append(parent)
            self.path.mkdir()
            check_writable(self.path)
        except OSError as e:
            self.__exit__(None, None, None)
            raise OutputError(
                f"--out: output folder {self.out} is not writable (a run is written beside it, "
                f"then renamed in): {e.strerror or e}"
            ) from None
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if not self.done:
            shutil.rmtree(self.path, ignore_errors=True)
            for parent in reversed(self.made):
                with contextlib.suppress(OSError):
                    parent.rmdir()  # only if still empty
        if not self.done and isinstance(error, OutputError) and str(self.path) in str(error):
            raise OutputError(str(error).replace(str(self.path), str(self.out))) from None

    def shown(self, paths: list[Path]) -> list[Path]:
        """``paths`` written into :attr:`path`, as they are in --out."""
        return [self.out / Path(p).relative_to(self.path) for p in paths]

    def commit(self, paths: list[Path]) -> list[Path]:
        """Swaps the complete run in as --out, removes the earlier run's files, and returns
        ``paths`` (written into :attr:`path`) as they now are in --out. Ctrl-C waits until the
        swap is over. Should --out have gained files the study did not write meanwhile (or
        results, without --overwrite), it is left alone and the run stays in :attr:`path` (one
        ``OutputError`` says so)."""
        other = foreign(self.target) or (
            existing_outputs(self.target) if not self.overwrite else []
        )
        if other:
            self.done = True  # kept: the run's only copy
            raise OutputError(
                f"--out {str(self.out)!r} now holds {other[0].name}, which this run may not "
                f"replace: left as it is; this run's files are in {self.path}"
            )
        with sigint_held():
            try:
                if self.target.exists():
                    os.rename(self.target, self.aside)
                os.rename(self.path, self.target)
            except BaseException as e:  # an OSError, or a Ctrl-C that came just before
                if self.aside.exists() and not self.target.exists():
                    os.rename(self.aside, self.target)  # the earlier run back in place
                if not isinstance(e, OSError):
                    raise
                raise OutputError(f"--out: cannot replace {self.out}: {e.strerror or e}") from None
            self.done = True
            try:
                if self.aside.exists():
                    for p in self.aside.iterdir():  # only the study's files (checked above)
                        p.unlink()
                    self.aside.rmdir()
            except OSError as e:
                raise OutputError(
                    f"--out: the run is in {self.out}, but the earlier run's files in "
                    f"{self.aside} could not be removed: {e.strerror or e}"
                ) from None
        return self.shown(paths)


@contextlib.contextmanager
def sigint_held():
    """SIGINT held back (blocked) in the block and delivered after it, where the platform can."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
